"""Normalisation and the patch layout of uint8 levels on the CPU, fused so the float output is written once;
shared by the CPU backends (``pillow``, ``aten``), which differ only in the resampler that makes the levels.
Everything here runs NumPy on the calling thread (no torch intra-op threads), so workers of the shared pool
do not compete for cores.
"""

from __future__ import annotations

import functools
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..config import VisionPreprocessConfig
from ..contract import ImageBatch, Plan, VideoBatch
from ..layout import patch_blocks
from . import reference

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def thread_pool() -> ThreadPoolExecutor:
    """The shared CPU worker pool (one thread per torch intra-op thread), created once on first use.
    Tasks submitted to it must not wait on further tasks of the same pool."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()),
                                       thread_name_prefix="qwen_vis_prep")
        return _POOL


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` of a read-only array (from Pillow), without torch's warning (we only read it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.from_numpy(arr)


@functools.lru_cache(maxsize=64)
def cpu_normalizer(config: VisionPreprocessConfig, gather_only: bool = False):
    """``into(levels, dst)``: write the normalised float32 value of every uint8 level of the NumPy array
    ``levels [..., 3, P, P]`` (channel on axis -3, any strides) into the float32 NumPy array ``dst`` (same
    shape, any strides), equal to ``reference.level_table``.

    In-place float32 ``multiply/subtract/divide`` on ``dst`` itself is several times faster than gathering
    from the table (``reference.level_table``) and needs no temporary; it gives the same bits whenever those
    float32 operations are correctly rounded, which is checked here on all 768 (channel, level) pairs once
    per config. Should a config ever disagree (or with ``gather_only``, for tests), the table is gathered.
    NumPy rather than torch: the CPU backends call this from their worker threads, where torch's own intra-op
    threads would compete with the other workers; NumPy's loops run on the calling thread and release the
    GIL.
    """
    scale, mean, std = reference.normalize_constants(config, torch.device("cpu"))
    lut = reference.level_table(config, torch.device("cpu")).numpy()
    scale32 = None if scale is None else np.float32(scale)
    mean3 = None if mean is None else mean.numpy().reshape(3, 1, 1)
    std3 = None if std is None else std.numpy().reshape(3, 1, 1)
    offsets = np.arange(0, 3 * 256, 256, dtype=np.intp).reshape(3, 1, 1)

    def arithmetic(levels: np.ndarray, dst: np.ndarray) -> None:
        if scale32 is not None:
            np.multiply(levels, scale32, out=dst)  # float32 loop: float32(level) * float32(scale)
        else:
            np.copyto(dst, levels)
        if mean3 is not None:
            np.subtract(dst, mean3, out=dst)
            np.divide(dst, std3, out=dst)

    def gather(levels: np.ndarray, dst: np.ndarray) -> None:
        np.take(lut.reshape(-1), levels.astype(np.intp) + offsets, out=dst)

    probe = np.empty((3, 16, 16), np.float32)
    arithmetic(np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, 0), probe)
    return arithmetic if not gather_only and np.array_equal(probe.reshape(3, 256), lut) else gather


def split(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` near-equal ranges covering ``[0, n)`` with boundaries on multiples of ``align``."""
    units = n // align
    parts = max(1, min(parts, units))
    bounds = [round(i * units / parts) * align for i in range(parts + 1)]
    bounds[-1] = n
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# Float32 bytes normalised per step of the last pass (whole rows of merge windows, at least one). Larger
# steps pay less per-call overhead, smaller ones stay in cache. On the 2-core test machine, a sweep of 1, 2,
# 4 and 8 MiB over the three CPU benchmark cases found 4 MiB best or tied on each.
_CHUNK_BYTES = 4 << 20


