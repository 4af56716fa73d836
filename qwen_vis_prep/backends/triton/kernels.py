"""Triton kernels (private). Plans (``plans.py``) own dtypes, strides, scratch buffers and grids; the
launcher (``launcher.py``) passes every argument by name.

Arithmetic mirrors the reference backend (``backends/reference.py``) operation by operation, so results are
bit-identical:
* Fixed point (``"pil"`` and ``"torch-uint8"``, whose tables share one 22-bit scale, see ``resample_tables``):
  int32 ``2**21 + sum(level * weight)``, arithmetic shift by 22, clamp to [0, 255].
* Float resampling: float64 products of float32 values (exact, so FMA contraction cannot change them) and a
  float64 running sum in tap order, rounded once to float32.
* Normalisation of uint8 levels: a gather from the ``[3, 256]`` table built by ``reference.normalize``.
* Normalisation of float values: each float32 step (``* scale``, ``- mean``, ``/ std``) computed in float64
  and rounded back to float32, which equals the float32 operation (exact product/difference; the quotient
  is correctly rounded twice, which differs from single rounding only in astronomically rare ties).

The patch layout is ``qwen_vis_prep/layout.py``'s: with ``P`` (patch), ``M`` (merge) and ``T`` (temporal
copies) as compile-time parameters, the patch at grid row ``band = wy * M + iy`` and column
``patch_x = wx * M + ix`` goes to row ``img_row + wy * (blocks_w * M * M) + wx * M * M + iy * M + ix``
(``layout.patch_row``) and its pixel ``(c, t, py, px)`` to column ``((c * T + t) * P + py) * P + px``
(``layout.patch_column``).
"""

import inspect

import triton
import triton.language as tl


def _jit_sizes(*sizes: str):
    """``triton.jit`` that does not specialise the integer arguments ``sizes`` (extents and row counts, never
    strides) on their divisibility by 16; an argument equal to 1 is still specialised. A kernel then compiles
    one variant per constexpr set and stride pattern instead of one per size pattern as well, so a server
    fed arbitrary image sizes compiles only for tap counts and stride patterns it has not met yet. On the
    benchmark shapes the sm_90a code of every kernel below is instruction for instruction the same either
    way (Triton 3.6, compiled ahead of time; see CHANGELOG). Triton versions without the option get a plain
    ``triton.jit``."""
    if "do_not_specialize_on_alignment" in inspect.signature(triton.jit).parameters:
        return triton.jit(do_not_specialize_on_alignment=list(sizes))
    return triton.jit

SRC_U8_FIXED = 0    # uint8 levels, fixed-point taps
SRC_U8_FLOAT = 1    # uint8 levels, float taps, rounded back to levels
SRC_FLOAT = 2       # float values, float taps, float normalisation

AXIS_NONE = 0
AXIS_ROWS = 1       # resample along y
AXIS_COLS = 2       # resample along x

@triton.jit
def _tap(o, k, n_out, TAPS: tl.constexpr, TAP_MAJOR: tl.constexpr):
    """Offset of tap ``k`` of output ``o`` in a filter table: ``[TAPS, n_out]`` (tap-major, so one tap of
    neighbouring outputs is contiguous) or ``[n_out, TAPS]``."""
    if TAP_MAJOR:
        return k * n_out + o
    else:
        return o * TAPS + k


@triton.jit
def _normalize(x, norm_ptr, c):
    """Rescale and normalise float32 values ``x`` of channel(s) ``c`` (a scalar or a tensor broadcasting
    against ``x``): float64 steps, each rounded to float32. ``norm_ptr`` holds float64 ``[scale, mean0..2,
    std0..2]``; loading them as float64 keeps the compiler from narrowing the steps back to (possibly
    contracted or approximate) float32 arithmetic."""
    x = (x.to(tl.float64) * tl.load(norm_ptr)).to(tl.float32)
    x = (x.to(tl.float64) - tl.load(norm_ptr + 1 + c)).to(tl.float32)
    return (x.to(tl.float64) / tl.load(norm_ptr + 4 + c)).to(tl.float32)


