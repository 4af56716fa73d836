"""``resize_mode="torch-uint8"``: bit-exact with torch's CPU uint8 antialiased bicubic kernel
(``F.interpolate(uint8, mode="bicubic", antialias=True)``), on every backend, and through transformers'
torchvision-backend processors.

Every expected value comes from torch's own kernel or from transformers; the Triton backend runs in Triton's
CPU interpreter without a GPU (small sizes, the interpreter pays per row) and on CUDA with one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import qwen_vis_prep as qvp
from qwen_vis_prep import backends
from qwen_vis_prep.backends import triton as triton_backend

CUDA = torch.cuda.is_available()
TRITON_DEVICE = torch.device("cuda" if CUDA else "cpu")
HAS_TRITON = triton_backend.can_run(TRITON_DEVICE)[0]
CPU_BACKENDS = ["reference", "native", "aten"]


def torch_kernel(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torch's own uint8 result for ``[3, H, W]`` or ``[B, 3, H, W]`` (channels-last input: contiguous NCHW
    with a one-pixel-wide output trips an internal assertion in torch; both layouts run the same arithmetic,
    checked in ``test_channels_last_and_contiguous_inputs_agree_in_torch``)."""
    x = img if img.dim() == 4 else img[None]
    x = torch.empty(x.shape, dtype=torch.uint8, memory_format=torch.channels_last).copy_(x)
    y = F.interpolate(x, size=size, mode="bicubic", antialias=True)
    return y if img.dim() == 4 else y[0]


def random_cases(rng: np.random.Generator, n: int, limit: int) -> list[tuple[int, int, int, int]]:
    """``(H, W, h, w)``: random sizes plus each kind of resize the issue of pass order and precision
    touches: 1-pixel sides, extreme aspects, upscales, one axis only, one axis down and the other up."""
    cases = [tuple(int(v) for v in rng.integers(1, limit, 4)) for _ in range(n)]
    cases += [(1, 1, 5, 7), (5, 7, 1, 1), (1, 40, 3, 9), (40, 1, 9, 3), (9, 60, 9, 1), (60, 9, 1, 9),
              (3, 90, 1, 28), (90, 3, 28, 2), (20, 30, 20, 17), (20, 30, 11, 30), (24, 31, 23, 33),
              (31, 24, 33, 22), (17, 23, 51, 69), (60, 52, 59, 54), (7, 1, 1, 1)]
    return cases


# ---------------------------------------------------------------------------------------- the resize


def test_channels_last_and_contiguous_inputs_agree_in_torch(rng):
    """The oracle's layout does not matter to torch's arithmetic (where contiguous input runs at all)."""
    for in_h, in_w, h, w in random_cases(rng, 40, 60):
        img = torch.from_numpy(rng.integers(0, 256, (1, 3, in_h, in_w), dtype=np.uint8))
        try:
            nchw = F.interpolate(img, size=(h, w), mode="bicubic", antialias=True)
        except RuntimeError:  # torch's own assertion (1-pixel-wide output from contiguous NCHW input)
            assert w == 1
            continue
        assert torch.equal(nchw, torch_kernel(img, (h, w)))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_random_sizes_bit_exact(backend, rng):
    for in_h, in_w, h, w in random_cases(rng, 250, 120):
        img = torch.from_numpy(rng.integers(0, 256, (3, in_h, in_w), dtype=np.uint8))
        got = qvp.resize(img, (h, w), mode="torch-uint8", backend=backend)
        assert torch.equal(got, torch_kernel(img, (h, w))), (backend, in_h, in_w, h, w)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_real_photos_bit_exact(backend, rgb_chw, load_image):
    """Photos down, up, one axis, and the mixed cases smart_resize's rounding produces (one side slightly
    down, the other slightly up), where Pillow's result differs from torch's by up to 13 levels."""
    photos = dict(rgb_chw, camera=torch.from_numpy(load_image("camera").copy()).permute(2, 0, 1))
    for name, img in photos.items():
        in_h, in_w = img.shape[-2:]
        for h, w in [(in_h // 3, in_w // 2), (in_h * 2 - 3, in_w + 77), (in_h - 8, in_w + 2), (in_h + 2, in_w - 6),
                     (in_h, in_w // 5), (in_h // 7, in_w), (28, 28 * 20), (1, in_w // 3)]:
            got = qvp.resize(img, (h, w), mode="torch-uint8", backend=backend)
            assert torch.equal(got, torch_kernel(img, (h, w))), (backend, name, h, w)


def test_large_downscale_in_slices(monkeypatch):
    """A huge image goes through the reference in slices (bounded temporaries); still exact."""
    from qwen_vis_prep.backends import reference

    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 1 << 12)
    img = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 400, 260), dtype=np.uint8))
    for size in [(28, 56), (399, 13), (5, 261)]:
        got = qvp.resize(img, size, mode="torch-uint8", backend="reference")
        assert torch.equal(got, torch_kernel(img, size))


