"""CPU throughput: qwen_vis_prep vs transformers' two Qwen2-VL image processors.

Run: ``pytest benchmarks --benchmark-only`` (add ``--benchmark-disable`` for a one-shot smoke run).

Every provider gets the same input, a list of ``[H, W, 3] uint8`` numpy arrays (what a decoder hands over),
and the ``qwen2-vl`` preset settings (min_pixels 3136, max_pixels 12845056; 1080x1920 -> 1092x1932), or a
serving budget (max_pixels ``28*28*1280``; 1080x1920 -> 728x1316).
Images are real photos, not noise: scikit-image's bundled ``astronaut``, ``chelsea``, ``coffee`` and
``rocket`` resized with Pillow BICUBIC to the benchmark sizes (stretched where the aspect ratio differs;
the resize cost does not depend on the content).

Cases, each a benchmark group comparing the providers:

* ``1x1080p``: one 1080x1920 image;
* ``1x1080p-serving``: the same image to the serving budget (a downscale);
* ``8x1080p``: a list of 8 such images (four photos, twice);
* ``16-mixed``: 16 images from 300x400 up to 1200x1600 (linearly spaced).

Providers: ``ours`` (``qvp.preprocess(images, cfg)``, CPU, Pillow backend, ``resize_mode="pil"``),
``ours-torch-uint8`` (the same with ``resize_mode="torch-uint8"``: the aten backend), ``hf-pil``
(``Qwen2VLImageProcessorPil``) and ``hf-torchvision`` (``Qwen2VLImageProcessor`` on the CPU). Before timing,
each case checks once that ``ours`` gives HF PIL's ``grid_thw`` and pixel values (1e-5) and
``ours-torch-uint8`` HF torchvision's, so a fast wrong answer cannot win. The timings record the thread
count and library versions in ``extra_info``; medians are the number to read (the CPU may be shared).
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
SERVING_MAX_PIXELS = 28 * 28 * 1280
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@functools.lru_cache(maxsize=None)
def photo(name: str, h: int, w: int) -> np.ndarray:
    from skimage import data

    src = getattr(data, name)()
    out = np.array(Image.fromarray(src).resize((w, h), Image.Resampling.BICUBIC))
    out.setflags(write=False)
    return out


def case_images(case: str) -> list[np.ndarray]:
    if case in ("1x1080p", "1x1080p-serving"):
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


def case_config(case: str) -> qvp.VisionPreprocessConfig:
    return CONFIG.replace(max_pixels=SERVING_MAX_PIXELS) if case.endswith("-serving") else CONFIG


@functools.lru_cache(maxsize=None)
def hf_processor(kind: str, case: str):
    if kind == "hf-pil":
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil(**hf_kwargs(case_config(case)))
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(**hf_kwargs(case_config(case)))


def provider_fn(provider: str, case: str):
    images = case_images(case)
    if provider == "ours":
        return lambda: qvp.preprocess(images, case_config(case))
    if provider == "ours-torch-uint8":
        config = case_config(case).replace(resize_mode="torch-uint8")
        return lambda: qvp.preprocess(images, config)
    proc = hf_processor(provider, case)
    return lambda: proc(images, return_tensors="pt")


# each of our modes against the transformers backend whose resize it reproduces
COUNTERPART = {"ours": "hf-pil", "ours-torch-uint8": "hf-torchvision"}


@functools.lru_cache(maxsize=None)
def check_case(case: str, provider: str) -> None:
    """Once per case and mode: ours == its HF counterpart (grid exactly, pixels to 1e-5)."""
    ours = provider_fn(provider, case)()
    ref = provider_fn(COUNTERPART[provider], case)()
    assert torch.equal(ours.grid_thw, ref["image_grid_thw"])
    assert (ours.pixel_values - ref["pixel_values"]).abs().max().item() <= 1e-5


ROUNDS = {"1x1080p": 10, "1x1080p-serving": 10, "8x1080p": 5, "16-mixed": 5}


@pytest.mark.parametrize("provider", ["ours", "ours-torch-uint8", "hf-pil", "hf-torchvision"])
@pytest.mark.parametrize("case", ["1x1080p", "1x1080p-serving", "8x1080p", "16-mixed"])
def test_cpu_preprocess(benchmark, case, provider):
    if provider in COUNTERPART:
        check_case(case, provider)
    images = case_images(case)
    benchmark.group = case
    benchmark.extra_info.update(
        provider=provider, images=len(images), pixels=int(sum(i.shape[0] * i.shape[1] for i in images)),
        torch_threads=torch.get_num_threads(), torch=torch.__version__, torchvision=torchvision.__version__,
        pillow=PIL.__version__, transformers=transformers.__version__, qwen_vis_prep=qvp.__version__,
        input="list of HWC uint8 numpy arrays (skimage photos resized with Pillow BICUBIC)")
    out = benchmark.pedantic(provider_fn(provider, case), rounds=ROUNDS[case], warmup_rounds=2, iterations=1)
    grid = out.grid_thw if provider.startswith("ours") else out["image_grid_thw"]
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


def video_config(provider: str) -> qvp.VideoConfig:
    mode = "pil" if provider == "ours-pil" else "torch-uint8"  # the preset's own mode is torch-uint8
    return qvp.VIDEO_PRESETS["qwen2-vl"].replace(max_pixels=VIDEO_MAX_PIXELS, resize_mode=mode)


def video_provider_fn(provider: str, clip: torch.Tensor):
    if provider.startswith("ours"):
        return lambda: qvp.preprocess_videos(clip, CONFIG, video_config(provider))
    proc = hf_video_processor()
    return lambda: proc(videos=[clip], return_tensors="pt", do_sample_frames=False)


@pytest.mark.parametrize("provider", ["ours", "ours-pil", "hf-torchvision"])
def test_cpu_video_clip(benchmark, provider):
    """One 16-frame 720p clip: ours in the preset's mode (torch-uint8, the aten backend fused into the frame
    slots), ours in pil mode (Pillow backend), and ``Qwen2VLVideoProcessor`` on the CPU. Checked first:
    ``ours`` matches HF (grid exactly, pixels to 1e-5), ``ours-pil`` our reference backend bit for bit."""
    clip = video_clip()
    run = video_provider_fn(provider, clip)
    hf = video_provider_fn("hf-torchvision", clip)()
    grid = run()[1] if provider.startswith("ours") else run()["video_grid_thw"]
    assert torch.equal(grid, hf["video_grid_thw"])
    if provider == "ours":
        assert (run()[0] - hf["pixel_values_videos"]).abs().max().item() <= 1e-5
    if provider == "ours-pil":
        ref = qvp.preprocess_videos(clip, CONFIG, video_config(provider), backend="reference")[0]
        assert torch.equal(run()[0], ref)
    benchmark.group = "video-16x720p"
    benchmark.extra_info.update(provider=provider, frames=16, torch_threads=torch.get_num_threads(),
                                torch=torch.__version__, pillow=PIL.__version__,
                                transformers=transformers.__version__)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1, iterations=1)