@triton.jit
def _to_output(val, out_ptr):
    """float32 ``val`` cast to ``out_ptr``'s element type (bfloat16: round to nearest even, by hand, so no
    conversion instruction of the card can differ from torch's)."""
    if out_ptr.dtype.element_ty == tl.bfloat16:
        u = val.to(tl.int32, bitcast=True)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & -65536
        val = u.to(tl.float32, bitcast=True)
    return val.to(out_ptr.dtype.element_ty)


@_jit_sizes("n_r", "n_q", "n_in", "n_qb")
def _resample_pass_kernel(src_ptr, dst_ptr, idx_ptr, w_ptr,
                          n_r, n_q, n_in, n_qb,
                          s_b, s_c, s_r, s_q,
                          TAPS: tl.constexpr, VERTICAL: tl.constexpr, FIXED: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_Q: tl.constexpr, TAP_MAJOR: tl.constexpr):
    """First separable pass: ``dst[b, c, r, q]`` (contiguous ``[B, C, n_r, n_q]``) from ``src`` (any strides).

    VERTICAL: ``r`` is resampled through the taps (``n_in`` source rows), ``q`` copied; else ``q`` is.
    FIXED: uint8 -> uint8 fixed point; else float -> float32 with a float64 sum. TAP_MAJOR: layout of the
    filter tables (see ``_tap``). The ``TAPS`` taps are unrolled so their loads are all in flight at once;
    out-of-range lanes are clamped (not masked) so every load is in bounds and only the store is masked.
    Offsets inside one image are int32 (the plan checks).
    """
    pid = tl.program_id(0)
    c = tl.program_id(1)
    b = tl.program_id(2)
    base = src_ptr + b.to(tl.int64) * s_b + c.to(tl.int64) * s_c
    dst_base = dst_ptr + (b * tl.num_programs(1) + c).to(tl.int64) * n_r * n_q
    rb = pid // n_qb
    r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    q = (pid - rb * n_qb) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    mask = (r[:, None] < n_r) & (q[None, :] < n_q)
    r = tl.minimum(r, n_r - 1)
    q = tl.minimum(q, n_q - 1)
    if FIXED:
        acc = tl.full((BLOCK_R, BLOCK_Q), 1 << 21, tl.int32)
    else:
        acc = tl.zeros((BLOCK_R, BLOCK_Q), tl.float64)
    if VERTICAL:
        start = tl.load(idx_ptr + _tap(r, 0, n_r, TAPS, TAP_MAJOR))
        col = q * s_q
    else:
        start = tl.load(idx_ptr + _tap(q, 0, n_q, TAPS, TAP_MAJOR))
        row = r * s_r
    for k in tl.static_range(TAPS):
        src_i = tl.minimum(start + k, n_in - 1)  # == the table's clamped index of tap k
        if VERTICAL:
            wk = tl.load(w_ptr + _tap(r, k, n_r, TAPS, TAP_MAJOR))[:, None]
            v = tl.load(base + ((src_i * s_r)[:, None] + col[None, :]))
        else:
            wk = tl.load(w_ptr + _tap(q, k, n_q, TAPS, TAP_MAJOR))[None, :]
            v = tl.load(base + (row[:, None] + (src_i * s_q)[None, :]))
        if FIXED:
            acc += v.to(tl.int32) * wk
        else:
            acc += v.to(tl.float32).to(tl.float64) * wk.to(tl.float64)
    dst = dst_base + (r[:, None] * n_q + q[None, :])
    if FIXED:
        tl.store(dst, tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.uint8), mask=mask)
    else:
        tl.store(dst, acc.to(tl.float32), mask=mask)


