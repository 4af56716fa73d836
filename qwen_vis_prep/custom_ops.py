"""``torch.library`` registration so ``torch.compile(fullgraph=True)`` can trace a model that starts with
the preprocessor: the whole preprocessing of one tensor batch is one opaque op with a shape-only fake."""

from __future__ import annotations

import torch

from .config import _BY_KEY, VisionPreprocessConfig
from .sizing import target_size


def config_key(config: VisionPreprocessConfig) -> str:
    """The string naming ``config`` for the op (custom-op arguments must be plain values); set when the
    config is built, so tracing only reads an attribute."""
    return config._op_key


def tensor_grid(images: torch.Tensor, config: VisionPreprocessConfig, layout: str) -> tuple[int, int, int]:
    """``(num_images, grid_h, grid_w)`` of a ``[3, H, W]`` / ``[B, 3, H, W]`` tensor (HWC for
    ``layout="hwc"``) from its static shape: plain ints, usable while tracing and in the fake kernel."""
    x = images if images.dim() == 4 else images[None]
    h, w = (x.shape[1], x.shape[2]) if layout == "hwc" else (x.shape[2], x.shape[3])
    th, tw = target_size(int(h), int(w), config)
    return int(x.shape[0]), th // config.patch_size, tw // config.patch_size


@torch.library.custom_op("qwen_vis_prep::preprocess_tensor", mutates_args=())
def preprocess_tensor(images: torch.Tensor, config: str, backend: str, layout: str) -> torch.Tensor:
    """``pixel_values`` of one ``[3, H, W]`` / ``[B, 3, H, W]`` tensor (the opaque form of ``preprocess``)."""
    from .functional import preprocess

    return preprocess(images, _BY_KEY[config], backend=backend, layout=layout, check_values=False).pixel_values


@preprocess_tensor.register_fake
def _(images: torch.Tensor, config: str, backend: str, layout: str) -> torch.Tensor:
    cfg = _BY_KEY[config]
    n, gh, gw = tensor_grid(images, cfg, layout)
    return images.new_empty((n * gh * gw, cfg.patch_dim), dtype=cfg.output_dtype)
