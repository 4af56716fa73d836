"""The functional core: validate, plan on the host, hand to a backend (``backends/``) -- nothing else.

:func:`preprocess` (images), :func:`preprocess_videos` (clips) and :func:`resize` (the resize stage alone)
all run the same way: inputs are checked and viewed channel-first (``checks``), sizes and output rows are
planned from shapes alone (``sizing``), and one backend of the registry fills the output.
"""

from __future__ import annotations

import functools
from itertools import accumulate
from typing import Any, Literal, Sequence

import torch

from . import backends, host_memory, sizing
from .checks import Layout, describe, prepare_images, prepare_videos, wants_value_check
from .config import _BY_KEY, RESIZE_MODES, VideoConfig, VisionPreprocessConfig
from .contract import ImageBatch, Plan, VideoBatch
from .outputs import VisionBatch
from .presets import default_video_config, get_preset

Backend = Literal["auto", "torch", "reference", "native", "pillow", "aten", "triton"]


def resolve_config(config: VisionPreprocessConfig | str | None = None, **overrides: Any) -> VisionPreprocessConfig:
    """A config from an instance, a preset name (``"qwen2-vl"``, ``"qwen2.5-vl"``, ``"qwen3-vl"``) or
    ``None`` (the ``"qwen2-vl"`` preset), with field overrides applied."""
    if config is None:
        config = "qwen2-vl"
    if isinstance(config, str):
        config = get_preset(config).image
    elif not isinstance(config, VisionPreprocessConfig):
        raise TypeError(f"config must be a VisionPreprocessConfig or a preset name, got {describe(config)}")
    return config.replace(**overrides) if overrides else config


def resolve_video_config(video_config: VideoConfig | str | None,
                         image_config: VisionPreprocessConfig | str | None) -> VideoConfig:
    """A :class:`VideoConfig` from an instance, a preset name, or ``None`` (the video config of the image
    preset or config's family, ``presets.default_video_config``)."""
    if video_config is None:
        return default_video_config(image_config)
    if isinstance(video_config, str):
        return get_preset(video_config).video
    if not isinstance(video_config, VideoConfig):
        raise TypeError(f"video_config must be a VideoConfig or a preset name, got {describe(video_config)}")
    return video_config


def check_backend(backend: Any) -> None:
    """``ValueError`` unless ``backend`` is one the registry offers (``backends.CHOICES``)."""
    backends.check_choice(backend)


def select_backend(backend: str, device: torch.device, needs_grad: bool, resize_mode: str = "pil") -> str:
    """The name of the backend a call on ``device`` runs (see ``backends.select``)."""
    return backends.select(backend, torch.device(device), needs_grad=needs_grad, resize_mode=resize_mode).NAME


# ------------------------------------------------------------------------------------------ planning

