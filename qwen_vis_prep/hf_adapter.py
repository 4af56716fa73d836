"""A drop-in for transformers' Qwen-VL image processor, backed by this package.

``HFQwenImageProcessor`` takes Hugging Face's calling convention (``images=..., videos=..., return_tensors=,
device=``, per-call ``size``/``min_pixels``/... overrides) and returns a ``BatchFeature`` with HF's keys
(``pixel_values``, ``image_grid_thw``, ``pixel_values_videos``, ``video_grid_thw``). It is an
``ImageProcessingMixin``, so it can be the ``image_processor`` of ``Qwen2VLProcessor``,
``Qwen2_5_VLProcessor``, ``Qwen3VLProcessor`` and of the other families' processors (``Glm4vProcessor``,
``PaddleOCRVLProcessor``, ``Ernie4_5_VLMoeProcessor``, the Omni and dots3-note processors: see
``docs/model_family.md``); the text side counts its placeholder tokens from ``image_grid_thw`` and
``merge_size`` exactly as with the stock processor.

Needs ``transformers`` (imported by this module only).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import numpy as np
import torch
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_base import BatchFeature, ImageProcessingMixin
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessorKwargs
from transformers.video_processing_utils import VideoProcessorMixin
from transformers.video_utils import VideoMetadata as HFVideoMetadata
from transformers.video_utils import make_batched_metadata, make_batched_videos

from .config import VideoConfig, VisionPreprocessConfig
from .functional import Backend, preprocess, preprocess_videos, resolve_config, resolve_video_config
from .pretrained import PretrainedConfigError, config_from_hf, load_preprocessor_dict, to_hf_dict
from .sizing import target_size

# Config fields with no counterpart in preprocessor_config.json: kept from the adapter's config on every call.
_OWN_FIELDS = ("resize_mode", "pillow_order", "input_range", "output_dtype", "compact_images")
# Per-call keys that change the config, as HF's Qwen image processors accept them.
_CONFIG_KWARGS = frozenset({"size", "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size",
                            "do_resize", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
                            "do_convert_rgb", "resample", "do_center_crop", "crop_size", "do_pad", "pad_size"})
# transformers' video processor classes (name prefix) -> the frame sampling rule they run
_VIDEO_CLASS_RULES = (("Qwen3VL", "qwen3-vl"), ("Glm46V", "glm46v"), ("Glm4v", "glm4v"), ("Qwen2VL", "qwen2-vl"))
# keys of a saved processor file that name things rather than set them
_NAMING_KEYS = frozenset({"processor_class", "auto_map", "_processor_class", "transformers_version"})
# the rules whose transformers classes sample frames unless told not to (Qwen2VLVideoProcessor keeps all)
_SAMPLES_BY_DEFAULT = ("qwen3-vl", "glm4v", "glm46v")
# Per-call keys HF accepts that do not change this output (grouping, batching and layout hints).
_INERT_KWARGS = frozenset({"disable_grouping", "default_to_square", "image_seq_length", "return_metadata"})


class HFQwenImageProcessor(ImageProcessingMixin):
    """Qwen-VL image processor with transformers' interface, computed by :func:`qwen_vis_prep.preprocess`.

    ``HFQwenImageProcessor(config_or_preset)``, ``.from_pretrained(model_dir | json | dict)`` or
    ``.from_hf(stock_image_processor)``. HF-named attributes (``merge_size``, ``patch_size``, ``size``,
    ``min_pixels``, ``max_pixels`` ...) read and write the underlying :attr:`config`.

    Differences from the stock processor, on purpose: outputs are computed on ``device`` (or the input
    tensors' device) by this package's backends; a path string is decoded with :func:`qwen_vis_prep.io.
    load_images` (transparency composited onto white, as HF does for PIL images, where HF's own path loader
    drops the alpha channel).
    """

    model_input_names = ["pixel_values", "image_grid_thw"]
    valid_kwargs = Qwen2VLImageProcessorKwargs

    def __init__(self, config: VisionPreprocessConfig | str | None = None, *, backend: Backend = "auto",
                 video_config: Any = None, **hf_keys: Any) -> None:
        super().__init__()
        # videos=...: sized by qwen_vis_prep.video's VideoConfig (None: the preset of this config's family)
        self.video_config = video_config
        self.config = resolve_config(config)
        if hf_keys:  # preprocessor_config.json keys on top (what AutoImageProcessor.from_dict would pass)
            self.config = self._call_config(hf_keys)
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
        self.backend = backend

    # ------------------------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | Mapping[str, Any], *, backend: Backend = "auto",
                        strict: bool = True, video_config: Any = None, **overrides: Any) -> "HFQwenImageProcessor":
        """From a local model directory, a ``preprocessor_config.json`` path or its dict (never downloads);
        ``overrides`` are :class:`VisionPreprocessConfig` fields."""
        return cls(config_from_hf(source, strict=strict, **overrides), backend=backend, video_config=video_config)

    @classmethod
    def from_hf(cls, image_processor: Any, *, backend: Backend = "auto", **overrides: Any) -> "HFQwenImageProcessor":
        """The same preprocessing as a stock HF Qwen-VL image processor, including its resize: a PIL-backend
        processor (``...ImageProcessorPil``) gives ``resize_mode="pil"``, a torchvision-backend one (the
        default class) ``"torch-uint8"``, the uint8 kernel it runs on CPU tensors (``overrides`` win)."""
        overrides.setdefault("resize_mode", stock_resize_mode(image_processor))
        return cls(config_from_hf(image_processor.to_dict(), **overrides), backend=backend)

    # ---------------------------------------------------------------------------------- HF attributes

    def _set(self, **changes: Any) -> None:
        self.config = self.config.replace(**changes)

    patch_size = property(lambda self: self.config.patch_size, lambda self, v: self._set(patch_size=v))
    temporal_patch_size = property(lambda self: self.config.temporal_patch_size,
                                   lambda self, v: self._set(temporal_patch_size=v))
    merge_size = property(lambda self: self.config.merge_size, lambda self, v: self._set(merge_size=v))
    min_pixels = property(lambda self: self.config.min_pixels, lambda self, v: self._set(min_pixels=v))
    max_pixels = property(lambda self: self.config.max_pixels, lambda self, v: self._set(max_pixels=v))
    image_mean = property(lambda self: list(self.config.image_mean), lambda self, v: self._set(image_mean=v))
    image_std = property(lambda self: list(self.config.image_std), lambda self, v: self._set(image_std=v))
    rescale_factor = property(lambda self: self.config.rescale_factor, lambda self, v: self._set(rescale_factor=v))
    do_resize = property(lambda self: self.config.do_resize, lambda self, v: self._set(do_resize=v))
    do_rescale = property(lambda self: self.config.do_rescale, lambda self, v: self._set(do_rescale=v))
    do_normalize = property(lambda self: self.config.do_normalize, lambda self, v: self._set(do_normalize=v))
    do_convert_rgb = property(lambda self: self.config.do_convert_rgb, lambda self, v: self._set(do_convert_rgb=v))
    resample = 3  # PIL.Image.BICUBIC, the only filter

    @property
    def size(self) -> dict[str, int]:
        return {"shortest_edge": self.config.min_pixels, "longest_edge": self.config.max_pixels}

    @size.setter
    def size(self, value: Mapping[str, int]) -> None:
        self.config = self._call_config({"size": dict(value)})

    def get_number_of_image_patches(self, height: int, width: int, images_kwargs: dict | None = None) -> int:
        """Patches (``grid_h * grid_w``) of an image of this size, without the image (vLLM asks this)."""
        config = self._call_config(dict(images_kwargs or {}))
        h, w = target_size(height, width, config) if config.do_resize else (height, width)
        return (h // config.patch_size) * (w // config.patch_size)

    def to_dict(self) -> dict[str, Any]:
        """HF's ``preprocessor_config.json`` form; saved files load in stock transformers as the image
        processor class of this config's family (``Qwen2VLImageProcessor``, ``Glm4vImageProcessor``,
        ``PaddleOCRVLImageProcessor``; this package's own fields such as ``output_dtype`` are not saved)."""
        return to_hf_dict(self.config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r}, backend={self.backend!r})"

    # --------------------------------------------------------------------------------------- calling

    def __call__(self, images: Any = None, videos: Any = None, *, return_tensors: str | None = None,
                 device: str | torch.device | None = None, **kwargs: Any) -> BatchFeature:
        """``images`` (a PIL image, array, tensor, path, or a possibly nested list of them) and/or ``videos``
        -> ``BatchFeature`` with ``pixel_values`` + ``image_grid_thw`` and/or ``pixel_values_videos`` +
        ``video_grid_thw``. ``device`` moves inputs there first (decoding JPEG paths with nvJPEG on CUDA);
        other keywords are HF's per-call overrides (``size``, ``min_pixels``, ``do_normalize`` ...)."""
        data_format = kwargs.pop("data_format", None)
        if data_format not in (None, "channels_first") and str(data_format) != "ChannelDimension.FIRST":
            raise ValueError(f"data_format={data_format!r}: Qwen-VL outputs are flat patches, only "
                             f"'channels_first' (the default) applies")
        input_data_format = kwargs.pop("input_data_format", None)
        config_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_KWARGS}
        _warn_unrecognised(self, kwargs, _INERT_KWARGS)
        config = self._call_config(config_kwargs)
        data: dict[str, Any] = {}
        if images is not None:
            items = _prepare_images(images, device, input_data_format)
            out = preprocess(items, config, backend=self.backend)
            # raster rows are PaddleOCR-VL's, whose processor hands them over as [N, 3 * T, P, P]
            data["pixel_values"] = out.pixel_values if config.row_order == "windows" else \
                out.pixel_values.view(-1, 3 * config.image_frames, config.patch_size, config.patch_size)
            data["image_grid_thw"] = out.grid_thw
        if videos is not None:
            data.update(_preprocess_videos(videos, config, self.video_config, device))
        if images is None and videos is None:
            raise ValueError("pass images=... and/or videos=...")
        return BatchFeature(data=data, tensor_type=return_tensors)

    preprocess = __call__

    def _call_config(self, call_kwargs: dict[str, Any]) -> VisionPreprocessConfig:
        """The adapter's config with HF per-call keys applied (top-level min/max_pixels override ``size``,
        as in transformers)."""
        call_kwargs = {k: v for k, v in call_kwargs.items() if v is not None}
        if not call_kwargs:
            return self.config
        merged = to_hf_dict(self.config)
        size = dict(call_kwargs.pop("size", merged["size"]))
        for key, edge in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
            if key in call_kwargs:
                size[edge] = call_kwargs.pop(key)
                size.pop(key, None)
        merged.update(call_kwargs, size=size)
        return config_from_hf(merged, **{f: getattr(self.config, f) for f in _OWN_FIELDS})