@_jit_sizes("rows_per_image", "first_row", "n_in", "n_out", "clip_frames")
def _patchify_kernel(src_ptr, out_ptr, idx_ptr, w_ptr, lut_ptr, norm_ptr, rows_ptr,
                     rows_per_image, first_row, blocks_w, n_in, n_out, clip_frames,
                     s_b, s_c, s_y, s_x,
                     SRC: tl.constexpr, AXIS: tl.constexpr, HAS_ROW_TABLE: tl.constexpr, VIDEO: tl.constexpr,
                     C: tl.constexpr, P: tl.constexpr, M: tl.constexpr, T: tl.constexpr,
                     TAPS: tl.constexpr, PP_PAD: tl.constexpr, BLOCK: tl.constexpr, TAP_MAJOR: tl.constexpr):
    """Last pass fused with normalisation, the patch permute, the temporal repeat and the output cast.

    Program ``(i, band, b)`` works on one band of ``P`` output rows of image ``b`` (the ``band``-th row of
    patches) as a ``[BLOCK, PP_PAD]`` tile laid out like the output: dim 0 runs over the band's (patch,
    channel) pairs, dim 1 is the offset ``py * P + px`` inside the patch (padded to a power of two). Each
    tile row is therefore one contiguous run of an output row, stored ``T`` times (columns ``(c, t, py, px)``)
    with vectorised stores, and what depends only on the row inside the patch (the taps of a vertical pass)
    is loaded once per tile column. Every divisor in the index math is a compile-time constant.

    ``AXIS`` picks the resampled side of ``src`` (none, rows or columns; ``n_in`` source samples, ``n_out``
    resampled ones, the filter tables laid out as ``TAP_MAJOR`` says, see ``_tap``), ``SRC``
    the arithmetic (see the module doc) and ``TAPS`` the unrolled filter length. Levels are normalised by
    gathering the ``[3, 256]`` level table ``lut_ptr``, float values with ``norm_ptr`` (see ``_normalize``).
    Image ``b``'s rows start at ``rows_ptr[b]`` (HAS_ROW_TABLE) or ``first_row + b * rows_per_image``, and
    each value is stored in all ``T`` temporal columns. VIDEO: ``b`` is a frame of clips of ``clip_frames``
    frames, stored only in its temporal slot of its frame block (see ``_frame_slots``).
    """
    pid = tl.program_id(0)
    band = tl.program_id(1)
    b = tl.program_id(2)
    PP: tl.constexpr = P * P
    MM: tl.constexpr = M * M
    n_pc = blocks_w * (M * C)              # (patch, channel) pairs in the band
    j = pid * BLOCK + tl.arange(0, BLOCK)  # dim 0
    j_ok = j < n_pc
    j = tl.minimum(j, n_pc - 1)
    patch_x = j // C
    c = j - patch_x * C
    wx = patch_x // M
    ix = patch_x - wx * M
    pp_raw = tl.arange(0, PP_PAD)          # dim 1 (unclamped for the stores, so they stay provably contiguous)
    pp_ok = pp_raw < PP
    pp = tl.minimum(pp_raw, PP - 1)
    py = pp // P
    px = pp - py * P
    wy = band // M
    iy = band - wy * M
    y = band * P + py                      # [PP_PAD]
    base = src_ptr + b.to(tl.int64) * s_b
    col0 = c * s_c + (patch_x * P) * s_x   # [BLOCK]
    if AXIS == 0:
        v = tl.load(base + (col0[:, None] + (y * s_y + px * s_x)[None, :]))
        if SRC == 2:
            val = v.to(tl.float32)
        else:
            level = v.to(tl.int32)
    else:
        if SRC == 0:
            acc = tl.full((BLOCK, PP_PAD), 1 << 21, tl.int32)
        else:
            acc = tl.zeros((BLOCK, PP_PAD), tl.float64)
        if AXIS == 1:
            start = tl.load(idx_ptr + _tap(y, 0, n_out, TAPS, TAP_MAJOR))  # [PP_PAD]
            off = col0[:, None] + (px * s_x)[None, :]
        else:
            x = (patch_x * P)[:, None] + px[None, :]                     # [BLOCK, PP_PAD]
            start = tl.load(idx_ptr + _tap(x, 0, n_out, TAPS, TAP_MAJOR))
            off = (c * s_c)[:, None] + (y * s_y)[None, :]
        for k in tl.static_range(TAPS):
            src_i = tl.minimum(start + k, n_in - 1)
            if AXIS == 1:
                wk = tl.load(w_ptr + _tap(y, k, n_out, TAPS, TAP_MAJOR))[None, :]
                v = tl.load(base + (off + (src_i * s_y)[None, :]))
            else:
                wk = tl.load(w_ptr + _tap(x, k, n_out, TAPS, TAP_MAJOR))
                v = tl.load(base + (off + src_i * s_x))
            if SRC == 0:
                acc += v.to(tl.int32) * wk
            else:
                acc += v.to(tl.float32).to(tl.float64) * wk.to(tl.float64)
        if SRC == 0:
            level = tl.minimum(tl.maximum(acc >> 22, 0), 255)
        elif SRC == 1:
            f = acc.to(tl.float32).to(tl.float64)
            f = tl.minimum(tl.maximum(f, 0.0), 255.0)
            r = tl.floor(f + 0.5)
            tie_odd = ((r - f) == 0.5) & ((r.to(tl.int32) % 2) == 1)
            level = tl.where(tie_odd, r - 1.0, r).to(tl.int32)
        else:
            val = acc.to(tl.float32)
    if SRC == 2:
        val = _normalize(val, norm_ptr, c[:, None])
    else:
        val = tl.load(lut_ptr + ((c * 256)[:, None] + level))
    img_row, lo, hi = _frame_slots(b, rows_ptr, rows_per_image, first_row, clip_frames, HAS_ROW_TABLE,
                                   VIDEO, T)
    out_row = img_row + (wy * blocks_w * MM + iy * M) + (wx * MM + ix)   # [BLOCK]
    dst = out_ptr + (out_row.to(tl.int64) * (C * T * PP) + c * (T * PP))[:, None] + pp_raw[None, :]
    val = _to_output(val, out_ptr)
    mask = j_ok[:, None] & pp_ok[None, :]
    for t in tl.static_range(T):
        if VIDEO:
            tl.store(dst + t * PP, val, mask=mask & (t >= lo) & (t < hi))
        else:
            tl.store(dst + t * PP, val, mask=mask)