def test_modes_differ_where_the_kernels_do(rgb_chw):
    """The mode is not Pillow under another name: on a mixed resize the two kernels disagree by many levels
    (torch resamples the width first; Pillow 13 goes vertical first here, and the clamp between the passes
    falls on different intermediates)."""
    img = rgb_chw["astronaut"]
    a = qvp.resize(img, (504, 514), mode="torch-uint8").int()
    b = qvp.resize(img, (504, 514), mode="pil").int()
    assert torch.equal(a, torch_kernel(img, (504, 514)).int())
    assert (a - b).abs().max() >= 3


def test_auto_picks_the_compiled_resampler_else_the_kernel_of_the_mode(monkeypatch):
    from qwen_vis_prep.backends import native

    cpu = torch.device("cpu")
    assert backends.select("auto", cpu, resize_mode="torch-uint8").NAME == "native"
    monkeypatch.setattr(native, "resample_rows", None)
    monkeypatch.setattr(native, "_MISSING", "not built here", raising=False)
    monkeypatch.setattr(backends, "_WARNED_NO_NATIVE", [])
    with pytest.warns(RuntimeWarning, match="not built here"):
        assert backends.select("auto", cpu, resize_mode="torch-uint8").NAME == "aten"
    assert backends.select("auto", cpu, resize_mode="pil").NAME == "pillow"
    assert backends.select("auto", cpu, resize_mode="float").NAME == "reference"


@pytest.mark.slow  # a subprocess with another CPU capability
def test_torch_generic_loop_agrees_on_channels_last_input():
    """torch's generic (non-AVX2) build of the kernel gives the same bits on channels-last input, what the
    aten backend passes; it differs only on contiguous NCHW input resized to one pixel wide (where the AVX2
    build raises instead), a case both our port and the aten backend define by the channels-last result."""
    code = ("import torch, torch.nn.functional as F, qwen_vis_prep as q;"
            "g = torch.Generator().manual_seed(0); same = [];"
            "sizes = [(77, 36, 10, 1), (40, 43, 44, 1), (31, 64, 1, 9), (50, 70, 33, 91), (64, 64, 30, 20)];"
            "[same.append(torch.equal(F.interpolate(x.contiguous(memory_format=torch.channels_last), size=(h, w),"
            " mode='bicubic', antialias=True)[0], q.resize(x[0], (h, w), mode='torch-uint8', backend=b)))"
            " for H, W, h, w in sizes"
            " for x in [torch.randint(0, 256, (1, 3, H, W), generator=g, dtype=torch.uint8)]"
            " for b in ('reference', 'aten')];"
            "x = torch.randint(0, 256, (1, 3, 77, 36), generator=g, dtype=torch.uint8);"
            "nchw = F.interpolate(x, size=(10, 1), mode='bicubic', antialias=True)[0];"
            "print(torch.backends.cpu.get_cpu_capability(), all(same),"
            " torch.equal(nchw, q.resize(x[0], (10, 1), mode='torch-uint8')))")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DEFAULT", "True", "False"], out.stdout


# ------------------------------------------------------------------------------- the whole pipeline


