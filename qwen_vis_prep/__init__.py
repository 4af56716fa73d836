"""Pillow-exact, bandwidth-bound Qwen-VL (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) image and video preprocessing."""

from . import io
from .config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, VideoConfig, VisionPreprocessConfig
from .encoder import QwenVisionEncoder
from .functional import preprocess, preprocess_videos, resize, select_backend
from .module import QwenVisionPreprocessor
from .outputs import VisionBatch
from .presets import MODEL_PRESETS, PRESETS, VIDEO_PRESETS, ModelPreset
from .sizing import sample_frame_indices, smart_resize
from .tower import fold_patch_embed_weight, tower_kwargs, vision_tower_inputs
from .video_decode import DecodedVideo, VideoLoadError, load_video

__version__ = "0.1.0"

__all__ = [
    "DecodedVideo",
    "MODEL_PRESETS",
    "ModelPreset",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "PRESETS",
    "QwenVisionEncoder",
    "QwenVisionPreprocessor",
    "VIDEO_PRESETS",
    "VideoLoadError",
    "VisionBatch",
    "VideoConfig",
    "VisionPreprocessConfig",
    "__version__",
    "fold_patch_embed_weight",
    "io",
    "load_video",
    "preprocess",
    "preprocess_videos",
    "resize",
    "sample_frame_indices",
    "select_backend",
    "smart_resize",
    "tower_kwargs",
    "vision_tower_inputs",
]
