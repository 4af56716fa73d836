"""Output-size planning on host ints (no device): ``smart_resize`` and the video sizing rules, Pillow's pass
order, and which frames of a video to sample."""

from __future__ import annotations

import functools
import math
import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from .validation import check_positive_int

if TYPE_CHECKING:  # annotations only: config.py imports this module
    from .config import VideoConfig, VisionPreprocessConfig

MAX_ASPECT_RATIO = 200
SamplingRule = Literal["qwen2-vl", "qwen3-vl", "qwen-vl-utils", "glm4v", "glm46v"]
SAMPLING_RULES: tuple[str, ...] = ("qwen2-vl", "qwen3-vl", "qwen-vl-utils", "glm4v", "glm46v")
GLM4V_MAX_SECONDS = 300  # Glm4vVideoProcessor.max_duration: longer videos are sampled over this many seconds


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """Target ``(h, w)`` of Qwen-VL's resize, as transformers 5.x computes it.

    Both sides become multiples of ``factor``, ``h * w`` lands in ``[min_pixels, max_pixels]`` and the aspect
    ratio is kept as closely as possible. Sides smaller than ``factor`` are allowed (they round up through
    the ``min_pixels`` branch); an aspect ratio above 200 raises ``ValueError``.
    """
    for name, v in (("height", height), ("width", width), ("factor", factor)):
        check_positive_int(name, v)
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(f"absolute aspect ratio must be at most {MAX_ASPECT_RATIO}, got {ratio} "
                         f"for an image of height {height} and width {width}")
    return fit_pixel_budget(height, width, factor, min_pixels, max_pixels)


def fit_pixel_budget(height: int, width: int, factor: int, min_pixels: int, max_pixels: int,
                     frames: int = 1, rounded_frames: int = 1) -> tuple[int, int]:
    """The rounding core of transformers' ``smart_resize`` (images: one frame) and of Qwen3-VL's video
    sizing (``frames`` real frames, ``rounded_frames`` after rounding to the temporal factor): sides to
    multiples of ``factor``, then scaled so ``rounded_frames * h * w`` lands in ``[min_pixels, max_pixels]``.
    Same float expressions as transformers, so the truncations agree."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if rounded_frames * h_bar * w_bar > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif rounded_frames * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def glm4v_smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 112 * 112,
                       max_pixels: int = 28 * 28 * 15000, temporal_factor: int = 2) -> tuple[int, int]:
    """Target ``(h, w)`` of an image as transformers' ``Glm4vImageProcessor`` / ``Glm46VImageProcessor``
    size it: the whole-clip rule of :func:`smart_resize_video` for ``temporal_factor`` frames, so the bounds
    count the image ``temporal_factor`` times, and sides shorter than ``factor`` are first scaled up
    (truncating) until the shorter one reaches ``factor``."""
    return smart_resize_video(temporal_factor, height, width, temporal_factor, factor, min_pixels, max_pixels)


def paddleocr_smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 384 * 384,
                           max_pixels: int = 1536 * 1536) -> tuple[int, int]:
    """Target ``(h, w)`` of an image as transformers' ``PaddleOCRVLImageProcessor`` sizes it: a height below
    ``factor`` becomes ``factor`` with the width scaled to match (``round``), then the same for the width,
    then :func:`smart_resize`."""
    for name, v in (("height", height), ("width", width), ("factor", factor)):
        check_positive_int(name, v)
    if height < factor:
        width, height = round(width * factor / height), factor
    if width < factor:
        height, width = round(height * factor / width), factor
    return smart_resize(height, width, factor, min_pixels, max_pixels)


_IMAGE_SIZING = {"qwen2-vl": smart_resize, "glm4v": glm4v_smart_resize, "paddleocr-vl": paddleocr_smart_resize}


# Sizing runs on every call; the same few image sizes come back again and again. Keyed on plain ints only
# (target_size converts), so a bool can never hit an int's entry and skip smart_resize's checks.
@functools.lru_cache(maxsize=4096)
def _image_size_cached(rule: str, height: int, width: int, factor: int, min_pixels: int, max_pixels: int,
                       temporal_factor: int) -> tuple[int, int]:
    if rule == "glm4v":
        return glm4v_smart_resize(height, width, factor, min_pixels, max_pixels, temporal_factor)
    return _IMAGE_SIZING[rule](height, width, factor, min_pixels, max_pixels)


def target_size(height: int, width: int, config: VisionPreprocessConfig) -> tuple[int, int]:
    """The resized ``(h, w)`` of one image under ``config`` (its ``sizing`` rule, or the input size when
    ``do_resize`` is off, which must then already be a multiple of ``patch_size * merge_size``)."""
    if config.do_resize:
        return _image_size_cached(config.sizing, int(height), int(width), config.factor, config.min_pixels,
                                  config.max_pixels, config.temporal_patch_size)
    if height % config.factor or width % config.factor:
        raise ValueError(f"with do_resize=False both sides must be multiples of patch_size*merge_size="
                         f"{config.factor}, got height={height}, width={width}")
    return height, width


def grid_hw(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Patch grid ``(grid_h, grid_w)`` of a resized image."""
    return height // patch_size, width // patch_size


