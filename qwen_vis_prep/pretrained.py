"""Configs from Hugging Face checkpoints: ``preprocessor_config.json`` <-> :class:`VisionPreprocessConfig`.

Reads the files the checkpoints of the Qwen-style family were released with: ``image_processor_type``
names transformers' class (``Qwen2VLImageProcessor``, ``Glm4vImageProcessor``, ``Glm46VImageProcessor``,
``PaddleOCRVLImageProcessor``, ``Ernie4_5_VLMoeImageProcessor``; a ``Fast`` or ``Pil`` suffix is the same
class), whose class defaults fill the keys the file leaves out and whose sizing rule and row order the config
takes (:data:`HF_IMAGE_PROCESSORS`). The pixel budget comes in both spellings (top-level
``min_pixels``/``max_pixels``, or ``size = {"shortest_edge", "longest_edge"}``). Sources: a local model
directory, a JSON file or the dict itself. Nothing is downloaded: a hub id resolves only when the file is
already in the local Hugging Face cache.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .config import VisionPreprocessConfig

PREPROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
VIDEO_PREPROCESSOR_FILE = "video_preprocessor_config.json"
# the files a model directory (or the Hugging Face cache) is searched for, in order, per kind of processor
_FILES = {"image": (PREPROCESSOR_FILE, PROCESSOR_FILE),
          "video": (VIDEO_PREPROCESSOR_FILE, PROCESSOR_FILE, PREPROCESSOR_FILE)}

# Keys copied one to one onto config fields.
_DIRECT_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std", "rescale_factor",
                "do_resize", "do_rescale", "do_normalize", "do_convert_rgb")
# Keys that name the processor or only steer how HF lays out or groups its work: no effect on the output.
_IGNORED_KEYS = frozenset({
    "image_processor_type", "processor_class", "feature_extractor_type", "auto_map", "_processor_class",
    "data_format", "input_data_format", "device", "return_tensors", "disable_grouping", "default_to_square",
    "_valid_processor_keys", "_valid_kwargs_names", "image_seq_length", "transformers_version",
})
# Keys HF accepts that would change the output, allowed only at the value Qwen's processors use.
_NEUTRAL_VALUES = {
    "resample": (3, None),  # PIL.Image.BICUBIC; the only filter the Qwen processors are trained with
    "do_center_crop": (False, None),
    "crop_size": (None,),
    "do_pad": (False, None),
    "pad_size": (None,),
}
_BICUBIC_NAMES = ("bicubic", "BICUBIC")


@dataclass(frozen=True)
class HFImageProcessorClass:
    """What one of transformers' image processor classes does with a ``preprocessor_config.json``:
    ``defaults`` is the config of its class defaults (what the file leaves out; also the sizing rule and row
    order of every config read for it), ``pixel_keys`` whether it reads top-level ``min_pixels`` /
    ``max_pixels`` (the GLM and ERNIE classes honour only ``size``)."""

    defaults: VisionPreprocessConfig
    pixel_keys: bool = True


_GLM = HFImageProcessorClass(VisionPreprocessConfig(min_pixels=112 * 112, max_pixels=28 * 28 * 15000, sizing="glm4v"),
                             pixel_keys=False)
_ERNIE = HFImageProcessorClass(VisionPreprocessConfig(temporal_patch_size=1, max_pixels=28 * 28 * 6177),
                               pixel_keys=False)
#: transformers' image processor classes (``image_processor_type`` without ``Fast``/``Pil``) this package
#: reproduces; a file that names none of them is read as ``Qwen2VLImageProcessor``'s.
HF_IMAGE_PROCESSORS: dict[str, HFImageProcessorClass] = {
    "Qwen2VLImageProcessor": HFImageProcessorClass(VisionPreprocessConfig()),
    "Glm4vImageProcessor": _GLM,
    "Glm46VImageProcessor": _GLM,
    "PaddleOCRVLImageProcessor": HFImageProcessorClass(VisionPreprocessConfig(
        temporal_patch_size=1, min_pixels=384 * 384, max_pixels=1536 * 1536, sizing="paddleocr-vl",
        row_order="raster")),
    "Ernie4_5_VLMoeImageProcessor": _ERNIE,
    "Ernie4_5_VL_MoeImageProcessor": _ERNIE,  # transformers' deprecated spelling of the same class
}


def processor_class(data: Mapping[str, Any], origin: str = "the given dict") -> HFImageProcessorClass:
    """The :class:`HFImageProcessorClass` a ``preprocessor_config.json`` dict names (``image_processor_type``;
    Qwen2-VL's when it names none). Raises :class:`PretrainedConfigError` for a class of another family."""
    name = data.get("image_processor_type")
    if name is None:
        return HF_IMAGE_PROCESSORS["Qwen2VLImageProcessor"]
    base = str(name).removesuffix("Fast").removesuffix("Pil")
    if base not in HF_IMAGE_PROCESSORS:
        raise PretrainedConfigError(f"{origin}: image_processor_type={name!r} is not one this package reproduces; "
                                    f"expected one of {sorted(HF_IMAGE_PROCESSORS)} (a 'Fast' or 'Pil' suffix "
                                    f"is the same class)")
    return HF_IMAGE_PROCESSORS[base]


def hf_class_name(config: VisionPreprocessConfig) -> str:
    """The transformers image processor class that sizes and lays out rows as ``config`` does (the first in
    :data:`HF_IMAGE_PROCESSORS` with its sizing rule and row order); ``ValueError`` where none does."""
    for name, cls in HF_IMAGE_PROCESSORS.items():
        if (cls.defaults.sizing, cls.defaults.row_order) == (config.sizing, config.row_order):
            return name
    raise ValueError(f"no transformers image processor sizes with sizing={config.sizing!r} and lays rows out in "
                     f"row_order={config.row_order!r}")


class PretrainedConfigError(ValueError):
    """A ``preprocessor_config.json`` that cannot be turned into a :class:`VisionPreprocessConfig`."""


def load_preprocessor_dict(source: str | os.PathLike | Mapping[str, Any], kind: str = "image"
                           ) -> tuple[dict[str, Any], str]:
    """The image- (or, with ``kind="video"``, video-) processor dict of ``source`` and a short name of where
    it came from (for messages).

    ``source`` is a dict, a JSON path, a local model directory, or a hub id already in the local Hugging
    Face cache. In a directory, images read ``preprocessor_config.json``, else ``processor_config.json``;
    videos read ``video_preprocessor_config.json``, else ``processor_config.json``, else
    ``preprocessor_config.json`` (as transformers falls back for checkpoints that ship no video file). A
    ``processor_config.json`` (one file for all sub-processors) contributes its ``"image_processor"`` /
    ``"video_processor"`` entry.
    """
    files = _FILES[kind]
    if isinstance(source, Mapping):
        data, origin = dict(source), "the given dict"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            path = _file_in_dir(path, files)
        elif not path.exists():
            path = _from_hf_cache(str(source), files)
        data, origin = _read_json(path), str(path)
    else:
        raise TypeError(f"from_pretrained expects a model directory, a {files[0]} path or a dict, "
                        f"got {type(source).__name__}")
    entry = f"{kind}_processor"
    if isinstance(data.get(entry), Mapping):  # processor_config.json layout
        data = dict(data[entry])
    return data, origin


def config_from_hf(source: str | os.PathLike | Mapping[str, Any], *, strict: bool = True,
                   **overrides: Any) -> VisionPreprocessConfig:
    """A :class:`VisionPreprocessConfig` from a Hugging Face image-processor config.

    Rules (each one mirrors what the transformers class the file names does with it, see
    :func:`processor_class`):

    * the sizing rule and row order are the class's; missing keys take its class defaults;
    * the pixel budget comes from ``size = {"shortest_edge": min, "longest_edge": max}`` (or
      ``{"min_pixels", "max_pixels"}``) and, for the classes that read them, from top-level
      ``min_pixels``/``max_pixels``; when both are present and disagree, the top-level key wins (as in
      transformers) and a ``UserWarning`` says so; the GLM and ERNIE classes ignore the top-level keys
      (a ``UserWarning`` says so);
    * keys that only name the processor or steer HF's work layout (``image_processor_type``,
      ``data_format``, ``device`` ...) are ignored; ``resample`` must be 3 (bicubic) and crop/pad must be off;
    * any other key raises :class:`PretrainedConfigError` (``strict=False``: a ``UserWarning`` instead and
      the key is ignored).

    ``overrides`` are config fields set on top (``resize_mode="float"``, ``output_dtype=torch.bfloat16`` ...).
    """
    data, origin = load_preprocessor_dict(source)
    cls = processor_class(data, origin)
    fields: dict[str, Any] = {}
    unknown = []
    for key, value in data.items():
        if key in _DIRECT_KEYS:
            if value is not None:
                fields[key] = tuple(value) if isinstance(value, list) else value
        elif key in _NEUTRAL_VALUES:
            _check_neutral(key, value, origin)
        elif key not in _IGNORED_KEYS and key not in ("size", "min_pixels", "max_pixels"):
            unknown.append(key)
    if unknown:
        message = (f"{origin}: unknown key(s) {sorted(unknown)}; qwen_vis_prep cannot tell whether they change "
                   f"the preprocessing. Known keys: {sorted(_known_keys())}")
        if strict:
            raise PretrainedConfigError(message + ". Pass strict=False to ignore them with a warning")
        warnings.warn(message + "; ignored (strict=False)", UserWarning, stacklevel=2)
    if not cls.pixel_keys:
        ignored = [k for k in ("min_pixels", "max_pixels") if data.get(k) is not None]
        if ignored:
            warnings.warn(f"{origin}: {data.get('image_processor_type')} reads its pixel budget from 'size' only; "
                          f"{ignored} have no effect there and are ignored, as in transformers", UserWarning,
                          stacklevel=2)
        data = {k: v for k, v in data.items() if k not in ("min_pixels", "max_pixels")}
    fields.update(_pixel_budget(data, origin))
    fields.update(overrides)
    try:
        return cls.defaults.replace(**fields)
    except (TypeError, ValueError) as e:
        raise PretrainedConfigError(f"{origin}: {e}") from None


def to_hf_dict(config: VisionPreprocessConfig) -> dict[str, Any]:
    """The ``preprocessor_config.json`` dict (``size`` form, as transformers 5 writes it) of ``config``.

    ``Qwen2VLImageProcessor(**to_hf_dict(c))`` is HF's processor with the same output as ``c`` in
    ``resize_mode="pil"`` (this package's extra fields such as ``output_dtype`` have no HF counterpart);
    for a config of another family's sizing or row order, that family's class (``image_processor_type``,
    :func:`hf_class_name`).
    """
    return {
        "image_processor_type": hf_class_name(config),
        "do_convert_rgb": config.do_convert_rgb,
        "do_normalize": config.do_normalize,
        "do_rescale": config.do_rescale,
        "do_resize": config.do_resize,
        "image_mean": list(config.image_mean),
        "image_std": list(config.image_std),
        "merge_size": config.merge_size,
        "patch_size": config.patch_size,
        "resample": 3,
        "rescale_factor": config.rescale_factor,
        "size": {"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels},
        "temporal_patch_size": config.temporal_patch_size,
    }


def _known_keys() -> set[str]:
    return {*_DIRECT_KEYS, *_NEUTRAL_VALUES, *_IGNORED_KEYS, "size", "min_pixels", "max_pixels"}


def _check_neutral(key: str, value: Any, origin: str) -> None:
    if key == "resample" and value in _BICUBIC_NAMES:
        return
    if value not in _NEUTRAL_VALUES[key]:
        allowed = " or ".join(repr(v) for v in _NEUTRAL_VALUES[key])
        raise PretrainedConfigError(f"{origin}: {key}={value!r} is not supported; the Qwen-VL preprocessing "
                                    f"uses {key}={allowed}")


def _pixel_budget(data: Mapping[str, Any], origin: str) -> dict[str, int]:
    """``min_pixels``/``max_pixels`` from the ``size`` dict and the top-level keys (top level wins)."""
    size = data.get("size")
    from_size: dict[str, Any] = {}
    if size is not None:
        if not isinstance(size, Mapping):
            raise PretrainedConfigError(f"{origin}: size must be a dict with 'shortest_edge' and 'longest_edge' "
                                        f"(pixel counts), got {size!r}")
        extra = set(size) - {"shortest_edge", "longest_edge", "min_pixels", "max_pixels"}
        if extra:
            raise PretrainedConfigError(f"{origin}: Qwen-VL's size dict holds pixel counts under 'shortest_edge' "
                                        f"and 'longest_edge' (or 'min_pixels'/'max_pixels'), got keys "
                                        f"{sorted(size)}")
        for name, keys in (("min_pixels", ("shortest_edge", "min_pixels")),
                           ("max_pixels", ("longest_edge", "max_pixels"))):
            values = {size[k] for k in keys if size.get(k) is not None}
            if len(values) > 1:
                raise PretrainedConfigError(f"{origin}: size gives two different {name}: "
                                            f"{ {k: size[k] for k in keys if k in size} }")
            if values:
                from_size[name] = values.pop()
    out: dict[str, Any] = {}
    for name in ("min_pixels", "max_pixels"):
        top = data.get(name)
        if top is not None and name in from_size and from_size[name] != top:
            edge = "shortest_edge" if name == "min_pixels" else "longest_edge"
            warnings.warn(f"{origin}: {name}={top} contradicts size['{edge}']={from_size[name]}; using "
                          f"{name}={top}, as transformers does", UserWarning, stacklevel=3)
        value = top if top is not None else from_size.get(name)
        if value is not None:
            out[name] = value
    return out


def _file_in_dir(directory: Path, files: tuple[str, ...] = _FILES["image"]) -> Path:
    for name in files:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {files[0]} (or {', '.join(files[1:])}) in this directory")


def _from_hf_cache(source: str, files: tuple[str, ...] = _FILES["image"]) -> Path:
    """A hub id's ``preprocessor_config.json`` from the local Hugging Face cache, never from the network.

    ``source`` names nothing on disk. It is looked up in the cache only when it has the shape of a hub id,
    ``owner/name``: ASCII letters, digits, '-', '_' and '.', each part at most 96 characters, not starting or
    ending with '-' or '.', no '--' or '..'; so never an absolute path, never a path starting with '.' or
    '~', never a '.json' path. Anything else is a FileNotFoundError "no such file or directory" naming it.
    """
    import re

    part = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
    looks_like_id = (not os.path.isabs(source) and not source.startswith((".", "~"))
                     and not source.endswith(".json") and "--" not in source and ".." not in source
                     and re.fullmatch(f"{part}/{part}", source) is not None)
    if not looks_like_id:
        raise FileNotFoundError(f"{source}: no such file or directory (expected a model directory, a "
                                f"{PREPROCESSOR_FILE} path or a hub id 'owner/name' in the local Hugging Face "
                                f"cache)")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        try_to_load_from_cache = None
    if try_to_load_from_cache is not None:
        for name in files:
            try:
                found = try_to_load_from_cache(source, name)
            except ValueError:  # huggingface_hub's own id check, should it be stricter than the one above
                raise FileNotFoundError(f"{source}: no such file or directory (expected a model directory, a "
                                        f"{PREPROCESSOR_FILE} path or a valid hub id 'owner/name')") from None
            if isinstance(found, str):
                return Path(found)
    raise FileNotFoundError(f"{source!r} is neither a local path nor a hub id in the local Hugging Face "
                            f"cache; qwen_vis_prep never downloads. Fetch the checkpoint first (for example "
                            f"huggingface_hub.snapshot_download({source!r}, allow_patterns=['*.json'])) and "
                            f"pass its directory")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise PretrainedConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise PretrainedConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
