"""CUDA-only checks of the Triton path: no host sync, CUDA-graph capture, torch.compile, streams, and
CUDA == CPU (Pillow) bit for bit. Skipped without a GPU; benchmarks/gpu_check.sh runs them on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qwen_vis_prep as qvp
from qwen_vis_prep.backends import triton as triton_backend
from qwen_vis_prep.backends.triton import launcher, plans, tuning, warm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CFG = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 1280)


def _imgs(device="cuda"):
    import skimage.data as sd

    arrays = [sd.astronaut(), sd.chelsea(), sd.coffee(), sd.rocket()]
    return [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).to(device) for a in arrays]


@pytest.mark.parametrize("mode", ["pil", "float"])
def test_cuda_equals_cpu_on_real_images(mode):
    cfg = CFG.replace(resize_mode=mode, max_pixels=28 * 28 * 300)
    gpu = qvp.preprocess(_imgs(), cfg, backend="triton")
    # the CPU's definition of each mode: Pillow itself (pil), the reference (float)
    cpu = qvp.preprocess([i.cpu() for i in _imgs()], cfg, backend="pillow" if mode == "pil" else "reference")
    assert torch.equal(gpu.pixel_values.cpu(), cpu.pixel_values)
    assert torch.equal(gpu.grid_thw, cpu.grid_thw)


def test_no_host_sync_on_hot_path(monkeypatch):
    """Warm calls never sync: a batch, one HWC image and a ragged list of four sizes, each served by
    ``warm.warm_call`` from its recorded group launches."""
    batch = torch.randint(0, 256, (4, 3, 540, 960), dtype=torch.uint8, device="cuda")
    hwc = batch[0].permute(1, 2, 0).contiguous()
    images = _imgs()
    prep = qvp.QwenVisionPreprocessor(config=CFG).cuda()
    prep(batch), prep(hwc, layout="hwc"), prep(images)  # warm: tables land in the device cache
    hits = []
    real = triton_backend.warm_call
    monkeypatch.setattr(triton_backend, "warm_call", lambda *a: hits.append(real(*a)) or hits[-1])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = prep(batch)
        out1 = prep(hwc, layout="hwc")
        out2 = prep(images)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.grid_thw.device.type == "cpu" and out2.pixel_values.is_cuda
    assert [h is not None for h in hits] == [True, True, True]
    assert torch.equal(out.pixel_values, qvp.preprocess(batch, CFG, backend="reference").pixel_values)
    assert torch.equal(out1.pixel_values, qvp.preprocess(hwc, CFG, backend="reference", layout="hwc").pixel_values)
    assert torch.equal(out2.pixel_values, qvp.preprocess(images, CFG, backend="reference").pixel_values)


def test_cuda_graph_capture_and_replay():
    prep = qvp.QwenVisionPreprocessor(config=CFG)
    static = torch.randint(0, 256, (2, 3, 480, 640), dtype=torch.uint8, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        prep(static)  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = prep(static).pixel_values
    fresh = torch.randint(0, 256, static.shape, dtype=torch.uint8, device="cuda")
    static.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, prep(fresh).pixel_values)


def test_torch_compile_fullgraph():
    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.prep = qvp.QwenVisionPreprocessor(config=CFG.replace(max_pixels=28 * 28 * 64))
            self.proj = torch.nn.Linear(CFG.patch_dim, 16)

        def forward(self, x):
            out = self.prep(x)
            return self.proj(out.pixel_values), out.grid_thw

    model = Tower().cuda()
    x = torch.randint(0, 256, (2, 3, 200, 300), dtype=torch.uint8, device="cuda")
    compiled = torch.compile(model, fullgraph=True)
    got, grid = compiled(x)
    ref, ref_grid = model(x)
    assert torch.equal(grid, ref_grid)
    # the preprocessing is bit-exact; the Linear may pick another GEMM under Inductor
    assert torch.equal(compiled.prep(x).pixel_values, model.prep(x).pixel_values)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_two_streams_do_not_interfere():
    prep = qvp.QwenVisionPreprocessor(config=CFG)
    a = torch.randint(0, 256, (3, 3, 720, 1280), dtype=torch.uint8, device="cuda")
    b = torch.randint(0, 256, (5, 3, 300, 500), dtype=torch.uint8, device="cuda")
    ref_a, ref_b = prep(a).pixel_values, prep(b).pixel_values
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(s1):
        out_a = prep(a).pixel_values
    with torch.cuda.stream(s2):
        out_b = prep(b).pixel_values
    torch.cuda.synchronize()
    assert torch.equal(out_a, ref_a) and torch.equal(out_b, ref_b)


def _clear_plans() -> None:
    """Forget every plan and every recorded warm call (which keeps its plans, and their launchers, alive)."""
    plans.PLANS.clear()
    warm.WARM_CALLS.clear()


def test_direct_launch_equals_regular_launch():
    """Warm calls launch the compiled kernels directly (``launcher.Launcher``); they must give the same bits
    as Triton's regular launch path and as the reference backend, for a batch, a ragged list and bf16."""
    batch = torch.randint(0, 256, (3, 3, 500, 700), dtype=torch.uint8, device="cuda")
    for cfg in (CFG, CFG.replace(output_dtype=torch.bfloat16)):
        for x in (batch, _imgs()):
            ref = qvp.preprocess(x, cfg, backend="reference").pixel_values
            first = qvp.preprocess(x, cfg, backend="triton").pixel_values   # regular launch, plan built
            direct = qvp.preprocess(x, cfg, backend="triton").pixel_values  # direct launch
            enabled = launcher.Launcher.enabled
            launcher.Launcher.enabled = False
            _clear_plans()
            try:
                regular = qvp.preprocess(x, cfg, backend="triton").pixel_values
                regular_again = qvp.preprocess(x, cfg, backend="triton").pixel_values
            finally:
                launcher.Launcher.enabled = enabled
                _clear_plans()
            assert torch.equal(first, ref) and torch.equal(direct, ref)
            assert torch.equal(regular, ref) and torch.equal(regular_again, ref)
    assert launcher.Launcher.enabled  # no direct launch failed (a failure turns them off and falls back)


