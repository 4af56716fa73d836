"""Peak extra memory of :func:`qwen_vis_prep.preprocess` on very large images (issue #6, "bounded memory").

``extra`` is the peak memory during one call minus the memory in use just before it, with the input already
resident, so it counts the output plus every temporary. It is reported next to ``input + output`` bytes.

* CPU: peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs`` right before the call)
  minus ``VmRSS`` before it, each measurement in a fresh process so nothing earlier inflates the peak.
* CUDA: ``torch.cuda.max_memory_allocated()`` (reset right before the call) minus
  ``torch.cuda.memory_allocated()`` before it; tensors only, the caching allocator's slack is not counted.

Usage::

    python benchmarks/memory_bounds.py                  # the table of docs/reliability.md
    python benchmarks/memory_bounds.py --cuda-only      # its GPU rows
    python benchmarks/memory_bounds.py --device cpu --side 8192 --dtype uint8 --json

``tests/test_reliability.py`` calls :func:`measure` for its bounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time

import torch

_DTYPES = {"uint8": torch.uint8, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _make_input(side: int, dtype: str, device: str) -> torch.Tensor:
    """``[3, side, side]`` random image on the uint8 scale (floats in [0, 255])."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=g)
    if dtype != "uint8":
        x = x.to(_DTYPES[dtype])
    return x.to(device)


def _result(x: torch.Tensor, out: torch.Tensor, extra: int, seconds: float, **info) -> dict:
    in_bytes = x.numel() * x.element_size()
    out_bytes = out.numel() * out.element_size()
    return dict(info, input_bytes=in_bytes, output_bytes=out_bytes, extra_bytes=extra,
                ratio=extra / (in_bytes + out_bytes), seconds=round(seconds, 3), rows=out.shape[0],
                torch=torch.__version__, threads=torch.get_num_threads())


def _measure_cpu_here(side: int, dtype: str, preset: str, backend: str) -> dict:
    import qwen_vis_prep as qvp

    qvp.preprocess(_make_input(300, dtype, "cpu")[:, :200], preset, backend=backend)  # pools, imports, tables
    x = _make_input(side, dtype, "cpu")
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak RSS (VmHWM) to the current RSS
        f.write("5")
    before = _proc_status_kib("VmRSS")
    t0 = time.perf_counter()
    out = qvp.preprocess(x, preset, backend=backend).pixel_values
    seconds = time.perf_counter() - t0
    extra = (_proc_status_kib("VmHWM") - before) * 1024
    return _result(x, out, extra, seconds, device="cpu", side=side, dtype=dtype, preset=preset, backend=backend,
                   machine=platform.processor() or platform.machine(), cpus=os.cpu_count())


def _measure_cuda_here(side: int, dtype: str, preset: str, backend: str) -> dict:
    import qwen_vis_prep as qvp

    qvp.preprocess(_make_input(300, dtype, "cuda")[:, :200], preset, backend=backend)
    x = _make_input(side, dtype, "cuda")
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    out = qvp.preprocess(x, preset, backend=backend).pixel_values
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    extra = torch.cuda.max_memory_allocated() - before
    chosen = qvp.select_backend(backend, x.device, False)
    return _result(x, out, extra, seconds, device="cuda", side=side, dtype=dtype, preset=preset, backend=chosen,
                   card=torch.cuda.get_device_name())


def measure(device: str, side: int, dtype: str = "uint8", preset: str = "qwen2-vl", backend: str = "auto") -> dict:
    """Peak extra bytes of one ``preprocess`` call on a ``[3, side, side]`` image (see the module docstring).

    CPU runs in a fresh subprocess (peak RSS is per process); CUDA runs here.
    """
    if device == "cuda":
        return _measure_cuda_here(side, dtype, preset, backend)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--device", "cpu", "--side", str(side),
           "--dtype", dtype, "--preset", preset, "--backend", backend]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(r: dict) -> str:
    mib = 1 << 20
    where = r.get("card", "cpu")
    return (f"| {r['device']} ({where}) | {r['side']}x{r['side']} {r['dtype']} | {r['preset']} | {r['backend']} | "
            f"{r['input_bytes'] / mib:.0f} | {r['output_bytes'] / mib:.0f} | {r['extra_bytes'] / mib:.0f} | "
            f"{r['ratio']:.2f} | {r['seconds']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"))
    ap.add_argument("--side", type=int, default=8192)
    ap.add_argument("--dtype", choices=sorted(_DTYPES), default="uint8")
    ap.add_argument("--preset", default="qwen2-vl")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--json", action="store_true", help="print one JSON object per measurement")
    ap.add_argument("--cuda-only", action="store_true", help="only the CUDA rows of the table")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_measure_cpu_here(args.side, args.dtype, args.preset, args.backend)))
        return
    if args.device:
        runs = [(args.device, args.side, args.dtype, args.preset, args.backend)]
    else:
        runs = [] if args.cuda_only else [("cpu", 8192, "uint8", "qwen2-vl", "auto"),
                                          ("cpu", 8192, "float32", "qwen2-vl", "auto")]
        if torch.cuda.is_available():
            runs += [("cuda", s, "uint8", p, b) for s in (8192, 16384) for p in ("qwen2-vl", "qwen3-vl")
                     for b in ("reference", "auto")]
    if not args.json:
        print("| device | input | preset | backend | input MiB | output MiB | peak extra MiB | extra / (in+out) | s |")
        print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        r = measure(*run)
        print(json.dumps(r) if args.json else _row(r), flush=True)


if __name__ == "__main__":
    main()
