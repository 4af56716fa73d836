"""Host-side bicubic filter tables, shared by every backend.

One separable pass maps ``in_size`` samples to ``out_size`` samples; output ``o`` reads inputs
``index[o, k]`` with weights ``weight[o, k]`` for ``k < taps``. Unused taps carry weight 0 and a clamped,
in-bounds index, so kernels can loop over all ``taps`` without masks. The window form
(:func:`window_taps`) gives each output one start and ``taps`` consecutive inputs, all in bounds, for
kernels that address a row's taps from one pointer.

The weights are computed in float64 as the kernel each mode reproduces computes them (bicubic ``a = -0.5``,
support ``2 * max(scale, 1)``, centre ``(o + 0.5) * scale``, sequential normalisation; Pillow's
``precompute_coeffs`` and ATen's antialiased weights differ only in how the outer lobe is evaluated, which
can move a weight by one unit in the last place):

* ``"pil"``: Pillow's weights quantised to its 22-bit fixed point;
* ``"torch-uint8"``: ATen's weights quantised to the precision of torch's CPU uint8 antialiased kernel
  (``2**p`` with the largest ``p <= 22`` that keeps every weight of the pass below ``2**15``), then scaled by
  ``2**(22 - p)``. Every fixed-point table therefore shares one level formula,
  ``clamp((2**21 + sum(level * weight)) >> 22, 0, 255)``, which equals torch's
  ``clamp((2**(p-1) + sum(level * w)) >> p, 0, 255)`` exactly (numerator and divisor both scaled by
  ``2**(22 - p)``), so every kernel runs both modes from the table alone;
* ``"float"``: Pillow's weights rounded to float32.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict

import numpy as np
import torch

PRECISION_BITS = 22  # Pillow's 8-bit-per-channel fixed point: 32 - 8 - 2
TORCH_WEIGHT_LIMIT = 1 << 15  # torch's uint8 kernel keeps its weights in int16
BICUBIC_A = -0.5
BICUBIC_SUPPORT = 2.0
#: The resize modes whose passes are integer fixed point on uint8 levels (one table each, see the module doc).
FIXED_POINT_MODES = ("pil", "torch-uint8")


def _bicubic(x: np.ndarray, outer_lobe: str = "pillow") -> np.ndarray:
    # The operation order of each library's filter, so the float64 results are identical to theirs.
    a = BICUBIC_A
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if outer_lobe == "pillow":
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    else:  # ATen's cubic_convolution2
        far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=1024)
def filter_weights(in_size: int, out_size: int, outer_lobe: str = "pillow"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised float64 bicubic weights of one pass, as Pillow (``outer_lobe="pillow"``) or ATen
    (``"aten"``) computes them.

    Returns ``(start [out] int64, count [out] int64, weight [out, taps] float64)``; taps beyond ``count``
    are 0.
    """
    if in_size <= 0 or out_size <= 0:
        raise ValueError(f"resample sizes must be positive, got in_size={in_size}, out_size={out_size}")
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    taps = int(math.ceil(support)) * 2 + 1
    inv = 1.0 / filterscale
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    start = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    stop = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = np.minimum(stop - start, taps)  # ATen clips the count to the taps; Pillow's never exceeds them
    k = np.arange(taps, dtype=np.int64)
    valid = k[None, :] < count[:, None]
    pos = (k[None, :] + start[:, None]) - center[:, None] + 0.5
    w = np.where(valid, _bicubic(pos * inv, outer_lobe), 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for j in range(taps):  # sequential, as in C: pairwise summation would round differently
        total = total + w[:, j]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    return start, count, w


@functools.lru_cache(maxsize=1024)
def pil_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's fixed-point table: ``(index [out, taps] int32, weight [out, taps] int32)``.

    An output level is ``clamp((2**21 + sum_k in[index] * weight) >> 22, 0, 255)`` in int32.
    """
    start, count, w = filter_weights(in_size, out_size)
    return _indices(start, in_size, w.shape[1]), _quantise(w, PRECISION_BITS).astype(np.int32)


def _quantise(w: np.ndarray, bits: int) -> np.ndarray:
    # round half away from zero, as both C kernels do: (int)(v < 0 ? v - 0.5 : v + 0.5)
    scaled = w * float(1 << bits)
    return np.where(scaled < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled)).astype(np.int64)


def torch_uint8_precision(max_weight: float) -> int:
    """The fixed-point precision torch's CPU uint8 antialiased kernel gives a pass whose largest weight is
    ``max_weight``: the first ``p`` (counting from 0) whose doubled weight ``int(0.5 + max_weight *
    2**(p + 1))`` would reach ``2**15``, at most 22."""
    for p in range(PRECISION_BITS):
        if int(0.5 + max_weight * (1 << (p + 1))) >= TORCH_WEIGHT_LIMIT:
            return p
    return PRECISION_BITS


@functools.lru_cache(maxsize=1024)
def torch_uint8_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's CPU uint8 antialiased bicubic table on the common 22-bit scale (see the module doc):
    ``(index [out, taps] int32, weight [out, taps] int32)``."""
    start, count, w = filter_weights(in_size, out_size, "aten")
    bits = torch_uint8_precision(float(w.max()))
    fixed = _quantise(w, bits) << (PRECISION_BITS - bits)
    return _indices(start, in_size, w.shape[1]), fixed.astype(np.int32)


def fixed_taps(in_size: int, out_size: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point table of ``mode`` (one of :data:`FIXED_POINT_MODES`)."""
    return (pil_taps if mode == "pil" else torch_uint8_taps)(in_size, out_size)


@functools.lru_cache(maxsize=1024)
def float_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Float table: ``(index [out, taps] int32, weight [out, taps] float32)``."""
    start, count, w = filter_weights(in_size, out_size)
    return _indices(start, in_size, w.shape[1]), w.astype(np.float32)


@functools.lru_cache(maxsize=1024)
def window_taps(in_size: int, out_size: int, taps: int, mode: str = "pil") -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point table of ``mode`` as windows of ``taps`` consecutive inputs that all lie in bounds:
    ``(start [out] int32, weight [out, taps] int32)``.

    Output ``o`` reads ``in[start[o] + k]`` for ``k < taps`` with no clamping: ``start`` is the filter's first
    tap, moved left where the window would run past the end, and each real tap's weight sits at its place in
    the window (the rest are 0). The int32 sum therefore has the same terms as :func:`fixed_taps`' plus exact
    zeros, so the level is the same. Needs ``in_size >= taps >=`` the most real taps of any output (the
    filter's tap count, or fewer where the input is shorter than the filter: :func:`tight_taps`).
    """
    start, count, _ = filter_weights(in_size, out_size, "pillow" if mode == "pil" else "aten")
    _, fixed = fixed_taps(in_size, out_size, mode)
    needed = int(count.max())
    if not needed <= taps <= in_size:
        raise ValueError(f"a window of {taps} taps needs {needed} <= taps <= in_size={in_size} "
                         f"(resampling {in_size} -> {out_size})")
    window = np.minimum(start, in_size - taps)
    shift = start - window                                      # >= 0: where tap 0 sits in the window
    k = np.arange(fixed.shape[1])[None, :]
    used = k < count[:, None]                                   # the filter's real taps of each output
    rows = np.broadcast_to(np.arange(out_size)[:, None], used.shape)
    weight = np.zeros((out_size, taps), dtype=np.int32)
    weight[rows[used], (shift[:, None] + k)[used]] = fixed[used]
    return window.astype(np.int32), weight


def tight_taps(in_size: int, out_size: int, mode: str = "pil") -> int:
    """The shortest window :func:`window_taps` accepts: the filter's tap count, capped by ``in_size``."""
    return min(fixed_taps(in_size, out_size, mode)[1].shape[1], in_size)


def _indices(start: np.ndarray, in_size: int, taps: int) -> np.ndarray:
    idx = start[:, None] + np.arange(taps, dtype=np.int64)[None, :]
    return np.minimum(idx, in_size - 1).astype(np.int32)


class DeviceTableCache:
    """Bounded LRU of tables already moved to a device, so the hot path never copies host->device twice."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def find(self, key):
        """The value cached under ``key`` (now the most recently used), or None; never builds one."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


DEVICE_TABLES = DeviceTableCache()


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Per-call host data on ``device`` without blocking the host: pinned, then a non-blocking copy ordered
    on the current stream (which is where the caller uses it). Shared, cached tables use
    :func:`upload_table` instead."""
    device = torch.device(device)
    if device.type == "cuda":
        return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
    return t.to(device)


def upload_table(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host table on ``device``, complete when this returns.

    Tables are uploaded once per size (cold path) and then shared by every stream, so the upload must not
    be stream-ordered: a non-blocking copy queued behind other work on one stream could still be pending
    when another stream reads the cached table. A plain copy from pageable memory returns only once the data
    is on the device. Warm calls never come here, so the hot path stays free of host syncs.
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        raise RuntimeError("qwen_vis_prep: a new image size reached the GPU during CUDA-graph capture; its "
                           "filter tables must be uploaded first. Run the same call once before capturing "
                           "(the usual warm-up), then capture")
    return t.to(device)


def padded_taps(taps: int) -> int:
    """The tap count a kernel is compiled for: exact up to 16 taps (downscales up to 3.75x), then rounded up
    to a multiple of 16, so huge downscales share a few kernels instead of compiling one per tap count."""
    return taps if taps <= 16 else -(-taps // 16) * 16


def device_taps(in_size: int, out_size: int, mode: str, device: torch.device, width: int | None = None,
                tap_major: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index int32 [out, taps], weight [out, taps])`` of ``mode`` on ``device`` (int32 for the fixed-point
    modes, float32 for "float"), cached. ``width`` pads each row to that many taps with weight 0 at the
    clamped next index (the same rule as unused taps), which adds exact zeros. ``tap_major`` stores both
    transposed, ``[taps, out]`` (contiguous)."""
    device = torch.device(device)

    def make():
        idx, w = (fixed_taps(in_size, out_size, mode) if mode in FIXED_POINT_MODES
                  else float_taps(in_size, out_size))
        if width is not None and width > idx.shape[1]:
            extra = width - idx.shape[1]
            nxt = idx[:, :1] + np.arange(idx.shape[1], width, dtype=np.int64)[None, :]
            idx = np.concatenate([idx, np.minimum(nxt, in_size - 1).astype(np.int32)], axis=1)
            w = np.concatenate([w, np.zeros((w.shape[0], extra), dtype=w.dtype)], axis=1)
        if tap_major:
            idx, w = idx.T, w.T
        return upload_table(torch.from_numpy(np.ascontiguousarray(idx)), device), \
            upload_table(torch.from_numpy(np.ascontiguousarray(w)), device)

    return DEVICE_TABLES.get((in_size, out_size, mode, str(device), width, tap_major), make)


def device_window_taps(in_size: int, out_size: int, taps: int, device: torch.device, tap_major: bool = False,
                       mode: str = "pil") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`window_taps` on ``device``, cached: ``(start int32 [out], weight int32 [out, taps])``, the
    weights stored ``[taps, out]`` when ``tap_major``."""
    device = torch.device(device)

    def make():
        start, w = window_taps(in_size, out_size, taps, mode)
        w = w.T if tap_major else w
        return upload_table(torch.from_numpy(start), device), \
            upload_table(torch.from_numpy(np.ascontiguousarray(w)), device)

    return DEVICE_TABLES.get((in_size, out_size, f"{mode}-window", str(device), taps, tap_major), make)
