"""Inputs the Qwen-VL vision tower derives from ``grid_thw``, computed on the host, and the folded patch
embedding for compact image rows. (:class:`~qwen_vis_prep.encoder.QwenVisionEncoder` puts the preprocessor
in front of a Hugging Face vision tower.)

The tower needs, per packed batch: ``cu_seqlens`` (attention segments: one per frame), ``position_ids`` (2-D
rotary positions in merge-block order) and, for Qwen2.5-VL, ``window_index`` / ``cu_window_seqlens`` (windowed
attention). transformers computes them on the device from ``grid_thw`` with ``.tolist()`` and loops, which
syncs; here they come from host ints and are copied to the device without blocking (from pinned memory).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checks import describe
from .outputs import VisionBatch
from .resample_tables import to_device

GridLike = torch.Tensor | Sequence[Sequence[int]]

#: Keys of :func:`vision_tower_inputs`' result (and of the ``extras`` of a batch asked for them; video
#: entries carry a ``video_`` prefix).
TOWER_KEYS = ("cu_seqlens", "max_seqlen", "position_ids", "window_index", "cu_window_seqlens", "max_window_seqlen")


# ------------------------------------------------------------------------------------------ host math

def _grid_list(grid_thw: GridLike) -> list[tuple[int, int, int]]:
    """``grid_thw`` as host int triples; a device tensor is refused (reading it would sync)."""
    if isinstance(grid_thw, torch.Tensor):
        if grid_thw.device.type != "cpu":
            raise ValueError(f"grid_thw must be host data (a CPU tensor or a list) so no device sync is needed, "
                             f"got a tensor on {grid_thw.device}; pass the CPU grid_thw the preprocessor returns")
        if grid_thw.dim() != 2 or (grid_thw.numel() and grid_thw.shape[1] != 3):
            raise ValueError(f"grid_thw must be [N, 3], got shape {tuple(grid_thw.shape)}")
        rows = grid_thw.tolist()
    else:
        rows = [list(r) for r in grid_thw]
    out = []
    for i, r in enumerate(rows):
        if len(r) != 3 or any(isinstance(v, bool) or int(v) != v or v <= 0 for v in r):
            raise ValueError(f"grid_thw[{i}] must be three positive ints (t, h, w), got {r}")
        out.append((int(r[0]), int(r[1]), int(r[2])))
    return out


def _place(x: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """Move a host tensor to ``device`` without blocking the host (pinned first when the target is CUDA)."""
    return x if device is None else to_device(x, device)


def _concat(parts: list[torch.Tensor], shape_tail: tuple[int, ...], dtype: torch.dtype,
            device: torch.device | str | None) -> torch.Tensor:
    """Concatenate host pieces straight into a (pinned, for CUDA) buffer and place it on ``device``."""
    pinned = device is not None and torch.device(device).type == "cuda"
    n = sum(p.shape[0] for p in parts)
    out = torch.empty((n, *shape_tail), dtype=dtype, pin_memory=pinned)
    if parts:
        torch.cat(parts, 0, out=out)
    return _place(out, device)


def cu_seqlens_from_grid(grid_thw: GridLike, device: torch.device | str | None = None
                         ) -> tuple[torch.Tensor, int]:
    """``(cu_seqlens int32 [S + 1], max_seqlen)``: one attention segment of ``h * w`` patches per frame
    (``t`` segments per entry), as ``transformers.vision_utils.get_vision_cu_seqlens`` lays them out."""
    grid = _grid_list(grid_thw)
    lengths = np.repeat(np.array([h * w for _, h, w in grid], dtype=np.int64),
                        np.array([t for t, _, _ in grid], dtype=np.int64))
    cu = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=cu[1:])
    if cu[-1] >= 2 ** 31:
        raise ValueError(f"{cu[-1]} patches overflow int32 cu_seqlens")
    host = torch.from_numpy(cu.astype(np.int32))
    return _concat([host], (), torch.int32, device), int(lengths.max()) if len(lengths) else 0


@functools.lru_cache(maxsize=256)
def _block_positions(h: int, w: int, m: int) -> torch.Tensor:
    """``int64 [h * w, 2]`` (row, col) of one frame's patches in merge-block order (read-only, cached)."""
    rows = torch.arange(h).view(h // m, 1, m, 1).expand(h // m, w // m, m, m)
    cols = torch.arange(w).view(1, w // m, 1, m).expand(h // m, w // m, m, m)
    return torch.stack([rows, cols], -1).reshape(h * w, 2)


def _check_merge(grid: list[tuple[int, int, int]], merge_size: int) -> None:
    if isinstance(merge_size, bool) or not isinstance(merge_size, int) or merge_size <= 0:
        raise ValueError(f"merge_size must be a positive int, got {merge_size!r}")
    for i, (_, h, w) in enumerate(grid):
        if h % merge_size or w % merge_size:
            raise ValueError(f"grid_thw[{i}] = (h={h}, w={w}) is not a multiple of merge_size={merge_size}")


def position_ids_from_grid(grid_thw: GridLike, merge_size: int = 2, device: torch.device | str | None = None
                           ) -> torch.Tensor:
    """``int64 [N, 2]`` rotary (row, col) of every patch in the rows' order (merge block by merge block,
    frames repeat the same positions), as ``transformers.vision_utils.get_vision_position_ids``."""
    grid = _grid_list(grid_thw)
    _check_merge(grid, merge_size)
    parts = [_block_positions(h, w, merge_size).repeat(t, 1) if t > 1 else _block_positions(h, w, merge_size)
             for t, h, w in grid]
    return _concat(parts, (2,), torch.int64, device)


@functools.lru_cache(maxsize=256)
def _frame_windows(lh: int, lw: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed order of one frame's ``lh x lw`` merged tokens and the token count of each window.

    Windows are ``span x span`` tiles scanned row by row (the last row/column of tiles may be cut short);
    tokens inside a tile are row-major. Returns ``(order [lh * lw], sizes [num_windows])`` (read-only).
    """
    nh, nw = -(-lh // span), -(-lw // span)
    padded = np.full((nh * span, nw * span), -1, dtype=np.int64)
    padded[:lh, :lw] = np.arange(lh * lw, dtype=np.int64).reshape(lh, lw)
    order = padded.reshape(nh, span, nw, span).transpose(0, 2, 1, 3).reshape(-1)
    order = order[order >= 0]
    tile_h = np.minimum(span, lh - span * np.arange(nh))
    tile_w = np.minimum(span, lw - span * np.arange(nw))
    sizes = (tile_h[:, None] * tile_w[None, :]).reshape(-1)
    order.flags.writeable = False
    sizes.flags.writeable = False
    return order, sizes


def window_index_from_grid(grid_thw: GridLike, merge_size: int = 2, window_size: int = 112, patch_size: int = 14,
                           device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Qwen2.5-VL windowed attention: ``(window_index int64 [N / m^2], cu_window_seqlens int32, max_window_seqlen)``.

    ``window_index`` permutes merged tokens (groups of ``merge_size**2`` rows) into window order: per frame,
    tiles of ``window_size // merge_size // patch_size`` merged tokens a side; ``cu_window_seqlens`` bounds the
    windows in patches. Equal to ``transformers.vision_utils.get_vision_window_index`` (which also drops the
    empty windows its padding creates).
    """
    grid = _grid_list(grid_thw)
    _check_merge(grid, merge_size)
    span = window_size // merge_size // patch_size
    if span <= 0:
        raise ValueError(f"window_size={window_size} is smaller than one merged token "
                         f"(merge_size * patch_size = {merge_size * patch_size})")
    unit = merge_size * merge_size
    index_parts, size_parts, offset = [], [], 0
    for t, h, w in grid:
        lh, lw = h // merge_size, w // merge_size
        order, sizes = _frame_windows(lh, lw, span)
        frames = (np.arange(t, dtype=np.int64) * (lh * lw))[:, None] + order[None, :]
        index_parts.append(torch.from_numpy(frames.reshape(-1) + offset))
        size_parts.append(np.tile(sizes, t))
        offset += t * lh * lw
    sizes = np.concatenate(size_parts) * unit if size_parts else np.zeros(0, dtype=np.int64)
    cu = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=cu[1:])
    cu_t = _concat([torch.from_numpy(cu.astype(np.int32))], (), torch.int32, device)
    return _concat(index_parts, (), torch.int64, device), cu_t, int(sizes.max()) if len(sizes) else 0


def vision_tower_inputs(grid_thw: GridLike, merge_size: int = 2, *, window_size: int | None = None,
                        patch_size: int = 14, device: torch.device | str | None = None) -> dict[str, Any]:
    """Everything the vision tower would derive from ``grid_thw``, from host ints, placed on ``device``.

    Returns ``cu_seqlens`` (int32), ``max_seqlen`` (int), ``position_ids`` (int64 ``[N, 2]``) and, when
    ``window_size`` is given (Qwen2.5-VL: 112), ``window_index`` (int64), ``cu_window_seqlens`` (int32) and
    ``max_window_seqlen`` (int): the keyword names transformers' Qwen2-VL / Qwen2.5-VL vision towers accept,
    so ``tower(pixel_values, grid_thw=grid_thw, **vision_tower_inputs(...))`` skips their own computation.
    ``grid_thw`` must be on the host (a CPU tensor or a list); nothing here reads device memory.
    """
    grid = _grid_list(grid_thw)
    cu, max_len = cu_seqlens_from_grid(grid, device)
    out: dict[str, Any] = {"cu_seqlens": cu, "max_seqlen": max_len,
                           "position_ids": position_ids_from_grid(grid, merge_size, device)}
    if window_size is not None:
        index, cu_win, max_win = window_index_from_grid(grid, merge_size, window_size, patch_size, device)
        out.update(window_index=index, cu_window_seqlens=cu_win, max_window_seqlen=max_win)
    return out


def tower_kwargs(batch: VisionBatch, modality: str = "image") -> dict[str, Any]:
    """The tower inputs a :class:`VisionBatch` carries for ``"image"`` or ``"video"``, under the keyword names
    of the HF tower's ``forward`` (ask the preprocessor for them with ``tower_inputs=True``)."""
    if modality not in ("image", "video"):
        raise ValueError(f"modality must be 'image' or 'video', got {modality!r}")
    prefix = "" if modality == "image" else "video_"
    found = {k: batch.extras[prefix + k] for k in TOWER_KEYS if prefix + k in batch.extras}
    if not found:
        raise KeyError(f"the batch carries no {modality} tower inputs; call the preprocessor with "
                       f"tower_inputs=True (extras present: {sorted(batch.extras)})")
    return found


# ----------------------------------------------------------------------------------- patch embedding

def fold_patch_embed_weight(weight: torch.Tensor) -> torch.Tensor:
    """Conv3d patch-embedding weight ``[D, C, Tp, P, P]`` -> the 2-D form ``[D, C * P * P]`` for compact
    still-image rows (``compact_images=True``): every frame of a still image is the same, so the temporal
    taps add up. ``compact_rows @ folded.T`` equals the Conv3d on the duplicated rows (up to rounding)."""
    if weight.dim() != 5:
        raise ValueError(f"expected a Conv3d weight [D, C, Tp, P, P], got shape {tuple(weight.shape)}")
    return weight.sum(dim=2).reshape(weight.shape[0], -1)


class FoldedPatchEmbed(nn.Module):
    """Wraps an HF patch embedding (a module with a Conv3d ``proj``) so it also takes compact image rows.

    Rows of width ``C * P * P`` go through the folded weight (:func:`fold_patch_embed_weight`, recomputed
    from the live Conv3d weight on every call, so training and ``.to()`` keep working); full rows of width
    ``C * Tp * P * P`` go to the wrapped module unchanged.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        proj = getattr(inner, "proj", None)
        if not isinstance(proj, nn.Conv3d):
            raise TypeError(f"expected a patch embedding with a Conv3d .proj, got {describe(inner)}")
        self.inner = inner
        _, c, tp, p, _ = proj.weight.shape
        self.compact_dim = c * p * p
        self.full_dim = c * tp * p * p

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.shape[-1] == self.compact_dim and self.compact_dim != self.full_dim:
            w = self.inner.proj.weight
            bias = self.inner.proj.bias
            return F.linear(hidden_states.to(w.dtype), fold_patch_embed_weight(w), bias)
        return self.inner(hidden_states)


__all__ = [
    "FoldedPatchEmbed",
    "TOWER_KEYS",
    "cu_seqlens_from_grid",
    "fold_patch_embed_weight",
    "position_ids_from_grid",
    "tower_kwargs",
    "vision_tower_inputs",
    "window_index_from_grid",
]
