"""Pure-torch reference backend: the CPU/CUDA fallback, the differentiable path, and the oracle the Triton
kernels are tested against.

Every function works on batches ``[B, C, H, W]`` of any strides and any device.
"""

from __future__ import annotations

import torch

from ..resample_tables import PRECISION_BITS, device_taps
from ..sizing import separable_passes

_ROUND_HALF = 1 << (PRECISION_BITS - 1)


# Largest slice (elements of the source) one pass widens to int32/float64 at once: keeps the temporaries of
# a huge image (16384 x 16384) to a few hundred MB instead of several times the image.
CHUNK_ELEMENTS = 1 << 24


def _in_slices(x: torch.Tensor, axis: int, out_size: int, one_pass) -> torch.Tensor:
    """Run ``one_pass`` on slices of ``x`` along the side that is *not* resampled (each slice is exact on
    its own) and assemble the result, so temporaries stay bounded by :data:`CHUNK_ELEMENTS`."""
    if x.numel() <= CHUNK_ELEMENTS or x.requires_grad:
        return one_pass(x)
    other = -1 if axis == -2 else -2
    per_line = x.numel() // x.shape[other]
    step = max(1, CHUNK_ELEMENTS // per_line)
    shape = list(x.shape)
    shape[axis] = out_size
    out = None
    for lo in range(0, x.shape[other], step):
        part = one_pass(x.narrow(other, lo, min(step, x.shape[other] - lo)))
        if out is None:
            out = torch.empty(shape, dtype=part.dtype, device=x.device)
        out.narrow(other, lo, part.shape[other]).copy_(part)
    return out


def resample_axis_pil(x: torch.Tensor, out_size: int, axis: int) -> torch.Tensor:
    """One Pillow fixed-point BICUBIC pass along ``axis`` (-2 rows / -1 columns).

    ``[B, C, H, W] uint8 -> uint8`` with the resampled side replaced by ``out_size``; int32 arithmetic,
    bit-exact with Pillow's ``ImagingResample{Horizontal,Vertical}_8bpc``. Large images go in slices.
    """
    idx, w = device_taps(x.shape[axis], out_size, "pil", x.device)
    idx = idx.long()
    shape = [1] * x.dim()
    shape[axis] = out_size

    def one_pass(part: torch.Tensor) -> torch.Tensor:
        src = part.to(torch.int32)
        acc = None
        for k in range(idx.shape[1]):
            term = src.index_select(axis, idx[:, k]).mul_(w[:, k].view(shape))
            acc = term.add_(_ROUND_HALF) if acc is None else acc.add_(term)
        return (acc >> PRECISION_BITS).clamp_(0, 255).to(torch.uint8)

    return _in_slices(x, axis, out_size, one_pass)


def resample_axis_float(x: torch.Tensor, out_size: int, axis: int) -> torch.Tensor:
    """One antialiased bicubic pass along ``axis`` on float data.

    Products and the running sum are float64 (products of float32 values are exact there, so a fused
    multiply-add gives the same bits, which makes the Triton kernel match this bit for bit); the result is
    rounded once to float32 (float64 stays float64, for gradcheck). Differentiable; large images without
    autograd history go in slices.
    """
    idx, w = device_taps(x.shape[axis], out_size, "float", x.device)
    idx = idx.long()
    shape = [1] * x.dim()
    shape[axis] = out_size
    wd = w.to(torch.float64)
    out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32

    def one_pass(part: torch.Tensor) -> torch.Tensor:
        src = part.to(torch.float64)
        acc = None
        for k in range(idx.shape[1]):
            term = src.index_select(axis, idx[:, k]) * wd[:, k].view(shape)
            acc = term if acc is None else acc + term
        return acc.to(out_dtype)

    return _in_slices(x, axis, out_size, one_pass)


def resize_pil(x: torch.Tensor, size: tuple[int, int], vertical_first: bool) -> torch.Tensor:
    """Pillow BICUBIC resize of ``[B, C, H, W] uint8`` to ``size = (h, w)``: two separable fixed-point passes
    with a uint8 intermediate, in the given order; a side that keeps its size is not resampled."""
    for vertical, n in separable_passes(x.shape[-2], x.shape[-1], *size, vertical_first):
        x = resample_axis_pil(x, n, -2 if vertical else -1)
    return x


def resize_float(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float antialiased bicubic resize (``F.interpolate(mode="bicubic", antialias=True)`` semantics),
    horizontal pass first with a float32 intermediate. Float in, float out (float64 stays float64)."""
    for vertical, n in separable_passes(x.shape[-2], x.shape[-1], *size, vertical_first=False):
        x = resample_axis_float(x, n, -2 if vertical else -1)
    return x


def round_to_levels(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 255] and round half to even, as torchvision does after a float resize of uint8."""
    return x.clamp(0, 255).round().to(torch.uint8)


def normalize(x: torch.Tensor, scale: float | None, mean: torch.Tensor | None, std: torch.Tensor | None
              ) -> torch.Tensor:
    """``((x * scale) - mean) / std`` per channel; ``None`` skips a step. ``x: [B, 3, H, W]``,
    ``mean``/``std``: ``[3]``. Returns float32 (float64 stays float64, without intermediate rounding).

    Each float32 step is evaluated in float64 and rounded to float32, which is the float32 operation's
    result (exact product of float32 values, exact difference, correctly rounded quotient up to a double
    rounding that practically never occurs) but independent of how a device fuses or approximates float32
    arithmetic, so CPU, CUDA and the Triton kernel (which does the same) agree bit for bit. uint8 levels
    are normalised through a 256-entry table built with this function.
    """
    if x.dtype == torch.float64:
        y = x
        if scale is not None:
            y = y * scale
        if mean is not None:
            y = y - mean.to(y.dtype).view(1, -1, 1, 1)
        if std is not None:
            y = y / std.to(y.dtype).view(1, -1, 1, 1)
        return y
    y = x.to(torch.float32)
    if scale is not None:
        y = (y.double() * float(torch.tensor(scale, dtype=torch.float32))).float()  # scale as float32
    if mean is not None:
        y = (y.double() - mean.double().view(1, -1, 1, 1)).float()
    if std is not None:
        y = (y.double() / std.double().view(1, -1, 1, 1)).float()
    return y


def patchify_into(out: torch.Tensor, x: torch.Tensor, patch_size: int, merge_size: int,
                  temporal_patch_size: int) -> None:
    """Write ``x: [B, C, H, W]`` (float) into ``out: [B * gh * gw, C * T * P * P]`` in Qwen-VL order.

    Rows go merge window by merge window (every ``merge_size**2`` consecutive rows form one window), columns
    are ``(C, T, P, P)`` with the single frame repeated ``T`` times; cast to ``out.dtype`` once.
    """
    b, c, h, w = x.shape
    p, m, t = patch_size, merge_size, temporal_patch_size
    gh, gw = h // p, w // p
    view = x.reshape(b, c, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
    target = out.view(b, gh // m, gw // m, m, m, c, t, p, p)
    target.copy_(view.unsqueeze(6).expand(b, gh // m, gw // m, m, m, c, t, p, p))


def patchify(x: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int,
             dtype: torch.dtype) -> torch.Tensor:
    """Differentiable form of :func:`patchify_into`: returns ``[B * gh * gw, C * T * P * P]``."""
    b, c, h, w = x.shape
    p, m, t = patch_size, merge_size, temporal_patch_size
    gh, gw = h // p, w // p
    view = x.reshape(b, c, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
    view = view.unsqueeze(6).expand(b, gh // m, gw // m, m, m, c, t, p, p)
    return view.reshape(b * gh * gw, c * t * p * p).to(dtype)


def patchify_video_into(out: torch.Tensor, x: torch.Tensor, patch_size: int, merge_size: int,
                        temporal_patch_size: int) -> None:
    """Write one clip ``x: [T, C, H, W]`` (float) into ``out: [ceil(T / Tp) * gh * gw, C * Tp * P * P]``.

    Unlike :func:`patchify_into`, the ``Tp`` columns of a row hold ``Tp`` consecutive real frames: row block
    ``g`` reads frames ``g * Tp .. g * Tp + Tp - 1``. A last, incomplete block repeats the clip's last frame
    (transformers' video processors pad that way). Rows go frame block by frame block, then merge window by
    merge window, as for images; cast to ``out.dtype`` once. Works through autograd (``copy_`` into views).
    """
    n, c, h, w = x.shape
    p, m, tp = patch_size, merge_size, temporal_patch_size
    gh, gw = h // p, w // p
    rows = gh * gw
    full = n // tp

    def write(dst_rows: torch.Tensor, frames: torch.Tensor, blocks: int) -> None:
        src = frames.reshape(blocks, tp, c, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        dst_rows.view(blocks, gh // m, gw // m, m, m, c, tp, p, p).copy_(src)

    if full:
        write(out[:full * rows], x[:full * tp], full)
    rest = n - full * tp
    if rest:
        # Only the last block is padded, so only its <= Tp frames are gathered (the rest stays a view).
        tail = x[full * tp:]
        tail = torch.cat([tail, tail[-1:].expand(tp - rest, c, h, w)], 0)
        write(out[full * rows:(full + 1) * rows], tail, 1)
