"""Triton kernels (private). Launchers, strides and contracts live in ``ops.py``.

Arithmetic mirrors ``backends/torch_ref.py`` operation by operation so results are bit-identical:
* Pillow fixed point: int32 ``2**21 + sum(level * weight)``, arithmetic shift by 22, clamp to [0, 255].
* Float resampling: float64 products of float32 values (exact, so FMA contraction cannot change them) and a
  float64 running sum in tap order, rounded once to float32.
* Normalisation of uint8 levels: a gather from the ``[3, 256]`` table built by ``torch_ref.normalize``.
* Normalisation of float values: each float32 step (``* scale``, ``- mean``, ``/ std``) computed in float64
  and rounded back to float32, which equals the float32 operation (exact product/difference; the quotient
  is correctly rounded twice, which differs from single rounding only in astronomically rare ties).
"""

import triton
import triton.language as tl

SRC_U8_PIL = 0      # uint8 levels, Pillow fixed-point taps
SRC_U8_FLOAT = 1    # uint8 levels, float taps, rounded back to levels
SRC_FLOAT = 2       # float values, float taps, float normalisation

AXIS_NONE = 0
AXIS_ROWS = 1       # resample along y
AXIS_COLS = 2       # resample along x


@triton.jit
def _resample_pass_kernel(src_ptr, dst_ptr, idx_ptr, w_ptr,
                          n_r, n_q, taps,
                          s_b, s_c, s_r, s_q,
                          d_b, d_c,
                          VERTICAL: tl.constexpr, PIL: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_Q: tl.constexpr):
    """First separable pass: ``dst[b, c, r, q]`` (contiguous planes) from ``src`` (any strides).

    VERTICAL: ``r`` is resampled through the taps, ``q`` copied; else ``q`` is resampled.
    PIL: uint8 -> uint8 fixed point; else float -> float32 with a float64 sum.
    """
    pid = tl.program_id(0)
    c = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    n_qb = tl.cdiv(n_q, BLOCK_Q)
    r = (pid // n_qb) * BLOCK_R + tl.arange(0, BLOCK_R)
    q = (pid % n_qb) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    mask = (r[:, None] < n_r) & (q[None, :] < n_q)
    base = src_ptr + b * s_b + c * s_c
    if PIL:
        acc = tl.full((BLOCK_R, BLOCK_Q), 1 << 21, tl.int32)
    else:
        acc = tl.zeros((BLOCK_R, BLOCK_Q), tl.float64)
    for k in range(0, taps):
        if VERTICAL:
            tap_mask = r < n_r
            src_i = tl.load(idx_ptr + r * taps + k, mask=tap_mask, other=0).to(tl.int64)
            wk = tl.load(w_ptr + r * taps + k, mask=tap_mask, other=0)
            v = tl.load(base + src_i[:, None] * s_r + q[None, :].to(tl.int64) * s_q, mask=mask, other=0)
            wk = wk[:, None]
        else:
            tap_mask = q < n_q
            src_i = tl.load(idx_ptr + q * taps + k, mask=tap_mask, other=0).to(tl.int64)
            wk = tl.load(w_ptr + q * taps + k, mask=tap_mask, other=0)
            v = tl.load(base + r[:, None].to(tl.int64) * s_r + src_i[None, :] * s_q, mask=mask, other=0)
            wk = wk[None, :]
        if PIL:
            acc += v.to(tl.int32) * wk
        else:
            acc += v.to(tl.float32).to(tl.float64) * wk.to(tl.float64)
    dst = dst_ptr + b * d_b + c * d_c + r[:, None].to(tl.int64) * n_q + q[None, :]
    if PIL:
        tl.store(dst, tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.uint8), mask=mask)
    else:
        tl.store(dst, acc.to(tl.float32), mask=mask)


