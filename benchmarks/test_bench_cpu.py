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


# ------------------------------------------------------------------------------------------------ video
VIDEO_MAX_PIXELS = 28 * 28 * 1280  # a serving budget per frame: 720x1280 -> 728x1288 (52 x 92 patches)


@functools.lru_cache(maxsize=None)
def video_clip() -> torch.Tensor:
    """``[16, 3, 720, 1280] uint8``: 16 frames panning across a photo (real content, not noise)."""
    src = photo("astronaut", 720, 1280 + 15 * 8)
    frames = [torch.from_numpy(np.ascontiguousarray(src[:, 8 * i:8 * i + 1280])).permute(2, 0, 1) for i in range(16)]
    return torch.stack(frames).contiguous()


@functools.lru_cache(maxsize=None)
def hf_video_processor():
    from transformers import Qwen2VLVideoProcessor

    return Qwen2VLVideoProcessor(min_pixels=CONFIG.min_pixels, max_pixels=VIDEO_MAX_PIXELS,
                                 cap_pixels_per_frame=False)


def video_provider_fn(provider: str, clip: torch.Tensor):
    if provider == "ours":
        video_config = qvp.VIDEO_PRESETS["qwen2-vl"].replace(max_pixels=VIDEO_MAX_PIXELS)
        return lambda: qvp.preprocess_videos(clip, CONFIG, video_config)
    proc = hf_video_processor()
    return lambda: proc(videos=[clip], return_tensors="pt", do_sample_frames=False)


@pytest.mark.parametrize("provider", ["ours", "hf-torchvision"])
def test_cpu_video_clip(benchmark, provider):
    """One 16-frame 720p clip, ours (Pillow, fused into the frame slots) vs ``Qwen2VLVideoProcessor`` on the
    CPU. The two resizes differ (Pillow vs torch's uint8 kernel), so only the grids are compared with HF;
    ours is checked bit for bit against our reference backend."""
    clip = video_clip()
    run = video_provider_fn(provider, clip)
    grid = run()[1] if provider == "ours" else run()["video_grid_thw"]
    assert torch.equal(grid, video_provider_fn("hf-torchvision", clip)()["video_grid_thw"])
    if provider == "ours":
        video_config = qvp.VIDEO_PRESETS["qwen2-vl"].replace(max_pixels=VIDEO_MAX_PIXELS)
        ref = qvp.preprocess_videos(clip, CONFIG, video_config, backend="reference")[0]
        assert torch.equal(run()[0], ref)
    benchmark.group = "video-16x720p"
    benchmark.extra_info.update(provider=provider, frames=16, torch_threads=torch.get_num_threads(),
                                torch=torch.__version__, pillow=PIL.__version__,
                                transformers=transformers.__version__)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1, iterations=1)
