"""The Pillow backend (CPU): Pillow's own C resampler for ``resize_mode="pil"``, with normalisation and the
patch layout fused in NumPy so the float output is written once.

Pillow is the definition of the ``"pil"`` mode, so calling it is exact by construction; a pass order other
than the installed Pillow's is reproduced by chaining single-axis resizes (each is exactly one Pillow pass).
Pillow releases the GIL while resampling, so images (and strips of one large image) run on threads of one
shared pool. What Pillow does not define (float mode, float input that is not resized) runs the reference.
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
from ..sizing import installed_pillow_order, pillow_vertical_first, separable_passes
from . import reference

NAME = "pillow"
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


def _tensor(arr: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` of a read-only array from Pillow, without torch's warning (we only read it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.from_numpy(arr)


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
    return _tensor(resize_hwc(hwc, size, order)).permute(2, 0, 1)


@functools.lru_cache(maxsize=64)
def cpu_normalizer(config: VisionPreprocessConfig, gather_only: bool = False):
    """``into(levels, dst)``: write the normalised float32 value of every uint8 level of the NumPy array
    ``levels [..., 3, P, P]`` (channel on axis -3, any strides) into the float32 NumPy array ``dst`` (same
    shape, any strides), equal to ``reference.level_table``.

    In-place float32 ``multiply/subtract/divide`` on ``dst`` itself is several times faster than gathering
    from the table (``reference.level_table``) and needs no temporary; it gives the same bits whenever those
    float32 operations are correctly rounded, which is checked here on all 768 (channel, level) pairs once
    per config. Should a config ever disagree (or with ``gather_only``, for tests), the table is gathered.
    NumPy rather than torch: the Pillow path calls this from its worker threads, where torch's own intra-op
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


def preprocess_into(batch: ImageBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every image of ``batch``: Pillow resize, then normalisation and the
    patch layout into each image's rows. Few images: each one is cut into strips so every core has work;
    many: one task per image, largest first. Images Pillow does not define (float mode, float input at its
    target size) run the reference."""
    config, sizes, row_offsets = plan.config, plan.sizes, plan.row_offsets
    fast = config.resize_mode == "pil"
    threads = max(1, torch.get_num_threads())
    parts = threads if len(batch.images) < threads else 1
    norm = cpu_normalizer(config) if fast else None

    def work(i: int) -> None:
        rows = out[row_offsets[i]:row_offsets[i + 1]]
        img = batch.images[i]
        if fast and (img.dtype == torch.uint8 or tuple(img.shape[-2:]) != tuple(sizes[i])):
            image_into(reference.to_levels(img, config.input_range), sizes[i], config.pillow_order, rows, norm,
                       config.patch_size, config.merge_size, config.image_frames,
                       thread_pool() if parts > 1 else None, parts)
        else:
            reference.image_group_into(img[None], sizes[i], config, rows)

    if len(batch.images) > 1 and parts == 1:
        # largest first, so no big image starts last and runs alone on one core (each writes its own rows)
        order = sorted(range(len(batch.images)), key=lambda i: -batch.images[i].shape[-1] * batch.images[i].shape[-2])
        list(thread_pool().map(work, order))
    else:
        for i in range(len(batch.images)):
            work(i)


def _levels(x: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig) -> torch.Tensor:
    """Resized uint8 levels ``[B, 3, h, w]`` of ``x [B, 3, H, W]`` with Pillow, several images on the pool."""
    levels = reference.to_levels(x, config.input_range)
    if tuple(x.shape[-2:]) == tuple(size):
        return levels

    def one(img: torch.Tensor) -> torch.Tensor:
        return resize_chw(img, size, config.pillow_order)

    if levels.shape[0] == 1:
        return one(levels[0])[None]
    return torch.stack(list(thread_pool().map(one, levels.unbind(0))))


def videos_into(batch: VideoBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every clip. In pil mode each frame is one task on the pool: Pillow
    resizes it and it is normalised straight into its temporal slot of its frame block's rows (the last frame
    of a clip also into the slots after it, as transformers pads), with no float copy of the clip. Clips
    Pillow does not define (float mode, float frames at their target size) run the reference."""
    config = plan.config
    if config.resize_mode != "pil":
        reference.videos_into(batch, plan, out)
        return
    p, m, tp = config.patch_size, config.merge_size, config.temporal_patch_size
    norm = cpu_normalizer(config)
    jobs = []
    for i, (clip, size) in enumerate(zip(batch.clips, plan.sizes)):
        rows = out[plan.row_offsets[i]:plan.row_offsets[i + 1]]
        if clip.dtype != torch.uint8 and tuple(clip.shape[-2:]) == tuple(size):
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
        image_into(reference.to_levels(frame, config.input_range), size, config.pillow_order, dst, norm, p, m, tp,
                   None, 1, slots)

    list(thread_pool().map(work, jobs))


def resize(images: list[torch.Tensor], sizes: list[tuple[int, int]], config: VisionPreprocessConfig,
           stacked: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The resize stage alone (uint8 ``[3, H, W]`` -> ``[3, h, w]``): Pillow in pil mode, else the reference."""
    if config.resize_mode != "pil":
        return reference.resize(images, sizes, config, stacked)
    return [_levels(img[None], s, config)[0] for img, s in zip(images, sizes)]


def _split(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
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
        _normalize_region(region, out_blocks, normalize_into, p, m, t, slots)
        return
    passes = separable_passes(in_h, in_w, h, w, pillow_vertical_first(in_h, in_w, h, w, order))
    for vertical, n in passes[:-1]:  # first of two passes: strips along the side it does not resample
        mid = np.empty((n, cur.shape[1], 3) if vertical else (cur.shape[0], n, 3), dtype=np.uint8)

        def first(r, vertical=vertical, n=n, src=cur, dst=mid):
            if vertical:
                dst[:, r[0]:r[1]] = _pillow_resize(src[:, r[0]:r[1]], n, r[1] - r[0])
            else:
                dst[r[0]:r[1]] = _pillow_resize(src[r[0]:r[1]], r[1] - r[0], n)

        list(pool.map(first, _split(cur.shape[1] if vertical else cur.shape[0], parts)))
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
        _normalize_region(region, dst, normalize_into, p, m, t, slots)

    list(pool.map(final, _split(w if last_vertical else h, parts, block)))


def _normalize_region(region: np.ndarray, dst: torch.Tensor, normalize_into, p: int, m: int, t: int,
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
            chunk = _tensor(values)
            slots[i:i + rows].copy_(chunk.unsqueeze(5).expand(*chunk.shape[:5], hi - lo, p, p))
