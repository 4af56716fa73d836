"""Frozen preprocessing config and the presets of the released Qwen-VL checkpoints."""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

OPENAI_CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

ResizeMode = Literal["pil", "float"]
PillowOrder = Literal["installed", "pillow12", "pillow13"]
InputRange = Literal["0-255", "0-1"]

_OUTPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Configs by their op key; weak, so the registry never outlives the configs themselves.
_BY_KEY: "weakref.WeakValueDictionary[str, VisionPreprocessConfig]" = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class VisionPreprocessConfig:
    """Everything that decides the output of the preprocessor.

    Field names follow the keys of Hugging Face's ``preprocessor_config.json``.

    * ``resize_mode``: ``"pil"`` is bit-exact Pillow BICUBIC on uint8 levels (what the models were trained
      with); ``"float"`` is single-pass float antialiased bicubic (``F.interpolate(..., antialias=True)``,
      HF's torchvision backend), differentiable for float inputs.
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

    def __post_init__(self) -> None:
        for name in ("patch_size", "temporal_patch_size", "merge_size"):
            check_positive_int(name, getattr(self, name))
        check_pixel_bounds(self.min_pixels, self.max_pixels)
        if self.max_pixels < self.factor ** 2:  # the smallest output is one factor x factor block
            raise ValueError(f"max_pixels must be at least (patch_size * merge_size)**2 = {self.factor ** 2}, "
                             f"the smallest image the model takes, got max_pixels={self.max_pixels}")
        object.__setattr__(self, "image_mean", _three_floats("image_mean", self.image_mean))
        object.__setattr__(self, "image_std", _three_floats("image_std", self.image_std))
        if any(s == 0.0 for s in self.image_std):
            raise ValueError(f"image_std must be non-zero, got {self.image_std}")
        if not (isinstance(self.rescale_factor, (int, float)) and math.isfinite(self.rescale_factor)
                and self.rescale_factor > 0):
            raise ValueError(f"rescale_factor must be a positive finite number, got {self.rescale_factor!r}")
        object.__setattr__(self, "rescale_factor", float(self.rescale_factor))
        for name in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb", "compact_images"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _check_choice("resize_mode", self.resize_mode, ("pil", "float"))
        _check_choice("pillow_order", self.pillow_order, ("installed", "pillow12", "pillow13"))
        _check_choice("input_range", self.input_range, ("0-255", "0-1"))
        dtype = _parse_dtype(self.output_dtype)
        object.__setattr__(self, "output_dtype", dtype)
        # A plain-string name for torch.library ops (custom ops take no dataclasses; see custom_ops.py).
        key = repr(self)
        object.__setattr__(self, "_op_key", key)
        _BY_KEY.setdefault(key, self)

    @property
    def factor(self) -> int:
        """Side multiple of every resized image: ``patch_size * merge_size``."""
        return self.patch_size * self.merge_size

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
        """The config of a released checkpoint family: ``"qwen2-vl"``, ``"qwen2.5-vl"`` or ``"qwen3-vl"``."""
        preset = PRESETS[preset_key(name)]
        return preset.replace(**overrides) if overrides else preset


def preset_key(name: str) -> str:
    """The :data:`PRESETS` key of a preset name (case, ``_`` and ``qwen2-5`` spellings accepted)."""
    key = name.lower().replace("_", "-").replace("qwen2-5", "qwen2.5")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return key


def check_positive_int(name: str, value: Any) -> None:
    """``TypeError`` unless ``value`` is an int (not a bool), ``ValueError`` unless it is positive."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def check_pixel_bounds(min_pixels: Any, max_pixels: Any) -> None:
    """Both positive ints and ``min_pixels <= max_pixels``."""
    check_positive_int("min_pixels", min_pixels)
    check_positive_int("max_pixels", max_pixels)
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels must be <= max_pixels, got min_pixels={min_pixels} > "
                         f"max_pixels={max_pixels}")


def replace_fields(obj: Any, changes: dict[str, Any], what: str) -> Any:
    """``dataclasses.replace`` that names unknown fields (a ``TypeError`` listing the valid ones)."""
    names = [f.name for f in dataclasses.fields(obj)]
    unknown = set(changes) - set(names)
    if unknown:
        raise TypeError(f"unknown {what} field(s) {sorted(unknown)}; expected some of {names}")
    return dataclasses.replace(obj, **changes)


def _three_floats(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * 3
    try:
        if isinstance(value, (str, bytes)):  # iterable, but "123" is not three numbers
            raise TypeError
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a float or a sequence of 3 floats, got {value!r}") from None
    if len(out) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {len(out)}: {out}")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


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


PRESETS: dict[str, VisionPreprocessConfig] = {
    # Qwen/Qwen2-VL-*-Instruct and Qwen/Qwen2.5-VL-*-Instruct preprocessor_config.json
    "qwen2-vl": VisionPreprocessConfig(patch_size=14, min_pixels=3136, max_pixels=12845056),
    "qwen2.5-vl": VisionPreprocessConfig(patch_size=14, min_pixels=3136, max_pixels=12845056),
    # Qwen/Qwen3-VL-*: size {"shortest_edge": 65536, "longest_edge": 16777216}, mean/std 0.5
    "qwen3-vl": VisionPreprocessConfig(patch_size=16, min_pixels=65536, max_pixels=16777216,
                                       image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
}