@pytest.mark.parametrize("pipeline", ["rows", "tiles"])
def test_lean_launch_is_taken_and_exact(monkeypatch, pipeline):
    """After a plan's first launch, its launches take the lean path (the compiled kernel's launcher, tables
    as addresses, no hooks), which must give the regular launch's bits; with a launch hook registered they
    go through ``compiled[grid]``, and the hook sees them."""
    import triton

    monkeypatch.setitem(tuning.TUNING, "pipeline", pipeline)
    x = torch.randint(0, 256, (2, 3, 1080, 1920), dtype=torch.uint8, device="cuda")
    size = qvp.smart_resize(1080, 1920, 28, CFG.min_pixels, CFG.max_pixels)
    plan = plans.GroupPlan(tuple(x.shape), x.stride(), 0, size, CFG, 0, None, x.device)
    assert (type(plan.first) is plans.RowsPass) == (pipeline == "rows")
    out = torch.empty(2 * (size[0] // 14) * (size[1] // 14), CFG.patch_dim, device="cuda")
    plan.run(x, out)  # regular launch: compiles, keeps the launchers
    launchers = [plan.launch] + ([plan.first.launch] if plan.first is not None else [])
    assert all(launch.lean is not None for launch in launchers)
    ref = qvp.preprocess(x, CFG, backend="reference").pixel_values
    assert torch.equal(out, ref)
    out.zero_()
    plan.run(x, out)  # lean
    assert torch.equal(out, ref) and launcher.Launcher.enabled
    seen = []
    hook = lambda metadata: seen.append(metadata)  # noqa: E731
    triton.knobs.runtime.launch_enter_hook.add(hook)
    try:
        out.zero_()
        plan.run(x, out)
    finally:
        triton.knobs.runtime.launch_enter_hook.remove(hook)
    torch.cuda.synchronize()
    assert torch.equal(out, ref) and len(seen) == len(launchers)


def test_cold_call_inside_graph_capture_is_refused_clearly():
    """A size never seen before needs its tables uploaded, which cannot happen inside a capture."""
    from qwen_vis_prep.resample_tables import DEVICE_TABLES

    x = torch.randint(0, 256, (1, 3, 333, 444), dtype=torch.uint8, device="cuda")
    DEVICE_TABLES.clear()
    _clear_plans()
    s = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="warm-up"):
        with torch.cuda.stream(s), torch.cuda.graph(graph, stream=s):
            qvp.preprocess(x, CFG, backend="triton")
    torch.cuda.synchronize()
    assert torch.equal(qvp.preprocess(x, CFG, backend="triton").pixel_values,
                       qvp.preprocess(x, CFG, backend="reference").pixel_values)


VIDEO = qvp.VideoConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 300)


def test_clips_on_cuda_no_sync_graph_capture_and_compile():
    """Clips on the Triton kernels: after a first call, a call syncs nothing; it can be captured in a CUDA
    graph and replayed; ``torch.compile(fullgraph=True)`` traces it as one op; every result equals the CPU's
    bits (torch-uint8 mode, the video presets' own)."""
    clip = torch.randint(0, 256, (5, 3, 360, 640), dtype=torch.uint8, device="cuda")
    cpu = qvp.preprocess_videos(clip.cpu(), CFG, VIDEO)[0]
    first = qvp.preprocess_videos(clip, CFG, VIDEO)[0]
    assert torch.equal(first.cpu(), cpu)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        again, grid = qvp.preprocess_videos(clip, CFG, VIDEO)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(again, first) and grid.device.type == "cpu"
    static = clip.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = qvp.preprocess_videos(static, CFG, VIDEO)[0]
    fresh = torch.randint(0, 256, clip.shape, dtype=torch.uint8, device="cuda")
    static.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, qvp.preprocess_videos(fresh, CFG, VIDEO)[0])
    compiled = torch.compile(lambda x: qvp.preprocess_videos(x, CFG, VIDEO), fullgraph=True)
    got, got_grid = compiled(clip)
    assert torch.equal(got, first) and torch.equal(got_grid, grid)
