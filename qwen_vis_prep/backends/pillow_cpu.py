"""Pillow's own C resampler as a fast CPU path for ``resize_mode="pil"``.

Pillow is the definition of the ``"pil"`` mode, so calling it is exact by construction; a pass order other
than the installed Pillow's is reproduced by chaining single-axis resizes (each is exactly one Pillow pass).
Pillow releases the GIL while resampling, so images (and strips of one large image) run on threads.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..sizing import installed_pillow_order, pillow_vertical_first, separable_passes


def available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


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


def preprocess_into(x: torch.Tensor, size: tuple[int, int], order: str, out: torch.Tensor, normalize_into,
                    patch_size: int, merge_size: int, temporal_patch_size: int, pool, parts: int) -> None:
    """Pillow resize + normalise + patchify of one CPU uint8 image ``[3, H, W]`` into ``out [rows, dim]``.

    The image is cut into ``parts`` strips per pass (rows for a horizontal pass, columns for a vertical one:
    each Pillow pass treats those independently, so the result is exact) and the strips run on ``pool``;
    the last pass of each strip is normalised straight into its own rows of ``out`` (``normalize_into(levels,
    dst)`` on NumPy arrays, see ``functional._cpu_normalizer``; a few rows of merge windows at a time,
    written to every temporal copy), with no image-sized float temporary. With one part (or no pool) the
    image is a single task: one Pillow call does both passes.
    """
    in_h, in_w = x.shape[-2:]
    h, w = size
    p, m, t = patch_size, merge_size, temporal_patch_size
    block = p * m
    out_blocks = out.view(h // block, w // block, m * m, -1)
    cur = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    if pool is None or parts <= 1:  # one task: Pillow's own two passes, no strips to assemble
        region = resize_hwc(cur, size, order) if (in_h, in_w) != (h, w) else cur
        _normalize_region(region, out_blocks, normalize_into, p, m, t)
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
        _normalize_region(region, dst, normalize_into, p, m, t)

    list(pool.map(final, _split(w if last_vertical else h, parts, block)))


def _normalize_region(region: np.ndarray, dst: torch.Tensor, normalize_into, p: int, m: int, t: int) -> None:
    """Patchify + normalise ``region [h, w, 3] uint8`` into ``dst [h / (p m), w / (p m), m * m, 3 t p p]``
    (a view of the output rows), about ``_CHUNK_BYTES`` of float32 at a time: the chunk's levels are read
    in patch order straight from the region and normalised (``normalize_into``, NumPy) into a small
    contiguous float32 buffer that stays in cache, which is written to all ``t`` temporal copies (cast to
    the output dtype) with one copy. Everything here runs on the calling thread (NumPy, no torch intra-op
    threads), so the workers of the pool do not compete for cores."""
    block = p * m
    bh, bw = region.shape[0] // block, region.shape[1] // block
    levels_all = region.reshape(bh, m, p, bw, m, p, 3).transpose(0, 3, 1, 4, 6, 2, 5)  # [bh, bw, m, m, 3, p, p]
    slots = dst.view(bh, bw, m, m, 3, t, p, p)
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
            slots[i:i + rows].copy_(chunk.unsqueeze(5).expand(*chunk.shape[:5], t, p, p))
