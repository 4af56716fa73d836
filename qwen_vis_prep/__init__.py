"""Pillow-exact, bandwidth-bound Qwen-VL (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) image preprocessing."""

from .config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PRESETS, VisionPreprocessConfig
from .functional import preprocess, resize, select_backend
from .module import QwenVisionPreprocessor
from .outputs import VisionBatch
from .sizing import smart_resize

__version__ = "0.1.0"

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "PRESETS",
    "QwenVisionPreprocessor",
    "VisionBatch",
    "VisionPreprocessConfig",
    "__version__",
    "preprocess",
    "resize",
    "select_backend",
    "smart_resize",
]
