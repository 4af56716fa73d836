"""Triton kernels (private). Launchers, strides and contracts live in ``ops.py``.

Arithmetic mirrors ``backends/torch_ref.py`` operation by operation so results are bit-identical:
* Pillow fixed point: int32 ``2**21 + sum(level * weight)``, arithmetic shift by 22, clamp to [0, 255].
* Float resampling: float64 products of float32 values (exact, so FMA contraction cannot change them) and a
  float64 running sum in tap order, rounded once to float32.
* Normalisation of uint8 levels: a gather from the ``[3, 256]`` table built by ``torch_ref.normalize``, or
  float64 steps rounded to float32 that the launcher has checked against that table entry by entry.
* Normalisation of float values: each float32 step (``* scale``, ``- mean``, ``/ std``) computed in float64
  and rounded back to float32, which equals the float32 operation (exact product/difference; the quotient
  is correctly rounded twice, which differs from single rounding only in astronomically rare ties).
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

SRC_U8_PIL = 0      # uint8 levels, Pillow fixed-point taps
SRC_U8_FLOAT = 1    # uint8 levels, float taps, rounded back to levels
SRC_FLOAT = 2       # float values, float taps, float normalisation

AXIS_NONE = 0
AXIS_ROWS = 1       # resample along y
AXIS_COLS = 2       # resample along x

# Per-image descriptor rows (int64) of the RAGGED launches. Offsets are in elements of the pointer they
# apply to (an image's source or tables may live in any allocation: the offset is taken from the base
# pointer the launch passes).
(PASS_SRC, PASS_DST, PASS_IDX_AT, PASS_W_AT, PASS_N_R, PASS_N_Q, PASS_N_IN, PASS_N_QB, PASS_S_C, PASS_S_R,
 PASS_S_Q) = (tl.constexpr(i) for i in range(11))
PASS_FIELDS = tl.constexpr(11)
(PATCH_SRC, PATCH_IDX_AT, PATCH_W_AT, PATCH_ROW, PATCH_BANDS, PATCH_BLOCKS_W, PATCH_N_IN, PATCH_N_OUT,
 PATCH_S_C, PATCH_S_Y, PATCH_S_X) = (tl.constexpr(i) for i in range(11))
PATCH_FIELDS = tl.constexpr(11)
# Descriptor rows of the rows pipeline's RAGGED launches: one flat grid over every image's programs; FIRST is
# the image's first program (ascending), found by a binary search. Offsets as above.
(RP_SRC, RP_DST, RP_IDX_AT, RP_W_AT, RP_N_R, RP_N_Q, RP_N_QP, RP_N_QB, RP_S_C, RP_S_R, RP_S_Q,
 RP_FIRST) = (tl.constexpr(i) for i in range(12))
RP_FIELDS = tl.constexpr(12)
(FP_SRC, FP_IDX_AT, FP_W_AT, FP_ROW, FP_BLOCKS_W, FP_N_IN, FP_N_OUT, FP_S_C, FP_S_Y, FP_FIRST) = \
    (tl.constexpr(i) for i in range(10))
FP_FIELDS = tl.constexpr(10)


@triton.jit
def _tap(o, k, n_out, TAPS: tl.constexpr, TAP_MAJOR: tl.constexpr):
    """Offset of tap ``k`` of output ``o`` in a filter table: ``[TAPS, n_out]`` (tap-major, so one tap of
    neighbouring outputs is contiguous) or ``[n_out, TAPS]``."""
    if TAP_MAJOR:
        return k * n_out + o
    else:
        return o * TAPS + k


@triton.jit
def _word(row_ptr, off):
    """The 32-bit word at byte offset ``off [R, Q]`` (4-aligned in absolute terms) of rows ``row_ptr [R]``."""
    return tl.load((row_ptr[:, None] + off).to(tl.pointer_type(tl.int32)))


@triton.jit
def _normalize(x, norm_ptr, c, FLOAT_INPUT: tl.constexpr):
    """Rescale and normalise ``x`` (uint8 levels as int32, or float32 values) of channel(s) ``c`` (a scalar
    or a tensor broadcasting against ``x``): float64 steps, each rounded to float32. The constants are
    loaded as float64, so the compiler cannot narrow the steps back to (possibly contracted or approximate)
    float32 arithmetic. Float input divides by the std (the true float32 quotient); levels multiply by the
    reciprocal, which the launcher has checked against the level table entry by entry."""
    x = (x.to(tl.float64) * tl.load(norm_ptr)).to(tl.float32)
    x = (x.to(tl.float64) - tl.load(norm_ptr + 1 + c)).to(tl.float32)
    if FLOAT_INPUT:
        return (x.to(tl.float64) / tl.load(norm_ptr + 4 + c)).to(tl.float32)
    else:
        return (x.to(tl.float64) * tl.load(norm_ptr + 7 + c)).to(tl.float32)


@triton.jit
def _to_output(val, out_ptr):
    """float32 ``val`` cast to ``out_ptr``'s element type (bfloat16: round to nearest even, by hand, so no
    conversion instruction of the card can differ from torch's)."""
    if out_ptr.dtype.element_ty == tl.bfloat16:
        u = val.to(tl.int32, bitcast=True)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & -65536
        val = u.to(tl.float32, bitcast=True)
    return val.to(out_ptr.dtype.element_ty)


