"""Pixels as one flat uint8 buffer per kind: what a training collator hands the model, so the DataLoader pins
one buffer and the model moves it to the device with one copy (the shapes stay on the host as a list).

In a DataLoader worker the buffer is allocated in shared memory, as torch's ``default_collate`` does for the
tensors it stacks, so handing the batch to the main process copies no pixels."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.utils.data import get_worker_info

__all__ = ["pack_pixels", "unpack_pixels"]


def pack_pixels(items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """uint8 tensors (``[3, H, W]`` images or ``[T, 3, H, W]`` clips) -> one flat contiguous uint8 CPU tensor
    of all their bytes, in order (in shared memory inside a DataLoader worker), and the list of their shapes
    (written with one copy per item)."""
    sizes = [tuple(int(d) for d in x.shape) for x in items]
    flat = _buffer(sum(x.numel() for x in items))
    start = 0
    for x, size in zip(items, sizes):
        n = x.numel()
        flat[start:start + n].view(size).copy_(x)
        start += n
    return flat, sizes


def _buffer(nbytes: int) -> torch.Tensor:
    if get_worker_info() is None:
        return torch.empty(nbytes, dtype=torch.uint8)
    # what torch's default_collate does in a worker: a storage in shared memory from the start
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


def unpack_pixels(flat: torch.Tensor, sizes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Views of ``flat`` (1-D, as :func:`pack_pixels` writes it, on any device) shaped as ``sizes``; no copy
    and no device sync (the sizes are host ints)."""
    shapes = [tuple(int(v) for v in s) for s in sizes]
    counts = [math.prod(s) for s in shapes]
    if flat.dim() != 1 or flat.shape[0] != sum(counts):
        raise ValueError(f"pixel buffer of shape {tuple(flat.shape)} does not hold the {sum(counts)} values of "
                         f"sizes {shapes}; expected a 1-D buffer as pack_pixels writes it")
    return [part.view(shape) for part, shape in zip(flat.split(counts), shapes)]
