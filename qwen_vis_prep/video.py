"""Video clips: frame sampling, per-clip sizing, and the video patch layout of Qwen-VL.

A clip ``[T, C, H, W]`` is resized frame by frame with the image code path (every frame of a clip gets the
clip's one target size), normalised like images, then patchified so that the ``temporal_patch_size`` columns
of a row hold consecutive *real* frames (``pixel_values_videos [sum_i t_i * h_i * w_i, C * Tp * P * P]``,
``video_grid_thw [num_videos, 3]`` with ``t_i = ceil(T_i / Tp)``), as transformers' video processors lay them
out. Everything about sizes is host integer math on shapes; no device sync.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from . import host_memory, sizing
from .backends import pillow_cpu, torch_ref
from .checks import Layout, describe, prepare_images
from .config import (VisionPreprocessConfig, check_pixel_bounds, check_positive_int, preset_key,
                     replace_fields)
from .functional import normalized_pixels, resolve_config

VideoSizing = Literal["qwen2-vl", "qwen3-vl"]
SamplingRule = Literal["qwen2-vl", "qwen3-vl", "qwen-vl-utils"]


@dataclass(frozen=True)
class VideoConfig:
    """How clips are sized; everything else (patch sizes, mean/std, resize mode ...) comes from the image
    :class:`VisionPreprocessConfig`.

    * ``sizing="qwen2-vl"`` is ``Qwen2VLVideoProcessor`` (Qwen2-VL and Qwen2.5-VL): the image
      ``smart_resize`` per frame, ``min_pixels <= h * w <= max_pixels``.
    * ``sizing="qwen3-vl"`` is ``Qwen3VLVideoProcessor``: :func:`smart_resize_video`, whose pixel bounds
      count all frames (``round(T / Tp) * Tp * h * w``); clips need at least ``temporal_patch_size`` frames.
    * ``cap_pixels_per_frame`` bounds each frame the way qwen-vl-utils does (transformers' option of the same
      name, off by default in transformers 5.24): ``max_video_tokens`` sets the budget (total context tokens
      for ``"qwen2-vl"``, tokens per frame for ``"qwen3-vl"``).
    * ``fps``, ``min_frames``, ``max_frames`` are the defaults of :meth:`sample_indices`.
    """

    min_pixels: int
    max_pixels: int
    sizing: VideoSizing = "qwen2-vl"
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 128000
    fps: float | None = None
    min_frames: int = 4
    max_frames: int = 768

    def __post_init__(self) -> None:
        for name in ("max_video_tokens", "min_frames", "max_frames"):
            check_positive_int(name, getattr(self, name))
        check_pixel_bounds(self.min_pixels, self.max_pixels)
        if self.sizing not in ("qwen2-vl", "qwen3-vl"):
            raise ValueError(f"sizing must be 'qwen2-vl' or 'qwen3-vl', got {self.sizing!r}")
        if not isinstance(self.cap_pixels_per_frame, bool):
            raise TypeError(f"cap_pixels_per_frame must be a bool, got {self.cap_pixels_per_frame!r}")
        if self.fps is not None and not (isinstance(self.fps, (int, float)) and not isinstance(self.fps, bool)
                                         and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be None or a positive number, got {self.fps!r}")

    def replace(self, **changes: Any) -> "VideoConfig":
        """A copy with some fields changed (validated again)."""
        return replace_fields(self, changes, "video config")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "VideoConfig":
        """The video sizing of a released family: ``"qwen2-vl"``, ``"qwen2.5-vl"`` or ``"qwen3-vl"``."""
        key = preset_key(name)
        return VIDEO_PRESETS[key].replace(**overrides) if overrides else VIDEO_PRESETS[key]

    def sample_indices(self, total_frames: int, video_fps: float | None = None, *, fps: float | None = None,
                       num_frames: int | None = None, temporal_patch_size: int = 2) -> list[int]:
        """:func:`sample_frame_indices` with this config's rule and frame defaults."""
        if fps is None and num_frames is None:
            fps = self.fps
        return sample_frame_indices(total_frames, video_fps, fps=fps, num_frames=num_frames,
                                    min_frames=self.min_frames, max_frames=self.max_frames,
                                    temporal_patch_size=temporal_patch_size, rule=self.sizing)


