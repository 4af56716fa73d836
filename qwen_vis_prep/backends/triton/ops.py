"""Launchers for the Triton kernels: they own dtypes, strides, scratch buffers, grids and the device guard.

A same-shape batch takes at most two launches (first separable pass into a uint8/float32 scratch, then the
last pass fused with normalisation + patchify + cast, writing each output element once); no resize is one
launch. Two kernel pairs do this: the "rows" pipeline (``_RowsPass`` + ``_patch_rows_kernel``, patch-packed
scratch) for Pillow arithmetic resized width first, the tile kernels (``_Pass`` + ``_patchify_kernel``) for
everything else (see ``GPU_TUNING``). Ragged lists are grouped by shape: two launches per distinct shape (a
group's images are read in place when they lie at one step in one buffer, else stacked; see
:func:`_group_source`). Every table (filter taps, level table, normalisation constants, row offsets) comes
from a device-side LRU cache and every launch from a cached plan, so a warm call does no host<->device copy
and no sync, and can be captured in a CUDA graph.
The first call for a new size uploads its tables and waits for them (see ``resample_tables.upload_table``).
A repeated call on an image tensor or a list of them with the same metadata (shapes, strides, dtypes,
device, alignments, config, backend, layout) skips validation, sizing and the plan lookups: :func:`warm_call`
runs it from the group launches :func:`remember_call` recorded after the first such call.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os

import torch

from ... import host_memory
from ...checks import ImageBatch
from ...config import VisionPreprocessConfig
from ...resample_tables import (DEVICE_TABLES, DeviceTableCache, device_taps, device_window_taps, float_taps,
                                padded_taps, pil_taps, to_device, upload_table)
from ...sizing import pillow_vertical_first, separable_passes
from .. import torch_ref

# Launch shapes and kernel choices (plans are keyed by them): the winners of benchmarks/gpu_sweep.py on an
# H200 (benchmarks/RESULTS.md, sessions 4 and 7). pipeline="rows" runs the usual Pillow resize (width first,
# then height) as a horizontal pass that holds its taps in registers over ``rows_per_program`` rows,
# prefetches the source row ``rows_prefetch`` rows ahead into L2 (CUDA only; "L1" with
# rows_prefetch_to="L1") and writes a patch-packed scratch, then a fused pass that reads each patch row of
# that scratch with one 16-byte load per tap and writes whole patches (kernels._rows_pass_kernel /
# _patch_rows_kernel); its columns per program are capped per filter by ``rows_tap_loads`` (see
# :func:`_rows_block_q`). Every other group (no resize, one side only, vertical first, float arithmetic)
# and ragged="descriptors" take the tile kernels, whose shapes are the pass_* / patch_* entries.
# "tap-major" filter tables make one tap of neighbouring outputs contiguous. pass_loads="words" (aligned
# 32-bit tap loads), ragged="descriptors" (a ragged list in a few launches through per-image descriptor
# tables) and rows_unroll > 1 (rows of the rows pass per step) are exact too but were slower or no faster
# end to end on the H200, so they stay opt-in. A one-launch pipeline (both passes in one persistent kernel,
# sessions 8-10) was exact but 2.6-4.2x slower than "rows" on the H200 in every case, its horizontal stage
# alone 5x the rows pass (benchmarks/RESULTS.md, session 10), and was removed.
GPU_TUNING = {"pass_block_r": 1, "pass_block_q": 256, "pass_warps": 2, "pass_taps": "tap-major",
              "pass_loads": "bytes", "patch_block": 1, "patch_warps": 2, "patch_norm": "table",
              "patch_taps": "out-major", "ragged": "groups", "pipeline": "rows", "rows_per_program": 16,
              "rows_block_q": 256, "rows_warps": 4, "rows_unroll": 1, "rows_prefetch": 4, "rows_prefetch_to": "L2",
              "rows_tap_loads": 16, "rows_patch_block": 1, "rows_patch_warps": 1}
TUNING = dict(GPU_TUNING)
_TAP_LAYOUTS = ("out-major", "tap-major")
_TUNING_CHOICES = {"patch_norm": ("table", "arith"), "pass_taps": _TAP_LAYOUTS, "patch_taps": _TAP_LAYOUTS,
                   "ragged": ("groups", "descriptors"), "pass_loads": ("bytes", "words"),
                   "pipeline": ("tiles", "rows"), "rows_prefetch": (0, 1, 2, 4, 8, 16),
                   "rows_prefetch_to": ("L2", "L1"), "rows_tap_loads": (0, 8, 16, 32)}
# Triton's CPU interpreter pays per program, so it runs bigger tiles; the results do not depend on the
# launch shape (tests/test_triton.py checks the GPU defaults and others in the interpreter too).
_INTERPRETER_TUNING = {"pass_block_r": 8, "pass_block_q": 128, "pass_warps": 4, "patch_block": 16,
                       "patch_warps": 4, "rows_per_program": 16, "rows_block_q": 256, "rows_tap_loads": 0,
                       "rows_patch_block": 8}
TUNING_ENV = "QWEN_VIS_PREP_TRITON_TUNING"      # JSON object overriding TUNING entries (experts, sweeps)
FAST_LAUNCH_ENV = "QWEN_VIS_PREP_FAST_LAUNCH"   # "0" turns off the direct launch of compiled kernels
_MAX_GRID_YZ = 65535  # CUDA's limit on grid dims 1 and 2 (images per launch ride on dim 2)
PLANS = DeviceTableCache(maxsize=512)  # launch plans and warm-call entries (about two per image size)


def _apply_tuning_override() -> None:
    raw = os.environ.get(TUNING_ENV)
    if not raw:
        return
    try:
        values = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"{TUNING_ENV} must be a JSON object, got {raw!r} ({e})") from None
    if not isinstance(values, dict) or set(values) - set(TUNING):
        raise ValueError(f"{TUNING_ENV} takes keys {sorted(TUNING)}, got {raw!r}")
    for key, value in values.items():
        if key in _TUNING_CHOICES:
            if isinstance(value, bool) or value not in _TUNING_CHOICES[key]:
                raise ValueError(f"{TUNING_ENV}: {key} must be one of {_TUNING_CHOICES[key]}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
            raise ValueError(f"{TUNING_ENV}: {key} must be a positive power of two, got {value!r}")
    TUNING.update(values)


if os.environ.get("TRITON_INTERPRET", "0") == "1":
    TUNING.update(_INTERPRETER_TUNING)
_apply_tuning_override()


class _Launcher:
    """Launches one kernel with a fixed grid, fixed constexprs and fixed trailing arguments (``static``: the
    plan's tables and sizes), as cheaply as Triton allows. A call passes the leading arguments (sources,
    outputs, scratch).

    The first launch goes through ``kernel[grid](...)``, which specialises, compiles if needed and returns
    the compiled kernel. Later launches skip the per-call binding, cache lookup and launcher set-up:
    * lean (CUDA, no launch hook registered): the compiled kernel's own launcher is called with what
      ``compiled[grid]`` would pass it (grid, the current stream of the device of the first launch,
      function handle, packed metadata, all parameters in signature order), but without launch metadata or
      hooks, and with the ``static`` tensors as their device addresses, taken once (the launcher checks
      an address only when it gets a tensor). A registered hook (a profiler) sends the launch the next way.
    * ``compiled[grid]`` (reads the current device and stream, builds launch metadata, calls the hooks).
    This is only valid while every specialisation input stays the same: the caller keys its plan on all
    integer arguments and on the 16-byte alignment of every pointer it passes, and the plan keeps the
    ``static`` tensors alive. Any failure of a direct path turns both off for the process and falls back to
    the regular launch.
    """

    __slots__ = ("kernel", "grid", "meta", "static", "tail", "runner", "lean")
    enabled = os.environ.get(FAST_LAUNCH_ENV, "1") != "0"

    def __init__(self, kernel, grid: tuple[int, int, int], meta: dict, static: tuple = ()) -> None:
        self.kernel = kernel
        self.grid = grid
        self.meta = meta
        self.static = tuple(static)
        names = list(getattr(kernel, "arg_names", ()))
        consts = [n for n in meta if n not in ("num_warps", "num_stages")]
        self.tail = tuple(meta[n] for n in consts) if names[-len(consts):] == consts else None
        self.runner = self.lean = None

    def __call__(self, *args) -> None:
        lean = self.lean
        if lean is not None and _hooks_idle(lean[5]):
            run, function, packed, stream_of, device, _, static = lean
            try:
                run(*self.grid, stream_of(device), function, packed, None, None, None, *args, *static, *self.tail)
                return
            except Exception:  # pragma: no cover - depends on the Triton version
                _Launcher.enabled = False
                self.lean = self.runner = None
        runner = self.runner
        if runner is not None:
            try:
                runner(*args, *self.static, *self.tail)
                return
            except Exception:  # pragma: no cover - depends on the Triton version
                _Launcher.enabled = False
                self.lean = self.runner = None
        result = self.kernel[self.grid](*args, *self.static, **self.meta)
        if _Launcher.enabled and self.tail is not None and hasattr(result, "run") and hasattr(result, "__getitem__"):
            try:
                self.runner = result[self.grid]
                self.lean = _lean_launch(result, self.static)
            except Exception:  # pragma: no cover - depends on the Triton version
                _Launcher.enabled = False
                self.lean = self.runner = None


def _hooks_idle(runtime) -> bool:
    """Whether Triton has no launch hook registered (``triton.knobs.runtime``: empty hook chains or None)."""
    for hook in (runtime.launch_enter_hook, runtime.launch_exit_hook):
        if hook is not None and getattr(hook, "calls", True):
            return False
    return True


def _lean_launch(compiled, static: tuple) -> tuple | None:
    """What the lean launch of ``compiled`` needs (see :class:`_Launcher`), or None where it cannot be had:
    no CUDA, or a Triton without ``knobs``, the launcher's handles or torch's raw-stream query."""
    import triton

    runtime = getattr(getattr(triton, "knobs", None), "runtime", None)
    stream_of = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    function, packed = getattr(compiled, "function", None), getattr(compiled, "packed_metadata", None)
    if (runtime is None or stream_of is None or function is None or packed is None
            or not hasattr(runtime, "launch_exit_hook") or not torch.cuda.is_available()):
        return None
    addresses = tuple(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in static)
    return compiled.run, function, packed, stream_of, torch.cuda.current_device(), runtime, addresses


@functools.lru_cache(maxsize=None)
def _triton_importable() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the install
        return False, f"triton cannot be imported ({e})"
    return True, ""


def can_run(device: torch.device) -> tuple[bool, str]:
    """Whether the kernels can run on ``device`` and, if not, why."""
    ok, why = _triton_importable()
    if not ok:
        return False, why
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        return True, ""
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True, ""
    return False, (f"the Triton kernels need CUDA tensors, got a tensor on {device} "
                   "(set TRITON_INTERPRET=1 to run them in Triton's CPU interpreter)")


def _device_guard(t: torch.Tensor):
    """Launch on ``t``'s GPU (the current device may be another one); free when it already is current."""
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def _host_norm_vector(config: VisionPreprocessConfig) -> torch.Tensor:
    """float64 ``[scale, mean0..2, std0..2, 1/std0..2]``: the float32 constants of ``torch_ref.normalize``
    (identity values for skipped steps) and the float64 reciprocals of the stds."""
    from ...functional import normalize_constants

    scale, mean, std = normalize_constants(config, torch.device("cpu"))
    vec = torch.cat([torch.tensor([1.0 if scale is None else scale], dtype=torch.float32),
                     torch.zeros(3) if mean is None else mean, torch.ones(3) if std is None else std]).double()
    return torch.cat([vec, 1.0 / vec[4:7]])