def normalize_region(region: np.ndarray, dst: torch.Tensor, normalize_into, p: int, m: int, t: int,
                      slots: tuple[int, int] | None = None) -> None:
    """Patchify + normalise ``region [h, w, 3] uint8`` into ``dst [h / (p m), w / (p m), m * m, 3 t p p]``
    (a view of the output rows), about ``_CHUNK_BYTES`` of float32 at a time: the chunk's levels are read
    in patch order straight from the region and normalised (``normalize_into``, NumPy) into a small
    contiguous float32 buffer that stays in cache, which is written to the temporal slots ``slots =
    (start, stop)`` (default: all ``t``; cast to the output dtype) with one copy. Everything here runs on
    the calling thread (NumPy, no torch intra-op threads), so the workers of the pool do not compete for
    cores."""
    block = p * m
    bh, bw = region.shape[0] // block, region.shape[1] // block
    levels_all = patch_blocks(region.transpose(2, 0, 1), p, m)  # [bh, bw, m, m, 3, p, p]
    lo, hi = (0, t) if slots is None else slots
    slots = dst.view(bh, bw, m, m, 3, t, p, p)[:, :, :, :, :, lo:hi]
    slots_np = slots.numpy() if slots.dtype == torch.float32 else None
    row_elements = bw * m * m * 3 * p * p
    rows = max(1, min(bh, _CHUNK_BYTES // (4 * row_elements)))
    buffer = np.empty(rows * row_elements, np.float32)
    for i in range(0, bh, rows):
        levels = levels_all[i:i + rows]
        values = buffer[:levels.size].reshape(levels.shape)
        normalize_into(levels, values)
        if slots_np is not None:
            slots_np[i:i + rows] = values[:, :, :, :, :, None]  # broadcast over the temporal copies
        else:  # bfloat16 / float16: torch casts (NumPy has no bfloat16)
            chunk = as_tensor(values)
            slots[i:i + rows].copy_(chunk.unsqueeze(5).expand(*chunk.shape[:5], hi - lo, p, p))


# ------------------------------------------------------------------------------------------ scheduling
#
# ``levels_into(levels, size, config, out, frames, pool, parts, slots)`` is a CPU backend's fused step: resize
# the uint8 image ``levels [3, H, W]`` to ``size`` with its resampler and normalise + patchify it into ``out``
# (``frames`` temporal copies, or only the temporal ``slots = (start, stop)``), using ``parts`` tasks of
# ``pool`` when a pool is given.

def _defined(x: torch.Tensor, size: tuple[int, int]) -> bool:
    """Whether a resampler defines the levels of ``x``: uint8 input, or float input it resizes (float input
    kept at its size keeps its float values, which only the reference handles)."""
    return x.dtype == torch.uint8 or tuple(x.shape[-2:]) != tuple(size)


def images_into(batch: ImageBatch, plan: Plan, out: torch.Tensor, mode: str, levels_into) -> None:
    """Fill ``out`` with the patches of every image: few images are each cut into ``threads`` parts so every
    core has work; many run one task per image, largest first (so no big image starts last and runs alone).
    Images outside ``mode`` (another resize mode, float input at its target size) run the reference."""
    config, sizes, row_offsets = plan.config, plan.sizes, plan.row_offsets
    threads = max(1, torch.get_num_threads())
    parts = threads if len(batch.images) < threads else 1

    def work(i: int) -> None:
        rows = out[row_offsets[i]:row_offsets[i + 1]]
        img = batch.images[i]
        if config.resize_mode == mode and _defined(img, sizes[i]):
            levels_into(reference.to_levels(img, config.input_range), sizes[i], config, rows, config.image_frames,
                        thread_pool() if parts > 1 else None, parts, None)
        else:
            reference.image_group_into(img[None], sizes[i], config, rows)

    if len(batch.images) > 1 and parts == 1:
        order = sorted(range(len(batch.images)), key=lambda i: -batch.images[i].shape[-1] * batch.images[i].shape[-2])
        list(thread_pool().map(work, order))
    else:
        for i in range(len(batch.images)):
            work(i)


def videos_into(batch: VideoBatch, plan: Plan, out: torch.Tensor, mode: str, levels_into) -> None:
    """Fill ``out`` with the patches of every clip, each frame one task on the pool: resized and normalised
    straight into its temporal slot of its frame block's rows (the last frame of a clip also into the slots
    after it, as transformers pads), with no float copy of the clip. Clips outside ``mode`` (another resize
    mode, float frames at their target size) run the reference."""
    config = plan.config
    if config.resize_mode != mode:
        reference.videos_into(batch, plan, out)
        return
    tp = config.temporal_patch_size
    jobs = []
    for i, (clip, size) in enumerate(zip(batch.clips, plan.sizes)):
        rows = out[plan.row_offsets[i]:plan.row_offsets[i + 1]]
        if not _defined(clip, size):
            reference.videos_into(VideoBatch([clip], None, clip.device), Plan(config, [size], [0, rows.shape[0]]),
                                  rows)
            continue
        n = clip.shape[0]
        per_block = rows.shape[0] // -(-n // tp)
        for f in range(n):
            g, k = divmod(f, tp)
            jobs.append((clip[f], size, rows[g * per_block:(g + 1) * per_block], (k, tp if f == n - 1 else k + 1)))

    def work(job) -> None:
        frame, size, dst, slots = job
        levels_into(reference.to_levels(frame, config.input_range), size, config, dst, tp, None, 1, slots)

    list(thread_pool().map(work, jobs))