def test_preprocess_equals_torch_levels_then_no_resize(rgb_chw):
    """``preprocess`` in torch-uint8 mode equals torch's levels put through the resize-free path."""
    config = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", resize_mode="torch-uint8", max_pixels=28 * 28 * 300)
    for img in rgb_chw.values():
        ours = qvp.preprocess(img, config)
        (_, gh, gw), = ours.grid_thw.tolist()
        levels = torch_kernel(img, (gh * 14, gw * 14))
        plain = qvp.preprocess(levels, config.replace(do_resize=False))
        assert torch.equal(ours.pixel_values, plain.pixel_values)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backends_agree_on_images_and_clips(backend, rng):
    config = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", resize_mode="torch-uint8",
                                                    min_pixels=28 * 28 * 2, max_pixels=28 * 28 * 30)
    images = [torch.from_numpy(rng.integers(0, 256, (3, int(h), int(w)), dtype=np.uint8))
              for h, w in rng.integers(20, 300, (6, 2))]
    got = qvp.preprocess(images, config, backend=backend).pixel_values
    assert torch.equal(got, qvp.preprocess(images, config, backend="reference").pixel_values)
    clips = [torch.from_numpy(rng.integers(0, 256, (t, 3, 90, 130), dtype=np.uint8)) for t in (3, 4)]
    video = qvp.VideoConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 12)
    got = qvp.preprocess_videos(clips, config, video, backend=backend)[0]
    assert torch.equal(got, qvp.preprocess_videos(clips, config, video, backend="reference")[0])


# ------------------------------------------------------------------------------------------ Triton

# the first three in every run (down, mixed, up); the rest in the slow run
TRITON_SIZES = [((60, 90), (28, 56)), ((61, 30), (84, 28)), ((40, 31), (56, 56)), ((120, 40), (56, 28)),
                ((57, 171), (28, 84)), ((56, 97), (56, 84)), ((30, 61), (28, 84))]


@pytest.mark.skipif(not HAS_TRITON, reason="Triton cannot run here")
@pytest.mark.parametrize("src, size", [
    pytest.param(a, b, id=f"{a[0]}x{a[1]}-{b[0]}x{b[1]}", marks=() if i < 3 else pytest.mark.slow)
    for i, (a, b) in enumerate(TRITON_SIZES)])
def test_triton_resize_bit_exact(src, size):
    img = torch.from_numpy(np.random.default_rng(sum(src)).integers(0, 256, (3, *src), dtype=np.uint8))
    got = qvp.resize(img.to(TRITON_DEVICE), size, mode="torch-uint8", backend="triton")
    assert torch.equal(got.cpu(), torch_kernel(img, size))


@pytest.mark.skipif(not HAS_TRITON, reason="Triton cannot run here")
@pytest.mark.parametrize("pipeline", ["rows", pytest.param("tiles", marks=pytest.mark.slow)])
def test_triton_preprocess_bit_exact(pipeline, monkeypatch):
    """Both kernel pipelines (the rows pipeline takes width-first fixed-point groups) equal the reference,
    which equals torch's kernel, for images, a batch and clips."""
    from qwen_vis_prep.backends.triton import plans, tuning

    monkeypatch.setitem(tuning.TUNING, "pipeline", pipeline)
    monkeypatch.setattr(plans, "PLANS", type(plans.PLANS)(maxsize=64))
    config = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", resize_mode="torch-uint8",
                                                    min_pixels=28 * 28 * 2, max_pixels=28 * 28 * 4)
    g = torch.Generator().manual_seed(5)
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in [(70, 45), (33, 90)]]
    for x in (images, torch.stack([images[0], images[0].flip(-1)])):
        ref = qvp.preprocess(x, config, backend="reference").pixel_values
        dev = [i.to(TRITON_DEVICE) for i in x] if isinstance(x, list) else x.to(TRITON_DEVICE)
        assert torch.equal(qvp.preprocess(dev, config, backend="triton").pixel_values.cpu(), ref)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_gives_the_cpu_bits(rgb_chw):
    config = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", resize_mode="torch-uint8", max_pixels=28 * 28 * 400)
    images = list(rgb_chw.values())
    cpu = qvp.preprocess(images, config).pixel_values
    for backend in ("auto", "reference"):
        gpu = qvp.preprocess([i.cuda() for i in images], config, backend=backend).pixel_values
        assert torch.equal(gpu.cpu(), cpu), backend


