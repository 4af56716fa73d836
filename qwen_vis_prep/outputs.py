"""What the preprocessor returns."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterator

import torch


@dataclass
class VisionBatch:
    """Patches and grids for the vision tower.

    * ``pixel_values``: ``[sum_i t_i * h_i * w_i, C * T * P * P]`` in ``config.output_dtype`` on the input's
      device; every ``merge_size**2`` consecutive rows form one merge window.
    * ``grid_thw``: ``int64 [num_images, 3]`` on the CPU (computed from shapes, no device sync).
    """

    pixel_values: torch.Tensor
    grid_thw: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return ["pixel_values", "grid_thw", *self.extras]

    def __getitem__(self, key: str) -> Any:
        if key in ("pixel_values", "grid_thw"):
            return getattr(self, key)
        return self.extras[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __repr__(self) -> str:
        pv = self.pixel_values
        return (f"VisionBatch(pixel_values={tuple(pv.shape)} {pv.dtype} on {pv.device}, "
                f"grid_thw={self.grid_thw.tolist()}" + (f", extras={list(self.extras)})" if self.extras else ")"))


__all__ = ["VisionBatch", "fields"]