class HFQwenVideoProcessor(VideoProcessorMixin):
    """Qwen-VL video processor with transformers' interface, computed by :func:`qwen_vis_prep.preprocess_videos`.

    ``HFQwenVideoProcessor(config_or_preset, video_config)`` or ``.from_hf(stock_video_processor)``; it can be
    the ``video_processor`` of ``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor`` and ``Qwen3VLProcessor``. Video
    files (paths or bytes) are decoded with :func:`qwen_vis_prep.load_video`, which decodes only the frames the
    video config's sampling rule keeps; in-memory clips (``[T, C, H, W]`` tensors, ``[T, H, W, C]`` arrays)
    are sampled from ``video_metadata`` as the stock processor does. With ``return_metadata=True`` the output
    carries transformers' ``VideoMetadata`` per clip (source fps, sampled indices), from which the processors
    write Qwen3-VL's ``<t seconds>`` and Qwen2.5-VL's ``second_per_grid_ts`` exactly as with the stock one.
    """

    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, config: VisionPreprocessConfig | str | None = None,
                 video_config: VideoConfig | str | None = None, *, backend: Backend = "auto",
                 decoder: str = "auto", do_sample_frames: bool | None = None) -> None:
        super().__init__()
        self.config = resolve_config(config)
        self.video_config = resolve_video_config(video_config, config if isinstance(config, str) else self.config)
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
        self.backend = backend
        self.decoder = decoder
        # transformers' defaults: Qwen3VLVideoProcessor samples (2 fps), Qwen2VLVideoProcessor keeps every frame
        if do_sample_frames is None:
            do_sample_frames = self.video_config.sampling_rule in _SAMPLES_BY_DEFAULT
        self.do_sample_frames = do_sample_frames

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | Mapping[str, Any], *, backend: Backend = "auto",
                        decoder: str = "auto", **overrides: Any) -> "HFQwenVideoProcessor":
        """From a local model directory (its ``video_preprocessor_config.json``, else the
        ``"video_processor"`` entry of ``processor_config.json``, else ``preprocessor_config.json``), a JSON
        path or its dict; never downloads. The transformers class its ``video_processor_type`` names
        (``Qwen2VLVideoProcessor`` when none) is built from it, offline, and read as :meth:`from_hf` reads
        it. ``overrides`` are :class:`VideoConfig` fields."""
        import transformers

        data, origin = load_preprocessor_dict(source, kind="video")
        name = str(data.get("video_processor_type") or "Qwen2VLVideoProcessor").removesuffix("Fast")
        if not any(name.startswith(prefix) for prefix, _ in _VIDEO_CLASS_RULES):
            raise PretrainedConfigError(
                f"{origin}: video_processor_type={name!r} is not one this package reproduces; expected one of "
                f"{[f'{prefix}VideoProcessor' for prefix, _ in _VIDEO_CLASS_RULES]}")
        keys = {k: v for k, v in data.items() if not k.endswith("_type") and k not in _NAMING_KEYS}
        return cls.from_hf(getattr(transformers, name)(**keys), backend=backend, decoder=decoder, **overrides)

    @classmethod
    def from_hf(cls, video_processor: Any, *, backend: Backend = "auto", decoder: str = "auto",
                **overrides: Any) -> "HFQwenVideoProcessor":
        """The same preprocessing as a stock HF Qwen-VL video processor (its patch sizes, mean/std, pixel
        bounds, frame sampling and sizing rule); ``overrides`` are :class:`VideoConfig` fields."""
        d = video_processor.to_dict()
        size = d.get("size") or {}
        lo = size.get("shortest_edge", d.get("min_pixels"))
        hi = size.get("longest_edge", d.get("max_pixels"))
        config = VisionPreprocessConfig(patch_size=d["patch_size"], temporal_patch_size=d["temporal_patch_size"],
                                        merge_size=d["merge_size"], image_mean=tuple(d["image_mean"]),
                                        image_std=tuple(d["image_std"]),
                                        min_pixels=min(lo, (d["patch_size"] * d["merge_size"]) ** 2), max_pixels=hi)
        name = type(video_processor).__name__
        sampling = next((rule for prefix, rule in _VIDEO_CLASS_RULES if name.startswith(prefix)), "qwen2-vl")
        sizing = "qwen2-vl" if sampling == "qwen2-vl" else "qwen3-vl"  # the GLM classes size like Qwen3-VL
        fields = dict(min_pixels=lo, max_pixels=hi, sizing=sizing, fps=d.get("fps"),
                      min_frames=d.get("min_frames") or 4, max_frames=d.get("max_frames") or 768,
                      sampling=None if sampling == sizing else sampling)
        if sampling == "glm46v":
            fields["fps"] = None  # its rule picks its own rate
        if d.get("max_video_tokens"):
            fields["max_video_tokens"] = d["max_video_tokens"]
        if d.get("cap_pixels_per_frame"):
            fields["cap_pixels_per_frame"] = True
        fields.update(overrides)
        return cls(config, VideoConfig(**fields), backend=backend, decoder=decoder,
                   do_sample_frames=bool(d.get("do_sample_frames", sampling in _SAMPLES_BY_DEFAULT)))

    patch_size = property(lambda self: self.config.patch_size)
    temporal_patch_size = property(lambda self: self.config.temporal_patch_size)
    merge_size = property(lambda self: self.config.merge_size)
    fps = property(lambda self: self.video_config.fps)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(config={self.config!r}, video_config={self.video_config!r}, "
                f"backend={self.backend!r})")

    def to_dict(self) -> dict[str, Any]:
        d = to_hf_dict(self.config)
        vc = self.video_config
        d.update(size={"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels}, fps=vc.fps,
                 min_frames=vc.min_frames, max_frames=vc.max_frames, do_sample_frames=self.do_sample_frames,
                 video_processor_type=type(self).__name__)
        return d

    def __call__(self, videos: Any = None, *, video_metadata: Any = None, do_sample_frames: bool | None = None,
                 fps: float | None = None, num_frames: int | None = None, return_metadata: bool = False,
                 return_tensors: str | None = None, device: str | torch.device | None = None,
                 **kwargs: Any) -> BatchFeature:
        """``videos`` (a file path or bytes, a clip, or a list of them) -> ``BatchFeature`` with
        ``pixel_values_videos`` and ``video_grid_thw`` (and ``video_metadata`` with ``return_metadata``)."""
        if videos is None:
            raise ValueError("pass videos=...")
        _warn_unrecognised(self, kwargs, _INERT_VIDEO_KWARGS)
        sample = self.do_sample_frames if do_sample_frames is None else do_sample_frames
        if fps is not None or num_frames is not None:
            sample = True
        clips, metadata = self._clips(videos, video_metadata, sample, fps, num_frames, device)
        pixel_values, grid = preprocess_videos(clips, self.config, self.video_config, backend=self.backend)
        data: dict[str, Any] = {"pixel_values_videos": pixel_values, "video_grid_thw": grid}
        if return_metadata:
            data["video_metadata"] = metadata
        return BatchFeature(data=data, tensor_type=return_tensors)

    preprocess = __call__

    def _clips(self, videos: Any, video_metadata: Any, sample: bool, fps: float | None, num_frames: int | None,
               device: Any) -> tuple[list[torch.Tensor], list[HFVideoMetadata]]:
        """Decoded (and sampled) ``[T, C, H, W]`` clips on ``device`` and their metadata."""
        from .video_decode import load_video

        items = list(videos) if isinstance(videos, (list, tuple)) and videos and _is_source(videos[0]) else None
        if items is not None or _is_source(videos):
            sources = items if items is not None else [videos]
            vc = self.video_config
            kw = dict(rule=vc.sampling_rule, min_frames=vc.min_frames, max_frames=vc.max_frames,
                      temporal_patch_size=self.config.temporal_patch_size, decoder=self.decoder,
                      device=device or "cpu")
            if sample and num_frames is None:
                kw["fps"] = fps if fps is not None else vc.fps
            elif sample:
                kw["num_frames"] = num_frames
            decoded = load_video(list(sources), **kw)  # one call: bytes are named by their position
            return [d.frames for d in decoded], [_hf_metadata(d.metadata) for d in decoded]
        clips = make_batched_videos(videos)
        metadata = make_batched_metadata(clips, video_metadata=video_metadata)
        out = []
        for clip, meta in zip(clips, metadata):
            clip = _videos_to(clip, device)  # arrays become [T, C, H, W] tensors; device None keeps the device
            if sample:
                indices = self.video_config.sample_indices(
                    meta.total_num_frames, meta.fps, fps=fps if num_frames is None else None, num_frames=num_frames,
                    temporal_patch_size=self.config.temporal_patch_size, duration=meta.duration)
                meta.frames_indices = indices
                clip = clip[torch.as_tensor(indices, device=clip.device)]
            out.append(clip)
        return out, metadata


def patch_processor(processor: Any, *, backend: Backend = "auto", **overrides: Any) -> Any:
    """Swap a loaded HF processor's ``image_processor`` for an :class:`HFQwenImageProcessor` and its
    ``video_processor`` (where it has one) for an :class:`HFQwenVideoProcessor`, with the same settings (plus
    ``overrides``, config fields of the image processor); returns ``processor``.

    ``processor = patch_processor(AutoProcessor.from_pretrained(model_dir))``
    """
    processor.image_processor = HFQwenImageProcessor.from_hf(processor.image_processor, backend=backend,
                                                             **overrides)
    if getattr(processor, "video_processor", None) is not None:
        processor.video_processor = HFQwenVideoProcessor.from_hf(processor.video_processor, backend=backend)
    return processor


# -------------------------------------------------------------------------------------------- helpers

# Per-call keys of HF video processors that do not change this output.
_INERT_VIDEO_KWARGS = frozenset({"disable_grouping", "default_to_square", "data_format", "input_data_format",
                                 "video_load_backend", "return_metadata", "do_convert_rgb", "device"})


def _warn_unrecognised(owner: Any, kwargs: dict[str, Any], inert: frozenset[str]) -> None:
    """One warning naming the per-call keywords that are neither handled nor known to change nothing."""
    unknown = sorted(k for k in kwargs if k not in inert)
    if unknown:
        warnings.warn(f"{type(owner).__name__}: ignoring unrecognised keyword(s) {unknown}", UserWarning,
                      stacklevel=3)


def _is_source(x: Any) -> bool:
    """A video file: a path or encoded bytes."""
    return isinstance(x, (str, os.PathLike, bytes, bytearray, memoryview))


def _hf_metadata(meta: Any) -> HFVideoMetadata:
    """transformers' ``VideoMetadata`` of a decoded file (``qwen_vis_prep.video_decode.VideoMetadata``).

    transformers takes a frame's time to be ``frames_indices[i] / fps`` (Qwen3-VL writes it into the prompt).
    For a variable-frame-rate stream that is not the frame's index, so ``frames_indices`` are then its time
    on the average-rate grid, ``round(timestamp * fps)``.
    """
    indices = [round(t * meta.fps) for t in meta.timestamps] if meta.variable_frame_rate else list(meta.indices)
    return HFVideoMetadata(total_num_frames=meta.total_frames, fps=meta.fps, width=meta.width, height=meta.height,
                           duration=meta.duration, video_backend=meta.decoder, frames_indices=indices)


def stock_resize_mode(image_processor: Any) -> str:
    """The resize mode that reproduces a stock HF image processor: ``"torch-uint8"`` for transformers'
    torchvision backend (bit-exact with it on CPU tensors), ``"pil"`` otherwise (its PIL backend)."""
    return "torch-uint8" if isinstance(image_processor, TorchvisionBackend) else "pil"


def _flatten(images: Any) -> list[Any]:
    if isinstance(images, (list, tuple)):
        out = []
        for item in images:
            out.extend(_flatten(item))
        return out
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    return [images]


def _channels_first(x: Any, input_data_format: Any) -> bool:
    """HF's channel inference: explicit format, else channel-first when the first dim looks like channels."""
    if input_data_format is not None:
        fmt = str(getattr(input_data_format, "value", input_data_format))
        if fmt not in ("channels_first", "channels_last"):
            raise ValueError(f"input_data_format must be 'channels_first' or 'channels_last', got {fmt!r}")
        return fmt == "channels_first"
    if x.ndim == 2:
        return True
    if x.shape[0] in (1, 3):
        return True
    if x.shape[-1] in (1, 3, 4):
        return False
    return True  # let the core's check name the shape


def _prepare_images(images: Any, device: Any, input_data_format: Any) -> list[Any]:
    """HF-style inputs -> what :func:`qwen_vis_prep.preprocess` takes (``[C, H, W]`` tensors or PIL images)."""
    from .checks import pil_to_hwc
    from .io import load_images

    items = _flatten(images)
    if not items:
        raise ValueError("images: expected at least one image, got an empty list")
    paths = [i for i, x in enumerate(items) if isinstance(x, (str, os.PathLike))]
    if paths:
        urls = [items[i] for i in paths if str(items[i]).startswith(("http://", "https://"))]
        if urls:
            from transformers.image_utils import load_image

            for i in paths:
                if str(items[i]).startswith(("http://", "https://")):
                    items[i] = load_image(str(items[i]))
            paths = [i for i in paths if isinstance(items[i], (str, os.PathLike))]
        decoded = load_images([items[i] for i in paths], device) if paths else []
        for i, img in zip(paths, decoded):
            items[i] = img
    out = []
    for x in items:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if isinstance(x, torch.Tensor):
            if not _channels_first(x, input_data_format):
                x = x.movedim(-1, 0)
        elif device is not None and not isinstance(x, torch.Tensor):
            try:
                import PIL.Image

                if isinstance(x, PIL.Image.Image):
                    x = pil_to_hwc(x).permute(2, 0, 1)
            except ImportError:  # pragma: no cover
                pass
        if device is not None and isinstance(x, torch.Tensor):
            x = x.to(device)
        out.append(x)
    return out


def _videos_to(videos: Any, device: Any) -> Any:
    """Clips (tensors, ``[T, H, W, C]`` arrays, lists of frames) with their pixels moved to ``device``."""
    if isinstance(videos, (list, tuple)):
        return [_videos_to(v, device) for v in videos]
    if isinstance(videos, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(videos))
        return (x.movedim(-1, -3) if x.ndim >= 3 and x.shape[-1] in (1, 3, 4) else x).to(device)
    if isinstance(videos, torch.Tensor):
        return videos.to(device)
    try:
        import PIL.Image

        if isinstance(videos, PIL.Image.Image):
            from .checks import pil_to_hwc

            return pil_to_hwc(videos).permute(2, 0, 1).to(device)
    except ImportError:  # pragma: no cover
        pass
    return videos


def _preprocess_videos(videos: Any, config: VisionPreprocessConfig, video_config: Any, device: Any) -> dict:
    if device is not None:
        videos = _videos_to(videos, device)
    pixel_values, grid = preprocess_videos(videos, config, video_config)
    return {"pixel_values_videos": pixel_values, "video_grid_thw": grid}
