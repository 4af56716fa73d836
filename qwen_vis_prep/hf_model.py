"""A transformers Qwen-VL model with the preprocessor as its first layer: uint8 pixels in, loss out.

:class:`QwenVLWithPreprocessor` wraps ``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``
or ``Qwen3VLForConditionalGeneration``. ``wrapper(**batch)`` takes the batch the collator builds -- token tensors
plus the raw pixels as one flat uint8 buffer (``pixel_images`` with host ``image_sizes``, ``pixel_videos`` with
``video_sizes``) -- moves the buffer to the model's device once, runs :class:`~qwen_vis_prep.QwenVisionPreprocessor`
there, and calls the model with ``pixel_values`` / ``image_grid_thw`` (``pixel_values_videos`` / ``video_grid_thw``)
and every other key unchanged.

Parameters and ``state_dict`` keys are the wrapped model's own: the wrapper shares the model's submodule,
parameter and buffer tables instead of nesting it under a prefix, and the preprocessor (no parameters, an empty
``state_dict``) is kept outside them. So ``wrapper.state_dict()`` loads into a stock model and back, the
``model.safetensors`` that ``transformers.Trainer`` saves for the wrapper loads into the stock model, and DDP /
FSDP see exactly the model's parameters and buffers: the preprocessor has nothing to synchronise. Attributes the
wrapper lacks (``config``, ``gradient_checkpointing_enable``, ``save_pretrained`` for a full checkpoint ...) are
the model's.

Needs ``transformers`` only for the model it is given; this module imports nothing from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .config import VideoConfig, VisionPreprocessConfig
from .module import QwenVisionPreprocessor
from .packing import unpack_pixels
from .presets import preset_of_tower
from .resample_tables import to_device

# The batch keys the wrapper consumes; everything else goes to the model unchanged.
PIXEL_KEYS = ("pixel_images", "image_sizes", "pixel_videos", "video_sizes")


def _vision_tower(model: nn.Module) -> nn.Module:
    """The model's vision tower (``model.model.visual`` for the Qwen-VL ``ForConditionalGeneration`` classes)."""
    for owner in (getattr(model, "model", None), model):
        tower = getattr(owner, "visual", None)
        if isinstance(tower, nn.Module):
            return tower
    raise TypeError(f"{type(model).__name__} has no vision tower (.model.visual or .visual); expected a "
                    "transformers Qwen2-VL, Qwen2.5-VL or Qwen3-VL model")


def _tower_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    return getattr(config, "vision_config", None) or config