@triton.jit
def _patchify_kernel(src_ptr, out_ptr, idx_ptr, w_ptr, lut_ptr, norm_ptr, rows_ptr,
                     rows_per_image, first_row, blocks_w, taps,
                     s_b, s_c, s_y, s_x,
                     SRC: tl.constexpr, AXIS: tl.constexpr, HAS_ROW_TABLE: tl.constexpr,
                     C: tl.constexpr, P: tl.constexpr, M: tl.constexpr, T: tl.constexpr,
                     BLOCK: tl.constexpr):
    """Last pass fused with normalisation, the patch permute, the temporal repeat and the output cast.

    Program ``(i, b)`` writes flat elements ``i * BLOCK ...`` of image ``b``'s ``rows_per_image`` rows of
    ``C * P * P`` distinct values, each stored ``T`` times (columns ``(c, t, py, px)``), straight into
    ``out``. ``AXIS`` picks the resampled side of ``src`` (or none), ``SRC`` the arithmetic (see module doc).
    ``norm_ptr`` holds float64 ``[scale, mean0..2, std0..2]`` (float32 values) for ``SRC_FLOAT``.
    """
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    PP: tl.constexpr = P * P
    CPP: tl.constexpr = C * PP
    # int32 index math (an image has < 2**31 output values; 64-bit division is slow on GPUs)
    e = pid * BLOCK + tl.arange(0, BLOCK)
    mask = e < rows_per_image * CPP
    row = e // CPP
    rem = e - row * CPP
    c = rem // PP
    pp = rem - c * PP
    py = pp // P
    px = pp - py * P
    window = row // (M * M)
    within = row - window * (M * M)
    wy = window // blocks_w
    wx = window - wy * blocks_w
    y = (wy * M + within // M) * P + py
    x = (wx * M + within % M) * P + px
    base = src_ptr + b * s_b + c.to(tl.int64) * s_c
    if AXIS == 0:
        v = tl.load(base + (y * s_y + x * s_x), mask=mask, other=0)
        if SRC == 0:
            level = v.to(tl.int32)
        elif SRC == 1:
            level = v.to(tl.int32)
        else:
            val = v.to(tl.float32)
    else:
        if SRC == 0:
            acc = tl.full((BLOCK,), 1 << 21, tl.int32)
        else:
            acc = tl.zeros((BLOCK,), tl.float64)
        o = y if AXIS == 1 else x
        for k in range(0, taps):
            src_i = tl.load(idx_ptr + o * taps + k, mask=mask, other=0)
            wk = tl.load(w_ptr + o * taps + k, mask=mask, other=0)
            if AXIS == 1:
                v = tl.load(base + (src_i * s_y + x * s_x), mask=mask, other=0)
            else:
                v = tl.load(base + (y * s_y + src_i * s_x), mask=mask, other=0)
            if SRC == 0:
                acc += v.to(tl.int32) * wk
            else:
                acc += v.to(tl.float32).to(tl.float64) * wk.to(tl.float64)
        if SRC == 0:
            level = tl.minimum(tl.maximum(acc >> 22, 0), 255)
        elif SRC == 1:
            # round half to even of the float32 value (computed in float64 where x + 0.5 is exact)
            f = acc.to(tl.float32).to(tl.float64)
            f = tl.minimum(tl.maximum(f, 0.0), 255.0)
            r = tl.floor(f + 0.5)
            tie_odd = ((r - f) == 0.5) & ((r.to(tl.int32) % 2) == 1)
            level = tl.where(tie_odd, r - 1.0, r).to(tl.int32)
        else:
            val = acc.to(tl.float32)
    if SRC == 2:
        # float64 constants loaded as such: the compiler cannot narrow these steps back to (possibly
        # contracted or approximate) float32 arithmetic
        scale = tl.load(norm_ptr)
        mean = tl.load(norm_ptr + 1 + c, mask=mask, other=0.0)
        std = tl.load(norm_ptr + 4 + c, mask=mask, other=1.0)
        val = (val.to(tl.float64) * scale).to(tl.float32)
        val = (val.to(tl.float64) - mean).to(tl.float32)
        val = (val.to(tl.float64) / std).to(tl.float32)
    else:
        val = tl.load(lut_ptr + c * 256 + level, mask=mask, other=0.0)
    if HAS_ROW_TABLE:
        out_row = tl.load(rows_ptr + b) + row
    else:
        out_row = first_row + b * rows_per_image + row
    dst = out_ptr + out_row.to(tl.int64) * (C * T * PP) + c * (T * PP) + pp
    if out_ptr.dtype.element_ty == tl.bfloat16:
        # Round to nearest even on the bits, so the interpreter (which truncates) matches CUDA and torch.
        u = val.to(tl.int32, bitcast=True)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & -65536
        val = u.to(tl.float32, bitcast=True)
    val = val.to(out_ptr.dtype.element_ty)
    for t in tl.static_range(T):
        tl.store(dst + t * PP, val, mask=mask)
