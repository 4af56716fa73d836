"""Backends: ``torch_ref`` (pure torch, any device, the oracle) and ``triton`` (fused CUDA kernels)."""
