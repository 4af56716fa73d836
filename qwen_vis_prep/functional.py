"""Functional core: validate, plan sizes on the host, dispatch to a backend."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from typing import Any, Literal, Sequence

import numpy as np
import torch

from . import host_memory, sizing
from .backends import pillow_cpu, torch_ref
from .checks import ImageBatch, Layout, wants_value_check, describe, prepare_images
from .config import VisionPreprocessConfig
from .outputs import VisionBatch
from .resample_tables import DEVICE_TABLES, upload_table

Backend = Literal["auto", "torch", "triton"]

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def thread_pool() -> ThreadPoolExecutor:
    """The shared CPU worker pool (one thread per torch intra-op thread), created once on first use.
    Tasks submitted to it must not wait on further tasks of the same pool."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()),
                                       thread_name_prefix="qwen_vis_prep")
        return _POOL


def resolve_config(config: VisionPreprocessConfig | str | None = None, **overrides: Any) -> VisionPreprocessConfig:
    """A config from an instance, a preset name (``"qwen2-vl"``, ``"qwen2.5-vl"``, ``"qwen3-vl"``) or
    ``None`` (the ``"qwen2-vl"`` preset), with field overrides applied."""
    if config is None:
        config = "qwen2-vl"
    if isinstance(config, str):
        return VisionPreprocessConfig.from_preset(config, **overrides)
    if not isinstance(config, VisionPreprocessConfig):
        raise TypeError(f"config must be a VisionPreprocessConfig or a preset name, got {describe(config)}")
    return config.replace(**overrides) if overrides else config


def normalize_constants(config: VisionPreprocessConfig, device: torch.device
                        ) -> tuple[float | None, torch.Tensor | None, torch.Tensor | None]:
    """``(scale, mean, std)`` of :func:`torch_ref.normalize` for ``config``, cached on ``device``."""
    def make():
        if not config.do_normalize:
            return None, None
        return (upload_table(torch.tensor(config.image_mean, dtype=torch.float32), device),
                upload_table(torch.tensor(config.image_std, dtype=torch.float32), device))

    mean, std = DEVICE_TABLES.get(("norm", config.image_mean, config.image_std, config.do_normalize,
                                   str(device)), make)
    return (config.rescale_factor if config.do_rescale else None), mean, std


def level_table(config: VisionPreprocessConfig, device: torch.device) -> torch.Tensor:
    """``float32 [3, 256]``: the normalised value of every uint8 level per channel, built with
    :func:`torch_ref.normalize` itself (the Triton kernels gather from it, so both backends agree bit for bit)."""
    def make():
        scale, mean, std = normalize_constants(config, torch.device("cpu"))
        levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, 3, 1, 256)
        return upload_table(torch_ref.normalize(levels, scale, mean, std).reshape(3, 256).contiguous(), device)

    return DEVICE_TABLES.get(("lut", config.rescale_factor, config.do_rescale, config.image_mean,
                              config.image_std, config.do_normalize, str(device)), make)


def to_levels(x: torch.Tensor, input_range: str) -> torch.Tensor:
    """uint8 levels of an image: uint8 passes through; floats (scaled by 255 for ``"0-1"``) are clamped to
    [0, 255] and rounded half to even."""
    if x.dtype == torch.uint8:
        return x
    if input_range == "0-1":  # scale in float32 at least: half precision would misplace ~5% of levels
        y = (x.to(torch.float64 if x.dtype == torch.float64 else torch.float32) * 255.0).clamp_(0, 255)
    else:
        y = x.clamp(0, 255)
    return y.round_().to(torch.uint8)  # in place on our own copy: one full-size float temporary, not two


def to_float_scale(x: torch.Tensor, input_range: str) -> torch.Tensor:
    """Float image on the 0..255 scale (float64 stays float64, others become float32)."""
    y = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return y * 255.0 if (input_range == "0-1" and x.is_floating_point()) else y


