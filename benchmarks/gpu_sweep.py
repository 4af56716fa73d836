"""Time the Triton kernels' launch shapes (``tuning.TUNING``) on the card at hand and pick the fastest.

Each kernel is timed on its own with ``triton.testing.do_bench`` (device time, medians), on the shapes of the
benchmark cases: pass 1 horizontally and vertically on 32 x 1080p and horizontally on 8 x 4K (13 taps); the
fused last pass from the 32 x 1080p scratch (float32 and bfloat16 output) and on 64 x 448 (no resize); a
whole group with each pipeline (wall clock); the kernels of ``pipeline="rows"`` (packed scratch; its first
pass on one 1080p image too, where a grid of a few waves may favour other shapes).
Every variant's output is compared with ``torch.equal`` against the first variant's, so a launch shape that
broke the arithmetic would show up here too. The winner (lowest sum of time / best time over the cases) is
printed and written as JSON, ready for ``QWEN_VIS_PREP_TRITON_TUNING``.

Usage: ``python benchmarks/gpu_sweep.py [OUT.json] [--rows-only] [--pipelines-only] [--smoke]``;
``--rows-only`` keeps the tile kernels' launch shapes as they are and sweeps the rest; ``--pipelines-only``
also keeps the rows pipeline's two kernels' shapes and picks only the pipeline;
``--smoke`` runs tiny shapes (works under ``TRITON_INTERPRET=1`` on a CPU, to test this script itself).
"""

from __future__ import annotations

import json
import sys
import time

import torch

import qwen_vis_prep as qvp
from qwen_vis_prep.backends.triton import plans, tuning, warm

# (rows, columns, warps, filter-table layout) of a horizontal pass
PASS_VARIANTS = [(1, 512, 2, "out-major"), (1, 512, 2, "tap-major"), (1, 256, 2, "tap-major"),
                 (1, 1024, 4, "tap-major"), (1, 256, 1, "out-major")]
# (tile rows, warps, filter-table layout); the fused tile is [rows, PP_PAD]
PATCH_VARIANTS = [(1, 2, "out-major"), (1, 2, "tap-major"), (2, 2, "tap-major"), (4, 4, "tap-major"),
                  (1, 1, "tap-major")]
# pipeline="rows" (kernels._rows_pass_kernel + _patch_rows_kernel): (rows per program, columns, warps,
# prefetch distance in rows) of the horizontal pass, timed with the column cap off
# (rows_tap_loads=0), then (columns, rows_tap_loads) around the winner, then (patches per program, warps)
# of the fused pass. On an H200 (2026-11-26, commit 185d646; benchmarks/RESULTS.md): prefetching 4 rows
# ahead won (378 -> 323 us on 1080p), 256 columns won on 1080p (7 taps) and 128 on 4K (13 taps); (1, 1) and
# (2, 1) tied for the fused pass. The variants that lost or tied there (several rows per step, an L1
# prefetch, 32-bit word loads, arithmetic normalisation, descriptor tables for ragged lists) were removed
# from the kernels, so they are not swept.
ROWS_PASS_VARIANTS = [(16, 256, 4, 4), (16, 128, 4, 4), (16, 256, 4, 2), (16, 256, 4, 8), (16, 256, 4, 16),
                      (32, 256, 4, 4), (8, 256, 4, 4), (16, 256, 8, 4), (32, 256, 8, 4), (16, 512, 8, 4),
                      (16, 128, 2, 4)]
ROWS_CAP_VARIANTS = [(256, 16), (512, 16), (256, 8), (512, 32)]  # (columns, rows_tap_loads)
ROWS_PATCH_VARIANTS = [(2, 1), (1, 1), (2, 2), (4, 2), (4, 1)]


def _time(fn) -> float:
    """Seconds per call: device time on CUDA, one wall-clock call otherwise (smoke runs)."""
    if torch.cuda.is_available():
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median") * 1e-3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _time_wall(fn) -> float:
    """Seconds per call, wall clock from the call to the end of its device work (median of 30 synchronised
    calls after 5 warm-ups; one call without CUDA, for smoke runs), for cases whose host time matters:
    ``do_bench`` reads device events around each call, and on the host-bound 16-mixed list its ranking
    disagreed with the synchronised benchmark (H200, 2026-11-26, commits 4751c30, 9996f6e and 185d646)."""
    if not torch.cuda.is_available():
        return _time(fn)
    sync = torch.cuda.synchronize
    for _ in range(5):
        fn()
    sync()
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _u8(shape, seed, device):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).to(device)


