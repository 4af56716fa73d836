"""Launchers for the Triton kernels: they own dtypes, strides, scratch buffers, grids and the device guard.

A same-shape batch takes at most two launches (first separable pass into a uint8/float32 scratch, then the
last pass fused with normalisation + patchify + cast, writing each output element once); no resize is one
launch. Ragged lists are grouped by shape: two launches per distinct shape. Every table (filter taps,
level table, normalisation constants, row offsets) comes from a device-side LRU cache, so a warm call does
no host<->device copy and no sync, and can be captured in a CUDA graph.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ...checks import ImageBatch
from ...config import VisionPreprocessConfig
from ...resample_tables import DEVICE_TABLES, device_taps, to_device
from ...sizing import pillow_vertical_first, separable_passes
from .. import torch_ref

_PASS_BLOCK_R, _PASS_BLOCK_Q = 8, 128  # 16 rows measured 1.7x slower (H200)
_PATCH_BLOCK = 1024


def _triton_importable() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the install
        return False, f"triton cannot be imported ({e})"
    return True, ""


def can_run(device: torch.device) -> tuple[bool, str]:
    """Whether the kernels can run on ``device`` and, if not, why."""
    ok, why = _triton_importable()
    if not ok:
        return False, why
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        return True, ""
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True, ""
    return False, (f"the Triton kernels need CUDA tensors, got a tensor on {device} "
                   "(set TRITON_INTERPRET=1 to run them in Triton's CPU interpreter)")


def _device_guard(t: torch.Tensor):
    """Launch on ``t``'s GPU (the current device may be another one)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _norm_vector(config: VisionPreprocessConfig, device: torch.device) -> torch.Tensor:
    """float64 ``[scale, mean0, mean1, mean2, std0, std1, std2]`` holding the float32 constants of
    ``torch_ref.normalize``; identity values for skipped steps."""
    def make():
        scale = config.rescale_factor if config.do_rescale else 1.0
        mean = config.image_mean if config.do_normalize else (0.0, 0.0, 0.0)
        std = config.image_std if config.do_normalize else (1.0, 1.0, 1.0)
        vec = torch.tensor([scale, *mean, *std], dtype=torch.float32).double()
        return to_device(vec, device)

    return DEVICE_TABLES.get(("normvec", config.rescale_factor, config.do_rescale, config.image_mean,
                              config.image_std, config.do_normalize, str(device)), make)


