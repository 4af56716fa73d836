"""The native backend (CPU): the package's compiled fixed-point resampler (``qwen_vis_prep._resample``, built
from ``_resample.c`` by pip) for both exact modes, with normalisation and the patch layout fused into its
last pass, so every output value is written once.

It runs each pass of :func:`~qwen_vis_prep.sizing.separable_passes` with the tables of
:func:`~qwen_vis_prep.resample_tables.window_taps` (``"pil"``: Pillow's coefficients; ``"torch-uint8"``:
torch's, on the same 22-bit scale) in int32, so its levels are those of the reference bit for bit, and so
those of Pillow and of torch's uint8 kernel. The normalised values come from the reference's
``level_table`` cast to the output dtype, so they are the reference's too. Rows of a pass run on the threads
of the shared pool (the C code releases the GIL); batches run one task per image, clips one per frame
(``cpu_fusion``).

The extension is optional: where it was not built (no C compiler at install time) :func:`can_run` says so,
and ``"auto"`` runs the Pillow and ATen backends instead (``backends.select`` warns once).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..config import VisionPreprocessConfig
from ..contract import ImageBatch, Plan, VideoBatch
from ..resample_tables import FIXED_POINT_MODES, tight_taps, window_taps
from ..sizing import separable_passes, vertical_pass_first
from . import cpu_fusion, reference

try:
    from .._resample import STRIP, resample_rows
except ImportError as e:  # pragma: no cover - depends on the install
    STRIP = resample_rows = None
    _MISSING = str(e)

NAME = "native"
_COPY, _VERTICAL, _HORIZONTAL = 0, 1, 2


def can_run(device: torch.device) -> tuple[bool, str]:
    """The compiled resampler runs on CPU tensors, where it was built."""
    if resample_rows is None:
        return False, f"the compiled resampler qwen_vis_prep._resample was not built ({_MISSING})"
    if torch.device(device).type != "cpu":
        return False, f"the native backend takes CPU tensors, got a tensor on {device}"
    return True, ""


@functools.lru_cache(maxsize=1024)
def _tables(in_size: int, out_size: int, mode: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(start [out] int32, weight [out, taps] int32, taps)``: the shortest in-bounds windows of ``mode``."""
    taps = tight_taps(in_size, out_size, mode)
    start, weight = window_taps(in_size, out_size, taps, mode)
    return np.ascontiguousarray(start), np.ascontiguousarray(weight), taps


@functools.lru_cache(maxsize=64)
def _value_table(config: VisionPreprocessConfig, dtype: torch.dtype) -> torch.Tensor:
    """``[3, 256]`` normalised value of every level in the output dtype (the reference's table, cast once)."""
    return reference.level_table(config, torch.device("cpu")).to(dtype).contiguous()


def _source(levels: torch.Tensor) -> torch.Tensor:
    """``levels [3, H, W] uint8`` in a layout the C code reads: planar rows (column stride 1) or interleaved
    pixels (channel stride 1, column stride 3); anything else is copied to planar."""
    sc, sy, sx = levels.stride()
    return levels if sx == 1 or (sc == 1 and sx == 3) else levels.contiguous()


def _row_ranges(rows: int, parts: int, align: int) -> list[tuple[int, int]]:
    return cpu_fusion.split(rows, parts, align) if parts > 1 else [(0, rows)]