@triton.jit
def _find_image(desc_ptr, pid, n_images, FIELDS: tl.constexpr, FIRST: tl.constexpr, STEPS: tl.constexpr):
    """The image whose programs include flat program ``pid``: the last row of the descriptor table whose
    ``FIRST`` field is <= ``pid`` (the field ascends; ``STEPS >= log2(n_images)`` halvings)."""
    lo = pid * 0
    hi = lo + n_images
    for _ in tl.static_range(STEPS):
        mid = (lo + hi) // 2
        go = tl.load(desc_ptr + mid * FIELDS + FIRST) <= pid
        lo = tl.where(go, mid, lo)
        hi = tl.where(go, hi, mid)
    return lo


@_jit_sizes("n_r", "n_q", "n_in", "n_qb")
def _resample_pass_kernel(src_ptr, dst_ptr, idx_ptr, w_ptr, desc_ptr,
                          n_r, n_q, n_in, n_qb,
                          s_b, s_c, s_r, s_q,
                          TAPS: tl.constexpr, VERTICAL: tl.constexpr, PIL: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_Q: tl.constexpr, TAP_MAJOR: tl.constexpr,
                          RAGGED: tl.constexpr, WORDS: tl.constexpr):
    """First separable pass: ``dst[b, c, r, q]`` (contiguous ``[B, C, n_r, n_q]``) from ``src`` (any strides).

    VERTICAL: ``r`` is resampled through the taps (``n_in`` source rows), ``q`` copied; else ``q`` is.
    PIL: uint8 -> uint8 fixed point; else float -> float32 with a float64 sum. TAP_MAJOR: layout of the
    filter tables (see ``_tap``). The ``TAPS`` taps are unrolled
    so their loads are all in flight at once; out-of-range lanes are clamped (not masked) so every load is
    in bounds and only the store is masked. Offsets inside one image are int32 (the launcher checks).

    RAGGED: images of different sizes in one launch. Image ``b``'s sizes, strides and element offsets (of
    its source from ``src_ptr``, its filter tables from ``idx_ptr`` / ``w_ptr``, its contiguous
    ``[C, n_r, n_q]`` result from ``dst_ptr``) come from row ``b`` of the int64 table ``desc_ptr`` (fields
    ``PASS_*``); the scalar arguments are unused, and programs past the image's tiles return at once.

    WORDS (horizontal Pillow pass on rows with unit stride; 0 = off): instead of one byte load per tap,
    each output loads the ``WORDS`` aligned 32-bit words that hold its taps (``WORDS = ceil((TAPS + 3) /
    4)``, at most 5) and takes the bytes out with shifts. Every word loaded holds at least one byte of the
    row (the last ones are clamped to the word of the row's last byte), so no load leaves the row's pages.
    """
    pid = tl.program_id(0)
    c = tl.program_id(1)
    b = tl.program_id(2)
    if RAGGED:
        d = desc_ptr + b * PASS_FIELDS
        n_qb = tl.load(d + PASS_N_QB).to(tl.int32)
        n_r = tl.load(d + PASS_N_R).to(tl.int32)
        if pid >= ((n_r + BLOCK_R - 1) // BLOCK_R) * n_qb:
            return
        n_q = tl.load(d + PASS_N_Q).to(tl.int32)
        n_in = tl.load(d + PASS_N_IN).to(tl.int32)
        s_r = tl.load(d + PASS_S_R).to(tl.int32)
        s_q = tl.load(d + PASS_S_Q).to(tl.int32)
        base = src_ptr + (tl.load(d + PASS_SRC) + c.to(tl.int64) * tl.load(d + PASS_S_C))
        idx_ptr += tl.load(d + PASS_IDX_AT)
        w_ptr += tl.load(d + PASS_W_AT)
        dst_base = dst_ptr + (tl.load(d + PASS_DST) + c.to(tl.int64) * n_r * n_q)
    else:
        base = src_ptr + b.to(tl.int64) * s_b + c.to(tl.int64) * s_c
        dst_base = dst_ptr + (b * tl.num_programs(1) + c).to(tl.int64) * n_r * n_q
    rb = pid // n_qb
    r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    q = (pid - rb * n_qb) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    mask = (r[:, None] < n_r) & (q[None, :] < n_q)
    r = tl.minimum(r, n_r - 1)
    q = tl.minimum(q, n_q - 1)
    if PIL:
        acc = tl.full((BLOCK_R, BLOCK_Q), 1 << 21, tl.int32)
    else:
        acc = tl.zeros((BLOCK_R, BLOCK_Q), tl.float64)
    if VERTICAL:
        start = tl.load(idx_ptr + _tap(r, 0, n_r, TAPS, TAP_MAJOR))
        col = q * s_q
    else:
        start = tl.load(idx_ptr + _tap(q, 0, n_q, TAPS, TAP_MAJOR))
        row = r * s_r
        if WORDS > 0:
            row_ptr = base + row                                                    # [BLOCK_R]
            mis = (row_ptr.to(tl.int64, bitcast=True) & 3).to(tl.int32)            # address mod 4
            ws = ((start[None, :] + mis[:, None]) & -4) - mis[:, None]             # aligned, <= start
            wlast = ((((n_in - 1) + mis) & -4) - mis)[:, None]                     # word of the last byte
            w0 = _word(row_ptr, ws)
            if WORDS > 1:
                w1 = _word(row_ptr, tl.minimum(ws + 4, wlast))
            if WORDS > 2:
                w2 = _word(row_ptr, tl.minimum(ws + 8, wlast))
            if WORDS > 3:
                w3 = _word(row_ptr, tl.minimum(ws + 12, wlast))
            if WORDS > 4:
                w4 = _word(row_ptr, tl.minimum(ws + 16, wlast))
    for k in tl.static_range(TAPS):
        src_i = tl.minimum(start + k, n_in - 1)  # == the table's clamped index of tap k
        if VERTICAL:
            wk = tl.load(w_ptr + _tap(r, k, n_r, TAPS, TAP_MAJOR))[:, None]
            v = tl.load(base + ((src_i * s_r)[:, None] + col[None, :]))
        else:
            wk = tl.load(w_ptr + _tap(q, k, n_q, TAPS, TAP_MAJOR))[None, :]
            if WORDS > 0:
                at = src_i[None, :] - ws                                            # byte in the words
                word = w0
                if WORDS > 1:
                    word = tl.where((at >> 2) == 1, w1, word)
                if WORDS > 2:
                    word = tl.where((at >> 2) == 2, w2, word)
                if WORDS > 3:
                    word = tl.where((at >> 2) == 3, w3, word)
                if WORDS > 4:
                    word = tl.where((at >> 2) == 4, w4, word)
                v = (word >> ((at & 3) * 8)) & 255
            else:
                v = tl.load(base + (row[:, None] + (src_i * s_q)[None, :]))
        if PIL:
            acc += v.to(tl.int32) * wk
        else:
            acc += v.to(tl.float32).to(tl.float64) * wk.to(tl.float64)
    dst = dst_base + (r[:, None] * n_q + q[None, :])
    if PIL:
        tl.store(dst, tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.uint8), mask=mask)
    else:
        tl.store(dst, acc.to(tl.float32), mask=mask)


