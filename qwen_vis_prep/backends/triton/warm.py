"""Warm calls: a repeated ``preprocess`` of the same image tensor, or list of them, with the same metadata
(shapes, strides, dtypes, device, alignments, config, backend, layout) runs straight from the group launches
of the first such call, with no validation, sizing or plan lookups. Entries live in their own LRU,
:data:`WARM_CALLS`, beside the plans they point to."""

from __future__ import annotations

import torch

from ... import host_memory
from ...config import VisionPreprocessConfig
from ...resample_tables import DeviceTableCache
from .plans import GroupPlan, alignments, device_guard, group_source, launch_group, source_kind
from .tuning import tuning_key

WARM_CALLS = DeviceTableCache(maxsize=256)  # recorded calls (their plans stay alive with them)


class GroupLaunch:
    """One group launch of a call: the plan, which images (``members``: indices into the call's images, or
    None for the whole stacked batch), their target size and output rows."""

    __slots__ = ("plan", "members", "size", "first_row", "row_offsets")

    def __init__(self, plan: GroupPlan | None, members: tuple[int, ...] | None, size: tuple[int, int],
                 first_row: int, row_offsets: tuple[int, ...] | None) -> None:
        self.plan, self.members, self.size = plan, members, size
        self.first_row, self.row_offsets = first_row, row_offsets


def launch_source(batch_or_images, members: tuple[int, ...] | None) -> torch.Tensor:
    """The ``[N, 3, H, W]`` source of one group launch: the stacked batch itself, one image, or a group of
    same-shape images (in place where they lie at one step, see ``plans.group_source``)."""
    if members is None:
        return batch_or_images
    if len(members) == 1:
        return batch_or_images[members[0]][None]
    return group_source([batch_or_images[i] for i in members])


class WarmCall:
    """What a repeated call needs: how to view each input as ``[3, H, W]`` / ``[B, 3, H, W]``, the group
    launches, the output shape and ``grid_thw``. Immutable once recorded."""

    __slots__ = ("dims", "launches", "out_shape", "grid")

    def __init__(self, dims: tuple[int, ...] | None, launches: list[GroupLaunch], out_shape: tuple[int, int],
                 grid: torch.Tensor) -> None:
        self.dims, self.launches, self.out_shape, self.grid = dims, launches, out_shape, grid


# how a tensor of (dims, layout) becomes the [B, 3, H, W] (one tensor) or [3, H, W] (a list item) view the
# kernels read (see checks.prepare_images)
_BATCH_DIMS = {(4, False): None, (4, True): (0, 3, 1, 2), (3, False): (0, 1, 2), (3, True): (2, 0, 1)}
_ITEM_DIMS = {False: None, True: (2, 0, 1)}


def _sources(images, dims: tuple[int, ...] | None, tensor: bool):
    """The stacked batch (a tensor input) or the list of ``[3, H, W]`` views (a list input)."""
    if tensor:
        if dims is None:
            return images
        src = images.permute(dims)
        return src if src.dim() == 4 else src[None]
    return list(images) if dims is None else [img.permute(dims) for img in images]


def _empty_out(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The output of a warm call, allocated as the full path allocates it (``host_memory.empty``)."""
    if device.type == "cuda":
        return torch.empty(shape, dtype=dtype, device=device)
    return host_memory.empty(shape, dtype, device)


def warm_key(images, config: VisionPreprocessConfig, backend: str, layout: str, check_values: bool | None) -> tuple:
    """The key of a call: every input's metadata and the call's options."""
    if isinstance(images, torch.Tensor):
        meta = (images.shape, images.stride(), images.dtype, images.device, images.data_ptr() % 16 == 0)
    else:
        meta = tuple((t.shape, t.stride(), t.dtype, t.device, t.data_ptr() % 16 == 0) for t in images)
    return (meta, config._op_key, backend, layout, check_values, tuning_key())


def _kernel_source(src: torch.Tensor, config: VisionPreprocessConfig, resizing: bool) -> torch.Tensor:
    """``src`` in a dtype the kernels take, as ``plans.launch_group`` converts it."""
    return src if src.dtype == torch.uint8 else source_kind(src, config, resizing)[0]


def remember_call(images, config: VisionPreprocessConfig, backend: str, layout: str, check_values: bool | None,
                  launches: list[GroupLaunch], out: torch.Tensor, grid: torch.Tensor) -> None:
    """Record a finished call so :func:`warm_call` can repeat it: ``images`` is one image tensor (``[3, H, W]``
    / ``[B, 3, H, W]``) or a list of ``[3, H, W]`` tensors, CHW or HWC by ``layout``, and ``launches`` what
    the backend's ``preprocess_into`` returned. The caller vouches that everything the call checked or
    decided depends only on what the key holds: no value check, no channel conversion, no gradient."""
    hwc = layout == "hwc"
    tensor = isinstance(images, torch.Tensor)
    dims = _BATCH_DIMS[images.dim(), hwc] if tensor else _ITEM_DIMS[hwc]
    if tensor:  # one image tensor ran as one group: its batch view is the source
        (launch,) = launches
        launch.members = None
    entry = WarmCall(dims, launches, tuple(out.shape), grid.clone())
    WARM_CALLS.get(warm_key(images, config, backend, layout, check_values), lambda: entry)


def warm_call(images, config: VisionPreprocessConfig, backend: str, layout: str, check_values: bool | None
              ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(pixel_values, grid_thw)`` for a call :func:`remember_call` has seen (same metadata), straight from
    its group launches. A launch whose source now has other strides or alignments than its plan was built
    for (a same-size group stacked where it was read in place, or the reverse) takes the regular path. None
    when there is no entry (the caller then takes the full path, which records one)."""
    entry = WARM_CALLS.find(warm_key(images, config, backend, layout, check_values))
    if entry is None:
        return None
    tensor = isinstance(images, torch.Tensor)
    sources = _sources(images, entry.dims, tensor)
    device = images.device if tensor else images[0].device
    out = _empty_out(entry.out_shape, config.output_dtype, device)
    for launch in entry.launches:
        given = launch_source(sources, launch.members)
        src = _kernel_source(given, config, tuple(given.shape[-2:]) != launch.size)
        if (src.stride(), *alignments(src, out)) == launch.plan.fits:
            with device_guard(src):
                launch.plan.run(src, out)
        else:  # not what the plan was specialised for: the regular path (which converts given itself)
            launch_group(given, launch.size, config, out, launch.first_row, launch.row_offsets)
    return out, entry.grid.clone()
