"""Pillow's own C resampler as a fast CPU path for ``resize_mode="pil"``.

Pillow is the definition of the ``"pil"`` mode, so calling it is exact by construction; a pass order other
than the installed Pillow's is reproduced by chaining single-axis resizes (each is exactly one Pillow pass).
Pillow releases the GIL while resampling, so images (and strips of one large image) run on threads.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..sizing import installed_pillow_order, pillow_vertical_first


def available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def resize_hwc(hwc: np.ndarray, size: tuple[int, int], order: str) -> np.ndarray:
    """``[H, W, 3] uint8 -> [h, w, 3] uint8`` with Pillow BICUBIC in the pass order of ``order``."""
    from PIL import Image

    in_h, in_w = hwc.shape[:2]
    h, w = size
    im = Image.fromarray(hwc, "RGB")
    same_as_installed = (pillow_vertical_first(in_h, in_w, h, w, order)
                         == pillow_vertical_first(in_h, in_w, h, w, installed_pillow_order()))
    if same_as_installed or in_h == h or in_w == w:
        im = im.resize((w, h), Image.Resampling.BICUBIC)
    elif pillow_vertical_first(in_h, in_w, h, w, order):
        im = im.resize((in_w, h), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    else:
        im = im.resize((w, in_h), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    with warnings.catch_warnings():  # the array is read-only; we never write to it
        warnings.simplefilter("ignore")
        return np.asarray(im)


def resize_chw(x: torch.Tensor, size: tuple[int, int], order: str) -> torch.Tensor:
    """``[3, H, W] uint8`` CPU tensor (any strides) -> ``[3, h, w]`` view of a new HWC uint8 tensor."""
    hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    with warnings.catch_warnings():  # read-only numpy array from Pillow; only ever read
        warnings.simplefilter("ignore")
        return torch.from_numpy(resize_hwc(hwc, size, order)).permute(2, 0, 1)


def _one_pass(arr: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Pillow BICUBIC on ``[H, W, 3] uint8`` where only one side changes: exactly one Pillow pass."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(arr), "RGB").resize((out_w, out_h), Image.Resampling.BICUBIC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(im)


def _split(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` near-equal ranges covering ``[0, n)`` with boundaries on multiples of ``align``."""
    units = n // align
    parts = max(1, min(parts, units))
    bounds = [round(i * units / parts) * align for i in range(parts + 1)]
    bounds[-1] = n
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def preprocess_into(x: torch.Tensor, size: tuple[int, int], order: str, out: torch.Tensor, normalize_fn,
                    patch_size: int, merge_size: int, temporal_patch_size: int, pool, parts: int) -> None:
    """Pillow resize + normalise + patchify of one CPU uint8 image ``[3, H, W]`` into ``out [rows, dim]``.

    The image is cut into ``parts`` strips per pass (rows for a horizontal pass, columns for a vertical one:
    each Pillow pass treats those independently, so the result is exact) and the strips run on ``pool``;
    the last pass of each strip is patchified straight into its own rows of ``out``.
    """
    in_h, in_w = x.shape[-2:]
    h, w = size
    hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    vertical_first = pillow_vertical_first(in_h, in_w, h, w, order)
    passes = [("v", h), ("h", w)] if vertical_first else [("h", w), ("v", h)]
    passes = [(a, n) for a, n in passes if (in_h if a == "v" else in_w) != n]
    run = pool.map if pool is not None and parts > 1 else map
    cur = hwc
    for axis, n in passes[:-1]:  # first of two passes: strips along the side it does not resample
        out_shape = (n, cur.shape[1], 3) if axis == "v" else (cur.shape[0], n, 3)
        mid = np.empty(out_shape, dtype=np.uint8)

        def first(r, axis=axis, n=n, src=cur, dst=mid):
            if axis == "h":
                dst[r[0]:r[1]] = _one_pass(src[r[0]:r[1]], r[1] - r[0], n)
            else:
                dst[:, r[0]:r[1]] = _one_pass(src[:, r[0]:r[1]], n, r[1] - r[0])

        list(run(first, _split(cur.shape[0] if axis == "h" else cur.shape[1], parts)))
        cur = mid
    last = passes[-1] if passes else None
    p, m, t = patch_size, merge_size, temporal_patch_size
    block = p * m
    nbh, nbw = h // block, w // block
    out_blocks = out.view(nbh, nbw, m * m, -1)

    def final(r):
        # Strips of whole merge windows: rows of windows for a horizontal (or no) last pass, else columns.
        if last is None or last[0] == "h":
            src = cur[r[0]:r[1]]
            region = src if last is None else _one_pass(src, r[1] - r[0], w)
            dst = out_blocks[r[0] // block:r[1] // block]
        else:
            region = _one_pass(cur[:, r[0]:r[1]], h, r[1] - r[0])
            dst = out_blocks[:, r[0] // block:r[1] // block]
        bh, bw = region.shape[0] // block, region.shape[1] // block
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u8 = torch.from_numpy(region).view(bh, m, p, bw, m, p, 3).permute(0, 3, 1, 4, 6, 2, 5)
        y = normalize_fn(u8.contiguous().view(bh, bw, m, m, 3, p * p))  # float32 [bh, bw, m, m, 3, p*p]
        dst.view(bh, bw, m, m, 3, t, p * p).copy_(y.unsqueeze(5).expand(bh, bw, m, m, 3, t, p * p))

    along = h if (last is None or last[0] == "h") else w
    list(run(final, _split(along, parts, block)))