@_jit_sizes("rows_per_image", "first_row", "n_in", "n_out")
def _patchify_kernel(src_ptr, out_ptr, idx_ptr, w_ptr, lut_ptr, norm_ptr, rows_ptr, desc_ptr,
                     rows_per_image, first_row, blocks_w, n_in, n_out,
                     s_b, s_c, s_y, s_x,
                     SRC: tl.constexpr, AXIS: tl.constexpr, HAS_ROW_TABLE: tl.constexpr,
                     C: tl.constexpr, P: tl.constexpr, M: tl.constexpr, T: tl.constexpr,
                     TAPS: tl.constexpr, PP_PAD: tl.constexpr, BLOCK: tl.constexpr, ARITH: tl.constexpr,
                     TAP_MAJOR: tl.constexpr, RAGGED: tl.constexpr):
    """Last pass fused with normalisation, the patch permute, the temporal repeat and the output cast.

    Program ``(i, band, b)`` works on one band of ``P`` output rows of image ``b`` (the ``band``-th row of
    patches) as a ``[BLOCK, PP_PAD]`` tile laid out like the output: dim 0 runs over the band's (patch,
    channel) pairs, dim 1 is the offset ``py * P + px`` inside the patch (padded to a power of two). Each
    tile row is therefore one contiguous run of an output row, stored ``T`` times (columns ``(c, t, py, px)``)
    with vectorised stores, and what depends only on the row inside the patch (the taps of a vertical pass)
    is loaded once per tile column. Every divisor in the index math is a compile-time constant.

    ``AXIS`` picks the resampled side of ``src`` (none, rows or columns; ``n_in`` source samples, ``n_out``
    resampled ones, the filter tables laid out as ``TAP_MAJOR`` says, see ``_tap``), ``SRC``
    the arithmetic (see the module doc) and ``TAPS`` the unrolled filter length. Levels are normalised
    either by gathering the ``[3, 256]`` level table or, with ``ARITH``, by float64 steps each rounded to
    float32 (``level * scale``, ``- mean``, ``* (1 / std)``), which the launcher selects only where it
    reproduces the table on all 768 entries. ``norm_ptr`` holds float64 ``[scale, mean0..2, std0..2,
    1/std0..2]``.

    RAGGED: images of different sizes in one launch; image ``b``'s first output row, band count, width in
    merge windows, sizes, strides and element offsets (of its source from ``src_ptr`` and of its filter
    tables) come from row ``b`` of the int64 table ``desc_ptr`` (fields ``PATCH_*``), and programs past
    the image's bands or tiles return at once.
    """
    pid = tl.program_id(0)
    band = tl.program_id(1)
    b = tl.program_id(2)
    if RAGGED:
        d = desc_ptr + b * PATCH_FIELDS
        blocks_w = tl.load(d + PATCH_BLOCKS_W).to(tl.int32)
        if (band >= tl.load(d + PATCH_BANDS)) | (pid * BLOCK >= blocks_w * (M * C)):
            return
        n_in = tl.load(d + PATCH_N_IN).to(tl.int32)
        n_out = tl.load(d + PATCH_N_OUT).to(tl.int32)
        s_c = tl.load(d + PATCH_S_C).to(tl.int32)
        s_y = tl.load(d + PATCH_S_Y).to(tl.int32)
        s_x = tl.load(d + PATCH_S_X).to(tl.int32)
        base = src_ptr + tl.load(d + PATCH_SRC)
        idx_ptr += tl.load(d + PATCH_IDX_AT)
        w_ptr += tl.load(d + PATCH_W_AT)
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
    if not RAGGED:
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
        val = _normalize(val, norm_ptr, c[:, None], True)
    elif ARITH:
        val = _normalize(level, norm_ptr, c[:, None], False)
    else:
        val = tl.load(lut_ptr + ((c * 256)[:, None] + level))
    if RAGGED:
        img_row = tl.load(d + PATCH_ROW)
    elif HAS_ROW_TABLE:
        img_row = tl.load(rows_ptr + b)
    else:
        img_row = first_row + b.to(tl.int64) * rows_per_image
    out_row = img_row + (wy * blocks_w * MM + iy * M) + (wx * MM + ix)   # [BLOCK]
    dst = out_ptr + (out_row.to(tl.int64) * (C * T * PP) + c * (T * PP))[:, None] + pp_raw[None, :]
    val = _to_output(val, out_ptr)
    mask = j_ok[:, None] & pp_ok[None, :]
    for t in tl.static_range(T):
        tl.store(dst + t * PP, val, mask=mask)


