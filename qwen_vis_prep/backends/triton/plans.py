"""Launch plans of the Triton backend: everything about preprocessing one same-shape group that depends only
on shapes, strides, dtypes, the config and the output rows, built once and cached in :data:`PLANS`, so a
repeated group only allocates its scratch and launches (no host work per image, no table lookups, no
host<->device traffic, no sync: it can be captured in a CUDA graph).

A group takes at most two launches (first separable pass into a uint8/float32 scratch, then the last pass
fused with normalisation + patchify + cast, writing each output element once); no resize is one launch.
Two kernel pairs do this: the "rows" pipeline (:class:`RowsPass` + ``_patch_rows_kernel``, patch-packed
scratch) for fixed-point arithmetic resized width first, the tile kernels (:class:`Pass` + ``_patchify_kernel``)
for everything else (see ``tuning``). The first call for a new size uploads its tables and waits for them
(``resample_tables.upload_table``).
"""

from __future__ import annotations

import contextlib

import torch

from ...config import VisionPreprocessConfig
from ...resample_tables import (DEVICE_TABLES, FIXED_POINT_MODES, DeviceTableCache, device_taps,
                                device_window_taps, fixed_taps, float_taps, padded_taps, upload_table)
from ...sizing import separable_passes, vertical_pass_first
from ..reference import level_table, normalize_constants, to_levels
from .kernels import (SRC_FLOAT, SRC_U8_FLOAT, SRC_U8_FIXED, _patch_rows_kernel, _patchify_kernel,
                      _resample_pass_kernel, _rows_pass_kernel)
from .launcher import Launcher
from .tuning import TUNING, tuning_key

PLANS = DeviceTableCache(maxsize=512)  # group plans (about two per image size)
MAX_GRID_YZ = 65535  # CUDA's limit on grid dims 1 and 2 (images per launch ride on dim 2)
PACKED_RUN = 16  # bytes per patch row in the packed scratch (patch sizes up to 16)


def device_guard(t: torch.Tensor):
    """Launch on ``t``'s GPU (the current device may be another one); free when it already is current."""
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def norm_vector(config: VisionPreprocessConfig, device: torch.device) -> torch.Tensor:
    """float64 ``[scale, mean0..2, std0..2]`` on ``device`` (cached): the float32 constants of
    ``reference.normalize``, with identity values for skipped steps."""
    def make():
        scale, mean, std = normalize_constants(config, torch.device("cpu"))
        vec = torch.cat([torch.tensor([1.0 if scale is None else scale], dtype=torch.float32),
                         torch.zeros(3) if mean is None else mean, torch.ones(3) if std is None else std])
        return upload_table(vec.double(), device)

    return DEVICE_TABLES.get(("normvec", config.rescale_factor, config.do_rescale, config.image_mean,
                              config.image_std, config.do_normalize, str(device)), make)


