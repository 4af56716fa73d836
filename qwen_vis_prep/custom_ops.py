"""``torch.library`` registration so ``torch.compile(fullgraph=True)`` can trace a model that starts with
the preprocessor: the whole preprocessing of one tensor batch is one opaque op with a shape-only fake."""

from __future__ import annotations

import threading

import torch

from .config import VisionPreprocessConfig

_CONFIGS: dict[str, VisionPreprocessConfig] = {}
_LOCK = threading.Lock()


@torch.compiler.assume_constant_result
def config_key(config: VisionPreprocessConfig) -> str:
    """A string naming ``config`` in this process (custom-op arguments must be plain values)."""
    key = repr(config)
    with _LOCK:
        _CONFIGS.setdefault(key, config)
    return key


def _rows(images: torch.Tensor, config: VisionPreprocessConfig, layout: str) -> int:
    from .sizing import target_size

    x = images if images.dim() == 4 else images[None]
    h, w = (x.shape[1], x.shape[2]) if layout == "hwc" else (x.shape[2], x.shape[3])
    th, tw = target_size(int(h), int(w), config)
    return int(x.shape[0]) * (th // config.patch_size) * (tw // config.patch_size)


@torch.library.custom_op("qwen_vis_prep::preprocess_tensor", mutates_args=())
def preprocess_tensor(images: torch.Tensor, config: str, backend: str, layout: str) -> torch.Tensor:
    """``pixel_values`` of one ``[3, H, W]`` / ``[B, 3, H, W]`` tensor (the opaque form of ``preprocess``)."""
    from .functional import preprocess

    return preprocess(images, _CONFIGS[config], backend=backend, layout=layout, check_values=False).pixel_values


@preprocess_tensor.register_fake
def _(images: torch.Tensor, config: str, backend: str, layout: str) -> torch.Tensor:
    cfg = _CONFIGS[config]
    return images.new_empty((_rows(images, cfg, layout), cfg.patch_dim), dtype=cfg.output_dtype)
