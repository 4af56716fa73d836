"""The Triton backend: fused kernels for CUDA tensors (and Triton's CPU interpreter under
``TRITON_INTERPRET=1``).

Package layout, by responsibility: ``kernels.py`` (the ``@triton.jit`` kernels, private), ``launcher.py``
(launching one prepared kernel with named arguments), ``plans.py`` (the launches of one same-shape group,
cached), ``warm.py`` (replaying a repeated call), ``tuning.py`` (launch shapes). This module is the backend
contract (``backends/__init__.py``): images are grouped by (shape, dtype, target size), one group's launches
per distinct group; a clip's frames are one group, written to their temporal slots.
"""

from __future__ import annotations

import os

import torch

from ...config import VisionPreprocessConfig
from ...contract import ImageBatch, Plan, VideoBatch
from ...sizing import separable_passes, vertical_pass_first
from .. import reference
from .plans import launch_group, resample_pass
from .warm import GroupLaunch, launch_source, remember_call, warm_call

NAME = "triton"
__all__ = ["NAME", "can_run", "preprocess_into", "remember_call", "resize", "videos_into", "warm_call"]


def can_run(device: torch.device) -> tuple[bool, str]:
    """Whether the kernels can run on ``device`` and, if not, why."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        return True, ""
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True, ""
    return False, (f"the Triton kernels need CUDA tensors, got a tensor on {device} "
                   "(set TRITON_INTERPRET=1 to run them in Triton's CPU interpreter)")


def preprocess_into(batch: ImageBatch, plan: Plan, out: torch.Tensor) -> list[GroupLaunch] | None:
    """Fill ``out`` for every image of ``batch``: one group per distinct (shape, dtype, target size), each
    read in place where its images lie at one step in one buffer, else stacked. Returns the group launches,
    for :func:`remember_call`, or None where a call cannot be repeated from them (a group split over several
    grids)."""
    sizes, row_offsets = plan.sizes, plan.row_offsets
    if batch.stacked is not None:
        launches = [GroupLaunch(None, None, tuple(sizes[0]), 0, None)]
        source = batch.stacked
    else:
        groups: dict[tuple, list[int]] = {}
        for i, img in enumerate(batch.images):
            groups.setdefault((tuple(img.shape), img.dtype, tuple(sizes[i])), []).append(i)
        launches = [GroupLaunch(None, tuple(members), size, row_offsets[members[0]], None) if len(members) == 1
                    else GroupLaunch(None, tuple(members), size, 0, tuple(row_offsets[i] for i in members))
                    for (_, _, size), members in groups.items()]
        source = batch.images
    for launch in launches:
        launch.plan = launch_group(launch_source(source, launch.members), launch.size, plan.config, out,
                                   launch.first_row, launch.row_offsets)
    if any(launch.plan is None for launch in launches):
        return None
    return launches


def videos_into(batch: VideoBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every clip: the frames of a clip (of a stacked batch of clips) are one
    group whose fused pass writes each frame into its temporal slot, so two consecutive frames fill the two
    temporal columns of a row (the last frame of an odd count also the slots after it); two launches per
    clip (one per batch of same-size clips), at most."""
    config, sizes, row_offsets = plan.config, plan.sizes, plan.row_offsets
    if batch.stacked is not None:
        frames = batch.clips[0].shape[0]
        launch_group(batch.stacked, tuple(sizes[0]), config, out, row_offsets[0], None, frames)
        return
    for i, clip in enumerate(batch.clips):
        launch_group(clip, tuple(sizes[i]), config, out, row_offsets[i], None, clip.shape[0])


def resize(images: list[torch.Tensor], sizes: list[tuple[int, int]], config: VisionPreprocessConfig,
           stacked: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The resize stage alone on uint8 ``[3, H, W]`` images with the first-pass kernel."""
    results = []
    for img, (h, w) in zip(images, sizes):
        x = img[None]
        in_h, in_w = x.shape[-2:]
        for vertical, n in separable_passes(in_h, in_w, h, w, vertical_pass_first(in_h, in_w, h, w, config)):
            x = resample_pass(x, n, vertical, config.resize_mode)
        if x.dtype != torch.uint8:
            x = reference.round_to_levels(x)
        results.append(x[0])
    return results
