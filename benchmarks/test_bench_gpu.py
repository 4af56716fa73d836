"""GPU benchmarks (pytest-benchmark): ours (Triton), ours (torch backend) and HF's torchvision processor on
CUDA, same run, same card. Skipped without CUDA. Run: ``bash benchmarks/gpu_check.sh``.

Every timed call ends with ``torch.cuda.synchronize()``, so the figure is end-to-end device time as a
caller sees it. ``extra_info`` carries the bytes each case must move (uint8 input + output), from which
``gpu_report.py`` derives the memory-bandwidth floor with the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import pytest
import torch

import qwen_vis_prep as qvp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MAX_PIXELS = 28 * 28 * 1280  # the setting of the reference figures


def _batch(n, h, w, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, device="cuda", generator=g)


# the 16-mixed case's sizes (benchmarks/gpu_sweep.py times ragged launches on them too)
MIXED_SIZES = [(480, 640), (720, 1280), (1080, 1920), (300, 400), (1200, 1600), (768, 1024), (2000, 1500),
               (640, 480), (900, 1600), (512, 512), (1440, 2560), (350, 700), (1000, 1000), (600, 800),
               (1536, 2048), (224, 224)]


def _mixed():
    return [_batch(1, h, w, i)[0] for i, (h, w) in enumerate(MIXED_SIZES)]


CASES = {
    "1x1080p": lambda: _batch(1, 1080, 1920, 0),
    "32x1080p": lambda: _batch(32, 1080, 1920, 1),
    "64x448": lambda: _batch(64, 448, 448, 2),
    "8x4K": lambda: _batch(8, 2160, 3840, 3),
    "16-mixed": _mixed,
}


def _as_list(x):
    return list(x.unbind(0)) if isinstance(x, torch.Tensor) else x


def _bytes(images, out):
    n_in = sum(i.numel() for i in _as_list(images))
    return n_in + out.numel() * out.element_size()


def _run(benchmark, case, fn, images, rounds):
    def timed():
        r = fn(images)
        torch.cuda.synchronize()
        return r

    out = timed()
    benchmark.group = case
    benchmark.extra_info["bytes"] = _bytes(images, out)
    benchmark.extra_info["device"] = torch.cuda.get_device_name()
    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_ours_triton(benchmark, case, dtype):
    prep = qvp.QwenVisionPreprocessor("qwen2-vl", max_pixels=MAX_PIXELS, output_dtype=dtype, backend="triton")
    images = CASES[case]()
    _run(benchmark, case, lambda x: prep(x).pixel_values, images, rounds=50)


@pytest.mark.parametrize("case", ["1x1080p", "64x448", "32x1080p"])
def test_ours_triton_cuda_graph(benchmark, case):
    """The host-free time: the module captured once in a CUDA graph (after a warm-up call, as documented),
    each call copying its input into the graph's static input and replaying. The output is the graph's
    static buffer, overwritten by the next replay, which is what makes this a different contract."""
    prep = qvp.QwenVisionPreprocessor("qwen2-vl", max_pixels=MAX_PIXELS, backend="triton")
    images = CASES[case]()
    static_in = images.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        prep(static_in)  # warm-up outside capture: tables, plans, compiled kernels
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = prep(static_in).pixel_values

    def replay(x):
        static_in.copy_(x)
        graph.replay()
        return static_out

    fresh = torch.randint_like(images, 0, 256)
    assert torch.equal(replay(fresh).clone(), prep(fresh).pixel_values)
    _run(benchmark, case, replay, images, rounds=50)


@pytest.mark.parametrize("case", ["1x1080p", "32x1080p", "8x4K"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pipeline", ["rows", "tiles"])
def test_ours_triton_pipeline(benchmark, monkeypatch, pipeline, dtype, case):
    """The resized cases with the rows pipeline (patch-packed scratch) and the tile kernels, whatever the
    sweep picked, side by side in one run."""
    from qwen_vis_prep.backends.triton import tuning

    monkeypatch.setitem(tuning.TUNING, "pipeline", pipeline)
    prep = qvp.QwenVisionPreprocessor("qwen2-vl", max_pixels=MAX_PIXELS, output_dtype=dtype, backend="triton")
    _run(benchmark, case, lambda x: prep(x).pixel_values, CASES[case](), rounds=50)


@pytest.mark.parametrize("case", list(CASES))
def test_ours_torch_backend(benchmark, case):
    prep = qvp.QwenVisionPreprocessor("qwen2-vl", max_pixels=MAX_PIXELS, backend="torch")
    images = CASES[case]()
    _run(benchmark, case, lambda x: prep(x).pixel_values, images, rounds=5)


@pytest.mark.parametrize("case", list(CASES))
def test_hf_torchvision_cuda(benchmark, case):
    from transformers import Qwen2VLImageProcessor

    hf = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=MAX_PIXELS)
    images = CASES[case]()
    _run(benchmark, case, lambda x: hf(_as_list(x), device="cuda", return_tensors="pt")["pixel_values"],
         images, rounds=20)


# ------------------------------------------------------------------------------------------------ clips
CLIPS = {"clip-16x720p": (16, 720, 1280), "clip-64x1080p": (64, 1080, 1920)}


def _clip(case):
    t, h, w = CLIPS[case]
    return _batch(t, h, w, 7)


def _video_config(mode="torch-uint8"):
    return qvp.VIDEO_PRESETS["qwen2-vl"].replace(max_pixels=MAX_PIXELS, resize_mode=mode)


@pytest.mark.parametrize("case", list(CLIPS))
@pytest.mark.parametrize("mode", ["torch-uint8", "pil"])
def test_ours_triton_clip(benchmark, case, mode):
    """One clip on CUDA through the Triton kernels (two launches: each frame written to its temporal slot),
    checked once against the reference backend bit for bit."""
    config, video = qvp.PRESETS["qwen2-vl"], _video_config(mode)
    clip = _clip(case)
    out = qvp.preprocess_videos(clip, config, video, backend="triton")[0]
    assert torch.equal(out, qvp.preprocess_videos(clip, config, video, backend="reference")[0])
    _run(benchmark, f"{case}-{mode}" if mode != "torch-uint8" else case,
         lambda x: qvp.preprocess_videos(x, config, video, backend="triton")[0], clip, rounds=30)


@pytest.mark.parametrize("case", list(CLIPS))
def test_hf_video_processor_cuda(benchmark, case):
    from transformers import Qwen2VLVideoProcessor

    hf = Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=MAX_PIXELS, cap_pixels_per_frame=False)
    _run(benchmark, case, lambda x: hf(videos=[x], device="cuda", do_sample_frames=False,
                                       return_tensors="pt")["pixel_values_videos"], _clip(case), rounds=10)


# ------------------------------------------------------------------------------------- training input
def _training_batch():
    """What a training step receives for 8 x 1080p: ours, the collator's pinned flat uint8 buffer; stock, the
    float32 ``pixel_values`` the stock processor made in the worker (pinned, same sizes and budget)."""
    from qwen_vis_prep.packing import pack_pixels

    images = [img.cpu() for img in _batch(8, 1080, 1920, 9).unbind(0)]
    flat, sizes = pack_pixels(images)
    stock = qvp.preprocess(images, qvp.PRESETS["qwen2-vl"].replace(max_pixels=MAX_PIXELS)).pixel_values
    return flat.pin_memory(), sizes, stock.pin_memory()


@pytest.mark.parametrize("provider", ["ours-uint8-then-preprocess", "stock-float32-copy"])
def test_training_input_on_device(benchmark, provider):
    """The device side of a training step's input: ours copies the uint8 buffer (``non_blocking``) and
    preprocesses it there; the stock pipeline copies the float32 patches it made on the host. The difference
    is the step time the in-model preprocessing adds (or saves)."""
    from qwen_vis_prep.packing import unpack_pixels

    flat, sizes, stock = _training_batch()
    prep = qvp.QwenVisionPreprocessor("qwen2-vl", max_pixels=MAX_PIXELS, backend="triton")
    if provider == "ours-uint8-then-preprocess":
        def step(x):
            return prep(unpack_pixels(x.to("cuda", non_blocking=True), sizes)).pixel_values
        source = flat
    else:
        def step(x):
            return x.to("cuda", non_blocking=True)
        source = stock
    out = step(source)
    torch.cuda.synchronize()
    if provider.startswith("ours"):
        assert torch.equal(out.cpu(), stock)  # the same pixel_values as the stock pipeline's (pil mode, CPU)
    benchmark.extra_info["host_to_device_bytes"] = source.numel() * source.element_size()
    _run(benchmark, "training-input-8x1080p", step, source, rounds=30)


def test_copy_bandwidth(benchmark):
    """Device-to-device copy of 1 GiB: the bandwidth the floor is computed with (read + write bytes)."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)

    def timed():
        dst.copy_(src)
        torch.cuda.synchronize()

    benchmark.group = "copy"
    benchmark.extra_info["bytes"] = 2 * src.numel()
    benchmark.pedantic(timed, rounds=20, iterations=1, warmup_rounds=2)
