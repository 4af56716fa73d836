"""Input validation and conversion to channel-first RGB views. Errors name what was expected and what came."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Sequence

import numpy as np
import torch

Layout = Literal["auto", "chw", "hwc"]

SUPPORTED_DTYPES = (torch.uint8, torch.float32, torch.float16, torch.bfloat16, torch.float64)
_CHANNELS = (1, 3, 4)


class ImageBatch:
    """Images ready for a backend: each ``[3, H, W]`` (a view where possible), all on one device.

    ``stacked`` is the original ``[B, 3, H, W]`` tensor when the input was one batched tensor (every image
    the same shape), so backends can process it without gathering; its per-image views in ``images`` are
    then made only when asked for (a batch of 64 would otherwise pay 64 views per call).
    """

    __slots__ = ("_images", "stacked", "device")

    def __init__(self, images: list[torch.Tensor] | None, stacked: torch.Tensor | None,
                 device: torch.device) -> None:
        if images is None and stacked is None:
            raise ValueError("ImageBatch needs images or a stacked batch")
        self._images = images
        self.stacked = stacked
        self.device = device

    @property
    def images(self) -> list[torch.Tensor]:
        if self._images is None:
            self._images = list(self.stacked.unbind(0))
        return self._images

    def __len__(self) -> int:
        return self.stacked.shape[0] if self.stacked is not None else len(self._images)

    @property
    def requires_grad(self) -> bool:
        if self.stacked is not None:
            return self.stacked.requires_grad
        return any(img.requires_grad for img in self._images)


def describe(x: Any) -> str:
    """Short description of a value for error messages."""
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor(shape={tuple(x.shape)}, dtype={x.dtype}, device={x.device})"
    if isinstance(x, np.ndarray):
        return f"numpy.ndarray(shape={x.shape}, dtype={x.dtype})"
    try:
        import PIL.Image

        if isinstance(x, PIL.Image.Image):
            return f"PIL.Image(mode={x.mode}, size={x.size})"
    except ImportError:  # pragma: no cover
        pass
    return f"{type(x).__name__}"


def check_layout(layout: Any) -> None:
    if layout not in ("auto", "chw", "hwc"):
        raise ValueError(f"layout must be 'auto', 'chw' or 'hwc', got {layout!r}")


def pil_to_hwc(img) -> torch.Tensor:
    """PIL image -> ``[H, W, C]`` uint8 tensor, compositing transparency onto white like transformers."""
    import PIL.Image

    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        rgba = img.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PIL.Image.alpha_composite(background, rgba).convert("RGB")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))


def _to_chw(x: torch.Tensor, layout: str, where: str) -> torch.Tensor:
    """``[C, H, W]`` view of one image tensor given as CHW, HWC or HW (the caller checked it has 2 or 3 dims)."""
    if x.dim() == 2:
        return x.unsqueeze(0)
    if layout == "hwc":
        if x.shape[-1] not in _CHANNELS:
            hint = " (it looks channels-first: pass layout='chw')" if x.shape[0] in _CHANNELS else ""
            raise ValueError(f"{where}: layout='hwc' expects the last dim to be 1, 3 or 4 channels, "
                             f"got shape {tuple(x.shape)}{hint}")
        return x.permute(2, 0, 1)
    if x.shape[0] not in _CHANNELS:
        hint = " (it looks channels-last: pass layout='hwc')" if x.shape[-1] in _CHANNELS else ""
        raise ValueError(f"{where}: layout='chw' expects the first dim to be 1, 3 or 4 channels, "
                         f"got shape {tuple(x.shape)}{hint}")
    return x


def _check_dtype(x: torch.Tensor, where: str) -> None:
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{where}: expected dtype uint8, float32, float16, bfloat16 or float64, got {x.dtype}")


def _check_size(x: torch.Tensor, where: str) -> None:
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{where}: expected a non-empty image, got height={x.shape[-2]}, width={x.shape[-1]}")


def _check_values(x: torch.Tensor, input_range: str, where: str) -> None:
    """NaN/Inf and range check of a float image: one read pass, no image-sized temporary, one sync on CUDA.

    ``aminmax`` propagates NaN and keeps +-Inf, so non-finite values show up in the two extremes.
    """
    if not x.is_floating_point() or x.numel() == 0:
        return
    lo_v, hi_v = torch.stack(torch.aminmax(x.detach())).tolist()
    if not (math.isfinite(lo_v) and math.isfinite(hi_v)):
        raise ValueError(f"{where}: expected finite float values, got NaN or Inf (min={lo_v}, max={hi_v}); "
                         f"check_values=False skips this check")
    hi = 1.0 if input_range == "0-1" else 255.0
    if lo_v < 0.0 or hi_v > hi:
        raise ValueError(f"{where}: float values must lie in [0, {hi:g}] for input_range={input_range!r}, "
                         f"got [{lo_v:g}, {hi_v:g}]")


def to_rgb(x: torch.Tensor, input_range: str = "0-255") -> torch.Tensor:
    """``[..., C, H, W]`` -> ``[..., 3, H, W]``: gray is expanded (a view), RGBA is composited onto white
    with transformers' array rule ``round(alpha * rgb + (1 - alpha) * 255)`` in float64 (a new tensor).

    Float images with ``input_range="0-1"`` have alpha and white on that scale: ``alpha * rgb + (1 - alpha)``,
    not rounded."""
    c = x.shape[-3]
    if c == 3:
        return x
    if c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    white = 1.0 if (input_range == "0-1" and x.is_floating_point()) else 255.0
    alpha = x[..., 3:4, :, :].to(torch.float64) / white
    rgb = alpha * x[..., :3, :, :].to(torch.float64) + (1.0 - alpha) * white
    if x.dtype == torch.uint8:
        return rgb.round().to(torch.uint8)
    return rgb.to(x.dtype)


def prepare_images(images: Any, *, layout: Layout = "auto", do_convert_rgb: bool = True,
                   input_range: str = "0-255", check_values: bool | None = None) -> ImageBatch:
    """Validate ``images`` and return channel-first RGB views on one device.

    Accepts a tensor ``[3, H, W]`` / ``[B, 3, H, W]`` (or HWC / BHWC with ``layout="hwc"``), a numpy array
    (HWC by default), a PIL image, or a non-empty list/tuple of those (ragged sizes allowed).
    ``check_values`` (NaN/Inf and range of float inputs) defaults to on for CPU tensors and off on CUDA,
    where it would cost a device sync.
    """
    check_layout(layout)
    try:
        import PIL.Image
        pil_type: tuple = (PIL.Image.Image,)
    except ImportError:  # pragma: no cover
        pil_type = ()

    stacked = None
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        _check_dtype(images, "images")
        lay = "chw" if layout == "auto" else layout
        if lay == "hwc":
            if images.shape[-1] not in _CHANNELS:
                hint = " (it looks channels-first: pass layout='chw')" if images.shape[1] in _CHANNELS else ""
                raise ValueError(f"images: layout='hwc' expects [B, H, W, C] with C in (1, 3, 4), got "
                                 f"shape {tuple(images.shape)}{hint}")
            batch = images.permute(0, 3, 1, 2)
        else:
            if images.shape[1] not in _CHANNELS:
                hint = " (it looks channels-last: pass layout='hwc')" if images.shape[-1] in _CHANNELS else ""
                raise ValueError(f"images: expected [B, C, H, W] with C in (1, 3, 4), got shape "
                                 f"{tuple(images.shape)}{hint}")
            batch = images
        if batch.shape[0] == 0:
            raise ValueError("images: expected at least one image, got a batch of 0")
        _check_size(batch, "images")
        if batch.shape[1] != 3 and not do_convert_rgb:
            raise ValueError(f"images: do_convert_rgb=False needs 3 channels, got {batch.shape[1]}")
        if wants_value_check(check_values, batch):
            _check_values(batch, input_range, "images")
        stacked = to_rgb(batch, input_range) if do_convert_rgb else batch
        return ImageBatch(images=None, stacked=stacked, device=stacked.device)

    if isinstance(images, (torch.Tensor, np.ndarray)) or (pil_type and isinstance(images, pil_type)):
        items: Sequence[Any] = [images]
    elif isinstance(images, (list, tuple)):
        items = images
        if len(items) == 0:
            raise ValueError("images: expected at least one image, got an empty list")
    else:
        raise TypeError(f"images: expected a torch.Tensor, numpy.ndarray, PIL.Image or a list of them, "
                        f"got {describe(images)}")

    out: list[torch.Tensor] = []
    device = None
    for i, item in enumerate(items):
        where = f"images[{i}]" if len(items) > 1 or isinstance(images, (list, tuple)) else "images"
        if pil_type and isinstance(item, pil_type):
            t = pil_to_hwc(item)
            lay = "hwc"
        elif isinstance(item, np.ndarray):
            if item.dtype == np.bool_ or item.dtype.kind not in "uf" or item.dtype == np.uint16:
                raise TypeError(f"{where}: expected a uint8 or float numpy array, got dtype {item.dtype}")
            with warnings.catch_warnings():  # read-only arrays (np.asarray(PIL image)) are only ever read
                warnings.simplefilter("ignore", UserWarning)
                t = torch.from_numpy(np.ascontiguousarray(item))
            lay = "hwc" if layout == "auto" else layout
        elif isinstance(item, torch.Tensor):
            t = item
            lay = "chw" if layout == "auto" else layout
        else:
            raise TypeError(f"{where}: expected a torch.Tensor, numpy.ndarray or PIL.Image, got {describe(item)}")
        _check_dtype(t, where)
        if t.dim() not in (2, 3):
            tip = ""
            if isinstance(images, (list, tuple)):
                expected = "a single image [H, W], [C, H, W] or [H, W, C] inside a list"
                if t.dim() == 4:
                    tip = "; pass a batch as one [B, C, H, W] tensor, not inside a list"
            elif isinstance(item, np.ndarray):
                expected = "a numpy image [H, W] or [H, W, C]"
                if t.dim() == 4:
                    tip = "; pass a batch as a list of images (or one torch tensor with layout='hwc')"
            else:
                expected = "a tensor [H, W], [C, H, W] / [H, W, C] or a batch [B, C, H, W]"
            raise ValueError(f"{where}: expected {expected}, got {t.dim()} dims: {describe(item)}{tip}")
        chw = _to_chw(t, lay, where)
        _check_size(chw, where)
        if device is None:
            device = chw.device
        elif chw.device != device:
            raise ValueError(f"{where}: all images must be on one device, got {chw.device} after {device}")
        if chw.shape[0] != 3 and not do_convert_rgb:
            raise ValueError(f"{where}: do_convert_rgb=False needs 3 channels, got {chw.shape[0]}")
        if wants_value_check(check_values, chw):
            _check_values(chw, input_range, where)
        out.append(to_rgb(chw, input_range) if do_convert_rgb else chw)
    return ImageBatch(images=out, stacked=None, device=device)


def wants_value_check(check_values: bool | None, x: torch.Tensor) -> bool:
    if not x.is_floating_point():
        return False
    return (x.device.type == "cpu") if check_values is None else bool(check_values)
