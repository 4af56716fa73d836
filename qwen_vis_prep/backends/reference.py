"""The reference backend: pure torch on any device. It is the oracle the Pillow and Triton backends are tested
against, the fallback where they cannot run, and the differentiable path (``resize_mode="float"``). Both
fixed-point modes (``"pil"``, ``"torch-uint8"``) run the same integer passes; only the tables and the pass
order differ (``resample_tables``, ``sizing.vertical_pass_first``).

Every function works on batches ``[B, C, H, W]`` of any strides and any device.
"""

from __future__ import annotations

import torch

from ..config import VisionPreprocessConfig
from ..contract import ImageBatch, Plan, VideoBatch
from ..layout import patchify, patchify_into, patchify_video_into
from ..resample_tables import DEVICE_TABLES, FIXED_POINT_MODES, PRECISION_BITS, device_taps, upload_table
from ..sizing import separable_passes, vertical_pass_first

NAME = "reference"

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


def resample_axis_fixed(x: torch.Tensor, out_size: int, axis: int, mode: str = "pil") -> torch.Tensor:
    """One fixed-point BICUBIC pass of ``mode`` along ``axis`` (-2 rows / -1 columns).

    ``[B, C, H, W] uint8 -> uint8`` with the resampled side replaced by ``out_size``; int32 arithmetic,
    bit-exact with Pillow's ``ImagingResample{Horizontal,Vertical}_8bpc`` (``"pil"``) or one pass of torch's
    CPU uint8 antialiased kernel (``"torch-uint8"``). Large images go in slices.
    """
    idx, w = device_taps(x.shape[axis], out_size, mode, x.device)
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


def resize_fixed(x: torch.Tensor, size: tuple[int, int], vertical_first: bool, mode: str = "pil"
                 ) -> torch.Tensor:
    """Fixed-point BICUBIC resize of ``[B, C, H, W] uint8`` to ``size = (h, w)`` in ``mode``: two separable
    passes with a uint8 intermediate, in the given order; a side that keeps its size is not resampled."""
    for vertical, n in separable_passes(x.shape[-2], x.shape[-1], *size, vertical_first):
        x = resample_axis_fixed(x, n, -2 if vertical else -1, mode)
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


# ------------------------------------------------------------------------------ values and constants

def to_levels(x: torch.Tensor, input_range: str) -> torch.Tensor:
    """uint8 levels of an image: uint8 passes through; floats (scaled by 255 for ``"0-1"``) are clamped to
    [0, 255] and rounded half to even."""
    if x.dtype == torch.uint8:
        return x
    if input_range == "0-1":  # scale in float32 at least: half precision would misplace ~5% of levels
        y = (x.to(torch.float64 if x.dtype == torch.float64 else torch.float32) * 255.0).clamp_(0, 255)
    else:
        y = x.clamp(0, 255)
    return y.round_().to(torch.uint8)  # in place on our own copy: one full-size float temporary, not two


def to_float_scale(x: torch.Tensor, input_range: str) -> torch.Tensor:
    """Float image on the 0..255 scale (float64 stays float64, others become float32)."""
    y = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return y * 255.0 if (input_range == "0-1" and x.is_floating_point()) else y


def normalize_constants(config: VisionPreprocessConfig, device: torch.device
                        ) -> tuple[float | None, torch.Tensor | None, torch.Tensor | None]:
    """``(scale, mean, std)`` of :func:`normalize` for ``config``, cached on ``device``."""
    def make():
        if not config.do_normalize:
            return None, None
        return (upload_table(torch.tensor(config.image_mean, dtype=torch.float32), device),
                upload_table(torch.tensor(config.image_std, dtype=torch.float32), device))

    mean, std = DEVICE_TABLES.get(("norm", config.image_mean, config.image_std, config.do_normalize,
                                   str(device)), make)
    return (config.rescale_factor if config.do_rescale else None), mean, std


def level_table(config: VisionPreprocessConfig, device: torch.device) -> torch.Tensor:
    """``float32 [3, 256]``: the normalised value of every uint8 level per channel, built with
    :func:`normalize` itself (the other backends gather from it, so every backend agrees bit for bit)."""
    def make():
        scale, mean, std = normalize_constants(config, torch.device("cpu"))
        levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, 3, 1, 256)
        return upload_table(normalize(levels, scale, mean, std).reshape(3, 256).contiguous(), device)

    return DEVICE_TABLES.get(("lut", config.rescale_factor, config.do_rescale, config.image_mean,
                              config.image_std, config.do_normalize, str(device)), make)


# ------------------------------------------------------------------------------------ the pipeline