VIDEO_PRESETS: dict[str, VideoConfig] = {
    # Qwen/Qwen2-VL-*-Instruct and Qwen/Qwen2.5-VL-*-Instruct ship no video_preprocessor_config.json, so
    # transformers' video processor loader falls back to preprocessor_config.json: min_pixels=3136,
    # max_pixels=12845056 per frame (the class defaults would be 128*28*28 .. 768*28*28, qwen-vl-utils'
    # VIDEO_MIN/MAX_PIXELS; pass those to VideoConfig to get them). max_video_tokens 128000 and
    # min/max_frames 4/768 are Qwen2VLVideoProcessor's class defaults; it does not sample by default.
    "qwen2-vl": VideoConfig(min_pixels=3136, max_pixels=12845056, sizing="qwen2-vl"),
    "qwen2.5-vl": VideoConfig(min_pixels=3136, max_pixels=12845056, sizing="qwen2-vl"),
    # Qwen/Qwen3-VL-* video_preprocessor_config.json: size {"shortest_edge": 4096, "longest_edge":
    # 25165824}, fps 2, min_frames 4, max_frames 768; max_video_tokens 768 is Qwen3VLVideoProcessor's
    # class default (qwen-vl-utils' VIDEO_MAX_TOKEN_NUM).
    "qwen3-vl": VideoConfig(min_pixels=4096, max_pixels=25165824, sizing="qwen3-vl", max_video_tokens=768,
                            fps=2.0),
}


def default_video_config(config: VisionPreprocessConfig | str | None) -> VideoConfig:
    """The :data:`VIDEO_PRESETS` entry for an image preset name; for a config instance, the preset of its
    family by patch size (16: Qwen3-VL, otherwise Qwen2-VL / Qwen2.5-VL, which size videos alike)."""
    if config is None:
        return VIDEO_PRESETS["qwen2-vl"]
    if isinstance(config, str):
        return VIDEO_PRESETS[preset_key(config)]
    return VIDEO_PRESETS["qwen3-vl" if config.patch_size == 16 else "qwen2-vl"]


def resolve_video_config(video_config: VideoConfig | str | None,
                         image_config: VisionPreprocessConfig | str | None) -> VideoConfig:
    """A :class:`VideoConfig` from an instance, a preset name, or ``None`` (the default of the image
    preset / config, :func:`default_video_config`)."""
    if video_config is None:
        return default_video_config(image_config)
    if isinstance(video_config, str):
        return VideoConfig.from_preset(video_config)
    if not isinstance(video_config, VideoConfig):
        raise TypeError(f"video_config must be a VideoConfig or a preset name, got {describe(video_config)}")
    return video_config


# --------------------------------------------------------------------------------------------- sizing

def smart_resize_video(num_frames: int, height: int, width: int, temporal_factor: int = 2, factor: int = 32,
                       min_pixels: int = 128 * 32 * 32, max_pixels: int = 768 * 32 * 32) -> tuple[int, int]:
    """Target ``(h, w)`` of one clip as transformers' ``Qwen3VLVideoProcessor`` sizes it.

    Sides become multiples of ``factor``; the bounds apply to the pixels of all frames,
    ``round(num_frames / temporal_factor) * temporal_factor * h * w``. Sides shorter than ``factor`` are
    first scaled up (truncating) so the shorter one reaches ``factor``. Raises ``ValueError`` for
    ``num_frames < temporal_factor`` (as transformers does) or an aspect ratio above 200.
    """
    for name, v in (("num_frames", num_frames), ("height", height), ("width", width),
                    ("temporal_factor", temporal_factor), ("factor", factor)):
        check_positive_int(name, v)
    if num_frames < temporal_factor:
        raise ValueError(f"Qwen3-VL video sizing needs at least temporal_factor={temporal_factor} frames, got "
                         f"num_frames={num_frames}; pass a single frame as an image instead")
    if height < factor or width < factor:
        grow = max(factor / height, factor / width)
        height, width = int(height * grow), int(width * grow)
    ratio = max(height, width) / min(height, width)
    if ratio > sizing.MAX_ASPECT_RATIO:
        raise ValueError(f"absolute aspect ratio must be at most {sizing.MAX_ASPECT_RATIO}, got {ratio} for a "
                         f"clip of height {height} and width {width}")
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    return sizing.fit_pixel_budget(height, width, factor, min_pixels, max_pixels, frames=num_frames,
                                   rounded_frames=t_bar)