@functools.lru_cache(maxsize=64)
def arithmetic_levels_exact(config: VisionPreprocessConfig) -> bool:
    """Whether the kernels' arithmetic normalisation of uint8 levels (float64 steps, each rounded to float32:
    ``level * scale``, ``- mean``, ``* (1 / std)``) reproduces the level table on all 3 x 256 entries."""
    from ...functional import level_table

    vec = _host_norm_vector(config)
    levels = torch.arange(256, dtype=torch.float64).expand(3, 256)
    val = (levels * vec[0]).float().double()
    val = (val - vec[1:4, None]).float().double()
    val = (val * vec[7:10, None]).float()
    return torch.equal(val, level_table(config, torch.device("cpu")))


def _norm_vector(config: VisionPreprocessConfig, device: torch.device) -> torch.Tensor:
    """:func:`_host_norm_vector` on ``device``, cached."""
    def make():
        return upload_table(_host_norm_vector(config), device)

    return DEVICE_TABLES.get(("normvec", config.rescale_factor, config.do_rescale, config.image_mean,
                              config.image_std, config.do_normalize, str(device)), make)


def _row_table(offsets: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return DEVICE_TABLES.get(("rows", offsets, str(device)),
                             lambda: upload_table(torch.tensor(offsets, dtype=torch.int64), device))


def _check_int32_extent(shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
    """The kernels address inside one image with int32 offsets."""
    span = sum((n - 1) * abs(st) for n, st in zip(shape[1:], strides[1:])) + 1
    if span >= 2**31:
        raise ValueError(f"backend='triton' needs each image to span < 2**31 elements, got {span} for shape "
                         f"{tuple(shape)}; use backend='torch'")


def _kernel_tap_count(n_in: int, n: int, pil: bool) -> int:
    """The tap count the kernels are compiled for when resampling ``n_in -> n`` (see ``padded_taps``)."""
    return padded_taps((pil_taps if pil else float_taps)(n_in, n)[0].shape[1])  # host tables, lru-cached


def _kernel_taps(n_in: int, n: int, pil: bool, device: torch.device, tap_major: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(index, weight, taps)``: device tap tables padded to the tap count the kernels are compiled for (see
    ``padded_taps``), laid out ``[n, taps]``, or ``[taps, n]`` when ``tap_major``."""
    taps = _kernel_tap_count(n_in, n, pil)
    idx, wts = device_taps(n_in, n, "pil" if pil else "float", device, width=taps, tap_major=tap_major)
    return idx, wts, taps


def _tuning() -> tuple:
    return tuple(TUNING.values())


class _Pass:
    """One prepared launch of ``_resample_pass_kernel``: tables, grid and scalars for a fixed
    (input shape, strides, output length, axis, arithmetic); ``run`` only allocates and launches."""

    __slots__ = ("launch", "dst_shape", "dst_dtype")

    def __init__(self, shape: tuple[int, ...], strides: tuple[int, ...], n: int, vertical: bool, pil: bool,
                 device: torch.device) -> None:
        b, c, h, w = shape
        _check_int32_extent(shape, strides)
        n_in = h if vertical else w
        tap_major = TUNING["pass_taps"] == "tap-major"
        idx, wts, taps = _kernel_taps(n_in, n, pil, device, tap_major)
        n_r, n_q = (n, w) if vertical else (h, n)
        _check_int32_extent((b, c, n_r, n_q), (c * n_r * n_q, n_r * n_q, n_q, 1))
        block_r, block_q = TUNING["pass_block_r"], TUNING["pass_block_q"]
        n_qb = -(-n_q // block_q)
        from .kernels import _resample_pass_kernel

        words = -(-(taps + 3) // 4)  # aligned 32-bit words holding one output's taps
        words = words if (TUNING["pass_loads"] == "words" and pil and not vertical and strides[3] == 1
                          and words <= 5) else 0
        self.launch = _Launcher(_resample_pass_kernel, (-(-n_r // block_r) * n_qb, c, b),
                                dict(TAPS=taps, VERTICAL=vertical, PIL=pil, BLOCK_R=block_r, BLOCK_Q=block_q,
                                     TAP_MAJOR=tap_major, RAGGED=False, WORDS=words,
                                     num_warps=TUNING["pass_warps"]),
                                (idx, wts, idx, n_r, n_q, n_in, n_qb, *strides))  # desc_ptr: unused placeholder
        self.dst_shape = (b, c, n_r, n_q)
        self.dst_dtype = torch.uint8 if pil else torch.float32

    def run(self, src: torch.Tensor) -> torch.Tensor:
        dst = torch.empty(self.dst_shape, dtype=self.dst_dtype, device=src.device)
        self.launch(src, dst)
        return dst


def resample_pass(src: torch.Tensor, n: int, vertical: bool, pil: bool) -> torch.Tensor:
    """One separable pass ``[B, C, H, W] -> [B, C, n, W]`` (vertical) or ``[B, C, H, n]``, contiguous.

    ``pil``: uint8 -> uint8 fixed point; else uint8/float -> float32 (float64 sum).
    """
    step = _Pass(tuple(src.shape), src.stride(), n, vertical, pil, src.device)
    with _device_guard(src):
        return step.run(src)


_PACKED_RUN = 16  # bytes per patch row in the packed scratch (patch sizes up to 16)


def _rows_block_q(taps: int) -> int:
    """Packed columns per program of the rows pass for a filter of ``taps`` taps: ``TUNING["rows_block_q"]``,
    halved while one thread would issue more than ``TUNING["rows_tap_loads"]`` tap loads per row (columns /
    (32 * warps) outputs, ``taps`` loads each), down to one output per thread; 0 turns the cap off. On the
    H200 (session 7) the fastest shape issued 13-14 loads per thread: 256 columns for 1080p (7 taps), 128
    for 4K (13 taps)."""
    block_q, cap, threads = TUNING["rows_block_q"], TUNING["rows_tap_loads"], 32 * TUNING["rows_warps"]
    while cap and block_q > threads and block_q // threads * taps > cap:
        block_q //= 2
    return block_q


def _rows_prefetch(device: torch.device) -> dict:
    """The rows pass's prefetch constexprs: distance ``TUNING["rows_prefetch"]`` into the cache level
    ``TUNING["rows_prefetch_to"]`` on CUDA; distance 0 elsewhere (the interpreter runs no PTX, and a
    prefetch changes no value)."""
    cuda = torch.device(device).type == "cuda"
    return dict(PREFETCH=TUNING["rows_prefetch"] if cuda else 0, PREFETCH_LEVEL=int(TUNING["rows_prefetch_to"][1]))


class _RowsPass:
    """One prepared launch of ``_rows_pass_kernel``: the horizontal Pillow pass ``[B, C, H, W] -> [B, C, H,
    n / patch * 16]`` (uint8, any source strides) into the patch-packed scratch of ``_patch_rows_kernel``
    (``n`` a multiple of ``patch``, ``W`` at least the filter's window, see :func:`_rows_pipeline`;
    see the kernel)."""

    __slots__ = ("launch", "dst_shape")

    def __init__(self, shape: tuple[int, ...], strides: tuple[int, ...], n: int, patch: int,
                 device: torch.device) -> None:
        b, c, h, w = shape
        _check_int32_extent(shape, strides)
        tap_major = TUNING["pass_taps"] == "tap-major"
        taps = _kernel_tap_count(w, n, True)
        start, wts = device_window_taps(w, n, taps, device, tap_major)
        n_qp = n // patch * _PACKED_RUN
        _check_int32_extent((b, c, h, n_qp), (c * h * n_qp, h * n_qp, n_qp, 1))
        rows, block_q = TUNING["rows_per_program"], _rows_block_q(taps)
        n_qb = -(-n_qp // block_q)
        from .kernels import _rows_pass_kernel

        self.launch = _Launcher(_rows_pass_kernel, (-(-h // rows) * n_qb, c, b),
                                dict(TAPS=taps, ROWS=rows, BLOCK_Q=block_q, P=patch, PAD=_PACKED_RUN,
                                     TAP_MAJOR=tap_major, UNROLL=TUNING["rows_unroll"], RAGGED=False, STEPS=0,
                                     **_rows_prefetch(device), num_warps=TUNING["rows_warps"]),
                                (start, wts, start, h, n, n_qp, n_qb, 1, *strides))  # desc_ptr: placeholder
        self.dst_shape = (b, c, h, n_qp)

    def run(self, src: torch.Tensor) -> torch.Tensor:
        dst = torch.empty(self.dst_shape, dtype=torch.uint8, device=src.device)
        self.launch(src, dst)
        return dst


def _rows_pipeline(members: list[tuple[list[tuple[bool, int]], int]], kind: int, patch: int) -> bool:
    """Whether the images of one launch, given as ``(passes, input width)`` each (they share their pass
    axes), run as ``_rows_pass_kernel`` + ``_patch_rows_kernel`` (``TUNING["pipeline"] == "rows"``): Pillow
    arithmetic on uint8, a horizontal pass then a vertical one, patches of at most 16, and every input at
    least as wide as the launch's filter window (the longest tap count among them), so no window reaches
    outside its row."""
    passes = members[0][0]
    if not (TUNING["pipeline"] == "rows" and kind == 0 and len(passes) == 2 and not passes[0][0]
            and 0 < patch <= _PACKED_RUN):
        return False
    taps = max(_kernel_tap_count(in_w, own[0][1], True) for own, in_w in members)
    return all(in_w >= taps for _, in_w in members)


def _src_kind(src: torch.Tensor, config: VisionPreprocessConfig, resizing: bool) -> tuple[torch.Tensor, int]:
    """Bring ``src`` to a dtype the kernels take and pick their arithmetic (see kernels.SRC_*)."""
    from ...functional import to_levels

    if src.dtype == torch.uint8:
        return src, 0 if config.resize_mode == "pil" else 1
    if config.resize_mode == "pil" and resizing:
        return to_levels(src, config.input_range), 0
    if src.dtype == torch.float64:
        raise ValueError("backend='triton' takes uint8, float32, float16 or bfloat16 images, got float64; "
                         "use backend='torch' for float64")
    if config.input_range == "0-1":
        src = src.to(torch.float32) * 255.0
    return src, 2


class _GroupPlan:
    """Everything about preprocessing one same-shape group that depends only on shapes, strides, dtypes,
    the config and the output rows: built once, cached in ``PLANS``, so a warm call only allocates the
    scratch and launches (no host work per image, no table lookups, no host<->device traffic)."""

    __slots__ = ("first", "launch", "fits")

    def __init__(self, shape: tuple[int, ...], strides: tuple[int, ...], kind: int, size: tuple[int, int],
                 config: VisionPreprocessConfig, first_row: int, row_offsets: tuple[int, ...] | None,
                 device: torch.device) -> None:
        from ...functional import level_table

        self.fits = None  # set by launch_group: (source strides, source aligned, output aligned) of its key
        b, c, in_h, in_w = shape
        h, w = size
        pil = kind == 0
        _check_int32_extent(shape, strides)
        # float resizing goes width first, as torch_ref.resize_float does
        vertical_first = pil and pillow_vertical_first(in_h, in_w, h, w, config.pillow_order)
        passes = separable_passes(in_h, in_w, h, w, vertical_first)
        p, m, t = config.patch_size, config.merge_size, config.image_frames
        rows = (h // p) * (w // p)
        blocks_w = w // (p * m)
        rows_t = _row_table(row_offsets, device) if row_offsets is not None else None
        if _rows_pipeline([(passes, in_w)], kind, p):
            self._init_rows(shape, strides, size, config, rows, blocks_w, first_row, rows_t, device)
            return
        self.first = None
        if len(passes) == 2:
            self.first = _Pass(shape, strides, passes[0][1], passes[0][0], pil, device)
            shape = self.first.dst_shape
            strides = (shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1)
            passes = passes[1:]
        norm = _norm_vector(config, device)
        if passes:
            vertical, n = passes[0]
            axis = 1 if vertical else 2
            n_in = shape[2] if vertical else shape[3]
            idx, wts, taps = _kernel_taps(n_in, n, pil, device, TUNING["patch_taps"] == "tap-major")
        else:
            axis, n_in, n, idx, wts, taps = 0, 1, 1, norm, norm, 1  # unused placeholders
        block = TUNING["patch_block"]
        from .kernels import _patchify_kernel

        arith = TUNING["patch_norm"] == "arith" and kind != 2 and arithmetic_levels_exact(config)
        self.launch = _Launcher(_patchify_kernel, (-(-(blocks_w * m * c) // block), h // p, b),
                                dict(SRC=kind, AXIS=axis, HAS_ROW_TABLE=row_offsets is not None, C=c, P=p, M=m,
                                     T=t, TAPS=taps, PP_PAD=1 << (p * p - 1).bit_length(), BLOCK=block,
                                     ARITH=arith, TAP_MAJOR=TUNING["patch_taps"] == "tap-major", RAGGED=False,
                                     num_warps=TUNING["patch_warps"]),
                                (idx, wts, level_table(config, device), norm, norm if rows_t is None else rows_t,
                                 norm, rows, first_row, blocks_w, n_in, n, *strides))
        # desc_ptr (after rows_t): unused placeholder

    def _init_rows(self, shape: tuple[int, ...], strides: tuple[int, ...], size: tuple[int, int],
                   config: VisionPreprocessConfig, rows: int, blocks_w: int, first_row: int,
                   rows_t: torch.Tensor | None, device: torch.device) -> None:
        """The ``pipeline="rows"`` plan (see :func:`_rows_pipeline`): packed horizontal pass, then the
        vector-load fused pass."""
        from ...functional import level_table
        from .kernels import _patch_rows_kernel

        h, w = size
        p, m, t = config.patch_size, config.merge_size, config.image_frames
        self.first = _RowsPass(shape, strides, w, p, device)
        b, c, in_h, n_qp = self.first.dst_shape
        idx, wts, taps = _kernel_taps(in_h, h, True, device, TUNING["patch_taps"] == "tap-major")
        norm = _norm_vector(config, device)
        block = TUNING["rows_patch_block"]
        self.launch = _Launcher(_patch_rows_kernel, (-(-(blocks_w * m) // block), h // p, b),
                                dict(HAS_ROW_TABLE=rows_t is not None, C=c, P=p, M=m, T=t, TAPS=taps,
                                     PAD=_PACKED_RUN, BLOCK=block,
                                     ARITH=TUNING["patch_norm"] == "arith" and arithmetic_levels_exact(config),
                                     TAP_MAJOR=TUNING["patch_taps"] == "tap-major", RAGGED=False, STEPS=0,
                                     num_warps=TUNING["rows_patch_warps"]),
                                (idx, wts, level_table(config, device), norm, norm if rows_t is None else rows_t,
                                 norm, rows, first_row, blocks_w, in_h, h, 1, c * in_h * n_qp, in_h * n_qp, n_qp))
        # desc_ptr (after rows_t): unused placeholder

    def run(self, src: torch.Tensor, out: torch.Tensor) -> None:
        if self.first is not None:
            src = self.first.run(src)
        self.launch(src, out)


def _alignments(src: torch.Tensor, out: torch.Tensor) -> tuple[bool, bool]:
    return src.data_ptr() % 16 == 0, out.data_ptr() % 16 == 0


def launch_group(src: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig, out: torch.Tensor,
                 first_row: int, row_offsets: tuple[int, ...] | None) -> "_GroupPlan | None":
    """Preprocess a same-shape batch ``src [B, 3, H, W]`` (any strides) into rows of ``out``.

    Image ``b`` goes to rows ``first_row + b * rows`` (or ``row_offsets[b]`` when given). Returns the plan
    it ran, or None when the batch was split over several launches (more images than a grid takes).
    """
    n = src.shape[0]
    if n > _MAX_GRID_YZ:  # images ride on grid dim 2
        rows = (size[0] // config.patch_size) * (size[1] // config.patch_size)
        for lo in range(0, n, _MAX_GRID_YZ):
            hi = min(n, lo + _MAX_GRID_YZ)
            launch_group(src[lo:hi], size, config, out, first_row + lo * rows,
                         None if row_offsets is None else row_offsets[lo:hi])
        return None
    src, kind = _src_kind(src, config, tuple(src.shape[-2:]) != tuple(size))
    # the pointers' 16-byte alignment is part of Triton's specialisation, hence of the plan (see _Launcher)
    fits = (src.stride(), *_alignments(src, out))
    key = (tuple(src.shape), src.dtype, src.device, *fits, kind, size, config._op_key, first_row, row_offsets,
           _tuning())

    def make() -> _GroupPlan:
        plan = _GroupPlan(tuple(src.shape), src.stride(), kind, size, config, first_row, row_offsets, src.device)
        plan.fits = fits
        return plan

    group = PLANS.get(key, make)
    with _device_guard(src):
        group.run(src, out)
    return group


def _offset(t: torch.Tensor, base: torch.Tensor) -> int | None:
    """``t``'s first element as an element offset from ``base``'s (same dtype); None if not a whole number."""
    diff = t.data_ptr() - base.data_ptr()
    return diff // t.element_size() if diff % t.element_size() == 0 else None


_AXES = {True: 1, False: 2}  # vertical pass -> kernels.AXIS_ROWS, horizontal -> kernels.AXIS_COLS


@functools.lru_cache(maxsize=4096)
def _ragged_passes(shape: tuple[int, ...], strides: tuple[int, ...], kind: int, size: tuple[int, int],
                   order: str) -> tuple[tuple, tuple]:
    """``(kind key, passes)`` of one image of a ragged launch (see :func:`launch_ragged`), from its shape
    alone; checks the int32 extent once per shape."""
    _check_int32_extent(shape, strides)
    in_h, in_w = shape[-2:]
    h, w = size
    vertical_first = kind == 0 and pillow_vertical_first(in_h, in_w, h, w, order)
    passes = tuple(separable_passes(in_h, in_w, h, w, vertical_first))
    first_axis = passes[0][0] if len(passes) == 2 else None
    last_axis = _AXES[passes[-1][0]] if passes else 0
    return (shape[1], first_axis, last_axis), passes


class _RaggedPlan:
    """One ragged sub-group (images sharing source kind, dtype, channels and pass axes; any sizes) as at
    most two launches through per-image descriptor tables (the kernels' RAGGED mode): a first pass over
    all members into one flat scratch buffer, then the fused pass over all members.

    Everything but where the sources are is fixed per (member shapes, strides, sizes, output rows, config,
    tuning) and cached in ``PLANS``: the descriptor rows (int64, host), the filter tables (the cached per-size
    tables, padded to the group's longest filter: zero weights, so exact), grids and launchers. The
    descriptors of the launch that reads the sources get the sources' element offsets from the first source
    per call and go to the device without blocking (``to_device``: per-call data, ordered on the current
    stream); with a first pass, the fused pass reads the plan's scratch, so its rows are fixed and uploaded
    once with the plan.
    """

    __slots__ = ("first", "fused", "desc1", "desc2", "scratch", "keep")

    def __init__(self, statics: list, kind: int, config: VisionPreprocessConfig, device: torch.device) -> None:
        from ...functional import level_table
        from .kernels import _patchify_kernel, _resample_pass_kernel

        (c, first_axis, last_axis) = statics[0][0]
        pil = kind == 0
        mode = "pil" if pil else "float"
        p, m, t = config.patch_size, config.merge_size, config.image_frames
        self.first = self.desc1 = self.scratch = None
        tables = []
        mids = []
        if first_axis is not None:
            vertical = first_axis
            ins = [shape[2 if vertical else 3] for (_, _, shape, _, _, _) in statics]
            ns = [passes[0][1] for (_, passes, _, _, _, _) in statics]
            taps1 = max(_kernel_tap_count(a, b, pil) for a, b in zip(ins, ns))
            tap_major1 = TUNING["pass_taps"] == "tap-major"
            tables = [device_taps(a, b, mode, device, width=taps1, tap_major=tap_major1) for a, b in zip(ins, ns)]
            block_r, block_q = TUNING["pass_block_r"], TUNING["pass_block_q"]
            rows, at, tiles = [], 0, 0
            for (idx, wts), (_, passes, shape, strides, _, _), n_in in zip(tables, statics, ins):
                n = passes[0][1]
                n_r, n_q = (n, shape[3]) if vertical else (shape[2], n)
                _check_int32_extent((1, c, n_r, n_q), (c * n_r * n_q, n_r * n_q, n_q, 1))
                n_qb = -(-n_q // block_q)
                rows.append([0, at, _offset(idx, tables[0][0]), _offset(wts, tables[0][1]), n_r, n_q, n_in, n_qb,
                             *strides[1:]])
                mids.append((at, n_r, n_q))
                at += c * n_r * n_q
                tiles = max(tiles, -(-n_r // block_r) * n_qb)
            self.desc1 = torch.tensor(rows, dtype=torch.int64)
            self.scratch = (at, torch.uint8 if pil else torch.float32)
            self.first = (_Launcher(_resample_pass_kernel, (tiles, c, len(statics)),
                                    dict(TAPS=taps1, VERTICAL=vertical, PIL=pil, BLOCK_R=block_r, BLOCK_Q=block_q,
                                         TAP_MAJOR=tap_major1, RAGGED=True, WORDS=0,
                                         num_warps=TUNING["pass_warps"])),
                          tables[0])
        norm = _norm_vector(config, device)
        taps2, tables2 = 1, None
        if last_axis:
            vertical = last_axis == 1
            ins = [(mid[1] if vertical else mid[2]) for mid in mids] if mids else \
                [shape[2 if vertical else 3] for (_, _, shape, _, _, _) in statics]
            ns = [passes[-1][1] for (_, passes, _, _, _, _) in statics]
            taps2 = max(_kernel_tap_count(a, b, pil) for a, b in zip(ins, ns))
            tables2 = [device_taps(a, b, mode, device, width=taps2, tap_major=TUNING["patch_taps"] == "tap-major")
                       for a, b in zip(ins, ns)]
        block = TUNING["patch_block"]
        rows, tiles, bands = [], 0, 0
        for i, (_, passes, shape, strides, (h, w), row) in enumerate(statics):
            at, src_strides = (mids[i][0], (mids[i][1] * mids[i][2], mids[i][2], 1)) if mids else (0, strides[1:])
            idx_at = w_at = 0
            n_in = n_out = 1
            if last_axis:
                idx, wts = tables2[i]
                idx_at, w_at = _offset(idx, tables2[0][0]), _offset(wts, tables2[0][1])
                n_in, n_out = ins[i], passes[-1][1]
            blocks_w = w // (p * m)
            rows.append([at, idx_at, w_at, row, h // p, blocks_w, n_in, n_out, *src_strides])
            tiles = max(tiles, -(-(blocks_w * m * c) // block))
            bands = max(bands, h // p)
        self.desc2 = torch.tensor(rows, dtype=torch.int64)
        if self.first is not None:  # the fused pass reads the plan's scratch: fixed rows, on the device once
            self.desc2 = upload_table(self.desc2, device)
        arith = TUNING["patch_norm"] == "arith" and kind != 2 and arithmetic_levels_exact(config)
        idx0, w0 = tables2[0] if tables2 else (norm, norm)
        self.fused = (_Launcher(_patchify_kernel, (tiles, bands, len(statics)),
                                dict(SRC=kind, AXIS=last_axis, HAS_ROW_TABLE=False, C=c, P=p, M=m, T=t, TAPS=taps2,
                                     PP_PAD=1 << (p * p - 1).bit_length(), BLOCK=block, ARITH=arith,
                                     TAP_MAJOR=TUNING["patch_taps"] == "tap-major", RAGGED=True,
                                     num_warps=TUNING["patch_warps"])),
                      (idx0, w0, level_table(config, device), norm, norm))
        self.keep = (tables, tables2)  # every table the descriptors point into lives as long as the plan

    def run(self, srcs: list[torch.Tensor], offsets: list[int], out: torch.Tensor) -> None:
        """Launch for ``srcs`` (``[1, C, H, W]`` each, the shapes the plan was built for), whose first
        elements lie ``offsets`` elements from the first source's."""
        base = srcs[0]
        device = out.device
        if self.first is not None:
            scratch = torch.empty(self.scratch[0], dtype=self.scratch[1], device=device)
            launch, (idx0, w0) = self.first
            launch(base, scratch, idx0, w0, _descriptors(self.desc1, offsets, device), 1, 1, 1, 1, 1, 1, 1, 1)
            desc2, src = self.desc2, scratch
        else:
            desc2, src = _descriptors(self.desc2, offsets, device), base
        launch, (idx0, w0, lut, norm, rows) = self.fused
        launch(src, out, idx0, w0, lut, norm, rows, desc2, 1, 0, 1, 1, 1, 1, 1, 1, 1)


class _RaggedRowsPlan:
    """The rows pipeline (see :func:`_rows_pipeline`) over a ragged sub-group of any sizes, each image
    resized width then height with Pillow arithmetic: two launches in all, each on one flat grid over every
    member's programs (no program waits idle for a larger member), through per-image descriptor tables.

    Cached in ``PLANS`` like :class:`_RaggedPlan`. The fused pass's descriptors are fixed per plan and live
    on the device with it; the first pass's carry the sources' offsets, filled in per call (``to_device``,
    ordered on the current stream)."""

    __slots__ = ("first", "fused", "desc1", "desc2", "scratch", "keep")

    def __init__(self, statics: list, config: VisionPreprocessConfig, device: torch.device) -> None:
        from ...functional import level_table
        from .kernels import _patch_rows_kernel, _rows_pass_kernel

        c = statics[0][0][0]
        p, m, t = config.patch_size, config.merge_size, config.image_frames
        n = len(statics)
        steps = (n - 1).bit_length()
        widths = [(shape[3], passes[0][1]) for (_, passes, shape, _, _, _) in statics]
        heights = [(shape[2], passes[1][1]) for (_, passes, shape, _, _, _) in statics]
        taps1 = max(_kernel_tap_count(a, b, True) for a, b in widths)
        taps2 = max(_kernel_tap_count(a, b, True) for a, b in heights)
        tap_major1, tap_major2 = TUNING["pass_taps"] == "tap-major", TUNING["patch_taps"] == "tap-major"
        tables1 = [device_window_taps(a, b, taps1, device, tap_major1) for a, b in widths]
        tables2 = [device_taps(a, b, "pil", device, width=taps2, tap_major=tap_major2) for a, b in heights]
        rows_pp, block_q, block = TUNING["rows_per_program"], _rows_block_q(taps1), TUNING["rows_patch_block"]
        rows1, rows2, at, first1, first2 = [], [], 0, 0, 0
        for i, (_, passes, shape, strides, (h, w), row) in enumerate(statics):
            in_h = shape[2]
            n_qp = w // p * _PACKED_RUN
            _check_int32_extent((1, c, in_h, n_qp), (c * in_h * n_qp, in_h * n_qp, n_qp, 1))
            n_qb = -(-n_qp // block_q)
            rows1.append([0, at, _offset(tables1[i][0], tables1[0][0]), _offset(tables1[i][1], tables1[0][1]),
                          in_h, w, n_qp, n_qb, *strides[1:], first1])
            blocks_w = w // (p * m)
            rows2.append([at, _offset(tables2[i][0], tables2[0][0]), _offset(tables2[i][1], tables2[0][1]), row,
                          blocks_w, in_h, h, in_h * n_qp, n_qp, first2])
            first1 += c * -(-in_h // rows_pp) * n_qb
            first2 += (h // p) * -(-(blocks_w * m) // block)
            at += c * in_h * n_qp
        self.desc1 = torch.tensor(rows1, dtype=torch.int64)
        self.desc2 = upload_table(torch.tensor(rows2, dtype=torch.int64), device)
        self.scratch = at
        self.first = (_Launcher(_rows_pass_kernel, (first1, 1, 1),
                                dict(TAPS=taps1, ROWS=rows_pp, BLOCK_Q=block_q, P=p, PAD=_PACKED_RUN,
                                     TAP_MAJOR=tap_major1, UNROLL=TUNING["rows_unroll"], RAGGED=True, STEPS=steps,
                                     **_rows_prefetch(device), num_warps=TUNING["rows_warps"])),
                      tables1[0])
        norm = _norm_vector(config, device)
        self.fused = (_Launcher(_patch_rows_kernel, (first2, 1, 1),
                                dict(HAS_ROW_TABLE=False, C=c, P=p, M=m, T=t, TAPS=taps2, PAD=_PACKED_RUN, BLOCK=block,
                                     ARITH=TUNING["patch_norm"] == "arith" and arithmetic_levels_exact(config),
                                     TAP_MAJOR=tap_major2, RAGGED=True, STEPS=steps,
                                     num_warps=TUNING["rows_patch_warps"])),
                      (*tables2[0], level_table(config, device), norm))
        self.keep = (tables1, tables2)  # every table the descriptors point into lives as long as the plan

    def run(self, srcs: list[torch.Tensor], offsets: list[int], out: torch.Tensor) -> None:
        """Launch for ``srcs`` (``[1, C, H, W]`` each, the shapes the plan was built for), whose first
        elements lie ``offsets`` elements from the first source's."""
        device = out.device
        n = len(srcs)
        scratch = torch.empty(self.scratch, dtype=torch.uint8, device=device)
        launch, (idx0, w0) = self.first
        launch(srcs[0], scratch, idx0, w0, _descriptors(self.desc1, offsets, device), 1, 1, 1, 1, n, 1, 1, 1, 1)
        launch, (idx0, w0, lut, norm) = self.fused
        launch(scratch, out, idx0, w0, lut, norm, norm, self.desc2, 1, 0, 1, 1, 1, n, 1, 1, 1)


def _descriptors(template: torch.Tensor, offsets: list[int], device: torch.device) -> torch.Tensor:
    """``template`` (host descriptor rows) with column 0 set to the sources' ``offsets``, on ``device``:
    filled in pinned memory on CUDA, so the non-blocking copy needs no staging copy of its own."""
    rows = torch.empty_like(template, pin_memory=device.type == "cuda")
    rows.copy_(template)
    rows[:, 0] = torch.tensor(offsets, dtype=torch.int64)
    return to_device(rows, device)


def launch_ragged(images: list[torch.Tensor], sizes: list[tuple[int, int]], row_offsets: list[int],
                  config: VisionPreprocessConfig, out: torch.Tensor) -> bool:
    """All images of a ragged list in at most two launches per kind of image (source kind, dtype, channels
    and pass axes): see :class:`_RaggedPlan`, or :class:`_RaggedRowsPlan` for the kind the rows pipeline
    takes (``TUNING["pipeline"] == "rows"``). Returns False, having launched nothing, where an offset is
    not a whole number of elements (the caller then launches per size)."""
    kinds: dict[tuple, tuple[list, list]] = {}
    for img, size, row in zip(images, sizes, row_offsets):
        x = img[None]
        src, kind = _src_kind(x, config, tuple(x.shape[-2:]) != tuple(size))
        shape, strides = tuple(src.shape), src.stride()
        axes, passes = _ragged_passes(shape, strides, kind, tuple(size), config.pillow_order)
        srcs, statics = kinds.setdefault((kind, src.dtype) + axes, ([], []))
        srcs.append(src)
        statics.append((axes, passes, shape, strides, tuple(size), row))
    plans = []
    for (kind, dtype, *_), (srcs, statics) in kinds.items():
        rows = _rows_pipeline([(passes, shape[3]) for (_, passes, shape, _, _, _) in statics], kind,
                              config.patch_size)
        key = ("ragged", kind, dtype, tuple(statics), srcs[0].device, srcs[0].data_ptr() % 16 == 0,
               out.data_ptr() % 16 == 0, config._op_key, _tuning())
        make = (lambda: _RaggedRowsPlan(statics, config, srcs[0].device)) if rows else \
            (lambda: _RaggedPlan(statics, kind, config, srcs[0].device))
        plans.append((PLANS.get(key, make), srcs))
    offsets = [[_offset(s, srcs[0]) for s in srcs] for _, srcs in plans]
    if any(None in offs for offs in offsets):
        return False
    with _device_guard(out):
        for (plan, srcs), offs in zip(plans, offsets):
            plan.run(srcs, offs, out)
    return True


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


class _Launch:
    """One group launch of a call, as :func:`preprocess_into` ran it: the plan, which images (``members``:
    indices into the call's images, or None for the whole stacked batch), their target size and output rows
    (see :func:`warm_call`)."""

    __slots__ = ("plan", "members", "size", "first_row", "row_offsets")

    def __init__(self, plan: _GroupPlan | None, members: tuple[int, ...] | None, size: tuple[int, int],
                 first_row: int, row_offsets: tuple[int, ...] | None) -> None:
        self.plan, self.members, self.size = plan, members, size
        self.first_row, self.row_offsets = first_row, row_offsets


def _launch_source(batch_or_images, members: tuple[int, ...] | None) -> torch.Tensor:
    """The ``[N, 3, H, W]`` source of one group launch: the stacked batch itself, one image, or a group of
    same-shape images (in place where they lie at one step, see :func:`_group_source`)."""
    if members is None:
        return batch_or_images
    if len(members) == 1:
        return batch_or_images[members[0]][None]
    return _group_source([batch_or_images[i] for i in members])


def preprocess_into(batch: ImageBatch, sizes: list[tuple[int, int]], row_offsets: list[int],
                    config: VisionPreprocessConfig, out: torch.Tensor) -> list[_Launch] | None:
    """Fill ``out`` for every image of ``batch`` (image ``i`` starts at row ``row_offsets[i]``): one group
    per distinct (shape, dtype, target size), or with ``TUNING["ragged"] == "descriptors"`` one ragged
    launch pair per kind of image (see :func:`launch_ragged`; not inside CUDA-graph capture, whose replays
    would reuse one call's descriptors). Returns the group launches it made, for :func:`remember_call`, or
    None where a call cannot be repeated from them (descriptor tables, a batch split over several grids)."""
    if batch.stacked is not None:
        launches = [_Launch(None, None, tuple(sizes[0]), 0, None)]
        source, repeatable = batch.stacked, True
    else:
        groups: dict[tuple, list[int]] = {}
        for i, img in enumerate(batch.images):
            groups.setdefault((tuple(img.shape), img.dtype, tuple(sizes[i])), []).append(i)
        if len(groups) > 1 and TUNING["ragged"] == "descriptors":
            if (not _capturing(out.device) and len(batch.images) <= _MAX_GRID_YZ
                    and launch_ragged(batch.images, sizes, row_offsets, config, out)):
                return None
            repeatable = False  # this call fell back to groups; the next one may take the descriptors again
        else:
            repeatable = True
        launches = [_Launch(None, tuple(members), size, row_offsets[members[0]], None) if len(members) == 1
                    else _Launch(None, tuple(members), size, 0, tuple(row_offsets[i] for i in members))
                    for (_, _, size), members in groups.items()]
        source = batch.images
    for launch in launches:
        launch.plan = launch_group(_launch_source(source, launch.members), launch.size, config, out,
                                   launch.first_row, launch.row_offsets)
    if not repeatable or any(launch.plan is None for launch in launches):
        return None
    return launches


def _group_source(images: list[torch.Tensor]) -> torch.Tensor:
    """``[N, C, H, W]`` of same-shape images ``[C, H, W]``: a strided view when they lie at one constant
    non-negative step in one storage with the same strides (``list(batch.unbind(0))``, frames of one buffer),
    so the kernels read them in place; else a stacked copy."""
    first = images[0]
    size = first.element_size()
    step = (images[1].data_ptr() - first.data_ptr()) if len(images) > 1 else 0
    storage = first.untyped_storage().data_ptr()
    if step >= 0 and step % size == 0 and all(
            img.stride() == first.stride() and img.data_ptr() - first.data_ptr() == i * step
            and img.untyped_storage().data_ptr() == storage for i, img in enumerate(images)):
        return first.as_strided((len(images), *first.shape), (step // size, *first.stride()))
    return torch.stack(images)


class _WarmCall:
    """What a repeated ``preprocess`` of the same image tensor or list of image tensors (same metadata)
    needs (see :func:`remember_call`): how to view each input as ``[3, H, W]`` / ``[B, 3, H, W]``, the
    group launches, the output shape and ``grid_thw``. Immutable; cached in ``PLANS``, so it goes whenever
    the plans do."""

    __slots__ = ("dims", "launches", "out_shape", "grid")

    def __init__(self, dims: tuple[int, ...] | None, launches: list[_Launch], out_shape: tuple[int, int],
                 grid: torch.Tensor) -> None:
        self.dims, self.launches, self.out_shape, self.grid = dims, launches, out_shape, grid


# how a tensor of (dims, layout) becomes the [B, 3, H, W] (one tensor) or [3, H, W] (a list item) view the
# kernels read (see checks.prepare_images)
_BATCH_DIMS = {(4, False): None, (4, True): (0, 3, 1, 2), (3, False): (0, 1, 2), (3, True): (2, 0, 1)}
_ITEM_DIMS = {False: None, True: (2, 0, 1)}


def _as_batch(images: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    if dims is None:
        return images
    src = images.permute(dims)
    return src if src.dim() == 4 else src[None]


def _sources(images, dims: tuple[int, ...] | None, tensor: bool):
    """The stacked batch (a tensor input) or the list of ``[3, H, W]`` views (a list input)."""
    if tensor:
        return _as_batch(images, dims)
    return list(images) if dims is None else [img.permute(dims) for img in images]


def _empty_out(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The output of a warm call, allocated as the full path allocates it (``host_memory.empty``)."""
    if device.type == "cuda":
        return torch.empty(shape, dtype=dtype, device=device)
    return host_memory.empty(shape, dtype, device)


def _warm_key(images, config: VisionPreprocessConfig, backend: str, layout: str,
              check_values: bool | None) -> tuple:
    if isinstance(images, torch.Tensor):
        meta = (images.shape, images.stride(), images.dtype, images.device, images.data_ptr() % 16 == 0)
    else:
        meta = tuple((t.shape, t.stride(), t.dtype, t.device, t.data_ptr() % 16 == 0) for t in images)
    return ("warm", meta, config._op_key, backend, layout, check_values, _tuning())


def _kernel_source(src: torch.Tensor, config: VisionPreprocessConfig, resizing: bool) -> torch.Tensor:
    """``src`` in a dtype the kernels take, as :func:`launch_group` converts it (see :func:`_src_kind`)."""
    return src if src.dtype == torch.uint8 else _src_kind(src, config, resizing)[0]


def remember_call(images, config: VisionPreprocessConfig, backend: str, layout: str, check_values: bool | None,
                  launches: list[_Launch], out: torch.Tensor, grid: torch.Tensor) -> None:
    """Record a finished call so that :func:`warm_call` can repeat it: ``images`` is one image tensor
    (``[3, H, W]`` / ``[B, 3, H, W]``) or a list of ``[3, H, W]`` tensors, CHW or HWC by ``layout``, and
    ``launches`` what :func:`preprocess_into` returned for it. The caller vouches that everything the call
    checked or decided depends only on what the key holds (each tensor's shape, strides, dtype, device and
    alignment; config, backend, layout, ``check_values``, tuning): no value check, no channel conversion, no
    gradient."""
    hwc = layout == "hwc"
    tensor = isinstance(images, torch.Tensor)
    dims = _BATCH_DIMS[images.dim(), hwc] if tensor else _ITEM_DIMS[hwc]
    if tensor:  # one image tensor ran as one group: its batch view is the source
        (launch,) = launches
        launch.members = None
    entry = _WarmCall(dims, launches, tuple(out.shape), grid.clone())
    PLANS.get(_warm_key(images, config, backend, layout, check_values), lambda: entry)


def warm_call(images, config: VisionPreprocessConfig, backend: str, layout: str, check_values: bool | None
              ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(pixel_values, grid_thw)`` for a call :func:`remember_call` has seen (same metadata), straight from
    its group launches: no validation, sizing or plan lookups again. A launch whose source now has other
    strides or alignments than its plan was built for (a same-size group stacked where it was read in place,
    or the reverse) takes :func:`launch_group`'s path. None when there is no entry (the caller then takes
    the full path, which records one)."""
    entry = PLANS.find(_warm_key(images, config, backend, layout, check_values))
    if entry is None:
        return None
    tensor = isinstance(images, torch.Tensor)
    sources = _sources(images, entry.dims, tensor)
    device = images.device if tensor else images[0].device
    out = _empty_out(entry.out_shape, config.output_dtype, device)
    for launch in entry.launches:
        given = _launch_source(sources, launch.members)
        src = _kernel_source(given, config, tuple(given.shape[-2:]) != launch.size)
        if (src.stride(), *_alignments(src, out)) == launch.plan.fits:
            with _device_guard(src):
                launch.plan.run(src, out)
        else:  # not what the plan was specialised for: the regular path (which converts given itself)
            launch_group(given, launch.size, config, out, launch.first_row, launch.row_offsets)
    return out, entry.grid.clone()


def resize_levels(batch: ImageBatch, sizes: list[tuple[int, int]], config: VisionPreprocessConfig
                  ) -> list[torch.Tensor]:
    """The resize stage alone on uint8 images with the first-pass kernel (used by ``qvp.resize``)."""
    pil = config.resize_mode == "pil"
    results = []
    for img, (h, w) in zip(batch.images, sizes):
        x = img[None]
        in_h, in_w = x.shape[-2:]
        vertical_first = pil and pillow_vertical_first(in_h, in_w, h, w, config.pillow_order)
        for vertical, n in separable_passes(in_h, in_w, h, w, vertical_first):
            x = resample_pass(x, n, vertical, pil)
        if x.dtype != torch.uint8:
            x = torch_ref.round_to_levels(x)
        results.append(x[0])
    return results