def resized_levels(img: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig) -> torch.Tensor:
    """``[B, 3, H, W]`` -> resized uint8 levels ``[B, 3, h, w]`` (a fixed-point mode, or float mode on
    uint8). An unchanged size passes the levels through."""
    in_h, in_w = img.shape[-2:]
    if config.resize_mode in FIXED_POINT_MODES:
        levels = to_levels(img, config.input_range)
        if (in_h, in_w) == tuple(size):
            return levels
        return resize_fixed(levels, size, vertical_pass_first(in_h, in_w, *size, config), config.resize_mode)
    if (in_h, in_w) == tuple(size):
        return img
    return round_to_levels(resize_float(img.to(torch.float32), size))


def normalized_pixels(img: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig,
                      levels: torch.Tensor | None = None) -> torch.Tensor:
    """Resize and normalise ``img [B, 3, H, W]`` -> float ``[B, 3, h, w]`` (images and video frames alike).
    uint8 input, and float input that a fixed-point mode resizes, become uint8 levels first (``levels``, when given,
    are those resized levels, made elsewhere); other float input keeps its values (float resize or none),
    which is also the differentiable path."""
    resizing = tuple(img.shape[-2:]) != tuple(size)
    if img.dtype == torch.uint8 or (config.resize_mode in FIXED_POINT_MODES and resizing):
        x = resized_levels(img, size, config) if levels is None else levels
    else:
        x = to_float_scale(img, config.input_range)
        if resizing:
            x = resize_float(x, size)
    scale, mean, std = normalize_constants(config, img.device)
    return normalize(x, scale, mean, std)


def differentiable(images: list[torch.Tensor], plan: Plan) -> torch.Tensor:
    """Float-mode ``pixel_values`` that keep autograd history (a new tensor, not written into an output)."""
    config = plan.config
    if config.resize_mode != "float":
        raise ValueError(f"gradients flow only through resize_mode='float'; resize_mode={config.resize_mode!r} "
                         "rounds to uint8 levels. Pass resize_mode='float' or detach the input")
    parts = [patchify(normalized_pixels(img[None], size, config), config.patch_size, config.row_merge_size,
                      config.image_frames, config.output_dtype)
             for img, size in zip(images, plan.sizes)]
    return torch.cat(parts, 0)


def image_group_into(img: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig,
                     out: torch.Tensor) -> None:
    """Resize + normalise + patchify same-size images ``img [B, 3, H, W]`` into ``out [B * rows, patch_dim]``."""
    patchify_into(out, normalized_pixels(img, size, config), config.patch_size, config.row_merge_size,
                  config.image_frames)


# --------------------------------------------------------------------------------- backend contract

def can_run(device: torch.device) -> tuple[bool, str]:
    """The reference runs wherever torch does."""
    return True, ""


def preprocess_into(batch: ImageBatch, plan: Plan, out: torch.Tensor) -> None:
    """Fill ``out`` with the patches of every image of ``batch`` (one resize call for a stacked batch)."""
    if batch.stacked is not None:
        image_group_into(batch.stacked, plan.sizes[0], plan.config, out)
        return
    for i, img in enumerate(batch.images):
        image_group_into(img[None], plan.sizes[i], plan.config, out[plan.row_offsets[i]:plan.row_offsets[i + 1]])


def video_frames(clip: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig) -> torch.Tensor:
    """Resized, normalised frames ``[T, 3, h, w]`` of one clip (what :func:`videos_into` patchifies)."""
    return normalized_pixels(clip, size, config)


def videos_into(batch: VideoBatch, plan: Plan, out: torch.Tensor, frames=None) -> None:
    """Fill ``out`` with the patches of every clip of ``batch`` (frame blocks of ``temporal_patch_size``
    consecutive frames). ``frames(clip, size, config)`` makes a clip's normalised frames (default
    :func:`video_frames`, which resizes a stacked batch in one call). Works through autograd."""
    config = plan.config
    p, m, tp = config.patch_size, config.row_merge_size, config.temporal_patch_size
    if frames is None and batch.stacked is not None:
        all_frames = normalized_pixels(batch.stacked, plan.sizes[0], config)
        normalized = iter(all_frames.unflatten(0, (len(batch.clips), -1)).unbind(0))
    else:  # clip by clip, so only one clip's float frames live at a time
        normalized = ((frames or video_frames)(c, s, config) for c, s in zip(batch.clips, plan.sizes))
    for i, y in enumerate(normalized):
        patchify_video_into(out[plan.row_offsets[i]:plan.row_offsets[i + 1]], y, p, m, tp)


def resize(images: list[torch.Tensor], sizes: list[tuple[int, int]], config: VisionPreprocessConfig,
           stacked: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The resize stage alone: ``[3, H, W]`` uint8 images -> ``[3, h, w]`` uint8 (``stacked``: the same
    images as one ``[B, 3, H, W]`` batch, resized in one call when every size is the same)."""
    if stacked is not None and len(set(sizes)) == 1:
        return list(resized_levels(stacked, sizes[0], config).unbind(0))
    return [resized_levels(img[None], s, config)[0] for img, s in zip(images, sizes)]