@triton.jit
def _frame_slots(b, rows_ptr, rows_per_image, first_row, clip_frames, HAS_ROW_TABLE: tl.constexpr,
                 VIDEO: tl.constexpr, T: tl.constexpr):
    """``(first output row, first slot, end slot)`` of image or frame ``b`` of a group.

    Images: rows from ``rows_ptr[b]`` (HAS_ROW_TABLE) or ``first_row + b * rows_per_image``, all ``T``
    temporal slots. VIDEO: ``b`` is frame ``f`` of clip ``i`` of a group of clips of ``clip_frames`` frames
    each (``b = i * clip_frames + f``), clip ``i``'s ``ceil(clip_frames / T)`` frame blocks start at
    ``first_row + i * blocks * rows_per_image``; the frame goes to block ``f // T``, slot ``f % T``, and the
    clip's last frame also to the slots after it (transformers repeats it to fill the block)."""
    if VIDEO:
        i = b // clip_frames
        f = b - i * clip_frames
        g = f // T
        lo = f - g * T
        hi = tl.where(f == clip_frames - 1, T, lo + 1)
        blocks = (clip_frames + T - 1) // T
        img_row = first_row + (i * blocks + g).to(tl.int64) * rows_per_image
    else:
        lo = 0
        hi = T
        if HAS_ROW_TABLE:
            img_row = tl.load(rows_ptr + b)
        else:
            img_row = first_row + b.to(tl.int64) * rows_per_image
    return img_row, lo, hi


@triton.jit
def _prefetch(ptrs):
    """Ask for the lines at ``ptrs`` in L2 with PTX ``prefetch.global.L2``: no result, no effect on any
    value, just earlier traffic. CUDA only (the interpreter runs no PTX: callers gate it on a constexpr)."""
    tl.inline_asm_elementwise("prefetch.global.L2 [$1];\n\tmov.u32 $0, 0;", "=r,l", [ptrs], dtype=tl.int32,
                              is_pure=False, pack=1)


