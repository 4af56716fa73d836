"""The ATen backend (CPU): torch's own uint8 antialiased bicubic kernel (``F.interpolate(uint8,
mode="bicubic", antialias=True)``) for ``resize_mode="torch-uint8"``, with normalisation and the patch layout
fused in NumPy (``cpu_fusion``) so the float output is written once.

That kernel is the definition of ``"torch-uint8"`` mode, so calling it is exact by construction. torch has
two builds of it, AVX2 code (x86-64) and a generic loop (elsewhere, or ``ATEN_CPU_CAPABILITY=default``); they
agree on channels-last input, which is what this backend passes. They part only on contiguous NCHW input
resized to one pixel wide (a memory-format ambiguity: the AVX2 code fails an internal assertion, the generic
loop returns other values); the mode is the channels-last result. torch's kernel releases the GIL, so images
and frames run on threads of the shared pool. What the kernel does not define (other modes, float input that
is not resized) runs the reference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import VisionPreprocessConfig
from ..contract import ImageBatch, Plan, VideoBatch
from . import cpu_fusion, reference

NAME = "aten"


def can_run(device: torch.device) -> tuple[bool, str]:
    """torch's CPU kernel runs on CPU tensors."""
    if torch.device(device).type != "cpu":
        return False, f"the aten backend takes CPU tensors, got a tensor on {device}"
    return True, ""


def resize_hwc(levels: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``[3, H, W] uint8`` CPU tensor (any strides) -> ``[h, w, 3]`` uint8 NumPy view of a new array (or of
    a channels-last copy when the size is kept). The input goes in channels-last: torch's fastest layout,
    and the one on which both of its builds agree at every size (see the module doc)."""
    c, in_h, in_w = levels.shape
    # channels-last with the batch stride spelled out: torch picks its layout from the strides, and a
    # broadcast-looking batch stride would make it treat a one-pixel-wide output as contiguous NCHW
    src = levels.permute(1, 2, 0).contiguous().as_strided((1, c, in_h, in_w), (c * in_h * in_w, 1, in_w * c, c))
    if tuple(src.shape[-2:]) != tuple(size):
        src = F.interpolate(src, size=tuple(size), mode="bicubic", antialias=True)
    return src[0].permute(1, 2, 0).numpy()


def _levels_into(levels: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig, out: torch.Tensor,
                 frames: int, pool, parts: int, slots: tuple[int, int] | None) -> None:
    """torch's resize, then normalisation + patchify into ``out`` (in ``parts`` strips of merge-window rows
    on ``pool`` when given)."""
    region = resize_hwc(levels, size)
    norm = cpu_fusion.cpu_normalizer(config)
    p, m = config.patch_size, config.row_merge_size
    block = p * m
    out_blocks = out.view(size[0] // block, size[1] // block, m * m, -1)
    if pool is None or parts <= 1:
        cpu_fusion.normalize_region(region, out_blocks, norm, p, m, frames, slots)
        return

    def strip(r: tuple[int, int]) -> None:
        cpu_fusion.normalize_region(region[r[0]:r[1]], out_blocks[r[0] // block:r[1] // block], norm, p, m,
                                    frames, slots)

    list(pool.map(strip, cpu_fusion.split(size[0], parts, block)))


def preprocess_into(batch: ImageBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every image of ``batch`` (scheduling in ``cpu_fusion.images_into``)."""
    cpu_fusion.images_into(batch, plan, out, "torch-uint8", _levels_into)


def videos_into(batch: VideoBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every clip, one frame per task, each normalised straight into its
    temporal slots (``cpu_fusion.videos_into``)."""
    cpu_fusion.videos_into(batch, plan, out, "torch-uint8", _levels_into)


def resize(images: list[torch.Tensor], sizes: list[tuple[int, int]], config: VisionPreprocessConfig,
           stacked: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The resize stage alone (uint8 ``[3, H, W]`` -> ``[3, h, w]``): torch's kernel in torch-uint8 mode,
    else the reference."""
    if config.resize_mode != "torch-uint8":
        return reference.resize(images, sizes, config, stacked)
    levels = [reference.to_levels(img, config.input_range) for img in images]
    return [cpu_fusion.as_tensor(resize_hwc(x, s)).permute(2, 0, 1) for x, s in zip(levels, sizes)]