# ----------------------------------------------------------------------------------- transformers

transformers = pytest.importorskip("transformers")


def _hf_kwargs(config):
    return dict(min_pixels=config.min_pixels, max_pixels=config.max_pixels, patch_size=config.patch_size,
                temporal_patch_size=config.temporal_patch_size, merge_size=config.merge_size,
                image_mean=list(config.image_mean), image_std=list(config.image_std))


@pytest.mark.parametrize("preset", ["qwen2-vl", "qwen3-vl"])
@pytest.mark.parametrize("budget", ["down", "up", "mixed"])
def test_images_match_hf_torchvision_backend(preset, budget, rgb_chw, rng):
    """``Qwen2VLImageProcessor`` (the torchvision backend) on CPU tensors: the grid equal and the values
    within 1e-5 (the normalisation's float32 order differs; one level is >= 0.0078, so the levels agree)."""
    from transformers import Qwen2VLImageProcessor

    pixels = {"down": dict(min_pixels=32 * 32 * 4, max_pixels=200 * 200),
              "up": dict(min_pixels=900 * 900, max_pixels=1000 * 1000),
              "mixed": dict(max_pixels=28 * 28 * 1280)}[budget]
    config = qvp.VisionPreprocessConfig.from_preset(preset, resize_mode="torch-uint8", **pixels)
    images = list(rgb_chw.values()) + [torch.from_numpy(rng.integers(0, 256, (3, 391, 852), dtype=np.uint8))]
    hf = Qwen2VLImageProcessor(**_hf_kwargs(config))(images, return_tensors="pt")
    ours = qvp.preprocess(images, config)
    assert torch.equal(ours.grid_thw, hf["image_grid_thw"])
    torch.testing.assert_close(ours.pixel_values, hf["pixel_values"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", ["qwen2-vl", "qwen3-vl"])
def test_clips_match_hf_video_processors(preset):
    """The video presets default to torch-uint8: ``Qwen2VLVideoProcessor`` / ``Qwen3VLVideoProcessor`` on CPU
    clips with resizing on, including the 852x391 noise clip that is 23 levels off in pil mode."""
    from transformers import Qwen2VLVideoProcessor, Qwen3VLVideoProcessor

    g = torch.Generator().manual_seed(7)
    clips = [torch.randint(0, 256, (4, 3, 391, 852), generator=g, dtype=torch.uint8),
             torch.randint(0, 256, (5, 3, 120, 90), generator=g, dtype=torch.uint8)]
    vc = qvp.VIDEO_PRESETS[preset].replace(max_pixels=28 * 28 * 300 * 4)
    assert vc.resize_mode == "torch-uint8"
    cls = Qwen3VLVideoProcessor if preset == "qwen3-vl" else Qwen2VLVideoProcessor
    proc = cls(size={"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels},
               max_video_tokens=vc.max_video_tokens)
    hf = proc(videos=clips, do_sample_frames=False, cap_pixels_per_frame=False, return_tensors="pt")
    ours, grid = qvp.preprocess_videos(clips, preset, vc)
    assert torch.equal(grid, hf["video_grid_thw"])
    torch.testing.assert_close(ours, hf["pixel_values_videos"], atol=1e-5, rtol=0)


def test_from_hf_follows_the_stock_backend():
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qwen_vis_prep.hf_adapter import HFQwenImageProcessor

    assert HFQwenImageProcessor.from_hf(Qwen2VLImageProcessor()).config.resize_mode == "torch-uint8"
    assert HFQwenImageProcessor.from_hf(Qwen2VLImageProcessorPil()).config.resize_mode == "pil"
    assert HFQwenImageProcessor.from_hf(Qwen2VLImageProcessor(), resize_mode="pil").config.resize_mode == "pil"
