"""The frozen configs: :class:`VisionPreprocessConfig` (images, and what clips share with them) and
:class:`VideoConfig` (how clips are sized and sampled). The presets of the released models live in
:mod:`qwen_vis_prep.presets`, which registers them here so ``from_preset`` can find them."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from .sizing import SAMPLING_RULES, SamplingRule, sample_frame_indices
from .validation import check_choice, check_pixel_bounds, check_positive_int, replace_fields, three_floats

OPENAI_CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

ResizeMode = Literal["pil", "torch-uint8", "float"]
RESIZE_MODES: tuple[str, ...] = ("pil", "torch-uint8", "float")
PillowOrder = Literal["installed", "pillow12", "pillow13"]
InputRange = Literal["0-255", "0-1"]
VideoSizing = Literal["qwen2-vl", "qwen3-vl"]
ImageSizing = Literal["qwen2-vl", "glm4v", "paddleocr-vl"]
IMAGE_SIZINGS: tuple[str, ...] = ("qwen2-vl", "glm4v", "paddleocr-vl")
RowOrder = Literal["windows", "raster"]

_OUTPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Configs by their op key; weak, so the registry never outlives the configs themselves.
_BY_KEY: "weakref.WeakValueDictionary[str, VisionPreprocessConfig]" = weakref.WeakValueDictionary()
# name -> (image config, video config) of a preset; filled by qwen_vis_prep.presets (see register_presets)
_PRESET_LOOKUP: list[Callable[[str], tuple["VisionPreprocessConfig", "VideoConfig"]]] = []


@dataclass(frozen=True)
class VisionPreprocessConfig:
    """Everything that decides the output of the preprocessor.

    Field names follow the keys of Hugging Face's ``preprocessor_config.json``.

    * ``resize_mode``: which resize the output reproduces bit for bit.

      - ``"pil"``: Pillow BICUBIC on uint8 levels (qwen-vl-utils for still images; transformers' PIL
        backend);
      - ``"torch-uint8"``: torch's CPU uint8 antialiased bicubic kernel, ``F.interpolate(uint8,
        mode="bicubic", antialias=True)`` as x86-64 CPUs with AVX2 run it (transformers' torchvision
        backend and its video processors on CPU tensors);
      - ``"float"``: float antialiased bicubic (``F.interpolate`` on float input, what transformers runs on
        CUDA tensors and what qwen-vl-utils' ``fetch_video`` runs on clips, through torchvision's v1
        ``resize``), within float rounding rather than bit-exact; differentiable for float inputs.
    * ``pillow_order``: which Pillow generation's separable pass order ``"pil"`` mode reproduces:
      ``"installed"`` (default) follows the installed Pillow, ``"pillow12"`` always resizes horizontally
      first, ``"pillow13"`` resizes vertically first when the height shrinks by more than twice as many
      pixels as the width.
    * ``input_range``: the value scale of *float* inputs. ``"0-255"`` (default, as HF) means floats are on
      the uint8 scale and are multiplied by ``rescale_factor``; ``"0-1"`` means floats are already in
      [0, 1] (they are scaled by 255 first, so the same ``rescale_factor`` applies). Integer inputs are
      always on the 0..255 scale.
    * ``compact_images``: write still images once instead of ``temporal_patch_size`` times
      (``[N, C * P * P]``, half the bytes); fold the patch-embedding weight to match (see ``tower``).
    * ``sizing``: the image sizing rule (:mod:`qwen_vis_prep.sizing`): ``"qwen2-vl"`` (``smart_resize``,
      the Qwen and ERNIE processors), ``"glm4v"`` (:func:`~qwen_vis_prep.sizing.glm4v_smart_resize`, the
      GLM-4.1V/4.5V/4.6V processors) or ``"paddleocr-vl"``
      (:func:`~qwen_vis_prep.sizing.paddleocr_smart_resize`).
    * ``row_order``: ``"windows"`` (default) puts every ``merge_size**2`` consecutive rows in one merge
      window; ``"raster"`` lists patches row by row (PaddleOCR-VL, whose projector gathers the windows
      itself). ``temporal_patch_size = 1`` writes each image once (rows of ``3 * P * P``).
    """

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    image_mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    image_std: tuple[float, ...] = OPENAI_CLIP_STD
    rescale_factor: float = 1.0 / 255.0
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    do_convert_rgb: bool = True
    resize_mode: ResizeMode = "pil"
    pillow_order: PillowOrder = "installed"
    input_range: InputRange = "0-255"
    output_dtype: torch.dtype = field(default=torch.float32)
    compact_images: bool = False
    sizing: ImageSizing = "qwen2-vl"
    row_order: RowOrder = "windows"

    def __post_init__(self) -> None:
        for name in ("patch_size", "temporal_patch_size", "merge_size"):
            check_positive_int(name, getattr(self, name))
        check_pixel_bounds(self.min_pixels, self.max_pixels)
        if self.max_pixels < self.factor ** 2:  # the smallest output is one factor x factor block
            raise ValueError(f"max_pixels must be at least (patch_size * merge_size)**2 = {self.factor ** 2}, "
                             f"the smallest image the model takes, got max_pixels={self.max_pixels}")
        object.__setattr__(self, "image_mean", three_floats("image_mean", self.image_mean))
        object.__setattr__(self, "image_std", three_floats("image_std", self.image_std))
        if any(s == 0.0 for s in self.image_std):
            raise ValueError(f"image_std must be non-zero, got {self.image_std}")
        if not (isinstance(self.rescale_factor, (int, float)) and math.isfinite(self.rescale_factor)
                and self.rescale_factor > 0):
            raise ValueError(f"rescale_factor must be a positive finite number, got {self.rescale_factor!r}")
        object.__setattr__(self, "rescale_factor", float(self.rescale_factor))
        for name in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb", "compact_images"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        check_choice("resize_mode", self.resize_mode, RESIZE_MODES)
        check_choice("pillow_order", self.pillow_order, ("installed", "pillow12", "pillow13"))
        check_choice("input_range", self.input_range, ("0-255", "0-1"))
        check_choice("sizing", self.sizing, IMAGE_SIZINGS)
        check_choice("row_order", self.row_order, ("windows", "raster"))
        dtype = _parse_dtype(self.output_dtype)
        object.__setattr__(self, "output_dtype", dtype)
        # A plain-string name for the torch.library op (custom ops take no dataclasses; see functional.py).
        key = repr(self)
        object.__setattr__(self, "_op_key", key)
        _BY_KEY.setdefault(key, self)

    @property
    def factor(self) -> int:
        """Side multiple of every resized image: ``patch_size * merge_size``."""
        return self.patch_size * self.merge_size

    @property
    def row_merge_size(self) -> int:
        """Side, in patches, of the windows the output rows go by: ``merge_size``, or 1 with
        ``row_order="raster"``."""
        return 1 if self.row_order == "raster" else self.merge_size

    @property
    def image_frames(self) -> int:
        """Copies of a still image per patch row: ``temporal_patch_size``, or 1 with ``compact_images``."""
        return 1 if self.compact_images else self.temporal_patch_size

    @property
    def patch_dim(self) -> int:
        """Columns of image ``pixel_values``: ``3 * image_frames * patch_size**2`` (1176 for Qwen2-VL)."""
        return 3 * self.image_frames * self.patch_size * self.patch_size

    def replace(self, **changes: Any) -> "VisionPreprocessConfig":
        """A copy with some fields changed (validated again)."""
        return replace_fields(self, changes, "config")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "VisionPreprocessConfig":
        """The image config of a model preset (:mod:`qwen_vis_prep.presets`), with fields overridden."""
        config = _registered(name)[0]
        return config.replace(**overrides) if overrides else config


@dataclass(frozen=True)
class VideoConfig:
    """How clips are sized and resized; everything else (patch sizes, mean/std, output dtype ...) comes from
    the image :class:`VisionPreprocessConfig`.

    * ``sizing="qwen2-vl"`` is ``Qwen2VLVideoProcessor`` (Qwen2-VL and Qwen2.5-VL): the image
      ``smart_resize`` per frame, ``min_pixels <= h * w <= max_pixels``.
    * ``sizing="qwen3-vl"`` is ``Qwen3VLVideoProcessor``: :func:`smart_resize_video`, whose pixel bounds
      count all frames (``round(T / Tp) * Tp * h * w``); clips need at least ``temporal_patch_size`` frames.
    * ``cap_pixels_per_frame`` bounds each frame the way qwen-vl-utils does (transformers' option of the same
      name, off by default in transformers 5.24): ``max_video_tokens`` sets the budget (total context tokens
      for ``"qwen2-vl"``, tokens per frame for ``"qwen3-vl"``).
    * ``fps``, ``min_frames``, ``max_frames`` are the defaults of :meth:`sample_indices`, whose rule is
      ``sampling`` (:func:`~qwen_vis_prep.sizing.sample_frame_indices`; ``None``: the rule named by
      ``sizing``; the GLM presets sample with ``"glm4v"`` / ``"glm46v"``).
    * ``resize_mode`` replaces the image config's for clips (see :class:`VisionPreprocessConfig`). The
      default ``"torch-uint8"`` is what transformers' video processors run on CPU clips. qwen-vl-utils'
      ``fetch_video`` resizes clips in float32 instead (torchvision's v1 ``resize`` casts uint8 to float):
      ``"float"`` is within one level of it (docs/resize_modes.md).
    """

    min_pixels: int
    max_pixels: int
    sizing: VideoSizing = "qwen2-vl"
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 128000
    fps: float | None = None
    min_frames: int = 4
    max_frames: int = 768
    resize_mode: ResizeMode = "torch-uint8"
    sampling: SamplingRule | None = None

    def __post_init__(self) -> None:
        check_choice("resize_mode", self.resize_mode, RESIZE_MODES)
        if self.sampling is not None:
            check_choice("sampling", self.sampling, SAMPLING_RULES)
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
        """The video config of a model preset (:mod:`qwen_vis_prep.presets`), with fields overridden."""
        config = _registered(name)[1]
        return config.replace(**overrides) if overrides else config

    @property
    def sampling_rule(self) -> str:
        """The rule of :meth:`sample_indices`: ``sampling``, or the one ``sizing`` names."""
        return self.sampling or self.sizing

    def sample_indices(self, total_frames: int, video_fps: float | None = None, *, fps: float | None = None,
                       num_frames: int | None = None, temporal_patch_size: int = 2,
                       duration: float | None = None) -> list[int]:
        """:func:`sample_frame_indices` with this config's rule and frame defaults."""
        if fps is None and num_frames is None:
            fps = self.fps
        return sample_frame_indices(total_frames, video_fps, fps=fps, num_frames=num_frames,
                                    min_frames=self.min_frames, max_frames=self.max_frames,
                                    temporal_patch_size=temporal_patch_size, rule=self.sampling_rule,
                                    duration=duration)


def _parse_dtype(value: Any) -> torch.dtype:
    aliases = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
               "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if isinstance(value, str):
        if value not in aliases:
            raise ValueError(f"output_dtype must be one of {sorted(aliases)}, got {value!r}")
        return aliases[value]
    if value not in _OUTPUT_DTYPES:
        raise ValueError(f"output_dtype must be torch.float32, torch.bfloat16 or torch.float16, got {value!r}")
    return value


def register_presets(lookup: Callable[[str], tuple[VisionPreprocessConfig, VideoConfig]]) -> None:
    """Set how ``from_preset`` finds a preset by name (called once by :mod:`qwen_vis_prep.presets`)."""
    _PRESET_LOOKUP[:] = [lookup]


def _registered(name: str) -> tuple[VisionPreprocessConfig, VideoConfig]:
    (lookup,) = _PRESET_LOOKUP
    return lookup(name)