@_jit_sizes("n_r", "n_q", "n_qb")
def _rows_pass_kernel(src_ptr, dst_ptr, start_ptr, w_ptr,
                      n_r, n_q, n_qp, n_qb,
                      s_b, s_c, s_r, s_q,
                      TAPS: tl.constexpr, ROWS: tl.constexpr, BLOCK_Q: tl.constexpr, P: tl.constexpr,
                      PAD: tl.constexpr, TAP_MAJOR: tl.constexpr, PREFETCH: tl.constexpr):
    """Horizontal fixed-point pass (uint8 -> uint8 fixed point) over ``ROWS`` rows per program, with the taps of
    the program's ``BLOCK_Q`` columns loaded once and held in registers for all its rows (a row costs one
    byte load per tap and output, nothing else).

    The filter is given as windows (``resample_tables.window_taps``): output ``q`` reads the ``TAPS``
    consecutive source columns from ``start_ptr[q]``, all in bounds, with weights ``w_ptr`` (see ``_tap``).
    With no per-tap clamp, a row's taps are one address plus constant offsets (folded into the loads where
    the column stride is 1).

    ``dst`` is the contiguous patch-packed scratch ``[B, C, n_r, n_qp]`` of ``_patch_rows_kernel``: output
    column ``q`` lives at ``(q // P) * PAD + q % P``, so every run of ``P`` columns (one patch row) starts
    16-byte aligned (``n_q`` is a multiple of ``P``, ``n_qp = n_q / P * PAD``); the ``PAD - P`` slots after
    each run repeat its last column. Program ``(pid, c, b)`` covers column block ``pid % n_qb`` of rows
    ``(pid // n_qb) * ROWS ...``. ``PREFETCH > 0`` (CUDA only) asks for the source line of row
    ``r + PREFETCH`` in L2 while row ``r`` is computed, so the row loads, which wait behind the previous
    row's stores, find their lines on chip; values are unchanged.
    """
    pid = tl.program_id(0)
    c = tl.program_id(1)
    b = tl.program_id(2)
    base = src_ptr + b.to(tl.int64) * s_b + c.to(tl.int64) * s_c
    dst_img = dst_ptr + (b * tl.num_programs(1) + c).to(tl.int64) * n_r * n_qp
    rb = pid // n_qb
    qq = (pid - rb * n_qb) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    ok = qq < n_qp
    q = tl.minimum((qq // PAD) * P + tl.minimum(qq % PAD, P - 1), n_q - 1)
    at = tl.load(start_ptr + q) * s_q                      # the window's first byte in a row
    wts = ()
    for k in tl.static_range(TAPS):
        wts = wts + (tl.load(w_ptr + _tap(q, k, n_q, TAPS, TAP_MAJOR)),)
    dst = dst_img + qq
    r0 = rb * ROWS
    r_end = tl.minimum(r0 + ROWS, n_r)
    if PREFETCH > 0:  # the rows before the first one the loop asks for
        for j in tl.static_range(1, PREFETCH):
            _prefetch(base + tl.minimum(r0 + j, n_r - 1) * s_r + at)
    for r in range(r0, r_end):
        window = base + r * s_r + at
        if PREFETCH > 0:
            _prefetch(base + tl.minimum(r + PREFETCH, n_r - 1) * s_r + at)
        acc = tl.full((BLOCK_Q,), 1 << 21, tl.int32)
        for k in tl.static_range(TAPS):
            acc += tl.load(window + k * s_q).to(tl.int32) * wts[k]
        tl.store(dst + r * n_qp, tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.uint8), mask=ok)


@_jit_sizes("rows_per_image", "first_row", "n_in", "n_out", "clip_frames")
def _patch_rows_kernel(src_ptr, out_ptr, idx_ptr, w_ptr, lut_ptr, rows_ptr,
                       rows_per_image, first_row, blocks_w, n_in, n_out, clip_frames,
                       s_b, s_c, s_y,
                       HAS_ROW_TABLE: tl.constexpr, VIDEO: tl.constexpr, C: tl.constexpr, P: tl.constexpr,
                       M: tl.constexpr,
                       T: tl.constexpr, TAPS: tl.constexpr, PAD: tl.constexpr, BLOCK: tl.constexpr,
                       TAP_MAJOR: tl.constexpr):
    """Vertical fixed-point pass from the patch-packed uint8 scratch of ``_rows_pass_kernel``, fused with
    normalisation, the patch permute, the temporal repeat and the output cast.

    Program ``(i, band, b)`` makes ``BLOCK`` neighbouring whole patches of the ``band``-th row of patches
    of image ``b``, one channel at a time, as a ``[PAD, BLOCK, PAD]`` tile (row in the patch, patch, column
    in the patch; ``P`` padded to ``PAD``). A tap is one aligned ``PAD``-byte vector load per patch row (the
    scratch keeps every patch row 16-byte aligned), and neighbouring patches of a scratch row are
    neighbouring vectors, so a warp reads whole lines. For the stores the tile is turned to ``[BLOCK, PAD,
    PAD]``: a patch's ``P * P`` values of one channel are one contiguous run of its output row (columns
    ``(c, t, py, px)``), written ``T`` times at once. ``s_b``, ``s_c``, ``s_y`` are the scratch's strides
    (``s_y`` = the packed row length, a multiple of 16). Image ``b``'s rows and temporal slots are
    ``_frame_slots``' (HAS_ROW_TABLE, VIDEO and ``clip_frames`` as in ``_patchify_kernel``).
    """
    pid = tl.program_id(0)
    band = tl.program_id(1)
    b = tl.program_id(2)
    base = src_ptr + b.to(tl.int64) * s_b
    img_row, lo, hi = _frame_slots(b, rows_ptr, rows_per_image, first_row, clip_frames, HAS_ROW_TABLE,
                                   VIDEO, T)
    n_px = blocks_w * M
    patch_x = pid * BLOCK + tl.arange(0, BLOCK)
    x_ok = patch_x < n_px
    patch_x = tl.minimum(patch_x, n_px - 1)
    pad = tl.arange(0, PAD)
    py = tl.minimum(pad, P - 1)
    y = band * P + py                                                     # [PAD]
    start = tl.load(idx_ptr + _tap(y, 0, n_out, TAPS, TAP_MAJOR))
    rows = ()
    wts = ()
    for k in tl.static_range(TAPS):
        rows = rows + ((tl.minimum(start + k, n_in - 1) * s_y)[:, None, None],)   # the table's clamped index
        wts = wts + (tl.load(w_ptr + _tap(y, k, n_out, TAPS, TAP_MAJOR))[:, None, None],)
    at = (patch_x * PAD)[None, :, None] + pad[None, None, :]             # [1, BLOCK, PAD]
    _band_patches(base, s_c, rows, wts, at, out_ptr, img_row, lo, hi, band, patch_x, x_ok, blocks_w, lut_ptr,
                  VIDEO, C, P, M, T, TAPS, PAD, BLOCK)


@triton.jit
def _band_patches(src, s_c, rows, wts, at, out_ptr, img_row, lo, hi, band, patch_x, x_ok, blocks_w, lut_ptr,
                  VIDEO: tl.constexpr, C: tl.constexpr, P: tl.constexpr, M: tl.constexpr, T: tl.constexpr,
                  TAPS: tl.constexpr, PAD: tl.constexpr, BLOCK: tl.constexpr):
    """The fused tail of the rows pipeline for ``BLOCK`` patches (``patch_x [BLOCK]``, stored where ``x_ok``)
    of row of patches ``band`` of the image whose first output row is ``img_row``: per channel, the vertical
    fixed-point pass from the patch-packed uint8 ``src`` (channel stride ``s_c``; tap ``k`` of the band's rows at
    offset ``rows[k] [PAD, 1, 1]`` with weights ``wts[k]``; the patches' columns at ``at [1, BLOCK, PAD]``),
    then the level table, the output cast and each patch's run of its output row in every temporal slot
    (VIDEO: in slots ``lo <= t < hi``)."""
    PP: tl.constexpr = P * P
    MM: tl.constexpr = M * M
    pad = tl.arange(0, PAD)
    wx = patch_x // M
    ix = patch_x - wx * M
    wy = band // M
    iy = band - wy * M
    out_row = img_row + (wy * blocks_w * MM + iy * M) + (wx * MM + ix)   # [BLOCK]
    dst0 = out_ptr + ((out_row.to(tl.int64) * (C * T * PP))[:, None, None] + (pad * P)[None, :, None]
                      + pad[None, None, :])                               # [BLOCK, PAD (py), PAD (px)]
    mask = x_ok[:, None, None] & (pad < P)[None, :, None] & (pad < P)[None, None, :]
    for c in tl.static_range(C):
        acc = tl.full((PAD, BLOCK, PAD), 1 << 21, tl.int32)
        for k in tl.static_range(TAPS):
            acc += tl.load(src + (c * s_c + rows[k] + at)).to(tl.int32) * wts[k]
        level = tl.permute(tl.minimum(tl.maximum(acc >> 22, 0), 255), (1, 0, 2))
        val = _to_output(tl.load(lut_ptr + (c * 256 + level)), out_ptr)
        for t in tl.static_range(T):
            if VIDEO:
                tl.store(dst0 + (c * (T * PP) + t * PP), val, mask=mask & (t >= lo) & (t < hi))
            else:
                tl.store(dst0 + (c * (T * PP) + t * PP), val, mask=mask)
