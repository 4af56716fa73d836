"""The video API in one place: decoding (``video_decode``), clip sizing and frame sampling (``sizing``), the
video configs (``config``, ``presets``) and :func:`preprocess_videos` (``functional``).

A clip ``[T, C, H, W]`` is resized frame by frame to the clip's one target size, normalised like images, and
laid out so the ``temporal_patch_size`` columns of a row hold consecutive *real* frames
(``pixel_values_videos [sum_i t_i * h_i * w_i, C * Tp * P * P]``, ``video_grid_thw [num_videos, 3]`` with
``t_i = ceil(T_i / Tp)``), as transformers' video processors lay them out.
"""

from __future__ import annotations

from .checks import prepare_videos
from .config import VideoConfig, VideoSizing
from .contract import VideoBatch
from .functional import plan_videos, preprocess_videos, resolve_video_config
from .presets import VIDEO_PRESETS, default_video_config
from .sizing import SamplingRule, sample_frame_indices, smart_resize_video, video_grid_thw, video_target_size
from .video_decode import DecodedVideo, VideoLoadError, VideoMetadata, load_video

__all__ = [
    "DecodedVideo",
    "SamplingRule",
    "VIDEO_PRESETS",
    "VideoBatch",
    "VideoConfig",
    "VideoLoadError",
    "VideoMetadata",
    "VideoSizing",
    "default_video_config",
    "load_video",
    "plan_videos",
    "prepare_videos",
    "preprocess_videos",
    "resolve_video_config",
    "sample_frame_indices",
    "smart_resize_video",
    "video_grid_thw",
    "video_target_size",
]
