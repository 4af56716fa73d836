"""A wrapper module that puts the preprocessor in front of a Hugging Face Qwen-VL vision tower."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .module import QwenVisionPreprocessor
from .presets import preset_of_tower
from .resample_tables import to_device
from .tower import FoldedPatchEmbed, vision_tower_inputs


@dataclass
class VisionEmbeddings:
    """What :class:`QwenVisionEncoder` returns. ``*_embeds``: the tower's merged output (``pooler_output``,
    ``[sum_i t_i * h_i * w_i / merge_size**2, D]``, items in input order) or ``None`` when that modality was
    not given; ``*_grid_thw``: CPU int64 grids; ``*_outputs``: the tower's raw return (deepstack features
    of Qwen3-VL live there)."""

    image_embeds: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    image_outputs: Any = None
    video_outputs: Any = None

    def split(self, modality: str = "image", merge_size: int = 2) -> tuple[torch.Tensor, ...]:
        """Per-item embeddings (as transformers' ``get_image_features`` splits them)."""
        embeds, grid = ((self.image_embeds, self.image_grid_thw) if modality == "image"
                        else (self.video_embeds, self.video_grid_thw))
        if embeds is None:
            return ()
        return torch.split(embeds, [t * h * w // (merge_size * merge_size) for t, h, w in grid.tolist()])


class QwenVisionEncoder(nn.Module):
    """Preprocessor + HF Qwen-VL vision tower: images and/or videos in, embeddings out, in one call.

    ``QwenVisionEncoder(tower, "qwen2.5-vl")`` (or a :class:`~qwen_vis_prep.QwenVisionPreprocessor`). The tower
    (``Qwen2VisionTransformerPretrainedModel``, ``Qwen2_5_VisionTransformerPretrainedModel``, or any tower
    whose forward pops the same keyword arguments) gets its ``cu_seqlens`` / ``position_ids`` (and the window
    indices when the tower's preset has windowed attention, with its config's ``window_size``) precomputed on
    the host. With ``compact_images=True`` the tower's ``patch_embed`` is wrapped in :class:`FoldedPatchEmbed`
    (in place; full-width rows behave as before). Images and videos run through the tower separately, as
    the HF models do.
    """

    def __init__(self, tower: nn.Module, preprocessor: Any = None, **preprocessor_overrides: Any) -> None:
        super().__init__()
        if not isinstance(preprocessor, QwenVisionPreprocessor):
            preprocessor = QwenVisionPreprocessor(preprocessor, **preprocessor_overrides)
        elif preprocessor_overrides:
            raise ValueError("pass config overrides either to the QwenVisionPreprocessor or here, not both")
        self.preprocessor = preprocessor
        self.tower = tower
        cfg, tcfg = preprocessor.config, getattr(tower, "config", None)
        if tcfg is not None:
            for ours, theirs in (("patch_size", "patch_size"), ("temporal_patch_size", "temporal_patch_size"),
                                 ("merge_size", "spatial_merge_size")):
                if hasattr(tcfg, theirs) and getattr(tcfg, theirs) != getattr(cfg, ours):
                    raise ValueError(f"preprocessor {ours}={getattr(cfg, ours)} does not match the tower's "
                                     f"{theirs}={getattr(tcfg, theirs)}")
        # Only towers with windowed attention (Qwen2.5-VL) pop the window keywords; others would pass them on.
        # The preset of the tower's type says whether it has them; the tower's own config gives the span.
        preset = preset_of_tower(tcfg)
        self.window_size = None
        if preset is not None and preset.window_size is not None:
            self.window_size = getattr(tcfg, "window_size", preset.window_size)
        if cfg.compact_images and cfg.temporal_patch_size > 1 and not isinstance(tower.patch_embed,
                                                                                  FoldedPatchEmbed):
            tower.patch_embed = FoldedPatchEmbed(tower.patch_embed)

    def _device(self) -> torch.device:
        for p in self.tower.parameters():
            return p.device
        return torch.device("cpu")

    def _run(self, pixel_values: torch.Tensor, grid: torch.Tensor, device: torch.device) -> tuple[Any, torch.Tensor]:
        kwargs = vision_tower_inputs(grid, self.preprocessor.config.merge_size, window_size=self.window_size,
                                     patch_size=self.preprocessor.config.patch_size, device=device)
        out = self.tower(pixel_values.to(device, non_blocking=True), grid_thw=to_device(grid, device), **kwargs)
        return out, (out.pooler_output if hasattr(out, "pooler_output") else out)

    def forward(self, images: Any = None, *, videos: Any = None, layout: str = "auto",
                check_values: bool | None = None) -> VisionEmbeddings:
        """``images`` / ``videos`` as :class:`~qwen_vis_prep.QwenVisionPreprocessor` takes them."""
        batch = self.preprocessor(images, videos=videos, layout=layout, check_values=check_values)
        device = self._device()
        result = VisionEmbeddings()
        if images is not None:
            result.image_outputs, result.image_embeds = self._run(batch.pixel_values, batch.grid_thw, device)
            result.image_grid_thw = batch.grid_thw
        if videos is not None:
            grid = batch.extras["video_grid_thw"]
            result.video_outputs, result.video_embeds = self._run(batch.extras["pixel_values_videos"], grid, device)
            result.video_grid_thw = grid
        return result

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}"


__all__ = ["QwenVisionEncoder", "VisionEmbeddings"]