def pillow_vertical_first(in_h: int, in_w: int, out_h: int, out_w: int, order: str) -> bool:
    """Whether Pillow's separable BICUBIC resize runs its vertical pass before the horizontal one.

    Pillow <= 12 always resizes horizontally first. Pillow 13 (PR python-pillow/Pillow#9549) goes vertical
    first when the width changes and the height shrinks by more than twice as many pixels as the width:
    ``in_h - out_h > 0 and in_h - out_h > 2 * (in_w - out_w)`` (integer, strict; read off the compiled
    13.0.0 library and checked against it on thousands of sizes). ``order`` is ``"pillow12"``,
    ``"pillow13"`` or ``"installed"``.
    """
    if order == "installed":
        order = installed_pillow_order()
    if order == "pillow12" or out_w == in_w or out_h == in_h:
        return False
    dy, dx = in_h - out_h, in_w - out_w
    return dy > 0 and dy > 2 * dx


def vertical_pass_first(in_h: int, in_w: int, out_h: int, out_w: int, config: VisionPreprocessConfig) -> bool:
    """Whether ``config``'s resize runs its vertical pass first: Pillow's rule (:func:`pillow_vertical_first`
    with ``config.pillow_order``) in ``"pil"`` mode; never in ``"torch-uint8"`` mode (ATen's uint8 kernel
    always resamples the width first) nor in ``"float"`` mode."""
    return config.resize_mode == "pil" and pillow_vertical_first(in_h, in_w, out_h, out_w, config.pillow_order)


def separable_passes(in_h: int, in_w: int, out_h: int, out_w: int, vertical_first: bool
                     ) -> list[tuple[bool, int]]:
    """The passes of a separable resize, in order, as ``(vertical, new_size)``; a side that keeps its size
    gets no pass (as in Pillow). Every backend walks this one list."""
    order = [(True, out_h), (False, out_w)] if vertical_first else [(False, out_w), (True, out_h)]
    return [(vertical, n) for vertical, n in order if (in_h if vertical else in_w) != n]


def installed_pillow_order() -> str:
    """``"pillow13"`` when the installed Pillow is 13 or newer, else ``"pillow12"``."""
    import PIL

    major = int(PIL.__version__.split(".")[0])
    return "pillow13" if major >= 13 else "pillow12"


# ------------------------------------------------------------------------------------------ videos

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
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(f"absolute aspect ratio must be at most {MAX_ASPECT_RATIO}, got {ratio} for a "
                         f"clip of height {height} and width {width}")
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    return fit_pixel_budget(height, width, factor, min_pixels, max_pixels, frames=num_frames,
                            rounded_frames=t_bar)


