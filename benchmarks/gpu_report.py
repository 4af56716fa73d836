"""Print a markdown table from a pytest-benchmark JSON of test_bench_gpu.py (medians, floor, ratios)."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    data = json.load(open(path))
    rows = {}
    bw = None
    for b in data["benchmarks"]:
        med = b["stats"]["median"]
        if b["group"] == "copy":
            bw = b["extra_info"]["bytes"] / med
            continue
        name = b["name"].split("[")[0].replace("test_", "")
        param = b["name"].split("[", 1)[1].rstrip("]") if "[" in b["name"] else ""
        label = name + ("-bf16" if "bfloat16" in param else "")
        # clips: ours and HF's video processor take the image columns of their group
        label = {"ours_triton_clip": "ours_triton", "hf_video_processor_cuda": "hf_torchvision_cuda"}.get(label, label)
        if name == "ours_triton_pipeline":
            label = f"{name}-{param.split('-')[0]}" + ("-bf16" if "bfloat16" in param else "")
        rows.setdefault(b["group"], {})[label] = (med, b["extra_info"].get("bytes"))
    print(f"copy bandwidth (read+write): {bw / 1e12:.2f} TB/s" if bw else "no copy benchmark")
    print("| case | ours triton fp32 | ours triton bf16 | ours torch backend | HF torchvision CUDA | floor | "
          "HF / ours | ours / floor | bf16 / fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, r in rows.items():
        ours, nbytes = r.get("ours_triton", (None, None))
        bf16 = r.get("ours_triton-bf16", (None, None))[0]
        tb = r.get("ours_torch_backend", (None, None))[0]
        hf = r.get("hf_torchvision_cuda", (None, None))[0]
        floor = nbytes / bw if (bw and nbytes) else None
        f = lambda s: f"{s * 1e6:.0f} us" if s else "-"  # noqa: E731
        print(f"| {case} | {f(ours)} | {f(bf16)} | {f(tb)} | {f(hf)} | {f(floor)} | "
              f"{hf / ours:.1f}x | {ours / floor:.2f}x | {bf16 / ours:.2f} |" if ours and hf and floor and bf16
              else f"| {case} | {f(ours)} | {f(bf16)} | {f(tb)} | {f(hf)} | {f(floor)} | - | - | - |")
    for case, r in rows.items():
        if "ours_triton_cuda_graph" in r and "ours_triton" in r:
            g, e = r["ours_triton_cuda_graph"][0], r["ours_triton"][0]
            print(f"\n{case}, fp32, captured in a CUDA graph (input copy + replay): {g * 1e6:.0f} us "
                  f"(eager {e * 1e6:.0f} us)")
    for case, r in rows.items():
        got = {k: r.get(f"ours_triton_pipeline-{k}", (None,))[0]
               for k in ("rows", "tiles", "rows-bf16", "tiles-bf16")}
        if got["rows"] and got["tiles"]:
            line = (f"\n{case}: rows pipeline {got['rows'] * 1e6:.0f} us, tile kernels "
                    f"{got['tiles'] * 1e6:.0f} us fp32")
            if got["rows-bf16"] and got["tiles-bf16"]:
                line += (f"; bf16 {got['rows-bf16'] * 1e6:.0f} / {got['tiles-bf16'] * 1e6:.0f} us (bf16 / fp32: "
                         f"{got['rows-bf16'] / got['rows']:.2f} / {got['tiles-bf16'] / got['tiles']:.2f})")
            print(line)


if __name__ == "__main__":
    main(sys.argv[1])