@triton.jit
def _prefetch(ptrs, LEVEL: tl.constexpr):
    """Ask for the lines at ``ptrs`` in L2 (``LEVEL`` 2) or in this SM's L1 (``LEVEL`` 1) with PTX
    ``prefetch.global``: no result, no effect on any value, just earlier traffic. CUDA only (the interpreter
    runs no PTX: callers gate it on a constexpr)."""
    if LEVEL == 1:
        tl.inline_asm_elementwise("prefetch.global.L1 [$1];\n\tmov.u32 $0, 0;", "=r,l", [ptrs], dtype=tl.int32,
                                  is_pure=False, pack=1)
    else:
        tl.inline_asm_elementwise("prefetch.global.L2 [$1];\n\tmov.u32 $0, 0;", "=r,l", [ptrs], dtype=tl.int32,
                                  is_pure=False, pack=1)


@_jit_sizes("n_r", "n_q", "n_qb", "n_images")
def _rows_pass_kernel(src_ptr, dst_ptr, start_ptr, w_ptr, desc_ptr,
                      n_r, n_q, n_qp, n_qb, n_images,
                      s_b, s_c, s_r, s_q,
                      TAPS: tl.constexpr, ROWS: tl.constexpr, BLOCK_Q: tl.constexpr, P: tl.constexpr,
                      PAD: tl.constexpr, TAP_MAJOR: tl.constexpr, UNROLL: tl.constexpr, RAGGED: tl.constexpr,
                      STEPS: tl.constexpr, PREFETCH: tl.constexpr, PREFETCH_LEVEL: tl.constexpr):
    """Horizontal Pillow pass (uint8 -> uint8 fixed point) over ``ROWS`` rows per program, with the taps of
    the program's ``BLOCK_Q`` columns loaded once and held in registers for all its rows (a row costs one
    byte load per tap and output, nothing else).

    The filter is given as windows (``resample_tables.pil_window_taps``): output ``q`` reads the ``TAPS``
    consecutive source columns from ``start_ptr[q]``, all in bounds, with weights ``w_ptr`` (see ``_tap``).
    With no per-tap clamp, a row's taps are one address plus constant offsets (folded into the loads where
    the column stride is 1).

    ``dst`` is the contiguous patch-packed scratch ``[B, C, n_r, n_qp]`` of ``_patch_rows_kernel``: output
    column ``q`` lives at ``(q // P) * PAD + q % P``, so every run of ``P`` columns (one patch row) starts
    16-byte aligned (``n_q`` is a multiple of ``P``, ``n_qp = n_q / P * PAD``); the ``PAD - P`` slots after
    each run repeat its last column.
    Program ``(pid, c, b)`` covers column block ``pid % n_qb`` of rows ``(pid // n_qb) * ROWS ...``,
    ``UNROLL`` rows per step, whose loads all come before the step's stores in program order (ptxas may
    still start the arithmetic, and so wait, after the first few). ``PREFETCH > 0`` (CUDA only) asks for
    the source line of row ``r + PREFETCH`` while row ``r`` is computed, in L2 or L1 (``PREFETCH_LEVEL``),
    so the row loads, which wait behind the previous row's stores, find their lines on chip; values are
    unchanged.

    RAGGED: ``n_images`` images of any sizes on one flat grid. Image ``i``'s sizes, strides and element
    offsets (of its source from ``src_ptr``, its tables from ``start_ptr`` / ``w_ptr``, its ``[C, n_r,
    n_qp]`` result from ``dst_ptr``) and its first program come from row ``i`` of the int64 table
    ``desc_ptr`` (fields ``RP_*``); the scalar size and stride arguments are unused.
    """
    pid = tl.program_id(0)
    if RAGGED:
        d = desc_ptr + _find_image(desc_ptr, pid, n_images, RP_FIELDS, RP_FIRST, STEPS) * RP_FIELDS
        pid = pid - tl.load(d + RP_FIRST).to(tl.int32)
        n_r = tl.load(d + RP_N_R).to(tl.int32)
        n_q = tl.load(d + RP_N_Q).to(tl.int32)
        n_qp = tl.load(d + RP_N_QP).to(tl.int32)
        n_qb = tl.load(d + RP_N_QB).to(tl.int32)
        s_r = tl.load(d + RP_S_R).to(tl.int32)
        s_q = tl.load(d + RP_S_Q).to(tl.int32)
        per_c = ((n_r + ROWS - 1) // ROWS) * n_qb
        c = pid // per_c
        pid = pid - c * per_c
        base = src_ptr + (tl.load(d + RP_SRC) + c.to(tl.int64) * tl.load(d + RP_S_C))
        start_ptr += tl.load(d + RP_IDX_AT)
        w_ptr += tl.load(d + RP_W_AT)
        dst_img = dst_ptr + (tl.load(d + RP_DST) + c.to(tl.int64) * n_r * n_qp)
    else:
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
            _prefetch(base + tl.minimum(r0 + j, n_r - 1) * s_r + at, PREFETCH_LEVEL)
    if UNROLL == 1:
        for r in range(r0, r_end):
            window = base + r * s_r + at
            if PREFETCH > 0:
                _prefetch(base + tl.minimum(r + PREFETCH, n_r - 1) * s_r + at, PREFETCH_LEVEL)
            acc = tl.full((BLOCK_Q,), 1 << 21, tl.int32)
            for k in tl.static_range(TAPS):
                acc += tl.load(window + k * s_q).to(tl.int32) * wts[k]
            tl.store(dst + r * n_qp, tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.uint8), mask=ok)
    else:
        # UNROLL rows per step as one [UNROLL, BLOCK_Q] tile: all their tap loads come before the step's
        # stores, and the tile's layout gives each thread neighbouring columns of one row, so a warp's load
        # spans several sectors
        ru = tl.arange(0, UNROLL)
        for r in range(r0, r_end, UNROLL):
            rows = tl.minimum(r + ru, n_r - 1)                   # clamped: loads stay in the image
            window = base + (rows * s_r)[:, None] + at[None, :]
            if PREFETCH > 0:
                _prefetch(base + (tl.minimum(rows + PREFETCH, n_r - 1) * s_r)[:, None] + at[None, :],
                          PREFETCH_LEVEL)
            acc = tl.full((UNROLL, BLOCK_Q), 1 << 21, tl.int32)
            for k in tl.static_range(TAPS):
                acc += tl.load(window + k * s_q).to(tl.int32) * wts[k][None, :]
            tl.store(dst + (rows * n_qp)[:, None], tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.uint8),
                     mask=((r + ru) < r_end)[:, None] & ok[None, :])


