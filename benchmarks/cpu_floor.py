"""How much of the CPU time is Pillow's own resampler: Pillow-only resize of each benchmark case (on two
threads, one image per task, and serially) next to ours and HF's torchvision backend, interleaved so that
a busy neighbour slows all of them alike. Prints medians and minima in ms.

Run: ``python benchmarks/cpu_floor.py [rounds]`` (the inputs are those of ``test_bench_cpu.py``).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

import qwen_vis_prep as qvp

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_cpu import CONFIG, case_images, hf_processor  # noqa: E402


def main(rounds: int) -> None:
    hf = hf_processor("hf-torchvision")
    print("| case | Pillow only, 2 threads | Pillow only, serial | ours | HF torchvision |")
    print("|---|---|---|---|---|")
    with ThreadPoolExecutor(2) as pool:
        for case in ("1x1080p", "8x1080p", "16-mixed"):
            images = case_images(case)
            pils = [Image.fromarray(a) for a in images]
            sizes = [qvp.smart_resize(a.shape[0], a.shape[1], CONFIG.factor, CONFIG.min_pixels, CONFIG.max_pixels)
                     for a in images]

            def one(i):
                return pils[i].resize(sizes[i][::-1], Image.Resampling.BICUBIC)

            fns = {
                "pillow2": lambda: list(pool.map(one, range(len(pils)))),
                "pillow1": lambda: [one(i) for i in range(len(pils))],
                "ours": lambda: qvp.preprocess(images, CONFIG),
                "hf": lambda: hf(images, return_tensors="pt"),
            }
            times = {k: [] for k in fns}
            for fn in fns.values():
                fn(), fn()
            for _ in range(rounds):
                for k, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t0)
            cell = {k: f"{np.median(v) * 1e3:.1f} (min {min(v) * 1e3:.1f})" for k, v in times.items()}
            print(f"| {case} | {cell['pillow2']} | {cell['pillow1']} | {cell['ours']} | {cell['hf']} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
