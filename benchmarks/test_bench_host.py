"""Host time per call of the Triton backend: everything a call does on the CPU besides the kernels themselves.

Run: ``pytest benchmarks/test_bench_host.py --benchmark-only`` (part of ``pytest benchmarks``).

On a GPU, a synchronised call costs its host time plus its device time, so for small batches (1x1080p,
64x448) the host path is a large part of the wall time (see benchmarks/RESULTS.md). This file times that
path without a GPU: uint8 CPU tensors, the Triton backend allowed on the CPU (``TRITON_INTERPRET=1``, set
for these tests only), and each kernel launch replaced by a no-op, so the figure is validation, sizing,
plan lookups, output and scratch allocation, and the launchers' argument handling. It leaves out the
driver's launch cost and CUDA's allocator, which only a GPU run shows (``benchmarks/gpu_profile.py``).

Cases: one image, a batch, a batch that needs no resize, and a ragged list of 16 sizes. Providers per
case: ``warm`` (the default: a repeated call with the same tensor metadata runs from its cached group
launches, ``warm.warm_call``) and ``full`` (that shortcut switched off, every call validating and sizing
again: the path before it existed, and the one a first call takes).
"""

from __future__ import annotations

import pytest
import torch

import qwen_vis_prep as qvp
from qwen_vis_prep.backends import triton as triton_backend
from qwen_vis_prep.backends.triton import launcher, plans, warm

CASES = {"1x1080p": (1, 3, 1080, 1920), "1x1080p-chw": (3, 1080, 1920), "32x1080p": (32, 3, 1080, 1920),
         "64x448": (64, 3, 448, 448), "16-mixed": None}


def _images(case: str):
    if CASES[case] is None:  # the list of test_bench_gpu.py's 16 mixed sizes
        from test_bench_gpu import MIXED_SIZES

        return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in MIXED_SIZES]
    return torch.randint(0, 256, CASES[case], dtype=torch.uint8)


def _stubbed_prep(monkeypatch) -> tuple[qvp.QwenVisionPreprocessor, list]:
    """A Triton-backend module on CPU tensors with fresh plans and every kernel launch replaced by a no-op
    that records its argument count in the returned list."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # lets the Triton backend take CPU tensors (triton_backend.can_run)
    launches = []
    monkeypatch.setattr(launcher.Launcher, "__call__", lambda self, **inputs: launches.append(len(inputs)))
    monkeypatch.setattr(plans, "PLANS", type(plans.PLANS)(maxsize=256))
    monkeypatch.setattr(warm, "WARM_CALLS", type(warm.WARM_CALLS)(maxsize=256))
    cfg = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 1280)
    return qvp.QwenVisionPreprocessor(config=cfg, backend="triton"), launches


@pytest.mark.parametrize("provider", ["warm", "full"])
@pytest.mark.parametrize("case", list(CASES))
def test_host_path(benchmark, monkeypatch, case, provider):
    prep, launches = _stubbed_prep(monkeypatch)
    if provider == "full":
        monkeypatch.setattr(triton_backend, "warm_call", lambda *args: None)
    x = _images(case)
    first = prep(x)
    expected = len(launches)
    if isinstance(x, torch.Tensor):
        assert expected == (1 if CASES[case][-1] == 448 else 2)  # no resize: one launch; else two
    launches.clear()
    again = prep(x)  # what the benchmark repeats must do the same work as the first call
    assert len(launches) == expected > 0 and torch.equal(again.grid_thw, first.grid_thw)
    assert again.pixel_values.shape == first.pixel_values.shape
    benchmark.extra_info.update(torch=torch.__version__, launches_per_call=expected, stubbed_launches=True)
    benchmark.group = f"host-{case}"
    benchmark(prep, x)