def resized_levels(img: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig,
                   use_pillow: bool = False) -> torch.Tensor:
    """``[B, 3, H, W]`` -> resized uint8 levels ``[B, 3, h, w]`` (pil mode, or float mode on uint8).

    ``use_pillow`` (CPU, pil mode) resizes each image with Pillow itself, several on :func:`thread_pool`;
    otherwise the pure-torch implementation runs. An unchanged size passes the levels through.
    """
    in_h, in_w = img.shape[-2:]
    if config.resize_mode == "pil":
        levels = to_levels(img, config.input_range)
        if (in_h, in_w) == tuple(size):
            return levels
        if use_pillow:
            def one(x: torch.Tensor) -> torch.Tensor:
                return pillow_cpu.resize_chw(x, size, config.pillow_order)

            if levels.shape[0] == 1:
                return one(levels[0])[None]
            return torch.stack(list(thread_pool().map(one, levels.unbind(0))))
        vf = sizing.pillow_vertical_first(in_h, in_w, size[0], size[1], config.pillow_order)
        return torch_ref.resize_pil(levels, size, vf)
    if (in_h, in_w) == tuple(size):
        return img
    return torch_ref.round_to_levels(torch_ref.resize_float(img.to(torch.float32), size))


def normalized_pixels(img: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig,
                      use_pillow: bool = False) -> torch.Tensor:
    """Resize and normalise ``img [B, 3, H, W]`` -> float ``[B, 3, h, w]`` (torch backend; images and video
    frames alike). uint8 input, and float input that pil mode resizes, become uint8 levels first; other float
    input keeps its values (float resize or none), which is also the differentiable path."""
    resizing = tuple(img.shape[-2:]) != tuple(size)
    if img.dtype == torch.uint8 or (config.resize_mode == "pil" and resizing):
        x = resized_levels(img, size, config, use_pillow)
    else:
        x = to_float_scale(img, config.input_range)
        if resizing:
            x = torch_ref.resize_float(x, size)
    scale, mean, std = normalize_constants(config, img.device)
    return torch_ref.normalize(x, scale, mean, std)


def _differentiable(images: list[torch.Tensor], sizes: list[tuple[int, int]],
                    config: VisionPreprocessConfig) -> torch.Tensor:
    """Float-mode path that keeps autograd history (torch backend)."""
    if config.resize_mode != "float":
        raise ValueError("gradients flow only through resize_mode='float'; resize_mode='pil' rounds to uint8 "
                         "levels. Pass resize_mode='float' or detach the input")
    parts = [torch_ref.patchify(normalized_pixels(img[None], size, config), config.patch_size, config.merge_size,
                                config.image_frames, config.output_dtype)
             for img, size in zip(images, sizes)]
    return torch.cat(parts, 0)


@functools.lru_cache(maxsize=64)
def _cpu_normalizer(config: VisionPreprocessConfig, gather_only: bool = False):
    """``into(levels, dst)``: write the normalised float32 value of every uint8 level of the NumPy array
    ``levels [..., 3, P, P]`` (channel on axis -3, any strides) into the float32 NumPy array ``dst`` (same
    shape, any strides), equal to :func:`level_table`.

    In-place float32 ``multiply/subtract/divide`` on ``dst`` itself is several times faster than gathering
    from the table and needs no temporary; it gives the same bits whenever those float32 operations are
    correctly rounded, which is checked here on all 768 (channel, level) pairs once per config. Should a
    config ever disagree (or with ``gather_only``, for tests), the table is gathered. NumPy rather than torch: the Pillow path calls this from
    its worker threads, where torch's own intra-op threads would compete with the other workers; NumPy's
    loops run on the calling thread and release the GIL.
    """
    scale, mean, std = normalize_constants(config, torch.device("cpu"))
    lut = level_table(config, torch.device("cpu")).numpy()
    scale32 = None if scale is None else np.float32(scale)
    mean3 = None if mean is None else mean.numpy().reshape(3, 1, 1)
    std3 = None if std is None else std.numpy().reshape(3, 1, 1)
    offsets = np.arange(0, 3 * 256, 256, dtype=np.intp).reshape(3, 1, 1)

    def arithmetic(levels: np.ndarray, dst: np.ndarray) -> None:
        if scale32 is not None:
            np.multiply(levels, scale32, out=dst)  # float32 loop: float32(level) * float32(scale)
        else:
            np.copyto(dst, levels)
        if mean3 is not None:
            np.subtract(dst, mean3, out=dst)
            np.divide(dst, std3, out=dst)

    def gather(levels: np.ndarray, dst: np.ndarray) -> None:
        np.take(lut.reshape(-1), levels.astype(np.intp) + offsets, out=dst)

    probe = np.empty((3, 16, 16), np.float32)
    arithmetic(np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, 0), probe)
    return arithmetic if not gather_only and np.array_equal(probe.reshape(3, 256), lut) else gather


