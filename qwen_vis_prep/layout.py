"""The patch layout of Qwen-VL ``pixel_values``: its index math and the reference patchify / unpatchify.

An image resized to ``[C, H, W]`` (``H``, ``W`` multiples of ``P * M``; ``P`` = patch_size, ``M`` = merge_size)
becomes ``(H / P) * (W / P)`` rows of ``C * T * P * P`` values (``T`` = temporal copies, or frames of a video
block). Rows go merge window by merge window: window ``(wy, wx)`` (row-major over the
``(H / PM) x (W / PM)`` windows) holds the ``M * M`` patches ``(iy, ix)`` row-major, so the patch at grid row
``gy = wy * M + iy`` and column ``gx = wx * M + ix`` is row :func:`patch_row`. Inside a row the columns are
``(c, t, py, px)``: :func:`patch_column`. Every backend writes this layout: the reference functions here, the
Pillow backend through :func:`patch_blocks` on NumPy, and the Triton kernels with ``P``, ``M``, ``T`` as
compile-time parameters and the same index math (``backends/triton/kernels.py``).
"""

from __future__ import annotations

from typing import Any

import torch


def patch_row(gy: int, gx: int, grid_w: int, merge_size: int) -> int:
    """Row (within its image or frame block) of the patch at grid row ``gy``, column ``gx``."""
    m = merge_size
    wy, iy = divmod(gy, m)
    wx, ix = divmod(gx, m)
    return (wy * (grid_w // m) + wx) * m * m + iy * m + ix


def patch_column(c: int, t: int, py: int, px: int, temporal: int, patch_size: int) -> int:
    """Column of channel ``c``, temporal slot ``t``, pixel ``(py, px)`` of a patch."""
    p = patch_size
    return ((c * temporal + t) * p + py) * p + px


def patch_blocks(x: Any, patch_size: int, merge_size: int) -> Any:
    """``[..., C, H, W]`` -> the view ``[..., H / PM, W / PM, M, M, C, P, P]`` (window row, window column,
    patch row and column in the window, channel, pixel row and column): the output's row order with the
    temporal axis left out. Works on torch tensors and NumPy arrays (any strides; no copy)."""
    *lead, c, h, w = x.shape
    p, m = patch_size, merge_size
    v = x.reshape(*lead, c, h // (p * m), m, p, w // (p * m), m, p)
    n = len(lead)
    order = (*range(n), n + 1, n + 4, n + 2, n + 5, n, n + 3, n + 6)
    return v.permute(order) if isinstance(v, torch.Tensor) else v.transpose(order)


def row_blocks(out: torch.Tensor, height: int, width: int, channels: int, temporal: int, patch_size: int,
               merge_size: int) -> torch.Tensor:
    """Rows ``[blocks * (H / P) * (W / P), C * T * P * P]`` of ``out`` as the view ``[blocks, H / PM, W / PM,
    M, M, C, T, P, P]`` that :func:`patch_blocks` values are written into."""
    p, m = patch_size, merge_size
    return out.view(-1, height // (p * m), width // (p * m), m, m, channels, temporal, p, p)


def patchify_into(out: torch.Tensor, x: torch.Tensor, patch_size: int, merge_size: int, temporal: int) -> None:
    """Write still images ``x: [B, C, H, W]`` into ``out: [B * gh * gw, C * T * P * P]``, each frame repeated
    into the ``T = temporal`` slots; cast to ``out.dtype`` once."""
    b, c, h, w = x.shape
    blocks = patch_blocks(x, patch_size, merge_size).unsqueeze(-3)
    target = row_blocks(out, h, w, c, temporal, patch_size, merge_size)
    target.copy_(blocks.expand(target.shape))


def patchify(x: torch.Tensor, patch_size: int, merge_size: int, temporal: int, dtype: torch.dtype) -> torch.Tensor:
    """Differentiable form of :func:`patchify_into`: returns ``[B * gh * gw, C * T * P * P]``."""
    b, c, h, w = x.shape
    p = patch_size
    blocks = patch_blocks(x, patch_size, merge_size).unsqueeze(-3)
    shape = (*blocks.shape[:-3], temporal, p, p)
    return blocks.expand(shape).reshape(b * (h // p) * (w // p), c * temporal * p * p).to(dtype)


def patchify_video_into(out: torch.Tensor, x: torch.Tensor, patch_size: int, merge_size: int,
                        temporal: int) -> None:
    """Write one clip ``x: [N, C, H, W]`` into ``out: [ceil(N / T) * gh * gw, C * T * P * P]``.

    The ``T`` slots of a row hold ``T`` consecutive real frames: frame block ``g`` reads frames
    ``g * T .. g * T + T - 1``, and a last, incomplete block repeats the clip's last frame (as transformers'
    video processors pad). Rows go frame block by frame block, each laid out as an image. Works through
    autograd (``copy_`` into views); cast to ``out.dtype`` once.
    """
    n, c, h, w = x.shape
    full = n // temporal
    rows = (h // patch_size) * (w // patch_size)

    def write(dst: torch.Tensor, frames: torch.Tensor) -> None:
        blocks = patch_blocks(frames.reshape(-1, temporal, c, h, w), patch_size, merge_size)  # [G, T, ..., P, P]
        row_blocks(dst, h, w, c, temporal, patch_size, merge_size).copy_(blocks.movedim(1, -3))

    if full:
        write(out[:full * rows], x[:full * temporal])
    rest = n - full * temporal
    if rest:  # only the last block is padded, so only its frames are gathered (the rest stays a view)
        tail = x[full * temporal:]
        write(out[full * rows:(full + 1) * rows],
              torch.cat([tail, tail[-1:].expand(temporal - rest, c, h, w)], 0))


def unpatchify(rows: torch.Tensor, grid_thw: tuple[int, int, int], patch_size: int, merge_size: int,
               channels: int = 3) -> torch.Tensor:
    """The inverse of the layout: rows ``[t * gh * gw, C * T * P * P]`` of one image or clip with grid
    ``(t, gh, gw)`` -> frames ``[t * T, C, gh * P, gw * P]`` (``T`` taken from the row width)."""
    t, gh, gw = grid_thw
    p, m = patch_size, merge_size
    temporal = rows.shape[1] // (channels * p * p)
    x = rows.reshape(t, gh // m, gw // m, m, m, channels, temporal, p, p)
    return x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8).reshape(t * temporal, channels, gh * p, gw * p)