def video_target_size(num_frames: int, height: int, width: int, config: VisionPreprocessConfig,
                      video_config: VideoConfig) -> tuple[int, int]:
    """The ``(h, w)`` every frame of a ``num_frames``-frame clip is resized to (the input size when
    ``config.do_resize`` is off, which must then be a multiple of ``patch_size * merge_size``)."""
    check_positive_int("num_frames", num_frames)
    if not config.do_resize:
        return target_size(height, width, config)
    factor, tf, vc = config.factor, config.temporal_patch_size, video_config
    if vc.sizing == "qwen2-vl":
        max_pixels = vc.max_pixels
        if vc.cap_pixels_per_frame:
            # Same float expressions as transformers (and qwen-vl-utils) so the truncations agree.
            budget = int(vc.max_video_tokens * factor * factor * 0.9)
            max_pixels = max(min(max_pixels, budget * tf // num_frames), int(vc.min_pixels * 1.05))
        return smart_resize(height, width, factor, vc.min_pixels, max_pixels)
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


def sample_frame_indices(total_frames: int, video_fps: float | None = None, *, fps: float | None = None,
                         num_frames: int | None = None, min_frames: int = 4, max_frames: int = 768,
                         temporal_patch_size: int = 2, rule: SamplingRule = "qwen3-vl",
                         duration: float | None = None) -> list[int]:
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
    * ``"glm4v"``: ``Glm4vVideoProcessor.sample_frames`` (GLM-4.1V, GLM-4.5V). By time: needs ``video_fps``;
      ``fps`` defaults to 2; ``duration`` (seconds; default ``round((total - 1) / video_fps) + 1``, as
      transformers) of at most 300 s gives ``floor(duration * fps)`` frames at ``ceil(i * video_fps / fps)``,
      longer videos ``300 * fps`` frames spread over the duration; repeats are dropped and an odd count
      repeats its last frame. ``num_frames`` is not one of its inputs.
    * ``"glm46v"``: ``Glm46VVideoProcessor.sample_frames`` (GLM-4.6V): picks its own rate from the duration
      (3 fps up to 30 s, 1 up to 300 s, else 0.5; at most 2400 s and 640 frames, counting
      ``temporal_patch_size`` frames per step); ``fps`` and ``num_frames`` are not among its inputs.

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
    if rule in ("glm4v", "glm46v"):
        if video_fps is None:
            raise ValueError(f"the {rule!r} rule samples by time: pass video_fps, the video's own frame rate")
        if num_frames is not None or (rule == "glm46v" and fps is not None):
            given = "num_frames" if num_frames is not None else "fps"
            raise ValueError(f"the {rule!r} rule takes no {given}: it samples by "
                             f"{'its own rate' if rule == 'glm46v' else 'fps'} over the video's duration")
        if duration is not None and not (duration >= 0 and math.isfinite(duration)):
            raise ValueError(f"duration must be a non-negative number of seconds, got {duration!r}")
        # transformers: metadata.duration, else a duration counted from the frames (0 counts as missing)
        seconds = duration or round((total_frames - 1) / video_fps) + 1
        indices = (_glm4v_indices(total_frames, video_fps, 2.0 if fps is None else fps, seconds) if rule == "glm4v"
                   else _glm46v_indices(total_frames, video_fps, seconds, tp))
        unique = list(dict.fromkeys(indices))
        if not unique:
            raise ValueError(f"the {rule!r} rule samples no frames from {total_frames} frames of {seconds} s")
        return unique + unique[-1:] if len(unique) % 2 else unique
    raise ValueError(f"rule must be one of {SAMPLING_RULES}, got {rule!r}")


def _glm4v_indices(total: int, video_fps: float, fps: float, seconds: float) -> list[int]:
    """``Glm4vVideoProcessor``'s frames before de-duplication (the same float expressions)."""
    last = total - 1
    if seconds <= GLM4V_MAX_SECONDS:
        n = max(int(math.floor(seconds * fps)), 1)
        return [min(last, int(math.ceil(i * video_fps / fps))) for i in range(n)]
    n = int(GLM4V_MAX_SECONDS * fps)
    if n >= total:
        return list(range(total))
    return [min(last, int(math.ceil(t * video_fps))) for t in np.linspace(0, seconds, n, endpoint=True)]


def _glm46v_indices(total: int, video_fps: float, seconds: float, temporal_patch_size: int) -> list[int]:
    """``Glm46VVideoProcessor``'s frames before de-duplication: a rate chosen from the duration, frames
    walked by their timestamps, respread where too few or too many (the same float expressions)."""
    effective = min(seconds, 2400)
    rate = 3 if effective <= 30 else (1 if effective <= 300 else 0.5)
    wanted = min(int(effective * rate * temporal_patch_size), 640)
    if total < wanted:
        return np.linspace(0, total - 1, wanted, dtype=int).tolist()
    step, per_frame, stop = 1 / (temporal_patch_size * rate), 1 / video_fps, int(seconds)
    indices, next_second = [], 0
    for i in range(total):
        if i * per_frame >= next_second:
            next_second += step
            indices.append(i)
            if next_second >= stop:
                break
    if len(indices) < wanted:
        start, end = (indices[0], indices[-1]) if indices else (0, max(total - 1, 0))
        return np.linspace(start, end, wanted, dtype=int).tolist()
    if len(indices) > wanted:
        return np.linspace(0, total - 1, wanted, dtype=int).tolist()
    return indices
