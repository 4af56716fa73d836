"""Launchers for the Triton kernels (placeholder until the kernels land)."""
from __future__ import annotations
import torch

def can_run(device: torch.device) -> tuple[bool, str]:
    return False, "Triton kernels not built yet"