@_jit_sizes("rows_per_image", "first_row", "n_in", "n_out", "n_images")
def _patch_rows_kernel(src_ptr, out_ptr, idx_ptr, w_ptr, lut_ptr, norm_ptr, rows_ptr, desc_ptr,
                       rows_per_image, first_row, blocks_w, n_in, n_out, n_images,
                       s_b, s_c, s_y,
                       HAS_ROW_TABLE: tl.constexpr, C: tl.constexpr, P: tl.constexpr, M: tl.constexpr,
                       T: tl.constexpr, TAPS: tl.constexpr, PAD: tl.constexpr, BLOCK: tl.constexpr,
                       ARITH: tl.constexpr, TAP_MAJOR: tl.constexpr, RAGGED: tl.constexpr, STEPS: tl.constexpr):
    """Vertical Pillow pass from the patch-packed uint8 scratch of ``_rows_pass_kernel``, fused with
    normalisation, the patch permute, the temporal repeat and the output cast.

    Program ``(i, band, b)`` makes ``BLOCK`` neighbouring whole patches of the ``band``-th row of patches
    of image ``b``, one channel at a time, as a ``[PAD, BLOCK, PAD]`` tile (row in the patch, patch, column
    in the patch; ``P`` padded to ``PAD``). A tap is one aligned ``PAD``-byte vector load per patch row (the
    scratch keeps every patch row 16-byte aligned), and neighbouring patches of a scratch row are
    neighbouring vectors, so a warp reads whole lines. For the stores the tile is turned to ``[BLOCK, PAD,
    PAD]``: a patch's ``P * P`` values of one channel are one contiguous run of its output row (columns
    ``(c, t, py, px)``), written ``T`` times at once. ``s_b``, ``s_c``, ``s_y`` are the scratch's strides
    (``s_y`` = the packed row length, a multiple of 16).

    RAGGED: ``n_images`` images of any sizes on one flat grid. Image ``i``'s first output row, width in
    merge windows, sizes, scratch strides and element offsets (of its scratch from ``src_ptr`` and of its
    tables) and its first program come from row ``i`` of the int64 table ``desc_ptr`` (fields ``FP_*``).
    """
    pid = tl.program_id(0)
    if RAGGED:
        d = desc_ptr + _find_image(desc_ptr, pid, n_images, FP_FIELDS, FP_FIRST, STEPS) * FP_FIELDS
        pid = pid - tl.load(d + FP_FIRST).to(tl.int32)
        blocks_w = tl.load(d + FP_BLOCKS_W).to(tl.int32)
        n_pb = (blocks_w * M + BLOCK - 1) // BLOCK
        band = pid // n_pb
        pid = pid - band * n_pb
        n_in = tl.load(d + FP_N_IN).to(tl.int32)
        n_out = tl.load(d + FP_N_OUT).to(tl.int32)
        s_c = tl.load(d + FP_S_C).to(tl.int32)
        s_y = tl.load(d + FP_S_Y).to(tl.int32)
        base = src_ptr + tl.load(d + FP_SRC)
        idx_ptr += tl.load(d + FP_IDX_AT)
        w_ptr += tl.load(d + FP_W_AT)
        img_row = tl.load(d + FP_ROW)
    else:
        band = tl.program_id(1)
        b = tl.program_id(2)
        base = src_ptr + b.to(tl.int64) * s_b
        if HAS_ROW_TABLE:
            img_row = tl.load(rows_ptr + b)
        else:
            img_row = first_row + b.to(tl.int64) * rows_per_image
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
    _band_patches(base, s_c, rows, wts, at, out_ptr, img_row, band, patch_x, x_ok, blocks_w, lut_ptr, norm_ptr,
                  C, P, M, T, TAPS, PAD, BLOCK, ARITH)


