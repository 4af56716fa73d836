"""CPU throughput: qwen_vis_prep vs transformers' two Qwen2-VL image processors.

Run: ``pytest benchmarks --benchmark-only`` (add ``--benchmark-disable`` for a one-shot smoke run).

Every provider gets the same input, a list of ``[H, W, 3] uint8`` numpy arrays (what a decoder hands over),
and the ``qwen2-vl`` preset settings (min_pixels 3136, max_pixels 12845056; 1080x1920 -> 1092x1932).
Images are real photos, not noise: scikit-image's bundled ``astronaut``, ``chelsea``, ``coffee`` and
``rocket`` resized with Pillow BICUBIC to the benchmark sizes (stretched where the aspect ratio differs;
the resize cost does not depend on the content).

Cases, each a benchmark group comparing the providers:

* ``1x1080p``: one 1080x1920 image;
* ``8x1080p``: a list of 8 such images (four photos, twice);
* ``16-mixed``: 16 images from 300x400 up to 1200x1600 (linearly spaced).

Providers: ``ours`` (``qvp.preprocess(images, cfg)``, CPU, Pillow fast path, ``resize_mode="pil"``),
``hf-pil`` (``Qwen2VLImageProcessorPil``) and ``hf-torchvision`` (``Qwen2VLImageProcessor`` on the CPU).
Before timing, each case checks once that ``ours`` gives HF PIL's ``grid_thw`` and pixel values (1e-5),
so a fast wrong answer cannot win. The timings record the thread count and library versions in
``extra_info``; medians are the number to read (the CPU may be shared).
"""

from __future__ import annotations

import functools

import numpy as np
import PIL
import pytest
import torch
import torchvision
import transformers
from PIL import Image

import qwen_vis_prep as qvp

CONFIG = qvp.PRESETS["qwen2-vl"]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@functools.lru_cache(maxsize=None)
def photo(name: str, h: int, w: int) -> np.ndarray:
    from skimage import data

    src = getattr(data, name)()
    out = np.array(Image.fromarray(src).resize((w, h), Image.Resampling.BICUBIC))
    out.setflags(write=False)
    return out


def case_images(case: str) -> list[np.ndarray]:
    if case == "1x1080p":
        return [photo("astronaut", 1080, 1920)]
    if case == "8x1080p":
        return [photo(PHOTOS[i % 4], 1080, 1920) for i in range(8)]
    if case == "16-mixed":
        return [photo(PHOTOS[i % 4], 300 + 60 * i, 400 + 80 * i) for i in range(16)]
    raise AssertionError(case)


def hf_kwargs(config: qvp.VisionPreprocessConfig) -> dict:
    return dict(min_pixels=config.min_pixels, max_pixels=config.max_pixels, patch_size=config.patch_size,
                temporal_patch_size=config.temporal_patch_size, merge_size=config.merge_size,
                image_mean=list(config.image_mean), image_std=list(config.image_std))


@functools.lru_cache(maxsize=None)
def hf_processor(kind: str):
    if kind == "hf-pil":
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil(**hf_kwargs(CONFIG))
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(**hf_kwargs(CONFIG))


def provider_fn(provider: str, images: list[np.ndarray]):
    if provider == "ours":
        return lambda: qvp.preprocess(images, CONFIG)
    proc = hf_processor(provider)
    return lambda: proc(images, return_tensors="pt")


@functools.lru_cache(maxsize=None)
def check_case(case: str) -> None:
    """Once per case: ours == HF PIL (grid exactly, pixels to 1e-5)."""
    images = case_images(case)
    ours = qvp.preprocess(images, CONFIG)
    ref = hf_processor("hf-pil")(images, return_tensors="pt")
    assert torch.equal(ours.grid_thw, ref["image_grid_thw"])
    assert (ours.pixel_values - ref["pixel_values"]).abs().max().item() <= 1e-5


ROUNDS = {"1x1080p": 10, "8x1080p": 5, "16-mixed": 5}


@pytest.mark.parametrize("provider", ["ours", "hf-pil", "hf-torchvision"])
@pytest.mark.parametrize("case", ["1x1080p", "8x1080p", "16-mixed"])
def test_cpu_preprocess(benchmark, case, provider):
    check_case(case)
    images = case_images(case)
    benchmark.group = case
    benchmark.extra_info.update(
        provider=provider, images=len(images), pixels=int(sum(i.shape[0] * i.shape[1] for i in images)),
        torch_threads=torch.get_num_threads(), torch=torch.__version__, torchvision=torchvision.__version__,
        pillow=PIL.__version__, transformers=transformers.__version__, qwen_vis_prep=qvp.__version__,
        input="list of HWC uint8 numpy arrays (skimage photos resized with Pillow BICUBIC)")
    out = benchmark.pedantic(provider_fn(provider, images), rounds=ROUNDS[case], warmup_rounds=2, iterations=1)
    grid = out["image_grid_thw"] if provider != "ours" else out.grid_thw
    assert grid.shape == (len(images), 3)
