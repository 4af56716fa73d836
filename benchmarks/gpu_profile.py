"""Where the time goes on a GPU: host overhead per call vs device time, and each launch on its own."""

from __future__ import annotations

import time

import torch
import triton.testing

import qwen_vis_prep as qvp
from qwen_vis_prep.backends.triton import ops


def main() -> None:
    cfg = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 1280)
    prep = qvp.QwenVisionPreprocessor(config=cfg, backend="triton")
    for n, h, w in [(1, 1080, 1920), (32, 1080, 1920), (64, 448, 448), (8, 2160, 3840)]:
        x = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, device="cuda")
        prep(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50):
            prep(x)
        host = (time.perf_counter() - t0) / 50
        torch.cuda.synchronize()
        total = triton.testing.do_bench(lambda: prep(x), warmup=5, rep=50) * 1e-3
        th, tw = qvp.smart_resize(h, w, 28, cfg.min_pixels, cfg.max_pixels)
        vf = qvp.sizing.pillow_vertical_first(h, w, th, tw, cfg.pillow_order)
        first = (True, th) if vf else (False, tw)
        p1 = triton.testing.do_bench(lambda: ops.resample_pass(x, first[1], first[0], True), warmup=5, rep=50) * 1e-3
        print(f"{n}x{h}x{w} -> {th}x{tw}: host/call {host * 1e6:.0f} us, device total {total * 1e6:.0f} us, "
              f"first pass {p1 * 1e6:.0f} us, rest {(total - p1) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