@triton.jit
def _band_patches(src, s_c, rows, wts, at, out_ptr, img_row, band, patch_x, x_ok, blocks_w, lut_ptr, norm_ptr,
                  C: tl.constexpr, P: tl.constexpr, M: tl.constexpr, T: tl.constexpr, TAPS: tl.constexpr,
                  PAD: tl.constexpr, BLOCK: tl.constexpr, ARITH: tl.constexpr):
    """The fused tail of the rows pipeline for ``BLOCK`` patches (``patch_x [BLOCK]``, stored where ``x_ok``)
    of row of patches ``band`` of the image whose first output row is ``img_row``: per channel, the vertical
    Pillow pass from the patch-packed uint8 ``src`` (channel stride ``s_c``; tap ``k`` of the band's rows at
    offset ``rows[k] [PAD, 1, 1]`` with weights ``wts[k]``; the patches' columns at ``at [1, BLOCK, PAD]``),
    then normalisation (see ``_patch_rows_kernel``), the output cast and the ``T`` copies of each patch's
    run of its output row."""
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
        if ARITH:
            val = _normalize(level, norm_ptr, c, False)
        else:
            val = tl.load(lut_ptr + (c * 256 + level))
        val = _to_output(val, out_ptr)
        for t in tl.static_range(T):
            tl.store(dst0 + (c * (T * PP) + t * PP), val, mask=mask)