def _row_table(offsets: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return DEVICE_TABLES.get(("rows", offsets, str(device)),
                             lambda: upload_table(torch.tensor(offsets, dtype=torch.int64), device))


def check_int32_extent(shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
    """The kernels address inside one image with int32 offsets."""
    span = sum((n - 1) * abs(st) for n, st in zip(shape[1:], strides[1:])) + 1
    if span >= 2**31:
        raise ValueError(f"backend='triton' needs each image to span < 2**31 elements, got {span} for shape "
                         f"{tuple(shape)}; use backend='reference'")


def kernel_tap_count(n_in: int, n: int, mode: str) -> int:
    """The tap count the kernels are compiled for when resampling ``n_in -> n`` in resize ``mode`` (see
    ``padded_taps``)."""
    table = fixed_taps(n_in, n, mode) if mode in FIXED_POINT_MODES else float_taps(n_in, n)  # lru-cached
    return padded_taps(table[0].shape[1])


def _kernel_taps(n_in: int, n: int, mode: str, device: torch.device, tap_major: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(index, weight, taps)``: device tap tables of ``mode`` padded to the tap count the kernels are
    compiled for (see ``padded_taps``), laid out ``[n, taps]``, or ``[taps, n]`` when ``tap_major``."""
    taps = kernel_tap_count(n_in, n, mode)
    idx, wts = device_taps(n_in, n, mode, device, width=taps, tap_major=tap_major)
    return idx, wts, taps


class Pass:
    """One prepared launch of ``_resample_pass_kernel``: tables, grid and scalars for a fixed
    (input shape, strides, output length, axis, resize mode); ``run`` only allocates and launches. The
    fixed-point modes run integer arithmetic on uint8, ``"float"`` float64 sums into float32."""

    __slots__ = ("launch", "dst_shape", "dst_dtype")

    def __init__(self, shape: tuple[int, ...], strides: tuple[int, ...], n: int, vertical: bool, mode: str,
                 device: torch.device) -> None:
        b, c, h, w = shape
        check_int32_extent(shape, strides)
        n_in = h if vertical else w
        pil = mode in FIXED_POINT_MODES
        tap_major = TUNING["pass_taps"] == "tap-major"
        idx, wts, taps = _kernel_taps(n_in, n, mode, device, tap_major)
        n_r, n_q = (n, w) if vertical else (h, n)
        check_int32_extent((b, c, n_r, n_q), (c * n_r * n_q, n_r * n_q, n_q, 1))
        block_r, block_q = TUNING["pass_block_r"], TUNING["pass_block_q"]
        n_qb = -(-n_q // block_q)
        s_b, s_c, s_r, s_q = strides
        self.launch = Launcher(
            _resample_pass_kernel, (-(-n_r // block_r) * n_qb, c, b), inputs=("src_ptr", "dst_ptr"),
            args=dict(idx_ptr=idx, w_ptr=wts, n_r=n_r, n_q=n_q, n_in=n_in, n_qb=n_qb,
                      s_b=s_b, s_c=s_c, s_r=s_r, s_q=s_q),
            constexprs=dict(TAPS=taps, VERTICAL=vertical, FIXED=pil, BLOCK_R=block_r, BLOCK_Q=block_q,
                            TAP_MAJOR=tap_major),
            num_warps=TUNING["pass_warps"])
        self.dst_shape = (b, c, n_r, n_q)
        self.dst_dtype = torch.uint8 if pil else torch.float32

    def run(self, src: torch.Tensor) -> torch.Tensor:
        dst = torch.empty(self.dst_shape, dtype=self.dst_dtype, device=src.device)
        self.launch(src_ptr=src, dst_ptr=dst)
        return dst


def resample_pass(src: torch.Tensor, n: int, vertical: bool, mode: str) -> torch.Tensor:
    """One separable pass ``[B, C, H, W] -> [B, C, n, W]`` (vertical) or ``[B, C, H, n]``, contiguous.

    A fixed-point ``mode``: uint8 -> uint8; ``"float"``: uint8/float -> float32 (float64 sum).
    """
    step = Pass(tuple(src.shape), src.stride(), n, vertical, mode, src.device)
    with device_guard(src):
        return step.run(src)


def rows_block_q(taps: int) -> int:
    """Packed columns per program of the rows pass for a filter of ``taps`` taps: ``TUNING["rows_block_q"]``,
    halved while one thread would issue more than ``TUNING["rows_tap_loads"]`` tap loads per row (columns /
    (32 * warps) outputs, ``taps`` loads each), down to one output per thread; 0 turns the cap off. On the
    H200 the fastest shape issued 13-14 loads per thread: 256 columns for 1080p (7 taps), 128 for 4K
    (13 taps)."""
    block_q, cap, threads = TUNING["rows_block_q"], TUNING["rows_tap_loads"], 32 * TUNING["rows_warps"]
    while cap and block_q > threads and block_q // threads * taps > cap:
        block_q //= 2
    return block_q


class RowsPass:
    """One prepared launch of ``_rows_pass_kernel``: the horizontal fixed-point pass of ``mode`` ``[B, C, H,
    W] -> [B, C, H, n / patch * 16]`` (uint8, any source strides) into the patch-packed scratch of
    ``_patch_rows_kernel`` (``n`` a multiple of ``patch``, ``W`` at least the filter's window, see
    :func:`rows_pipeline`)."""

    __slots__ = ("launch", "dst_shape")

    def __init__(self, shape: tuple[int, ...], strides: tuple[int, ...], n: int, patch: int, mode: str,
                 device: torch.device) -> None:
        b, c, h, w = shape
        check_int32_extent(shape, strides)
        tap_major = TUNING["pass_taps"] == "tap-major"
        taps = kernel_tap_count(w, n, mode)
        start, wts = device_window_taps(w, n, taps, device, tap_major, mode)
        n_qp = n // patch * PACKED_RUN
        check_int32_extent((b, c, h, n_qp), (c * h * n_qp, h * n_qp, n_qp, 1))
        rows, block_q = TUNING["rows_per_program"], rows_block_q(taps)
        n_qb = -(-n_qp // block_q)
        s_b, s_c, s_r, s_q = strides
        # the prefetch is PTX: CUDA only (it changes no value)
        prefetch = TUNING["rows_prefetch"] if torch.device(device).type == "cuda" else 0
        self.launch = Launcher(
            _rows_pass_kernel, (-(-h // rows) * n_qb, c, b), inputs=("src_ptr", "dst_ptr"),
            args=dict(start_ptr=start, w_ptr=wts, n_r=h, n_q=n, n_qp=n_qp, n_qb=n_qb,
                      s_b=s_b, s_c=s_c, s_r=s_r, s_q=s_q),
            constexprs=dict(TAPS=taps, ROWS=rows, BLOCK_Q=block_q, P=patch, PAD=PACKED_RUN, TAP_MAJOR=tap_major,
                            PREFETCH=prefetch),
            num_warps=TUNING["rows_warps"])
        self.dst_shape = (b, c, h, n_qp)

    def run(self, src: torch.Tensor) -> torch.Tensor:
        dst = torch.empty(self.dst_shape, dtype=torch.uint8, device=src.device)
        self.launch(src_ptr=src, dst_ptr=dst)
        return dst


def rows_pipeline(passes: list[tuple[bool, int]], in_w: int, kind: int, patch: int, mode: str) -> bool:
    """Whether a group with these ``passes`` and input width runs as ``_rows_pass_kernel`` +
    ``_patch_rows_kernel`` (``TUNING["pipeline"] == "rows"``): fixed-point arithmetic on uint8, a horizontal
    pass then a vertical one, patches of at most 16, and an input at least as wide as the filter window, so
    no window reaches outside its row."""
    if not (TUNING["pipeline"] == "rows" and kind == SRC_U8_FIXED and len(passes) == 2 and not passes[0][0]
            and 0 < patch <= PACKED_RUN):
        return False
    return in_w >= kernel_tap_count(in_w, passes[0][1], mode)


def source_kind(src: torch.Tensor, config: VisionPreprocessConfig, resizing: bool) -> tuple[torch.Tensor, int]:
    """Bring ``src`` to a dtype the kernels take and pick their arithmetic (``kernels.SRC_*``)."""
    fixed = config.resize_mode in FIXED_POINT_MODES
    if src.dtype == torch.uint8:
        return src, SRC_U8_FIXED if fixed else SRC_U8_FLOAT
    if fixed and resizing:
        return to_levels(src, config.input_range), SRC_U8_FIXED
    if src.dtype == torch.float64:
        raise ValueError("backend='triton' takes uint8, float32, float16 or bfloat16 images, got float64; "
                         "use backend='reference' for float64")
    if config.input_range == "0-1":
        src = src.to(torch.float32) * 255.0
    return src, SRC_FLOAT


class GroupPlan:
    """The launches of one same-shape group (see the module doc): images, or with ``clip_frames > 0`` the
    frames of whole clips of that many frames each, each frame written to its temporal slot. ``fits`` is
    ``(source strides, source aligned, output aligned)`` of the key it was built for (set by
    :func:`launch_group`)."""

    __slots__ = ("first", "launch", "fits")

    def __init__(self, shape: tuple[int, ...], strides: tuple[int, ...], kind: int, size: tuple[int, int],
                 config: VisionPreprocessConfig, first_row: int, row_offsets: tuple[int, ...] | None,
                 device: torch.device, clip_frames: int = 0) -> None:
        self.fits = None
        b, c, in_h, in_w = shape
        h, w = size
        # the fixed-point arithmetic of the config's mode, or float (float mode, or float input kept as is)
        mode = config.resize_mode if kind == SRC_U8_FIXED else "float"
        check_int32_extent(shape, strides)
        vertical_first = kind == SRC_U8_FIXED and vertical_pass_first(in_h, in_w, h, w, config)
        passes = separable_passes(in_h, in_w, h, w, vertical_first)
        p, m = config.patch_size, config.row_merge_size
        t = config.temporal_patch_size if clip_frames else config.image_frames
        # where each image's rows start: a table for a gathered group, else first_row + b * rows_per_image
        rows = dict(rows_ptr=_row_table(row_offsets, device) if row_offsets is not None else None,
                    rows_per_image=(h // p) * (w // p), first_row=first_row, clip_frames=clip_frames)
        blocks_w = w // (p * m)
        layout = dict(HAS_ROW_TABLE=row_offsets is not None, VIDEO=clip_frames > 0, C=c, P=p, M=m, T=t)
        lut = level_table(config, device)
        if rows_pipeline(passes, in_w, kind, p, mode):
            self.first = RowsPass(shape, strides, w, p, mode, device)
            _, _, _, n_qp = self.first.dst_shape
            idx, wts, taps = _kernel_taps(in_h, h, mode, device, TUNING["patch_taps"] == "tap-major")
            block = TUNING["rows_patch_block"]
            self.launch = Launcher(
                _patch_rows_kernel, (-(-(blocks_w * m) // block), h // p, b), inputs=("src_ptr", "out_ptr"),
                args=dict(idx_ptr=idx, w_ptr=wts, lut_ptr=lut, **rows, blocks_w=blocks_w, n_in=in_h, n_out=h,
                          s_b=c * in_h * n_qp, s_c=in_h * n_qp, s_y=n_qp),
                constexprs=dict(**layout, TAPS=taps, PAD=PACKED_RUN, BLOCK=block,
                                TAP_MAJOR=TUNING["patch_taps"] == "tap-major"),
                num_warps=TUNING["rows_patch_warps"])
            return
        self.first = None
        if len(passes) == 2:
            self.first = Pass(shape, strides, passes[0][1], passes[0][0], mode, device)
            shape = self.first.dst_shape
            strides = (shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1)
            passes = passes[1:]
        if passes:
            vertical, n = passes[0]
            axis = 1 if vertical else 2
            n_in = shape[2] if vertical else shape[3]
            idx, wts, taps = _kernel_taps(n_in, n, mode, device, TUNING["patch_taps"] == "tap-major")
        else:  # no resize: no filter
            axis, n_in, n, idx, wts, taps = 0, 1, 1, None, None, 1
        block = TUNING["patch_block"]
        s_b, s_c, s_y, s_x = strides
        self.launch = Launcher(
            _patchify_kernel, (-(-(blocks_w * m * c) // block), h // p, b), inputs=("src_ptr", "out_ptr"),
            args=dict(idx_ptr=idx, w_ptr=wts, lut_ptr=lut, norm_ptr=norm_vector(config, device), **rows,
                      blocks_w=blocks_w, n_in=n_in, n_out=n, s_b=s_b, s_c=s_c, s_y=s_y, s_x=s_x),
            constexprs=dict(SRC=kind, AXIS=axis, **layout, TAPS=taps, PP_PAD=1 << (p * p - 1).bit_length(),
                            BLOCK=block, TAP_MAJOR=TUNING["patch_taps"] == "tap-major"),
            num_warps=TUNING["patch_warps"])

    def run(self, src: torch.Tensor, out: torch.Tensor) -> None:
        if self.first is not None:
            src = self.first.run(src)
        self.launch(src_ptr=src, out_ptr=out)


def alignments(src: torch.Tensor, out: torch.Tensor) -> tuple[bool, bool]:
    """Whether the source and output pointers are 16-byte aligned (part of Triton's specialisation)."""
    return src.data_ptr() % 16 == 0, out.data_ptr() % 16 == 0


def launch_group(src: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig, out: torch.Tensor,
                 first_row: int, row_offsets: tuple[int, ...] | None, clip_frames: int = 0) -> GroupPlan | None:
    """Preprocess a same-shape batch ``src [B, 3, H, W]`` (any strides) into rows of ``out``.

    Image ``b`` goes to rows ``first_row + b * rows`` (or ``row_offsets[b]`` when given). With
    ``clip_frames > 0``, ``src`` is the frames of ``B / clip_frames`` whole clips, one after another, whose
    frame blocks follow each other from ``first_row``. Returns the plan it ran, or None when the batch was
    split over several launches (more images than a grid takes).
    """
    n = src.shape[0]
    if n > MAX_GRID_YZ:  # images (frames) ride on grid dim 2: split at whole clips
        step = MAX_GRID_YZ - MAX_GRID_YZ % clip_frames if clip_frames else MAX_GRID_YZ
        if step == 0:
            raise ValueError(f"backend='triton' takes clips of at most {MAX_GRID_YZ} frames, got {clip_frames}; "
                             "use backend='reference'")
        rows = (size[0] // config.patch_size) * (size[1] // config.patch_size)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            skipped = lo // clip_frames * -(-clip_frames // config.temporal_patch_size) if clip_frames else lo
            launch_group(src[lo:hi], size, config, out, first_row + skipped * rows,
                         None if row_offsets is None else row_offsets[lo:hi], clip_frames)
        return None
    src, kind = source_kind(src, config, tuple(src.shape[-2:]) != tuple(size))
    # the pointers' 16-byte alignment is part of Triton's specialisation, hence of the plan (see Launcher)
    fits = (src.stride(), *alignments(src, out))
    key = (tuple(src.shape), src.dtype, src.device, *fits, kind, size, config._op_key, first_row, row_offsets,
           clip_frames, tuning_key())

    def make() -> GroupPlan:
        plan = GroupPlan(tuple(src.shape), src.stride(), kind, size, config, first_row, row_offsets, src.device,
                         clip_frames)
        plan.fits = fits
        return plan

    group = PLANS.get(key, make)
    with device_guard(src):
        group.run(src, out)
    return group


def group_source(images: list[torch.Tensor]) -> torch.Tensor:
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