class QwenVLWithPreprocessor(nn.Module):
    """A Qwen-VL ``...ForConditionalGeneration`` model that takes uint8 pixels.

    ``QwenVLWithPreprocessor(model)`` picks the preprocessing preset from the vision tower's ``model_type``
    (:func:`qwen_vis_prep.presets.preset_of_tower`); ``preprocessor`` may instead be a preset name, a
    :class:`~qwen_vis_prep.VisionPreprocessConfig` or a ready :class:`~qwen_vis_prep.QwenVisionPreprocessor`.
    ``video_config`` and ``overrides`` (config fields: ``resize_mode``, ``min_pixels`` ...) go to the
    preprocessor; ``resize_mode`` defaults to the preset's ``"pil"``, what qwen-vl-utils resized still images
    with. ``pixel_values`` come out in the vision tower's parameter dtype (looked up per call, so casting the
    model to bf16 gives bf16 ``pixel_values`` straight from the kernels), unless ``output_dtype=`` is given or
    a ready ``QwenVisionPreprocessor`` is passed (used as it is).

    The wrapper's parameters, buffers and ``state_dict`` keys are the model's own (``wrapper.model`` and
    ``wrapper.lm_head`` are the model's submodules; the model itself is :attr:`hf_model`), and other
    attributes fall through to the model. ``torch.compile(wrapper)`` compiles the model; :meth:`forward` runs
    :meth:`model_inputs` eagerly in front of it (a graph break), since image sizes decide its shapes.
    ``model_inputs`` itself traces with ``fullgraph=True`` for fixed sizes.
    """

    def __init__(self, model: nn.Module, preprocessor: QwenVisionPreprocessor | VisionPreprocessConfig | str | None
                 = None, video_config: VideoConfig | str | None = None, **overrides: Any) -> None:
        super().__init__()
        tower_config = _tower_config(model)
        _vision_tower(model)
        if isinstance(preprocessor, QwenVisionPreprocessor):
            if overrides or video_config is not None:
                raise ValueError("pass video_config / config overrides either to the QwenVisionPreprocessor or "
                                 "here, not both")
            prep = preprocessor
        else:
            if preprocessor is None:
                preset = preset_of_tower(tower_config) or preset_of_tower(getattr(model, "config", None))
                if preset is None:
                    raise ValueError(f"no preprocessing preset for model_type "
                                     f"{getattr(tower_config, 'model_type', None)!r}; pass preprocessor=")
                preprocessor = preset.name
            if isinstance(preprocessor, VisionPreprocessConfig):
                prep = QwenVisionPreprocessor(config=preprocessor, video_config=video_config, **overrides)
            else:
                prep = QwenVisionPreprocessor(preprocessor, video_config=video_config, **overrides)
        cfg = prep.config
        for ours, theirs in (("patch_size", "patch_size"), ("temporal_patch_size", "temporal_patch_size"),
                             ("merge_size", "spatial_merge_size")):
            if hasattr(tower_config, theirs) and getattr(tower_config, theirs) != getattr(cfg, ours):
                raise ValueError(f"preprocessor {ours}={getattr(cfg, ours)} does not match the vision tower's "
                                 f"{theirs}={getattr(tower_config, theirs)}")
        # Plain attributes, not submodules: the model's module tables below are shared, not extended.
        object.__setattr__(self, "hf_model", model)
        object.__setattr__(self, "preprocessor", prep)
        follow = "output_dtype" not in overrides and not isinstance(preprocessor, QwenVisionPreprocessor)
        object.__setattr__(self, "follow_tower_dtype", follow)
        object.__setattr__(self, "_by_dtype", {cfg.output_dtype: prep})
        for table in ("_parameters", "_buffers", "_non_persistent_buffers_set", "_modules"):
            object.__setattr__(self, table, model.__dict__[table])
        self.training = model.training

    # ------------------------------------------------------------------------------------ delegation

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("hf_model")
            if model is None or name.startswith("__"):
                raise
            return getattr(model, name)

    def train(self, mode: bool = True) -> QwenVLWithPreprocessor:
        super().train(mode)
        self.hf_model.training = mode
        return self

    @property
    def vision_tower(self) -> nn.Module:
        """The wrapped model's vision tower."""
        return _vision_tower(self.hf_model)

    def preprocessor_for(self, dtype: torch.dtype) -> QwenVisionPreprocessor:
        """The preprocessor writing ``pixel_values`` in ``dtype`` (:attr:`preprocessor` itself unless
        :attr:`follow_tower_dtype`); built once per dtype."""
        if not self.follow_tower_dtype:
            return self.preprocessor
        prep = self._by_dtype.get(dtype)
        if prep is None:
            base = self.preprocessor
            prep = QwenVisionPreprocessor(config=base.config.replace(output_dtype=dtype), backend=base.backend,
                                          video_config=base.video_config, window_size=base.window_size)
            self._by_dtype[dtype] = prep
        return prep

    # --------------------------------------------------------------------------------------- inputs

    def model_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments the wrapped model gets for ``batch``: the pixel keys (:data:`PIXEL_KEYS`)
        replaced by ``pixel_values [N, C*T*P*P]`` / ``image_grid_thw [num_images, 3]`` and
        ``pixel_values_videos`` / ``video_grid_thw``, on the vision tower's device and in its dtype, and
        ``mm_token_type_ids`` derived from ``input_ids`` when the batch has pixels but no such key.

        A CPU ``image_grid_thw`` / ``video_grid_thw`` in ``batch`` (what the collator planned) must equal the
        preprocessor's (host ints, no device sync; not checked while ``torch.compile`` traces), else
        ``ValueError`` names the first item that differs; one already on a device is passed on as it is (not
        read back). Batches without pixels pass through unchanged (empty grids dropped).
        """
        out = {k: v for k, v in batch.items() if k not in PIXEL_KEYS}
        has_images = batch.get("pixel_images") is not None and len(batch.get("image_sizes") or ()) > 0
        has_videos = batch.get("pixel_videos") is not None and len(batch.get("video_sizes") or ()) > 0
        if not has_images:
            self._drop_empty_grid(out, "image_grid_thw", "images")
        if not has_videos:
            self._drop_empty_grid(out, "video_grid_thw", "videos")
        if not (has_images or has_videos):
            return out
        param = next(self.vision_tower.parameters())
        device, dtype = param.device, param.dtype
        prep = self.preprocessor_for(dtype)
        for flat_key, sizes_key, pv_key, grid_key in (
                ("pixel_images", "image_sizes", "pixel_values", "image_grid_thw"),
                ("pixel_videos", "video_sizes", "pixel_values_videos", "video_grid_thw")):
            if not (has_images if flat_key == "pixel_images" else has_videos):
                continue
            flat = batch[flat_key].to(device, non_blocking=True)
            items = unpack_pixels(flat, batch[sizes_key])
            out[pv_key], grid = self._preprocess(prep, items, flat_key == "pixel_videos")
            out[grid_key] = self._grid(out.get(grid_key), grid, device, grid_key, batch[sizes_key])
        if out.get("mm_token_type_ids") is None and isinstance(out.get("input_ids"), torch.Tensor):
            out["mm_token_type_ids"] = self.mm_token_type_ids(out["input_ids"])
        return out

    @staticmethod
    def _drop_empty_grid(out: dict[str, Any], key: str, what: str) -> None:
        grid = out.get(key)
        if grid is None:
            return
        if isinstance(grid, torch.Tensor) and grid.numel() == 0:
            del out[key]
            return
        raise ValueError(f"the batch has {key} but no {what} (pixel buffer or sizes missing)")

    @staticmethod
    def _preprocess(prep: QwenVisionPreprocessor, items: list[torch.Tensor], videos: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.compiler.is_compiling():
            # one traced op per item (the custom op takes one tensor); grids from static shapes
            outs = [prep(videos=x) if videos else prep(x) for x in items]
            if videos:
                parts = [(o["pixel_values_videos"], o["video_grid_thw"]) for o in outs]
            else:
                parts = [(o.pixel_values, o.grid_thw) for o in outs]
            return torch.cat([p for p, _ in parts]), torch.cat([g for _, g in parts])
        if videos:
            batch = prep(videos=items)
            return batch["pixel_values_videos"], batch["video_grid_thw"]
        batch = prep(items)
        return batch.pixel_values, batch.grid_thw

    @staticmethod
    def _grid(given: Any, ours: torch.Tensor, device: torch.device, key: str, sizes: Any) -> torch.Tensor:
        """The grid handed to the model: ``given`` when the batch put it on a device (not read back: that would
        sync, and a host upload could not be captured in a CUDA graph), else the preprocessor's on ``device``,
        after checking that a host ``given`` grid (what the collator planned the tokens with) equals it."""
        if isinstance(given, torch.Tensor) and given.device.type != "cpu":
            return given
        if given is not None and not torch.compiler.is_compiling():
            given_t = torch.as_tensor(given).to(torch.int64)
            if given_t.shape != ours.shape or not torch.equal(given_t, ours):
                kind = key.removesuffix("_grid_thw")  # "image" or "video"
                if given_t.shape != ours.shape:
                    detail = f"{given_t.shape[0] if given_t.dim() else 0} rows for {len(ours)} {kind}s"
                else:
                    i = int((given_t != ours).any(-1).nonzero()[0])
                    detail = (f"{kind} {i} (sizes {tuple(sizes[i])}) has grid {ours[i].tolist()}, the batch says "
                              f"{given_t[i].tolist()}")
                raise ValueError(f"the batch's {key} does not match its pixels: {detail}; the collator planned "
                                 "the placeholder tokens with other sizing settings (min_pixels / max_pixels / "
                                 "patch sizes) than the model's, or the pixels are not the ones it planned")
        return to_device(ours, device)

    def mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` int64 token types as transformers' processors write them: 1 at the config's
        ``image_token_id``, 2 at ``video_token_id``, 0 elsewhere."""
        config = self.hf_model.config
        types = torch.zeros_like(input_ids)
        types = types.masked_fill(input_ids == config.image_token_id, 1)
        return types.masked_fill(input_ids == config.video_token_id, 2)

    # -------------------------------------------------------------------------------------- calls

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, pixel_images: torch.Tensor | None = None,
                image_sizes: Sequence[Sequence[int]] | None = None, pixel_videos: torch.Tensor | None = None,
                video_sizes: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> Any:
        """The model's output (loss with ``labels``) for a collated batch: ``input_ids`` / ``attention_mask`` /
        ``labels`` ``[B, L]``, ``pixel_images`` (flat uint8, the ``[3, H, W]`` images of ``image_sizes``
        back to back), ``pixel_videos`` (likewise, ``(T, 3, H, W)`` clips of ``video_sizes``); any other
        keyword (``image_grid_thw``, ``mm_token_type_ids``, ``second_per_grid_ts``, ``num_items_in_batch``
        ...) goes to the model."""
        batch = dict(kwargs, input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                     pixel_images=pixel_images, image_sizes=image_sizes, pixel_videos=pixel_videos,
                     video_sizes=video_sizes)
        inputs = _eager_model_inputs(self, {k: v for k, v in batch.items() if v is not None})
        return self.hf_model(**inputs)

    @torch.no_grad()
    def generate(self, **batch_and_generation_kwargs: Any) -> Any:
        """``hf_model.generate`` on a collated batch (pixel keys preprocessed first); other keywords are
        generation arguments."""
        return self.hf_model.generate(**_eager_model_inputs(self, batch_and_generation_kwargs))

    def extra_repr(self) -> str:
        return f"preprocessor={self.preprocessor!r}, follow_tower_dtype={self.follow_tower_dtype}"


@torch.compiler.disable
def _eager_model_inputs(wrapper: QwenVLWithPreprocessor, batch: Mapping[str, Any]) -> dict[str, Any]:
    """:meth:`QwenVLWithPreprocessor.model_inputs`, never traced by ``torch.compile`` (a graph break): the
    image sizes decide its shapes, so a compiled ``forward`` that traced it would compile again for every new
    set of sizes and, past dynamo's recompile limit, run the whole model eagerly."""
    return wrapper.model_inputs(batch)


__all__ = ["PIXEL_KEYS", "QwenVLWithPreprocessor"]
