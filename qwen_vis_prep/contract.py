"""What the front end hands a backend: validated inputs and a host plan (see ``backends/__init__.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import VisionPreprocessConfig


class ImageBatch:
    """Images ready for a backend: each ``[3, H, W]`` (a view where possible), all on one device.

    ``stacked`` is the original ``[B, 3, H, W]`` tensor when the input was one batched tensor (every image
    the same shape), so backends can process it without gathering; its per-image views in ``images`` are
    then made only when asked for (a batch of 64 would otherwise pay 64 views per call).
    """

    __slots__ = ("_images", "stacked", "device")

    def __init__(self, images: list[torch.Tensor] | None, stacked: torch.Tensor | None,
                 device: torch.device) -> None:
        if images is None and stacked is None:
            raise ValueError("ImageBatch needs images or a stacked batch")
        self._images = images
        self.stacked = stacked
        self.device = device

    @property
    def images(self) -> list[torch.Tensor]:
        if self._images is None:
            self._images = list(self.stacked.unbind(0))
        return self._images

    def __len__(self) -> int:
        return self.stacked.shape[0] if self.stacked is not None else len(self._images)

    @property
    def requires_grad(self) -> bool:
        if self.stacked is not None:
            return self.stacked.requires_grad
        return any(img.requires_grad for img in self._images)


@dataclass
class VideoBatch:
    """Clips ready for a backend: each ``[T, 3, H, W]`` (views where possible), all on one device.
    ``stacked`` is the ``[B * T, 3, H, W]`` view of a ``[B, T, C, H, W]`` input (one resize call for all)."""

    clips: list[torch.Tensor]
    stacked: torch.Tensor | None
    device: torch.device

    @property
    def requires_grad(self) -> bool:
        return any(c.requires_grad for c in self.clips)


@dataclass(frozen=True)
class Plan:
    """Host decisions for one call: ``sizes[i]`` is item ``i``'s resized ``(h, w)`` and its rows of the output
    start at ``row_offsets[i]`` (``row_offsets[-1]`` is the total)."""

    config: VisionPreprocessConfig
    sizes: list[tuple[int, int]]
    row_offsets: list[int]