def _row_table(offsets: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return DEVICE_TABLES.get(("rows", offsets, str(device)),
                             lambda: to_device(torch.tensor(offsets, dtype=torch.int64), device))


def _check_int32_extent(src: torch.Tensor) -> None:
    """The kernels address inside one image with int32 offsets."""
    span = sum((n - 1) * abs(st) for n, st in zip(src.shape[1:], src.stride()[1:])) + 1
    if span >= 2**31:
        raise ValueError(f"backend='triton' needs each image to span < 2**31 elements, got {span} for shape "
                         f"{tuple(src.shape)}; use backend='torch'")


def _grid_pass(n_r: int, n_q: int, c: int, b: int) -> tuple[int, int, int]:
    return (-(-n_r // _PASS_BLOCK_R) * -(-n_q // _PASS_BLOCK_Q), c, b)


def resample_pass(src: torch.Tensor, n: int, vertical: bool, pil: bool) -> torch.Tensor:
    """One separable pass ``[B, C, H, W] -> [B, C, n, W]`` (vertical) or ``[B, C, H, n]``, contiguous.

    ``pil``: uint8 -> uint8 fixed point; else uint8/float -> float32 (float64 sum).
    """
    from .kernels import _resample_pass_kernel

    b, c, h, w = src.shape
    _check_int32_extent(src)
    axis_in = h if vertical else w
    idx, wts = device_taps(axis_in, n, "pil" if pil else "float", src.device)
    n_r, n_q = (n, w) if vertical else (h, n)
    dst = torch.empty((b, c, n_r, n_q), dtype=torch.uint8 if pil else torch.float32, device=src.device)
    if dst.numel() == 0:
        return dst
    with _device_guard(src):
        _resample_pass_kernel[_grid_pass(n_r, n_q, c, b)](
            src, dst, idx, wts, n_r, n_q, idx.shape[1],
            src.stride(0), src.stride(1), src.stride(2), src.stride(3),
            c * n_r * n_q, n_r * n_q,
            VERTICAL=vertical, PIL=pil, BLOCK_R=_PASS_BLOCK_R, BLOCK_Q=_PASS_BLOCK_Q)
    return dst


def _src_kind(src: torch.Tensor, config: VisionPreprocessConfig, resizing: bool) -> tuple[torch.Tensor, int]:
    """Bring ``src`` to a dtype the kernels take and pick their arithmetic (see kernels.SRC_*)."""
    from ...functional import to_levels

    if src.dtype == torch.uint8:
        return src, 0 if config.resize_mode == "pil" else 1
    if config.resize_mode == "pil" and resizing:
        return to_levels(src, config.input_range), 0
    if src.dtype == torch.float64:
        raise ValueError("backend='triton' takes uint8, float32, float16 or bfloat16 images, got float64; "
                         "use backend='torch' for float64")
    if config.input_range == "0-1":
        src = src.to(torch.float32) * 255.0
    return src, 2


def launch_group(src: torch.Tensor, size: tuple[int, int], config: VisionPreprocessConfig, out: torch.Tensor,
                 first_row: int, row_offsets: tuple[int, ...] | None) -> None:
    """Preprocess a same-shape batch ``src [B, 3, H, W]`` (any strides) into rows of ``out``.

    Image ``b`` goes to rows ``first_row + b * rows`` (or ``row_offsets[b]`` when given).
    """
    from ...functional import level_table
    from .kernels import _patchify_kernel

    b, c, in_h, in_w = src.shape
    h, w = size
    src, kind = _src_kind(src, config, (in_h, in_w) != (h, w))
    _check_int32_extent(src)
    pil = kind == 0
    # float resizing goes width first, as torch_ref.resize_float does
    vertical_first = pil and pillow_vertical_first(in_h, in_w, h, w, config.pillow_order)
    passes = separable_passes(in_h, in_w, h, w, vertical_first)
    if len(passes) == 2:
        src = resample_pass(src, passes[0][1], passes[0][0], pil)
        passes = passes[1:]
    axis = 0 if not passes else (1 if passes[0][0] else 2)
    device = src.device
    if axis:
        vertical, n = passes[0]
        idx, wts = device_taps(src.shape[-2] if vertical else src.shape[-1], n, "pil" if pil else "float", device)
        taps = idx.shape[1]
    else:
        idx = wts = _norm_vector(config, device)  # unused placeholders
        taps = 0
    p, m, t = config.patch_size, config.merge_size, config.image_frames
    rows = (h // p) * (w // p)
    lut = level_table(config, device)
    norm = _norm_vector(config, device)
    rows_t = _row_table(row_offsets, device) if row_offsets is not None else norm
    grid = (-(-(rows * c * p * p) // _PATCH_BLOCK), b)
    with _device_guard(src):
        _patchify_kernel[grid](
            src, out, idx, wts, lut, norm, rows_t,
            rows, first_row, w // (p * m), taps,
            src.stride(0), src.stride(1), src.stride(2), src.stride(3),
            SRC=kind, AXIS=axis, HAS_ROW_TABLE=row_offsets is not None,
            C=c, P=p, M=m, T=t, BLOCK=_PATCH_BLOCK)


def preprocess_into(batch: ImageBatch, sizes: list[tuple[int, int]], row_offsets: list[int],
                    config: VisionPreprocessConfig, out: torch.Tensor) -> None:
    """Fill ``out`` for every image of ``batch`` (image ``i`` starts at row ``row_offsets[i]``): one group
    per distinct (shape, dtype, target size)."""
    if batch.stacked is not None:
        launch_group(batch.stacked, sizes[0], config, out, 0, None)
        return
    groups: dict[tuple, list[int]] = {}
    for i, img in enumerate(batch.images):
        groups.setdefault((tuple(img.shape), img.dtype, tuple(sizes[i])), []).append(i)
    for (_, _, size), members in groups.items():
        if len(members) == 1:
            launch_group(batch.images[members[0]][None], size, config, out, row_offsets[members[0]], None)
        else:
            src = torch.stack([batch.images[i] for i in members])
            launch_group(src, size, config, out, 0, tuple(row_offsets[i] for i in members))


def resize_levels(batch: ImageBatch, sizes: list[tuple[int, int]], config: VisionPreprocessConfig
                  ) -> list[torch.Tensor]:
    """The resize stage alone on uint8 images with the first-pass kernel (used by ``qvp.resize``)."""
    pil = config.resize_mode == "pil"
    results = []
    for img, (h, w) in zip(batch.images, sizes):
        x = img[None]
        in_h, in_w = x.shape[-2:]
        vertical_first = pil and pillow_vertical_first(in_h, in_w, h, w, config.pillow_order)
        for vertical, n in separable_passes(in_h, in_w, h, w, vertical_first):
            x = resample_pass(x, n, vertical, pil)
        if x.dtype != torch.uint8:
            x = torch_ref.round_to_levels(x)
        results.append(x[0])
    return results
