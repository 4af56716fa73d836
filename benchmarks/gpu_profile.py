"""Where the time goes on a GPU: host time per call (from the warm entry with direct launches, without the
warm entry, and with Triton's regular launch), device time of the whole call and of each launch with the
bandwidth each launch reaches (bytes it reads and writes once / its time), the host time of a warm 1080p call
split into parts, and a cProfile of the host path of one 1080p image.

Run on a GPU: ``python benchmarks/gpu_profile.py`` (``benchmarks/gpu_check.sh`` does).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time

import torch
import triton.testing

import qwen_vis_prep as qvp
from qwen_vis_prep.backends import triton as triton_backend
from qwen_vis_prep.backends.triton import launcher, plans, warm


def _host_us(fn, n: int = 200) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n
    torch.cuda.synchronize()
    return host * 1e6


def _device_us(fn) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median") * 1e3


def _group_plan(x: torch.Tensor, cfg) -> tuple[tuple[int, int], "plans.GroupPlan"]:
    """The target size of the uint8 batch ``x [B, 3, H, W]`` and the group plan a call on it runs."""
    size = qvp.smart_resize(x.shape[-2], x.shape[-1], 28, cfg.min_pixels, cfg.max_pixels)
    return size, plans.GroupPlan(tuple(x.shape), x.stride(), 0, size, cfg, 0, None, x.device)


def _host_breakdown(prep, x: torch.Tensor, cfg) -> None:
    """The warm call's host time on one image, split: the whole call, the same with every kernel launch
    stubbed (Python, allocations and the grid copy), each launch alone through its plan's direct launcher,
    and one ``torch.empty`` of the output. Tells whether launches or Python dominate on this host."""
    whole = _host_us(lambda: prep(x))
    real_call = launcher.Launcher.__call__
    launcher.Launcher.__call__ = lambda self, **inputs: None
    try:
        stubbed = _host_us(lambda: prep(x))
    finally:
        launcher.Launcher.__call__ = real_call
    out = prep(x).pixel_values
    _, plan = _group_plan(x, cfg)
    parts = [f"whole warm call {whole:.0f} us", f"launches stubbed {stubbed:.0f} us"]
    if plan.first is not None and hasattr(plan.first, "launch"):
        scratch = plan.first.run(x)
        parts.append(f"first launch alone {_host_us(lambda: plan.first.launch(src_ptr=x, dst_ptr=scratch)):.0f} us")
        parts.append(f"fused launch alone {_host_us(lambda: plan.launch(src_ptr=scratch, out_ptr=out)):.0f} us")
    empty_us = _host_us(lambda: torch.empty(out.shape, dtype=out.dtype, device=x.device))
    parts.append(f"torch.empty of the output {empty_us:.0f} us")
    print(f"\nhost time of a warm 1x{x.shape[-2]}x{x.shape[-1]} call, by part: " + "; ".join(parts))


def main() -> None:
    cfg = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 1280)
    prep = qvp.QwenVisionPreprocessor(config=cfg, backend="triton")
    print("| case | host/call (warm entry, direct launch) | host/call, no warm entry | host/call regular launch | "
          "device total | first pass | fused pass | bytes in+out | first-pass bandwidth | fused-pass bandwidth |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, h, w in [(1, 1080, 1920), (32, 1080, 1920), (64, 448, 448), (8, 2160, 3840)]:
        x = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, device="cuda")
        host_direct = _host_us(lambda: prep(x))
        warm_call, triton_backend.warm_call = triton_backend.warm_call, lambda *args: None
        host_full = _host_us(lambda: prep(x))
        triton_backend.warm_call = warm_call
        launcher.Launcher.enabled = False
        plans.PLANS.clear()
        warm.WARM_CALLS.clear()
        host_regular = _host_us(lambda: prep(x))
        launcher.Launcher.enabled = True
        plans.PLANS.clear()
        warm.WARM_CALLS.clear()
        total = _device_us(lambda: prep(x))
        out = prep(x).pixel_values
        (th, tw), plan = _group_plan(x, cfg)
        if plan.first is not None:
            first = _device_us(lambda: plan.first.run(x))
            scratch = plan.first.run(x)
            first_bw = f"{(x.numel() + scratch.numel()) / first / 1e6:.2f} TB/s"
            fused = _device_us(lambda: plan.launch(src_ptr=scratch, out_ptr=out))
            fused_bytes = scratch.numel() + out.numel() * out.element_size()
        else:  # no first pass: no resize
            first, first_bw = 0.0, "-"
            fused = _device_us(lambda: plan.run(x, out))
            fused_bytes = x.numel() + out.numel() * out.element_size()
        io_bytes = x.numel() + out.numel() * out.element_size()
        print(f"| {n}x{h}x{w} -> {th}x{tw} | {host_direct:.0f} us | {host_full:.0f} us | {host_regular:.0f} us | "
              f"{total:.0f} us | "
              f"{first:.0f} us | {fused:.0f} us | {io_bytes / 1e6:.0f} MB | {first_bw} | "
              f"{fused_bytes / fused / 1e6:.2f} TB/s |")

    x = torch.randint(0, 256, (1, 3, 1080, 1920), dtype=torch.uint8, device="cuda")
    plans.PLANS.clear()
    warm.WARM_CALLS.clear()
    prep(x)
    _host_breakdown(prep, x, cfg)
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(300):
        prep(x)
    prof.disable()
    torch.cuda.synchronize()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(14)
    print("\nhost path of 1x1080p, 300 calls, by own time:\n" + "\n".join(buf.getvalue().splitlines()[6:]))


if __name__ == "__main__":
    main()
