"""The Pillow backend (CPU): Pillow's own C resampler for ``resize_mode="pil"``, with normalisation and the
patch layout fused in NumPy (``cpu_fusion``) so the float output is written once.

Pillow is the definition of the ``"pil"`` mode, so calling it is exact by construction; a pass order other
than the installed Pillow's is reproduced by chaining single-axis resizes (each is exactly one Pillow pass).
Pillow releases the GIL while resampling, so images (and strips of one large image) run on threads of one
shared pool. What Pillow does not define (other modes, float input that is not resized) runs the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import VisionPreprocessConfig
from ..contract import ImageBatch, Plan, VideoBatch
from ..sizing import installed_pillow_order, pillow_vertical_first, separable_passes
from . import cpu_fusion, reference

NAME = "pillow"


def can_run(device: torch.device) -> tuple[bool, str]:
    """Pillow runs on CPU tensors, when it can be imported."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:  # pragma: no cover
        return False, "Pillow cannot be imported"
    if torch.device(device).type != "cpu":
        return False, f"the Pillow backend takes CPU tensors, got a tensor on {device}"
    return True, ""


def _pillow_resize(arr: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Pillow BICUBIC on ``[H, W, 3] uint8`` (read-only result). When only one side changes this is exactly
    one Pillow pass."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(arr), "RGB").resize((out_w, out_h), Image.Resampling.BICUBIC)
    return np.asarray(im)


def resize_hwc(hwc: np.ndarray, size: tuple[int, int], order: str) -> np.ndarray:
    """``[H, W, 3] uint8 -> [h, w, 3] uint8`` with Pillow BICUBIC in the pass order of ``order``."""
    in_h, in_w = hwc.shape[:2]
    h, w = size
    vertical_first = pillow_vertical_first(in_h, in_w, h, w, order)
    if vertical_first == pillow_vertical_first(in_h, in_w, h, w, installed_pillow_order()):
        return _pillow_resize(hwc, h, w)  # Pillow's own two passes run in this very order
    for vertical, n in separable_passes(in_h, in_w, h, w, vertical_first):
        hwc = _pillow_resize(hwc, n, hwc.shape[1]) if vertical else _pillow_resize(hwc, hwc.shape[0], n)
    return hwc


def resize_chw(x: torch.Tensor, size: tuple[int, int], order: str) -> torch.Tensor:
    """``[3, H, W] uint8`` CPU tensor (any strides) -> ``[3, h, w]`` view of a new HWC uint8 tensor."""
    hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    return cpu_fusion.as_tensor(resize_hwc(hwc, size, order)).permute(2, 0, 1)


def _levels_into(levels: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig, out: torch.Tensor,
                 frames: int, pool, parts: int, slots: tuple[int, int] | None) -> None:
    image_into(levels, size, config.pillow_order, out, cpu_fusion.cpu_normalizer(config), config.patch_size,
               config.row_merge_size, frames, pool, parts, slots)


def preprocess_into(batch: ImageBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every image of ``batch``: Pillow resize, then normalisation and the
    patch layout into each image's rows (scheduling in ``cpu_fusion.images_into``). Images Pillow does not
    define (another resize mode, float input at its target size) run the reference."""
    cpu_fusion.images_into(batch, plan, out, "pil", _levels_into)


def _levels(x: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig) -> torch.Tensor:
    """Resized uint8 levels ``[B, 3, h, w]`` of ``x [B, 3, H, W]`` with Pillow, several images on the pool."""
    levels = reference.to_levels(x, config.input_range)
    if tuple(x.shape[-2:]) == tuple(size):
        return levels

    def one(img: torch.Tensor) -> torch.Tensor:
        return resize_chw(img, size, config.pillow_order)

    if levels.shape[0] == 1:
        return one(levels[0])[None]
    return torch.stack(list(cpu_fusion.thread_pool().map(one, levels.unbind(0))))


def videos_into(batch: VideoBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every clip, one Pillow-resized frame per task, each normalised straight
    into its temporal slots (``cpu_fusion.videos_into``). Clips Pillow does not define run the reference."""
    cpu_fusion.videos_into(batch, plan, out, "pil", _levels_into)


def resize(images: list[torch.Tensor], sizes: list[tuple[int, int]], config: VisionPreprocessConfig,
           stacked: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The resize stage alone (uint8 ``[3, H, W]`` -> ``[3, h, w]``): Pillow in pil mode, else the reference."""
    if config.resize_mode != "pil":
        return reference.resize(images, sizes, config, stacked)
    return [_levels(img[None], s, config)[0] for img, s in zip(images, sizes)]


def image_into(x: torch.Tensor, size: tuple[int, int], order: str, out: torch.Tensor, normalize_into,
               patch_size: int, merge_size: int, temporal_patch_size: int, pool, parts: int,
               slots: tuple[int, int] | None = None) -> None:
    """Pillow resize + normalise + patchify of one CPU uint8 image ``[3, H, W]`` into ``out [rows, dim]``.

    The image is cut into ``parts`` strips per pass (rows for a horizontal pass, columns for a vertical one:
    each Pillow pass treats those independently, so the result is exact) and the strips run on ``pool``;
    the last pass of each strip is normalised straight into its own rows of ``out`` (``normalize_into(levels,
    dst)`` on NumPy arrays, see :func:`cpu_normalizer`; a few rows of merge windows at a time,
    written to every temporal copy, or to the temporal slots ``slots = (start, stop)`` only), with no
    image-sized float temporary. With one part (or no pool) the image is a single task: one Pillow call
    does both passes.
    """
    in_h, in_w = x.shape[-2:]
    h, w = size
    p, m, t = patch_size, merge_size, temporal_patch_size
    block = p * m
    out_blocks = out.view(h // block, w // block, m * m, -1)
    cur = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    if pool is None or parts <= 1:  # one task: Pillow's own two passes, no strips to assemble
        region = resize_hwc(cur, size, order) if (in_h, in_w) != (h, w) else cur
        cpu_fusion.normalize_region(region, out_blocks, normalize_into, p, m, t, slots)
        return
    passes = separable_passes(in_h, in_w, h, w, pillow_vertical_first(in_h, in_w, h, w, order))
    for vertical, n in passes[:-1]:  # first of two passes: strips along the side it does not resample
        mid = np.empty((n, cur.shape[1], 3) if vertical else (cur.shape[0], n, 3), dtype=np.uint8)

        def first(r, vertical=vertical, n=n, src=cur, dst=mid):
            if vertical:
                dst[:, r[0]:r[1]] = _pillow_resize(src[:, r[0]:r[1]], n, r[1] - r[0])
            else:
                dst[r[0]:r[1]] = _pillow_resize(src[r[0]:r[1]], r[1] - r[0], n)

        list(pool.map(first, cpu_fusion.split(cur.shape[1] if vertical else cur.shape[0], parts)))
        cur = mid
    # The last pass (if any) runs in strips of whole merge windows: rows of windows when it is horizontal
    # (or absent), columns when vertical; each strip is patchified straight into its own rows of ``out``.
    last_vertical = bool(passes) and passes[-1][0]

    def final(r):
        if last_vertical:
            region = _pillow_resize(cur[:, r[0]:r[1]], h, r[1] - r[0])
            dst = out_blocks[:, r[0] // block:r[1] // block]
        else:
            region = _pillow_resize(cur[r[0]:r[1]], r[1] - r[0], w) if passes else cur[r[0]:r[1]]
            dst = out_blocks[r[0] // block:r[1] // block]
        cpu_fusion.normalize_region(region, dst, normalize_into, p, m, t, slots)

    list(pool.map(final, cpu_fusion.split(w if last_vertical else h, parts, block)))