def _run(levels: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig, sink: tuple,
         pool, parts: int) -> None:
    """Resize ``levels [3, H, W] uint8`` to ``size`` in ``config``'s mode and pass order, the last pass
    writing to ``sink`` (``('levels', address)`` or ``('patches', ...)``, see ``resample_rows``);
    each pass's rows in ``parts`` ranges on ``pool``."""
    mode = config.resize_mode
    src = _source(levels)
    in_h, in_w = src.shape[-2:]
    passes = separable_passes(in_h, in_w, *size, vertical_pass_first(in_h, in_w, *size, config))
    parts = parts if pool is not None else 1

    def run_pass(kind: int, src: torch.Tensor, out_size: int, tables, rows: int, target: tuple) -> None:
        start, weight, taps = tables
        sc, sy, sx = src.stride()
        args = (kind, src.data_ptr(), sc, sy, sx, src.shape[1], src.shape[2], start.ctypes.data, weight.ctypes.data,
                taps, out_size)
        # ranges of patch rows start and end on a patch boundary; a horizontal pass runs STRIP rows at a time
        align = config.patch_size if target[0] == "patches" else (STRIP if kind == _HORIZONTAL else 1)
        ranges = _row_ranges(rows, parts, align)
        if len(ranges) == 1:
            resample_rows(*args, 0, rows, target)
        else:
            list(pool.map(lambda r: resample_rows(*args, r[0], r[1], target), ranges))

    if not passes:
        run_pass(_COPY, src, in_w, (np.zeros(1, np.int32), np.zeros(1, np.int32), 0), in_h, sink)
        return
    for i, (vertical, n) in enumerate(passes):
        h, w = src.shape[1:]
        kind = _VERTICAL if vertical else _HORIZONTAL
        out_shape = (3, n, w) if vertical else (3, h, n)
        last = i == len(passes) - 1
        mid = None if last else torch.empty(out_shape, dtype=torch.uint8)
        tables = _tables(h if vertical else w, n, mode)
        run_pass(kind, src, n, tables, out_shape[1], sink if last else ("levels", mid.data_ptr()))
        src = mid


def _patch_sink(out: torch.Tensor, config: VisionPreprocessConfig, frames: int,
                slots: tuple[int, int] | None) -> tuple[tuple, torch.Tensor]:
    """The ``('patches', ...)`` sink of ``out`` and the value table it points to (which the caller keeps
    alive while the sink is used: the sink holds only its address)."""
    if not out.is_contiguous() or out.shape[1] != 3 * frames * config.patch_size ** 2:
        raise ValueError(f"the native backend writes contiguous rows of {3 * frames * config.patch_size ** 2} "
                         f"values, got rows of shape {tuple(out.shape)} and strides {out.stride()}")
    table = _value_table(config, out.dtype)
    lo, hi = (0, frames) if slots is None else slots
    return ("patches", out.data_ptr(), out.shape[1], out.element_size(), table.data_ptr(), config.patch_size,
            config.row_merge_size, frames, lo, hi), table


def _levels_into(levels: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig, out: torch.Tensor,
                 frames: int, pool, parts: int, slots: tuple[int, int] | None) -> None:
    """Resize + normalise + patchify ``levels [3, H, W] uint8`` into ``out`` (``frames`` temporal copies, or
    only ``slots``), each pass's rows in ``parts`` ranges on ``pool`` when given."""
    sink, table = _patch_sink(out, config, frames, slots)  # ``table`` stays referenced while the C code reads it
    _run(levels, size, config, sink, pool, parts)


def preprocess_into(batch: ImageBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every image of ``batch`` (scheduling in ``cpu_fusion.images_into``).
    Images of the float mode, and float input at its target size, run the reference."""
    cpu_fusion.images_into(batch, plan, out, _mode(plan.config), _levels_into)


def videos_into(batch: VideoBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every clip, one frame per task (``cpu_fusion.videos_into``)."""
    cpu_fusion.videos_into(batch, plan, out, _mode(plan.config), _levels_into)


def _mode(config: VisionPreprocessConfig) -> str | None:
    return config.resize_mode if config.resize_mode in FIXED_POINT_MODES else None


def resize(images: list[torch.Tensor], sizes: list[tuple[int, int]], config: VisionPreprocessConfig,
           stacked: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The resize stage alone (uint8 ``[3, H, W]`` -> planar ``[3, h, w]``); the float mode runs the
    reference."""
    if _mode(config) is None:
        return reference.resize(images, sizes, config, stacked)
    results = []
    for img, (h, w) in zip(images, sizes):
        levels = reference.to_levels(img, config.input_range)
        out = torch.empty((3, h, w), dtype=torch.uint8)
        _run(levels, (h, w), config, ("levels", out.data_ptr()), None, 1)
        results.append(out)
    return results