def _run_torch(batch: ImageBatch, sizes: list[tuple[int, int]], row_offsets: list[int],
               config: VisionPreprocessConfig, out: torch.Tensor) -> None:
    cpu = batch.device.type == "cpu"
    if not cpu and batch.stacked is not None:
        _process_torch(batch.stacked, sizes[0], config, out)
        return
    fast = cpu and config.resize_mode == "pil" and pillow_cpu.available()
    threads = max(1, torch.get_num_threads())
    # Few images: split each one into strips so every core has work; many images: one task per image.
    parts = threads if len(batch.images) < threads else 1
    norm = _cpu_normalizer(config) if fast else None

    def work(i: int) -> None:
        rows = out[row_offsets[i]:row_offsets[i + 1]]
        img = batch.images[i]
        if fast and (img.dtype == torch.uint8 or tuple(img.shape[-2:]) != tuple(sizes[i])):
            pillow_cpu.preprocess_into(to_levels(img, config.input_range), sizes[i], config.pillow_order, rows,
                                       norm, config.patch_size, config.merge_size, config.image_frames,
                                       thread_pool() if parts > 1 else None, parts)
        else:
            _process_torch(img[None], sizes[i], config, rows)

    if cpu and len(batch.images) > 1 and parts == 1:
        # largest first, so no big image starts last and runs alone on one core (each writes its own rows)
        order = sorted(range(len(batch.images)), key=lambda i: -batch.images[i].shape[-1] * batch.images[i].shape[-2])
        list(thread_pool().map(work, order))
    else:
        for i in range(len(batch.images)):
            work(i)


def _process_torch(img: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig,
                   out: torch.Tensor) -> None:
    """Resize + normalise + patchify ``img [B, 3, H, W]`` into ``out [B * rows, patch_dim]`` (torch backend)."""
    torch_ref.patchify_into(out, normalized_pixels(img, size, config), config.patch_size, config.merge_size,
                            config.image_frames)


def check_backend(backend: Any) -> None:
    """``ValueError`` unless ``backend`` is ``"auto"``, ``"torch"`` or ``"triton"``."""
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")


def select_backend(backend: str, device: torch.device, needs_grad: bool) -> str:
    """Resolve ``"auto"``: Triton for CUDA tensors when it can run and no gradient is needed, else torch.
    A backend requested by name that cannot run raises ``ValueError``."""
    check_backend(backend)
    if backend == "torch":
        return "torch"
    from .backends.triton import ops as triton_ops

    ok, why = triton_ops.can_run(device)
    if backend == "triton":
        if not ok:
            raise ValueError(f"backend='triton' cannot run here: {why}")
        if needs_grad:
            raise ValueError("backend='triton' has no backward pass; the input requires grad, use "
                             "backend='torch' (or 'auto') with resize_mode='float'")
        return "triton"
    return "triton" if (ok and device.type == "cuda" and not needs_grad) else "torch"


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


_TRITON_OPS = None  # the Triton launchers once a call has recorded a warm entry (see ops.warm_call)


def _tensors_only(images: Any) -> bool:
    """One ``[3, H, W]`` / ``[B, 3, H, W]`` tensor, or a non-empty list/tuple of ``[C, H, W]`` tensors: the
    inputs a warm call can take (shapes only; channels are checked where a call is recorded)."""
    if isinstance(images, torch.Tensor):
        return images.dim() in (3, 4)
    return (isinstance(images, (list, tuple)) and len(images) > 0
            and all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in images))


def _as_list(images: Any) -> Sequence[torch.Tensor]:
    return (images,) if isinstance(images, torch.Tensor) else images


def _remember_triton_ops(module) -> None:
    global _TRITON_OPS
    _TRITON_OPS = module