def _rows(sizes: list[tuple[int, int]], frames: list[int], patch_size: int) -> list[int]:
    """Row offsets (and total) of items of ``frames`` frame blocks each, resized to ``sizes``."""
    p = patch_size
    return list(accumulate((t * (h // p) * (w // p) for t, (h, w) in zip(frames, sizes)), initial=0))


def plan(batch: ImageBatch, config: VisionPreprocessConfig) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Target sizes and ``grid_thw`` (int64, CPU) from the images' shapes alone (a stacked batch is sized
    once)."""
    shapes = ([tuple(batch.stacked.shape[-2:])] if batch.stacked is not None
              else [tuple(img.shape[-2:]) for img in batch.images])
    sizes = []
    for i, (h, w) in enumerate(shapes):
        try:
            sizes.append(sizing.target_size(int(h), int(w), config))
        except ValueError as e:
            raise ValueError(f"images[{i}]: {e}" if batch.stacked is None else f"images: {e}") from None
    p = config.patch_size
    if batch.stacked is not None:
        h, w = sizes[0]
        n = len(batch)
        sizes = sizes * n
        grid = torch.tensor([1, h // p, w // p], dtype=torch.int64).expand(n, 3).contiguous()
    else:
        grid = torch.tensor([[1, h // p, w // p] for h, w in sizes], dtype=torch.int64)
    return sizes, grid


def plan_videos(batch: VideoBatch, config: VisionPreprocessConfig, video_config: VideoConfig
                ) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Target size per clip and ``video_grid_thw`` (int64, CPU) from the clips' shapes alone."""
    sizes, grids = [], []
    for i, clip in enumerate(batch.clips):
        t, h, w = int(clip.shape[0]), int(clip.shape[-2]), int(clip.shape[-1])
        try:
            size = sizing.video_target_size(t, h, w, config, video_config)
        except ValueError as e:
            raise ValueError(f"videos[{i}]: {e}") from None
        sizes.append(size)
        grids.append(sizing.video_grid_thw(t, size, config))
    return sizes, torch.tensor(grids, dtype=torch.int64).reshape(-1, 3)


# ------------------------------------------------------------------------------------------- images

_WARM: Any = None  # the backend whose recorded calls may be replayed (set once one records a call)


def _tensors_only(images: Any) -> bool:
    """One ``[3, H, W]`` / ``[B, 3, H, W]`` tensor, or a non-empty list/tuple of ``[C, H, W]`` tensors: the
    inputs a warm call can take (shapes only; channels are checked where a call is recorded)."""
    if isinstance(images, torch.Tensor):
        return images.dim() in (3, 4)
    return (isinstance(images, (list, tuple)) and len(images) > 0
            and all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in images))


def _as_list(images: Any) -> Sequence[torch.Tensor]:
    return (images,) if isinstance(images, torch.Tensor) else images


def preprocess(images: Any, config: VisionPreprocessConfig | str | None = None, *, backend: Backend = "auto",
               layout: Layout = "auto", check_values: bool | None = None) -> VisionBatch:
    """Turn images into Qwen-VL ``pixel_values`` and ``grid_thw``.

    Args:
        images: ``[3, H, W]`` / ``[B, 3, H, W]`` tensor (uint8 or float on the 0..255 scale, see
            ``config.input_range``), a HWC numpy array, a PIL image, or a list of those (ragged sizes).
            1-channel images are expanded, 4-channel ones composited onto white. Never modified.
        config: a :class:`VisionPreprocessConfig` or a preset name (default ``"qwen2-vl"``).
        backend: ``"auto"`` (Triton for CUDA tensors; for CPU tensors the compiled resampler in the
            fixed-point modes, Pillow / torch's kernel where it was not built; else the reference), a
            registered name (``"reference"``, ``"native"``, ``"pillow"``, ``"aten"``, ``"triton"``), or
            ``"torch"`` (``"auto"`` without Triton).
        layout: ``"auto"`` (tensors CHW, numpy arrays HWC), ``"chw"`` or ``"hwc"``.
        check_values: NaN/Inf/range check of float inputs; default on for CPU, off for CUDA (it syncs).

    Returns:
        :class:`VisionBatch` with ``pixel_values [N, 3 * T * P * P]`` (``config.output_dtype``, input device)
        and ``grid_thw int64 [num_images, 3]`` (CPU).
    """
    global _WARM
    config = resolve_config(config)
    if isinstance(images, torch.Tensor) and images.dim() in (3, 4) and torch.compiler.is_compiling():
        return _preprocess_traced(images, config, backend, layout)
    if _WARM is not None and _tensors_only(images) and not (
            torch.is_grad_enabled() and any(t.requires_grad for t in _as_list(images))):
        warm = _WARM.warm_call(images, config, backend, layout, check_values)
        if warm is not None:
            return VisionBatch(*warm)
    batch = prepare_images(images, layout=layout, do_convert_rgb=config.do_convert_rgb,
                           input_range=config.input_range, check_values=check_values)
    sizes, grid = plan(batch, config)
    the_plan = Plan(config, sizes, _rows(sizes, [1] * len(sizes), config.patch_size))
    needs_grad = torch.is_grad_enabled() and batch.requires_grad
    chosen = backends.select(backend, batch.device, needs_grad=needs_grad, resize_mode=config.resize_mode)
    if needs_grad:
        return VisionBatch(chosen.differentiable(batch.images, the_plan), grid)
    out = host_memory.empty((the_plan.row_offsets[-1], config.patch_dim), config.output_dtype, batch.device)
    record = chosen.preprocess_into(batch, the_plan, out)
    if record is not None and _tensors_only(images) and all(
            t.shape[-1 if layout == "hwc" else -3] == 3 and not wants_value_check(check_values, t)
            for t in _as_list(images)):
        # nothing this call checked or converted depended on the pixel values: later calls with the same
        # metadata may repeat it from the record
        chosen.remember_call(images, config, backend, layout, check_values, record, out, grid)
        _WARM = chosen
    return VisionBatch(out, grid)


@torch.library.custom_op("qwen_vis_prep::preprocess_tensor", mutates_args=())
def preprocess_tensor(images: torch.Tensor, config: str, backend: str, layout: str) -> torch.Tensor:
    """``pixel_values`` of one ``[3, H, W]`` / ``[B, 3, H, W]`` tensor: the opaque op ``torch.compile`` traces
    (custom-op arguments are plain values, so the config travels as its key, ``config._op_key``)."""
    return preprocess(images, _BY_KEY[config], backend=backend, layout=layout, check_values=False).pixel_values


def tensor_grid(images: torch.Tensor, config: VisionPreprocessConfig, layout: str) -> tuple[int, int, int]:
    """``(num_images, grid_h, grid_w)`` of a ``[3, H, W]`` / ``[B, 3, H, W]`` tensor (HWC for
    ``layout="hwc"``) from its static shape: plain ints, usable while tracing and in the fake kernel."""
    x = images if images.dim() == 4 else images[None]
    h, w = (x.shape[1], x.shape[2]) if layout == "hwc" else (x.shape[2], x.shape[3])
    th, tw = sizing.target_size(int(h), int(w), config)
    return int(x.shape[0]), th // config.patch_size, tw // config.patch_size


@preprocess_tensor.register_fake
def _(images: torch.Tensor, config: str, backend: str, layout: str) -> torch.Tensor:
    cfg = _BY_KEY[config]
    n, gh, gw = tensor_grid(images, cfg, layout)
    return images.new_empty((n * gh * gw, cfg.patch_dim), dtype=cfg.output_dtype)


def _preprocess_traced(images: torch.Tensor, config: VisionPreprocessConfig, backend: str, layout: str
                       ) -> VisionBatch:
    """Under ``torch.compile``: one registered op for the pixels, ``grid_thw`` from static shapes."""
    lay = "chw" if layout == "auto" else layout
    n, gh, gw = tensor_grid(images, config, lay)
    grid = torch.tensor([[1, gh, gw]] * n, dtype=torch.int64)
    return VisionBatch(preprocess_tensor(images, config._op_key, backend, lay), grid)


# ------------------------------------------------------------------------------------------- videos

@functools.lru_cache(maxsize=64)
def clip_config(config: VisionPreprocessConfig, resize_mode: str) -> VisionPreprocessConfig:
    """The config clips are preprocessed with: ``config`` with the video config's ``resize_mode``."""
    return config if config.resize_mode == resize_mode else config.replace(resize_mode=resize_mode)


def preprocess_videos(videos: Any, config: VisionPreprocessConfig | str | None = None,
                      video_config: VideoConfig | str | None = None, *, layout: Layout = "auto",
                      check_values: bool | None = None, backend: Backend = "auto"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn video clips into Qwen-VL ``pixel_values_videos`` and ``video_grid_thw``.

    Args:
        videos: one clip (``[T, C, H, W]`` tensor, ``[T, H, W, C]`` array), a batch (``[B, T, C, H, W]``), or
            a list of clips (4-dim tensors / arrays, or lists of frames), uint8 or float on the scale of
            ``config.input_range``; see ``checks.prepare_videos``.
        config: image config or preset name (patch sizes, mean/std, output dtype).
        video_config: :class:`VideoConfig` or preset name; default: the video config of ``config``'s preset.
            Its ``resize_mode`` (default ``"torch-uint8"``) is the one clips are resized with.
        backend: as for :func:`preprocess`. On Triton a clip (or a stacked batch of clips) is one group of
            at most two launches, each frame written straight into its temporal slot.

    Returns:
        ``(pixel_values_videos [sum_i t_i * h_i * w_i, 3 * Tp * P * P]`` in ``config.output_dtype`` on the
        clips' device, ``video_grid_thw int64 [num_videos, 3]`` on the CPU``)``. Each clip is resized frame by
        frame to one size, and an odd frame count repeats the last frame. Float inputs that require grad flow
        through ``video_config.resize_mode="float"``; ``config.compact_images`` does not apply to videos.
    """
    preset, config = config, resolve_config(config)
    video_config = resolve_video_config(video_config, preset if isinstance(preset, str) else config)
    if isinstance(videos, torch.Tensor) and videos.dim() in (4, 5) and torch.compiler.is_compiling():
        return _videos_traced(videos, config, video_config, backend, layout)
    config = clip_config(config, video_config.resize_mode)
    batch = prepare_videos(videos, layout=layout, do_convert_rgb=config.do_convert_rgb,
                           input_range=config.input_range, check_values=check_values)
    sizes, grid = plan_videos(batch, config, video_config)
    return _videos_into_new(batch, config, sizes, grid, backend), grid


def _videos_into_new(batch: VideoBatch, config: VisionPreprocessConfig, sizes: list[tuple[int, int]],
                     grid: torch.Tensor, backend: str) -> torch.Tensor:
    """``pixel_values_videos`` of planned clips, in a new tensor on their device."""
    needs_grad = torch.is_grad_enabled() and batch.requires_grad
    if needs_grad and config.resize_mode != "float" and any(
            tuple(c.shape[-2:]) != s for c, s in zip(batch.clips, sizes)):
        raise ValueError(f"gradients flow only through resize_mode='float'; the video config's resize_mode="
                         f"{config.resize_mode!r} rounds to uint8 levels. Pass a video_config with "
                         "resize_mode='float' or detach the input")
    the_plan = Plan(config, sizes, _rows(sizes, grid[:, 0].tolist(), config.patch_size))
    p, tp = config.patch_size, config.temporal_patch_size
    out = host_memory.empty((the_plan.row_offsets[-1], 3 * tp * p * p), config.output_dtype, batch.device)
    chosen = backends.select(backend, batch.device, needs_grad=needs_grad, resize_mode=config.resize_mode)
    chosen.videos_into(batch, the_plan, out)
    return out


def _clip_shape(videos: torch.Tensor, layout: str) -> tuple[int, int, int, int]:
    """``(clips, frames, height, width)`` of a ``[T, C, H, W]`` / ``[B, T, C, H, W]`` tensor (channels last
    for ``layout="hwc"``), from its static shape."""
    x = videos if videos.dim() == 5 else videos[None]
    h, w = (x.shape[2], x.shape[3]) if layout == "hwc" else (x.shape[3], x.shape[4])
    return int(x.shape[0]), int(x.shape[1]), int(h), int(w)


@torch.library.custom_op("qwen_vis_prep::preprocess_clips", mutates_args=())
def preprocess_clips(videos: torch.Tensor, config: str, resize_mode: str, height: int, width: int, backend: str,
                     layout: str) -> torch.Tensor:
    """``pixel_values_videos`` of one ``[T, C, H, W]`` / ``[B, T, C, H, W]`` tensor resized to ``(height,
    width)`` in ``resize_mode``: the opaque op ``torch.compile`` traces for clips (the image config travels as
    its key; the target size, which the video config decides from static shapes, as ints)."""
    cfg = clip_config(_BY_KEY[config], resize_mode)
    batch = prepare_videos(videos, layout=layout, do_convert_rgb=cfg.do_convert_rgb, input_range=cfg.input_range,
                           check_values=False)
    sizes = [(height, width)] * len(batch.clips)
    grid = torch.tensor([sizing.video_grid_thw(int(c.shape[0]), (height, width), cfg) for c in batch.clips],
                        dtype=torch.int64).reshape(-1, 3)
    return _videos_into_new(batch, cfg, sizes, grid, backend)


@preprocess_clips.register_fake
def _(videos: torch.Tensor, config: str, resize_mode: str, height: int, width: int, backend: str,
      layout: str) -> torch.Tensor:
    cfg = _BY_KEY[config]
    b, t, _, _ = _clip_shape(videos, layout)
    p, tp = cfg.patch_size, cfg.temporal_patch_size
    rows = b * -(-t // tp) * (height // p) * (width // p)
    return videos.new_empty((rows, 3 * tp * p * p), dtype=cfg.output_dtype)


def _videos_traced(videos: torch.Tensor, config: VisionPreprocessConfig, video_config: VideoConfig, backend: str,
                   layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Under ``torch.compile``: one registered op for the pixels, ``video_grid_thw`` from static shapes."""
    lay = "hwc" if layout == "hwc" else "chw"
    b, t, h, w = _clip_shape(videos, lay)
    size = sizing.video_target_size(t, h, w, config, video_config)
    grid = torch.tensor([sizing.video_grid_thw(t, size, config)] * b, dtype=torch.int64)
    return preprocess_clips(videos, config._op_key, video_config.resize_mode, size[0], size[1], backend, lay), grid


# ------------------------------------------------------------------------------------------- resize

def resize(images: Any, size: tuple[int, int] | Sequence[tuple[int, int]], mode: str = "pil", *,
           pillow_order: str = "installed", layout: Layout = "auto", backend: Backend = "auto") -> Any:
    """The resize stage on its own: uint8 in, uint8 out.

    ``images`` is a ``[3, H, W]`` / ``[B, 3, H, W]`` uint8 tensor or a list of ``[3, H, W]`` tensors;
    ``size = (h, w)`` (or one size per list item). ``mode="pil"`` is bit-exact Pillow BICUBIC (pass order
    per ``pillow_order``), ``mode="torch-uint8"`` bit-exact ``F.interpolate(uint8, mode="bicubic",
    antialias=True)`` on the CPU, ``mode="float"`` antialiased float bicubic rounded back to uint8 like
    torchvision. Returns the same structure (tensor or list) with the new sizes. Every backend gives the
    same bits (``backend`` as for :func:`preprocess`).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    config = VisionPreprocessConfig(resize_mode=mode, pillow_order=pillow_order)
    single = isinstance(images, torch.Tensor)
    batch = prepare_images(images, layout=layout, do_convert_rgb=False, check_values=False)
    for i, img in enumerate(batch.images):
        if img.dtype != torch.uint8:
            raise TypeError(f"resize: expected uint8 images, got {img.dtype} at images[{i}]")
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(s, int) for s in size):
        sizes = [tuple(size)] * len(batch.images)
    else:
        sizes = [tuple(s) for s in size]
        if len(sizes) != len(batch.images):
            raise ValueError(f"resize: got {len(sizes)} sizes for {len(batch.images)} images")
    for s in sizes:
        if len(s) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in s):
            raise ValueError(f"resize: size must be (height, width) positive ints, got {s}")
    chosen = backends.select(backend, batch.device, resize_mode=mode)
    results = chosen.resize(batch.images, sizes, config, batch.stacked)
    # an unchanged size passes levels through: never hand the caller's own tensor back
    results = [r.clone() if r.data_ptr() == img.data_ptr() else r for r, img in zip(results, batch.images)]
    if single:
        return torch.stack(results) if images.dim() == 4 else results[0]
    return results