def _pick(variants, make_cases, apply, fmt, timer=_time) -> tuple:
    """Time every variant on every case with ``timer``; print a table; return the variant with the lowest
    relative sum. ``make_cases()`` builds ``[(name, run)]`` afresh after ``apply(variant)`` (plans read
    TUNING when built)."""
    times, refs, names = {}, {}, []
    for v in variants:
        apply(v)
        row = []
        cases = make_cases()
        names = [n for n, _ in cases]
        for name, run in cases:
            out = run()
            if name in refs:
                assert torch.equal(out, refs[name]), f"variant {v} changed the result of {name}"
            else:
                refs[name] = out
            row.append(timer(run))
        times[v] = row
        del cases
    best = [min(t[i] for t in times.values()) for i in range(len(names))]
    score = {v: sum(t / b for t, b in zip(row, best)) for v, row in times.items()}
    print("| " + fmt + " | " + " | ".join(names) + " | score |")
    print("|---" * (len(names) + 2) + "|")
    for v, row in times.items():
        print(f"| {v} | " + " | ".join(f"{t * 1e6:.0f} us" for t in row) + f" | {score[v]:.2f} |")
    winner = min(score, key=score.get)
    print(f"winner: {winner}\n")
    return winner


def main(argv: list[str]) -> None:
    smoke = "--smoke" in argv
    paths = [a for a in argv if not a.startswith("--")]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if smoke:
        # the smallest shapes that still resize both sides (Triton's interpreter pays for every row)
        n1, hd, wd, n4, h4, w4, n448, s448 = 2, 31, 45, 1, 45, 85, 2, 28
        pass_variants, patch_variants = PASS_VARIANTS[:2], PATCH_VARIANTS[:2]
        rows_pass_variants, rows_patch_variants = ROWS_PASS_VARIANTS[:2], ROWS_PATCH_VARIANTS[:2]
    else:
        n1, hd, wd, n4, h4, w4, n448, s448 = 32, 1080, 1920, 8, 2160, 3840, 64, 448
        pass_variants, patch_variants = PASS_VARIANTS, PATCH_VARIANTS
        rows_pass_variants, rows_patch_variants = ROWS_PASS_VARIANTS, ROWS_PATCH_VARIANTS
    cfg = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 1280)
    if smoke:
        cfg = cfg.replace(min_pixels=28 * 28, max_pixels=28 * 28 * 4)
    th, tw = qvp.smart_resize(hd, wd, 28, cfg.min_pixels, cfg.max_pixels)
    th4, tw4 = qvp.smart_resize(h4, w4, 28, cfg.min_pixels, cfg.max_pixels)
    x1 = _u8((n1, 3, hd, wd), 1, device)
    x4 = _u8((n4, 3, h4, w4), 2, device)
    x448 = _u8((n448, 3, s448, s448), 3, device)
    print(f"card: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu (interpreter)'}; "
          f"{n1}x{hd}x{wd} -> {th}x{tw}, {n4}x{h4}x{w4} -> {th4}x{tw4}\n")

    def set_pass(v):
        tuning.TUNING.update(pass_block_r=v[0], pass_block_q=v[1], pass_warps=v[2], pass_taps=v[3])

    def step(x, n, vertical):
        plan = plans.Pass(tuple(x.shape), x.stride(), n, vertical, "pil", x.device)
        return lambda: plan.run(x)

    pass_cases = lambda: [("1080p horizontal", step(x1, tw, False)),  # noqa: E731
                          ("1080p vertical", step(x1, th, True)),
                          ("4K horizontal", step(x4, tw4, False))]
    def save() -> None:  # after every stage, so a step timeout keeps the winners so far
        if paths:
            with open(paths[0], "w") as f:
                json.dump(tuning.TUNING, f)

    pipelines_only = "--pipelines-only" in argv
    if "--rows-only" in argv or pipelines_only:  # the tile kernels' shapes as they are (TUNING / env)
        pass_variants, patch_variants = pass_variants[:0], patch_variants[:0]
    if pass_variants:
        set_pass(_pick(pass_variants, pass_cases, set_pass, "pass 1 (rows, cols, warps, tables)"))
        save()

    scratch = plans.Pass(tuple(x1.shape), x1.stride(), tw, False, "pil", x1.device).run(x1)
    cfg16 = cfg.replace(output_dtype=torch.bfloat16)

    def fused(src, size, config):
        plan = plans.GroupPlan(tuple(src.shape), src.stride(), 0, size, config, 0, None, src.device)
        rows = src.shape[0] * (size[0] // 14) * (size[1] // 14)
        out = torch.empty(rows, config.patch_dim, dtype=config.output_dtype, device=src.device)

        def run():
            plan.run(src, out)
            return out
        return run

    def set_patch(v):
        tuning.TUNING.update(patch_block=v[0], patch_warps=v[1], patch_taps=v[2])

    patch_cases = lambda: [("fused 1080p fp32", fused(scratch, (th, tw), cfg)),  # noqa: E731
                           ("fused 1080p bf16", fused(scratch, (th, tw), cfg16)),
                           ("448 no resize", fused(x448, (s448, s448), cfg))]
    if patch_variants:
        set_patch(_pick(patch_variants, patch_cases, set_patch, "fused pass (rows, warps, tables)"))
        save()

    # the pipelines end to end with the rows pipeline's shapes as they are (GPU_TUNING's, from the H200
    # sweep of 2026-11-26 on commit 185d646); the rows stages below (not under --pipelines-only) may still
    # move those
    def set_pipeline(v):
        tuning.TUNING.update(pipeline=v[0])

    # fused() runs the whole group plan: on these sources, the first pass and the fused pass
    pipeline_cases = lambda: [("32x1080p fp32", fused(x1, (th, tw), cfg)),  # noqa: E731
                              ("32x1080p bf16", fused(x1, (th, tw), cfg16)),
                              ("8x4K fp32", fused(x4, (th4, tw4), cfg)),
                              ("1x1080p fp32", fused(x1[:1], (th, tw), cfg))]

    # the pipelines end to end on the wall clock (a synchronised call, host launches included)
    chosen_pipeline = _pick([("tiles",), ("rows",)], pipeline_cases, set_pipeline,
                            "pipeline (whole group, wall clock per synchronised call)", timer=_time_wall)
    set_pipeline(chosen_pipeline)
    save()

    # pipeline="rows": its two kernels' launch shapes (each timed alone, on the same cases as above);
    # --pipelines-only keeps them as they are (GPU_TUNING's, from the H200 sweep of 2026-11-26 on 185d646)
    if not pipelines_only:
        tuning.TUNING.update(pipeline="rows")

        def set_rows_pass(v):
            tuning.TUNING.update(rows_per_program=v[0], rows_block_q=v[1], rows_warps=v[2], rows_prefetch=v[3],
                                 rows_tap_loads=0)

        def set_rows_cap(v):
            tuning.TUNING.update(rows_block_q=v[0], rows_tap_loads=v[1])

        def rows_step(x, n):
            plan = plans.RowsPass(tuple(x.shape), x.stride(), n, 14, "pil", x.device)
            return lambda: plan.run(x)

        rows_pass_cases = lambda: [("1080p horizontal, packed", rows_step(x1, tw)),  # noqa: E731
                                   ("4K horizontal, packed", rows_step(x4, tw4)),
                                   ("1x1080p horizontal, packed", rows_step(x1[:1], tw))]
        set_rows_pass(_pick(rows_pass_variants, rows_pass_cases, set_rows_pass,
                            "rows pass (rows per program, columns, warps, prefetch distance)"))
        # the column cap: columns halved per filter while a thread would issue more tap loads per row than
        # rows_tap_loads (plans.rows_block_q); the winner above with the cap off is the reference
        cap_variants = [(tuning.TUNING["rows_block_q"], 0)]
        cap_variants += [v for v in ROWS_CAP_VARIANTS[:2 if smoke else None] if v not in cap_variants]
        set_rows_cap(_pick(cap_variants, rows_pass_cases, set_rows_cap, "rows pass (columns, rows_tap_loads)"))
        save()

        def set_rows_patch(v):
            tuning.TUNING.update(rows_patch_block=v[0], rows_patch_warps=v[1])

        packed1 = plans.RowsPass(tuple(x1.shape), x1.stride(), tw, 14, "pil", x1.device).run(x1)
        packed4 = plans.RowsPass(tuple(x4.shape), x4.stride(), tw4, 14, "pil", x4.device).run(x4)

        def fused_rows(x, packed, size, config):
            plan = plans.GroupPlan(tuple(x.shape), x.stride(), 0, size, config, 0, None, x.device)
            out = torch.empty(x.shape[0] * (size[0] // 14) * (size[1] // 14), config.patch_dim,
                              dtype=config.output_dtype, device=x.device)

            def run():
                plan.launch(src_ptr=packed, out_ptr=out)
                return out
            return run

        rows_patch_cases = lambda: [("fused 1080p fp32", fused_rows(x1, packed1, (th, tw), cfg)),  # noqa: E731
                                    ("fused 1080p bf16", fused_rows(x1, packed1, (th, tw), cfg16)),
                                    ("fused 4K fp32", fused_rows(x4, packed4, (th4, tw4), cfg))]
        set_rows_patch(_pick(rows_patch_variants, rows_patch_cases, set_rows_patch,
                             "rows fused pass (patches per program, warps)"))
        del packed1, packed4
        set_pipeline(chosen_pipeline)
        save()

    plans.PLANS.clear()
    warm.WARM_CALLS.clear()
    print("TUNING", json.dumps(tuning.TUNING))
    save()


if __name__ == "__main__":
    main(sys.argv[1:])
