"""Fused Triton kernels (``kernels.py``) and their launchers (``ops.py``)."""
