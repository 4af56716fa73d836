"""The ``nn.Module`` front: holds a validated config and its constants, calls the functional core."""

from __future__ import annotations

import os

from typing import Any

import torch
from torch import nn

from .config import VideoConfig, VisionPreprocessConfig
from .functional import (Backend, check_backend, preprocess, preprocess_videos, resolve_config,
                         resolve_video_config)
from .outputs import VisionBatch
from .presets import default_window_size
from .tower import vision_tower_inputs


class QwenVisionPreprocessor(nn.Module):
    """Qwen-VL image and video preprocessing as the first layer in front of the vision encoder.

    ``QwenVisionPreprocessor("qwen2-vl")`` (or ``"qwen2.5-vl"``, ``"qwen3-vl"``, or ``config=...``), with
    any config field as a keyword override (``resize_mode="float"``, ``output_dtype=torch.bfloat16`` ...).
    ``video_config`` (a :class:`~qwen_vis_prep.VideoConfig` or preset name) sizes clips; by default the
    preset's (:mod:`qwen_vis_prep.presets`). ``window_size`` is the tower's attention window for
    ``tower_inputs``; by default the preset's (112 for ``"qwen2.5-vl"``, none for the others or a config).
    ``forward(images, videos=...)`` returns a :class:`VisionBatch`. ``mean``/``std`` are non-persistent buffers, so
    ``.to(device)`` moves them and ``state_dict()`` stays empty.
    """

    def __init__(self, preset: str | VisionPreprocessConfig | None = None, *,
                 config: VisionPreprocessConfig | None = None, backend: Backend = "auto",
                 video_config: VideoConfig | str | None = None, window_size: int | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        if preset is not None and config is not None:
            raise ValueError("pass either a preset name or config=..., not both")
        self.config = resolve_config(config if config is not None else preset, **overrides)
        self.video_config = resolve_video_config(video_config, preset if isinstance(preset, str) else self.config)
        if window_size is None:
            window_size = default_window_size(preset)
        if window_size is not None and (isinstance(window_size, bool) or not isinstance(window_size, int)
                                        or window_size <= 0):
            raise ValueError(f"window_size must be a positive int or None, got {window_size!r}")
        self.window_size = window_size
        check_backend(backend)
        self.backend = backend
        self.register_buffer("mean", torch.tensor(self.config.image_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(self.config.image_std, dtype=torch.float32), persistent=False)

    @classmethod
    def from_pretrained(cls, source: Any, *, backend: Backend = "auto", strict: bool = True,
                        **overrides: Any) -> "QwenVisionPreprocessor":
        """The preprocessor of a Hugging Face checkpoint: ``source`` is a local model directory, a
        ``preprocessor_config.json`` path or its dict (never downloaded); see
        :func:`qwen_vis_prep.pretrained.config_from_hf` for the rules. A directory that holds a
        ``video_preprocessor_config.json`` gives the video config too (read through transformers' class,
        :meth:`qwen_vis_prep.hf_adapter.HFQwenVideoProcessor.from_pretrained`). ``overrides`` are config
        fields."""
        from .pretrained import VIDEO_PREPROCESSOR_FILE, config_from_hf

        video_config = None
        if isinstance(source, (str, os.PathLike)) and os.path.isfile(os.path.join(source, VIDEO_PREPROCESSOR_FILE)):
            from .hf_adapter import HFQwenVideoProcessor

            video_config = HFQwenVideoProcessor.from_pretrained(source).video_config
        return cls(config=config_from_hf(source, strict=strict, **overrides), backend=backend,
                   video_config=video_config)

    def forward(self, images: Any = None, *, videos: Any = None, layout: str = "auto",
                check_values: bool | None = None, tower_inputs: bool = False,
                window_size: int | None = None) -> VisionBatch:
        """Preprocess ``images`` and/or ``videos``; returns one :class:`VisionBatch`.

        ``images`` as :func:`qwen_vis_prep.preprocess` takes them (``pixel_values``, ``grid_thw``); ``videos``
        as :func:`qwen_vis_prep.preprocess_videos` takes them, returned in ``extras`` as
        ``pixel_values_videos`` / ``video_grid_thw`` (with only videos, ``pixel_values`` / ``grid_thw`` are
        empty: ``[0, patch_dim]`` / ``[0, 3]``). ``tower_inputs=True`` adds what the vision tower derives from
        the grids (:func:`qwen_vis_prep.tower.vision_tower_inputs`: ``cu_seqlens``, ``max_seqlen``,
        ``position_ids``, and with a ``window_size`` -- the module's, 112 for ``"qwen2.5-vl"`` -- also
        ``window_index``, ``cu_window_seqlens``, ``max_window_seqlen``), on each output's device, from host
        ints; video entries are prefixed ``video_``.
        """
        if images is None and videos is None:
            raise ValueError("pass images=..., videos=... or both; got neither")
        video_out = None
        if videos is not None:
            video_out = preprocess_videos(videos, self.config, self.video_config, layout=layout,
                                          check_values=check_values, backend=self.backend)
        if images is not None:
            batch = preprocess(images, self.config, backend=self.backend, layout=layout, check_values=check_values)
        else:
            batch = VisionBatch(torch.empty(0, self.config.patch_dim, dtype=self.config.output_dtype,
                                            device=video_out[0].device), torch.empty(0, 3, dtype=torch.int64))
        if video_out is not None:
            batch.extras["pixel_values_videos"], batch.extras["video_grid_thw"] = video_out
        if tower_inputs:
            ws = self.window_size if window_size is None else window_size
            c = self.config
            if images is not None:
                batch.extras.update(vision_tower_inputs(batch.grid_thw, c.row_merge_size, window_size=ws,
                                                        patch_size=c.patch_size, device=batch.pixel_values.device))
            if video_out is not None:
                extra = vision_tower_inputs(video_out[1], c.row_merge_size, window_size=ws, patch_size=c.patch_size,
                                            device=video_out[0].device)
                batch.extras.update({"video_" + k: v for k, v in extra.items()})
        return batch

    def extra_repr(self) -> str:
        c = self.config
        return (f"patch_size={c.patch_size}, temporal_patch_size={c.temporal_patch_size}, "
                f"merge_size={c.merge_size}, min_pixels={c.min_pixels}, max_pixels={c.max_pixels}, "
                f"resize_mode={c.resize_mode!r}, output_dtype={c.output_dtype}, backend={self.backend!r}, "
                f"video_sizing={self.video_config.sizing!r}, video_min_pixels={self.video_config.min_pixels}, "
                f"video_max_pixels={self.video_config.max_pixels}, window_size={self.window_size}")