def preprocess(images: Any, config: VisionPreprocessConfig | str | None = None, *, backend: Backend = "auto",
               layout: Layout = "auto", check_values: bool | None = None) -> VisionBatch:
    """Turn images into Qwen-VL ``pixel_values`` and ``grid_thw``.

    Args:
        images: ``[3, H, W]`` / ``[B, 3, H, W]`` tensor (uint8 or float on the 0..255 scale, see
            ``config.input_range``), a HWC numpy array, a PIL image, or a list of those (ragged sizes).
            1-channel images are expanded, 4-channel ones composited onto white. Never modified.
        config: a :class:`VisionPreprocessConfig` or a preset name (default ``"qwen2-vl"``).
        backend: ``"auto"`` (Triton on CUDA when available, else torch), ``"torch"`` or ``"triton"``.
        layout: ``"auto"`` (tensors CHW, numpy arrays HWC), ``"chw"`` or ``"hwc"``.
        check_values: NaN/Inf/range check of float inputs; default on for CPU, off for CUDA (it syncs).

    Returns:
        :class:`VisionBatch` with ``pixel_values [N, 3 * T * P * P]`` (``config.output_dtype``, input device)
        and ``grid_thw int64 [num_images, 3]`` (CPU).
    """
    config = resolve_config(config)
    if isinstance(images, torch.Tensor) and images.dim() in (3, 4) and torch.compiler.is_compiling():
        return _preprocess_traced(images, config, backend, layout)
    if _TRITON_OPS is not None and _tensors_only(images) and not (
            torch.is_grad_enabled() and any(t.requires_grad for t in _as_list(images))):
        warm = _TRITON_OPS.warm_call(images, config, backend, layout, check_values)
        if warm is not None:
            return VisionBatch(*warm)
    batch = prepare_images(images, layout=layout, do_convert_rgb=config.do_convert_rgb,
                           input_range=config.input_range, check_values=check_values)
    sizes, grid = plan(batch, config)
    p = config.patch_size
    row_offsets = list(accumulate(((h // p) * (w // p) for h, w in sizes), initial=0))
    needs_grad = torch.is_grad_enabled() and batch.requires_grad
    chosen = select_backend(backend, batch.device, needs_grad)
    if needs_grad:
        return VisionBatch(_differentiable(batch.images, sizes, config), grid)
    out = host_memory.empty((row_offsets[-1], config.patch_dim), config.output_dtype, batch.device)
    if chosen == "triton":
        from .backends.triton import ops as triton_ops

        launches = triton_ops.preprocess_into(batch, sizes, row_offsets, config, out)
        if launches is not None and _tensors_only(images) and all(
                t.shape[-1 if layout == "hwc" else -3] == 3 and not wants_value_check(check_values, t)
                for t in _as_list(images)):
            # nothing this call checked or converted depended on the pixel values: later calls with the same
            # metadata repeat its launches (ops.warm_call)
            triton_ops.remember_call(images, config, backend, layout, check_values, launches, out, grid)
            _remember_triton_ops(triton_ops)
    else:
        _run_torch(batch, sizes, row_offsets, config, out)
    return VisionBatch(out, grid)


def _preprocess_traced(images: torch.Tensor, config: VisionPreprocessConfig, backend: str, layout: str
                       ) -> VisionBatch:
    """Under ``torch.compile``: one registered op for the pixels, ``grid_thw`` from static shapes."""
    from .custom_ops import config_key, preprocess_tensor, tensor_grid

    lay = "chw" if layout == "auto" else layout
    n, gh, gw = tensor_grid(images, config, lay)
    grid = torch.tensor([[1, gh, gw]] * n, dtype=torch.int64)
    return VisionBatch(preprocess_tensor(images, config_key(config), backend, lay), grid)


def resize(images: Any, size: tuple[int, int] | Sequence[tuple[int, int]], mode: str = "pil", *,
           pillow_order: str = "installed", layout: Layout = "auto", backend: Backend = "auto") -> Any:
    """The resize stage on its own: uint8 in, uint8 out.

    ``images`` is a ``[3, H, W]`` / ``[B, 3, H, W]`` uint8 tensor or a list of ``[3, H, W]`` tensors;
    ``size = (h, w)`` (or one size per list item). ``mode="pil"`` is bit-exact Pillow BICUBIC (pass order
    per ``pillow_order``), ``mode="float"`` is antialiased float bicubic rounded back to uint8 like
    torchvision. Returns the same structure (tensor or list) with the new sizes. The torch backend is the
    pure-torch integer implementation on every device; ``backend="pillow"`` is not offered on purpose —
    :func:`preprocess` uses Pillow itself on the CPU, where it is faster.
    """
    if mode not in ("pil", "float"):
        raise ValueError(f"mode must be 'pil' or 'float', got {mode!r}")
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
    chosen = select_backend(backend, batch.device, False)
    if chosen == "triton":
        from .backends.triton import ops as triton_ops

        results = triton_ops.resize_levels(batch, sizes, config)
    elif batch.stacked is not None and len(set(sizes)) == 1:
        results = list(resized_levels(batch.stacked, sizes[0], config).unbind(0))
    else:
        results = [resized_levels(img[None], s, config)[0]
                   for img, s in zip(batch.images, sizes)]
    # an unchanged size passes levels through: never hand the caller's own tensor back
    results = [r.clone() if r.data_ptr() == img.data_ptr() else r for r, img in zip(results, batch.images)]
    if single:
        return torch.stack(results) if images.dim() == 4 else results[0]
    return results
