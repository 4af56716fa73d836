"""Pillow-exact, bandwidth-bound Qwen-VL (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) image preprocessing."""

from .config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PRESETS, VisionPreprocessConfig
from .functional import preprocess, resize, select_backend
from .module import QwenVisionPreprocessor
from .outputs import VisionBatch
from .sizing import smart_resize
from .tower import QwenVisionEncoder, fold_patch_embed_weight, tower_kwargs, vision_tower_inputs
from .video import VIDEO_PRESETS, VideoConfig, preprocess_videos, sample_frame_indices

__version__ = "0.1.0"

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "PRESETS",
    "QwenVisionEncoder",
    "QwenVisionPreprocessor",
    "VIDEO_PRESETS",
    "VisionBatch",
    "VideoConfig",
    "VisionPreprocessConfig",
    "__version__",
    "fold_patch_embed_weight",
    "preprocess",
    "preprocess_videos",
    "resize",
    "sample_frame_indices",
    "select_backend",
    "smart_resize",
    "tower_kwargs",
    "vision_tower_inputs",
]
