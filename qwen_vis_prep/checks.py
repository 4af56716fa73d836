"""Input validation and conversion to channel-first RGB views, for images and video clips. Errors name what
was expected and what came, and which item."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Sequence

import numpy as np
import torch

from .contract import ImageBatch, VideoBatch

Layout = Literal["auto", "chw", "hwc"]

SUPPORTED_DTYPES = (torch.uint8, torch.float32, torch.float16, torch.bfloat16, torch.float64)
_CHANNELS = (1, 3, 4)


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


def _as_frames(x: Any, layout: Layout, do_convert_rgb: bool, input_range: str, check_values: bool | None,
               where: str) -> torch.Tensor:
    """One clip (``[T, C, H, W]`` tensor, ``[T, H, W, C]`` array, or a list of frames) -> ``[T, 3, H, W]``."""
    try:
        if isinstance(x, np.ndarray):
            if x.dtype == np.bool_ or x.dtype.kind not in "uf" or x.dtype == np.uint16:
                raise TypeError(f"expected a uint8 or float numpy array, got dtype {x.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(x))
            layout = "hwc" if layout == "auto" else layout
        if isinstance(x, torch.Tensor):
            if x.dim() != 4:
                raise ValueError(f"expected a clip with 4 dims ([T, C, H, W], or [T, H, W, C] with layout='hwc'), "
                                 f"got {x.dim()} dims: {describe(x)}"
                                 + ("; wrap the frames of one clip in a list" if x.dim() == 3 else ""))
            if x.shape[0] == 0:
                raise ValueError("expected at least one frame, got a clip of 0 frames")
            return prepare_images(x, layout=layout, do_convert_rgb=do_convert_rgb, input_range=input_range,
                                  check_values=check_values).stacked
        if isinstance(x, (list, tuple)):
            if len(x) == 0:
                raise ValueError("expected at least one frame, got an empty list")
            frames = prepare_images(list(x), layout=layout, do_convert_rgb=do_convert_rgb,
                                    input_range=input_range, check_values=check_values).images
            shapes = {tuple(f.shape) for f in frames}
            if len(shapes) > 1:
                raise ValueError(f"all frames of a clip must have one size, got {sorted(shapes)}")
            dtypes = {f.dtype for f in frames}
            if len(dtypes) > 1:
                raise TypeError(f"all frames of a clip must have one dtype, got {sorted(map(str, dtypes))}")
            return torch.stack(frames)
        raise TypeError(f"expected a clip: a torch.Tensor [T, C, H, W], a numpy array [T, H, W, C] or a list "
                        f"of frames, got {describe(x)}")
    except (TypeError, ValueError) as e:
        msg = str(e)
        if msg.startswith("images"):  # prepare_images names frames "images"
            msg = "frames" + msg[len("images"):]
        raise type(e)(f"{where}: {msg}") from None


def prepare_videos(videos: Any, *, layout: Layout = "auto", do_convert_rgb: bool = True,
                   input_range: str = "0-255", check_values: bool | None = None) -> VideoBatch:
    """Validate ``videos`` and return channel-first RGB clips on one device.

    Accepts one clip (``[T, C, H, W]`` tensor; ``[T, H, W, C]`` numpy array), a batch (``[B, T, C, H, W]``
    tensor or ``[B, T, H, W, C]`` array), or a non-empty list of clips (each a 4-dim tensor / array or a list
    of frames: tensors, arrays, PIL images), ragged in size and length. Frames are checked as images are
    (:func:`qwen_vis_prep.checks.prepare_images`).
    """
    kw = dict(layout=layout, do_convert_rgb=do_convert_rgb, input_range=input_range, check_values=check_values)
    if isinstance(videos, np.ndarray) and videos.ndim == 5:
        videos = torch.from_numpy(np.ascontiguousarray(videos))
        kw["layout"] = "hwc" if layout == "auto" else layout
    if isinstance(videos, torch.Tensor) and videos.dim() == 5:
        b, t = videos.shape[:2]
        if b == 0 or t == 0:
            raise ValueError(f"videos: expected at least one clip of at least one frame, got shape "
                             f"{tuple(videos.shape)}")
        stacked = _as_frames(videos.flatten(0, 1), where="videos", **kw)
        return VideoBatch(list(stacked.unflatten(0, (b, t)).unbind(0)), stacked, stacked.device)
    if isinstance(videos, (torch.Tensor, np.ndarray)):
        clips = [_as_frames(videos, where="videos", **kw)]
    elif isinstance(videos, (list, tuple)):
        if len(videos) == 0:
            raise ValueError("videos: expected at least one clip, got an empty list")
        frames_given = all(not isinstance(v, (list, tuple)) and getattr(v, "ndim", 4) == 3 for v in videos)
        bad = 0 if frames_given else next(
            (i for i, v in enumerate(videos) if not isinstance(v, (list, tuple, torch.Tensor, np.ndarray))), None)
        if bad is not None:
            raise ValueError(f"videos: a list must hold clips (4-dim tensors / arrays, or lists of frames), got "
                             f"{describe(videos[bad])} at videos[{bad}]; to pass the frames of one clip, nest "
                             f"them: videos=[[frame0, frame1, ...]] or stack them into [T, C, H, W]")
        clips = [_as_frames(v, where=f"videos[{i}]", **kw) for i, v in enumerate(videos)]
    else:
        raise TypeError(f"videos: expected a torch.Tensor, a numpy array or a list of clips, got {describe(videos)}")
    device = clips[0].device
    for i, c in enumerate(clips):
        if c.device != device:
            raise ValueError(f"videos[{i}]: all clips must be on one device, got {c.device} after {device}")
    return VideoBatch(clips, None, device)