def video_target_size(num_frames: int, height: int, width: int, config: VisionPreprocessConfig,
                      video_config: VideoConfig) -> tuple[int, int]:
    """The ``(h, w)`` every frame of a ``num_frames``-frame clip is resized to (the input size when
    ``config.do_resize`` is off, which must then be a multiple of ``patch_size * merge_size``)."""
    check_positive_int("num_frames", num_frames)
    if not config.do_resize:
        return sizing.target_size(height, width, config)
    factor, tf, vc = config.factor, config.temporal_patch_size, video_config
    if vc.sizing == "qwen2-vl":
        max_pixels = vc.max_pixels
        if vc.cap_pixels_per_frame:
            # Same float expressions as transformers (and qwen-vl-utils) so the truncations agree.
            budget = int(vc.max_video_tokens * factor * factor * 0.9)
            max_pixels = max(min(max_pixels, budget * tf // num_frames), int(vc.min_pixels * 1.05))
        return sizing.smart_resize(height, width, factor, vc.min_pixels, max_pixels)
    max_pixels = vc.max_pixels
    if vc.cap_pixels_per_frame:
        per_frame = max(min(vc.max_video_tokens * factor * factor, vc.max_pixels // num_frames),
                        int(vc.min_pixels * 1.05))
        max_pixels = per_frame * num_frames
    return smart_resize_video(num_frames, height, width, tf, factor, vc.min_pixels, max_pixels)


def video_grid_thw(num_frames: int, size: tuple[int, int], config: VisionPreprocessConfig) -> tuple[int, int, int]:
    """``(grid_t, grid_h, grid_w)`` of a clip resized to ``size``: ``grid_t = ceil(T / temporal_patch_size)``."""
    tp = config.temporal_patch_size
    return -(-num_frames // tp), size[0] // config.patch_size, size[1] // config.patch_size


# ------------------------------------------------------------------------------------------- sampling

def sample_frame_indices(total_frames: int, video_fps: float | None = None, *, fps: float | None = None,
                         num_frames: int | None = None, min_frames: int = 4, max_frames: int = 768,
                         temporal_patch_size: int = 2, rule: SamplingRule = "qwen3-vl") -> list[int]:
    """Which frames of a ``total_frames``-frame video (recorded at ``video_fps``) to keep, in order.

    Give ``fps`` (frames per second to keep) or ``num_frames``, not both. ``rule`` picks whose sampling to
    reproduce exactly:

    * ``"qwen2-vl"``: ``Qwen2VLVideoProcessor.sample_frames`` (Qwen2-VL, Qwen2.5-VL). ``num_frames`` is
      rounded to a multiple of ``temporal_patch_size``; ``fps`` needs ``video_fps`` and gives
      ``total / video_fps * fps`` frames clamped to ``[min_frames, max_frames]`` and floored to that
      multiple; frames are taken at ``floor(i * total / n)``. Neither given: every frame.
    * ``"qwen3-vl"``: ``Qwen3VLVideoProcessor.sample_frames``. ``fps`` defaults to 2 (and ``video_fps`` to
      24, with a warning, as transformers does); ``int(total / video_fps * fps)`` frames clamped to
      ``[min_frames, min(max_frames, total)]``, spread evenly from the first to the last frame.
    * ``"qwen-vl-utils"``: qwen-vl-utils' ``smart_nframes`` + even spread (``fps`` defaults to 2, counts are
      multiples of ``temporal_patch_size``, at least ``temporal_patch_size`` and at most ``total``).

    Returns host ints (indices may repeat when more frames are asked for than exist, as in transformers).
    """
    check_positive_int("total_frames", total_frames)
    check_positive_int("temporal_patch_size", temporal_patch_size)
    if fps is not None and num_frames is not None:
        raise ValueError("fps and num_frames are mutually exclusive; pass one of them")
    if num_frames is not None:
        check_positive_int("num_frames", num_frames)
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be positive, got {fps!r}")
    if video_fps is not None and not (video_fps > 0 and math.isfinite(video_fps)):
        raise ValueError(f"video_fps must be positive, got {video_fps!r}")
    tp = temporal_patch_size
    if rule == "qwen2-vl":
        if num_frames is None and fps is None:
            return list(range(total_frames))
        if num_frames is not None:
            n = round(num_frames / tp) * tp
        else:
            if video_fps is None:
                raise ValueError("sampling by fps needs the video's own frame rate: pass video_fps")
            cap = math.floor(min(max_frames, total_frames) / tp) * tp
            n = min(max(total_frames / video_fps * fps, min_frames), cap, total_frames)
            n = math.floor(n / tp) * tp
        if n <= 0 or n > total_frames:
            raise ValueError(f"cannot sample {n} frames from a video of {total_frames} frames; expected "
                             f"1..{total_frames} (counts are multiples of temporal_patch_size={tp})")
        # transformers steps a float32 arange by total / n and truncates; reproduce it bit for bit.
        return torch.arange(0, total_frames, total_frames / n).int().tolist()
    if rule == "qwen3-vl":
        if num_frames is None:
            fps = 2.0 if fps is None else fps
            if video_fps is None:
                warnings.warn("sample_frame_indices: no video_fps given, assuming 24 as transformers does",
                              stacklevel=2)
                video_fps = 24
            n = int(total_frames / video_fps * fps)
            n = min(max(n, min_frames), max_frames, total_frames)
        else:
            n = num_frames
        return np.linspace(0, total_frames - 1, n).round().astype(int).tolist()
    if rule == "qwen-vl-utils":
        if num_frames is not None:
            n = round(num_frames / tp) * tp
        else:
            if video_fps is None:
                raise ValueError("sampling by fps needs the video's own frame rate: pass video_fps")
            fps = 2.0 if fps is None else fps
            lo = math.ceil(min_frames / tp) * tp
            hi = math.floor(max_frames / tp) * tp
            n = min(max(total_frames / video_fps * fps, lo), hi, total_frames)
            n = math.floor(n / tp) * tp
        if not tp <= n <= total_frames:
            raise ValueError(f"cannot sample {n} frames from a video of {total_frames} frames; expected "
                             f"{tp}..{total_frames}")
        # qwen-vl-utils spreads with a float32 linspace and rounds half to even; reproduce it bit for bit.
        return torch.linspace(0, total_frames - 1, n).round().long().tolist()
    raise ValueError(f"rule must be 'qwen2-vl', 'qwen3-vl' or 'qwen-vl-utils', got {rule!r}")


# --------------------------------------------------------------------------------------------- inputs

@dataclass
class VideoBatch:
    """Clips ready for processing: each ``[T, 3, H, W]`` (views where possible), all on one device.
    ``stacked`` is the ``[B * T, 3, H, W]`` view of a ``[B, T, C, H, W]`` input (one resize call for all)."""

    clips: list[torch.Tensor]
    stacked: torch.Tensor | None
    device: torch.device


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


# ------------------------------------------------------------------------------------------ processing

def plan_videos(batch: VideoBatch, config: VisionPreprocessConfig, video_config: VideoConfig
                ) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Target size per clip and ``video_grid_thw`` (int64, CPU) from the clips' shapes alone."""
    sizes, grids = [], []
    for i, clip in enumerate(batch.clips):
        t, h, w = int(clip.shape[0]), int(clip.shape[-2]), int(clip.shape[-1])
        try:
            size = video_target_size(t, h, w, config, video_config)
        except ValueError as e:
            raise ValueError(f"videos[{i}]: {e}") from None
        sizes.append(size)
        grids.append(video_grid_thw(t, size, config))
    return sizes, torch.tensor(grids, dtype=torch.int64).reshape(-1, 3)


def preprocess_videos(videos: Any, config: VisionPreprocessConfig | str | None = None,
                      video_config: VideoConfig | str | None = None, *, layout: Layout = "auto",
                      check_values: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn video clips into Qwen-VL ``pixel_values_videos`` and ``video_grid_thw``.

    Args:
        videos: see :func:`prepare_videos` (uint8, or float on the scale of ``config.input_range``).
        config: image config or preset name (patch sizes, mean/std, resize mode, output dtype).
        video_config: :class:`VideoConfig` or preset name; default :func:`default_video_config` of ``config``.

    Returns:
        ``(pixel_values_videos [sum_i t_i * h_i * w_i, 3 * Tp * P * P]`` in ``config.output_dtype`` on the
        clips' device, ``video_grid_thw int64 [num_videos, 3]`` on the CPU``)``. Each clip is resized frame by
        frame to one size (``"pil"`` mode: Pillow on the CPU, the exact torch port elsewhere), and an odd
        frame count repeats the last frame. Float inputs that require grad flow through
        ``resize_mode="float"``; ``config.compact_images`` does not apply to videos.
    """
    preset, config = config, resolve_config(config)
    video_config = resolve_video_config(video_config, preset if isinstance(preset, str) else config)
    batch = prepare_videos(videos, layout=layout, do_convert_rgb=config.do_convert_rgb,
                           input_range=config.input_range, check_values=check_values)
    sizes, grid = plan_videos(batch, config, video_config)
    needs_grad = torch.is_grad_enabled() and any(c.requires_grad for c in batch.clips)
    if needs_grad and config.resize_mode != "float" and any(
            tuple(c.shape[-2:]) != s for c, s in zip(batch.clips, sizes)):
        raise ValueError("gradients flow only through resize_mode='float'; resize_mode='pil' rounds to uint8 "
                         "levels. Pass resize_mode='float' or detach the input")
    p, m, tp = config.patch_size, config.merge_size, config.temporal_patch_size
    rows = [t * h * w for t, h, w in grid.tolist()]
    out = host_memory.empty((sum(rows), 3 * tp * p * p), config.output_dtype, batch.device)
    use_pillow = batch.device.type == "cpu" and pillow_cpu.available() and not needs_grad
    offsets = np.cumsum([0] + rows).tolist()
    if batch.stacked is not None and not use_pillow:  # one resize call for a whole [B, T, C, H, W] batch
        frames = normalized_pixels(batch.stacked, sizes[0], config, use_pillow)
        normalized = iter(frames.unflatten(0, (len(batch.clips), -1)).unbind(0))
    else:  # clip by clip, so only one clip's float frames live at a time
        normalized = (normalized_pixels(c, s, config, use_pillow) for c, s in zip(batch.clips, sizes))
    for i, y in enumerate(normalized):
        torch_ref.patchify_video_into(out[offsets[i]:offsets[i + 1]], y, p, m, tp)
    return out, grid


__all__ = [
    "VIDEO_PRESETS",
    "VideoBatch",
    "VideoConfig",
    "default_video_config",
    "plan_videos",
    "prepare_videos",
    "preprocess_videos",
    "sample_frame_indices",
    "smart_resize_video",
    "video_grid_thw",
    "video_target_size",
]
