"""Where ``pipeline="single"``'s time goes: its one kernel timed whole and with parts left out.

Session 9 measured the single-launch pipeline at 3x the rows pipeline's time on the H200. This script splits
that time without hardware counters (which gVisor machines do not give): ``kernels._one_launch_kernel``
runs with ``STAGES=1`` (the horizontal stage only), ``STAGES=2`` (the vertical stage and the fused tail only,
from whatever the slots hold) and ``BARRIERS=False`` (both stages, no barriers: a race), next to the whole
kernel and to the rows pipeline's two launches on the same input. Every variant but the whole one gives
wrong output; only timings are printed. The launch shape is ``ops.TUNING``'s (``QWEN_VIS_PREP_TRITON_TUNING``).

Run on a GPU: ``python benchmarks/gpu_single_parts.py`` (``benchmarks/gpu_check.sh`` does, then again under
``ncu`` with ``--ncu``: 8x1080p only, one launch per variant, nothing timed). ``--smoke``: tiny shapes, one call each,
for Triton's interpreter on a CPU (tests this script).
"""

from __future__ import annotations

import sys

import torch

import qwen_vis_prep as qvp
from qwen_vis_prep.backends.triton import ops

PARTS = {"whole": dict(STAGES=3, BARRIERS=True), "horizontal stage only": dict(STAGES=1, BARRIERS=True),
         "vertical stage + tail only": dict(STAGES=2, BARRIERS=True), "no barriers": dict(STAGES=3, BARRIERS=False)}


def _time_us(fn, once: bool) -> float:
    """Device time per call in us (``gpu_profile._device_us``); one call and no time when ``once``."""
    if once or not torch.cuda.is_available():
        fn()
        return float("nan")
    from gpu_profile import _device_us  # benchmarks/ is this script's directory, first on sys.path

    return _device_us(fn)


def _plan(x: torch.Tensor, size: tuple[int, int], config, pipeline: str) -> "ops._GroupPlan":
    saved = ops.TUNING["pipeline"]
    ops.TUNING["pipeline"] = pipeline
    try:
        return ops._GroupPlan(tuple(x.shape), x.stride(), 0, size, config, 0, None, x.device)
    finally:
        ops.TUNING["pipeline"] = saved


def parts(x: torch.Tensor, config, once: bool = False) -> list[tuple[str, float]]:
    """``[(name, us)]`` for the uint8 batch ``x [B, 3, H, W]``: each part of the single launch, then the
    rows pipeline's first pass and fused pass alone. Raises ``ValueError`` if the group does not take the
    single launch."""
    size = qvp.smart_resize(x.shape[-2], x.shape[-1], config.patch_size * config.merge_size,
                            config.min_pixels, config.max_pixels)
    single = _plan(x, size, config, "single")
    if single.scratch is None:
        raise ValueError(f"a {tuple(x.shape)} batch resized to {size} does not take pipeline='single'")
    rows_out = size[0] // config.patch_size * (size[1] // config.patch_size) * x.shape[0]
    out = torch.empty(rows_out, config.patch_dim, dtype=config.output_dtype, device=x.device)
    slots = torch.empty(single.scratch, dtype=torch.uint8, device=x.device)
    base = single.launch
    results = []
    for name, flags in PARTS.items():
        launch = ops._Launcher(base.kernel, base.grid, {**base.meta, **flags}, base.static)
        results.append((name, _time_us(lambda: launch(x, out, slots), once)))
    rows = _plan(x, size, config, "rows")
    scratch = rows.first.run(x)
    results.append(("rows pipeline: first pass", _time_us(lambda: rows.first.launch(x, scratch), once)))
    results.append(("rows pipeline: fused pass", _time_us(lambda: rows.launch(scratch, out), once)))
    return results


def main(argv: list[str]) -> None:
    smoke, once = "--smoke" in argv, "--ncu" in argv or "--smoke" in argv
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 1280)
    cases = [(32, 1080, 1920), (1, 1080, 1920), (8, 2160, 3840)]
    if "--ncu" in argv:  # each profiled launch is replayed per counter pass: one mid-sized batch is enough
        cases = [(8, 1080, 1920)]
    if smoke:
        cfg, cases = cfg.replace(min_pixels=28 * 28, max_pixels=28 * 28 * 4), [(2, 60, 90)]
    shape = {k: ops.TUNING[k] for k in ops.TUNING if k.startswith("single_")}
    print(f"card: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu (interpreter)'}; launch shape {shape}")
    print("| case | " + " | ".join(list(PARTS) + ["rows: first pass", "rows: fused pass"]) + " |")
    print("|---" * (len(PARTS) + 3) + "|")
    for n, h, w in cases:
        g = torch.Generator().manual_seed(n * h + w)
        x = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g).to(device)
        print(f"| {n}x{h}x{w} | " + " | ".join(f"{us:.0f} us" for _, us in parts(x, cfg, once)) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
