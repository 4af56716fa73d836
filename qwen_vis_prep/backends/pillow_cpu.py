"""Pillow's own C resampler as a fast CPU path for ``resize_mode="pil"``.

Pillow is the definition of the ``"pil"`` mode, so calling it is exact by construction; a pass order other
than the installed Pillow's is reproduced by chaining single-axis resizes (each is exactly one Pillow pass).
Pillow releases the GIL while resampling, so images (and strips of one large image) run on threads.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..sizing import installed_pillow_order, pillow_vertical_first


def available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def resize_hwc(hwc: np.ndarray, size: tuple[int, int], order: str) -> np.ndarray:
    """``[H, W, 3] uint8 -> [h, w, 3] uint8`` with Pillow BICUBIC in the pass order of ``order``."""
    from PIL import Image

    in_h, in_w = hwc.shape[:2]
    h, w = size
    im = Image.fromarray(hwc, "RGB")
    same_as_installed = (pillow_vertical_first(in_h, in_w, h, w, order)
                         == pillow_vertical_first(in_h, in_w, h, w, installed_pillow_order()))
    if same_as_installed or in_h == h or in_w == w:
        im = im.resize((w, h), Image.Resampling.BICUBIC)
    elif pillow_vertical_first(in_h, in_w, h, w, order):
        im = im.resize((in_w, h), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    else:
        im = im.resize((w, in_h), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    with warnings.catch_warnings():  # the array is read-only; we never write to it
        warnings.simplefilter("ignore")
        return np.asarray(im)


def resize_chw(x: torch.Tensor, size: tuple[int, int], order: str) -> torch.Tensor:
    """``[3, H, W] uint8`` CPU tensor (any strides) -> ``[3, h, w]`` view of a new HWC uint8 tensor."""
    hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    with warnings.catch_warnings():  # read-only numpy array from Pillow; only ever read
        warnings.simplefilter("ignore")
        return torch.from_numpy(resize_hwc(hwc, size, order)).permute(2, 0, 1)
