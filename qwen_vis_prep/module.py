"""The ``nn.Module`` front: holds a validated config and its constants, calls the functional core."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import VisionPreprocessConfig
from .functional import Backend, preprocess, resolve_config
from .outputs import VisionBatch


class QwenVisionPreprocessor(nn.Module):
    """Qwen-VL image preprocessing as the first layer in front of the vision encoder.

    ``QwenVisionPreprocessor("qwen2-vl")`` (or ``"qwen2.5-vl"``, ``"qwen3-vl"``, or ``config=...``), with
    any config field as a keyword override (``resize_mode="float"``, ``output_dtype=torch.bfloat16`` ...).
    ``forward(images)`` returns a :class:`VisionBatch`. ``mean``/``std`` are non-persistent buffers, so
    ``.to(device)`` moves them and ``state_dict()`` stays empty.
    """

    def __init__(self, preset: str | VisionPreprocessConfig | None = None, *,
                 config: VisionPreprocessConfig | None = None, backend: Backend = "auto", **overrides: Any) -> None:
        super().__init__()
        if preset is not None and config is not None:
            raise ValueError("pass either a preset name or config=..., not both")
        self.config = resolve_config(config if config is not None else preset, **overrides)
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
        self.backend = backend
        self.register_buffer("mean", torch.tensor(self.config.image_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(self.config.image_std, dtype=torch.float32), persistent=False)

    def forward(self, images: Any, *, layout: str = "auto", check_values: bool | None = None) -> VisionBatch:
        """``images`` as :func:`qwen_vis_prep.preprocess` takes them; returns a :class:`VisionBatch`."""
        return preprocess(images, self.config, backend=self.backend, layout=layout, check_values=check_values)

    def extra_repr(self) -> str:
        c = self.config
        return (f"patch_size={c.patch_size}, temporal_patch_size={c.temporal_patch_size}, "
                f"merge_size={c.merge_size}, min_pixels={c.min_pixels}, max_pixels={c.max_pixels}, "
                f"resize_mode={c.resize_mode!r}, output_dtype={c.output_dtype}, backend={self.backend!r}")
