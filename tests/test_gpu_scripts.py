"""The GPU scripts, which run only where a GPU is at hand, must not break unnoticed: the launch-shape sweep
runs on tiny shapes (``--smoke``; in Triton's interpreter without a GPU) and its winner must be a tuning the
package accepts; the report turns a pytest-benchmark JSON into the results table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qwen_vis_prep.backends import triton as triton_backend
from qwen_vis_prep.backends.triton import tuning

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _script_env() -> dict:
    """The environment a benchmark script runs in here: the package importable, no tuning exported."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCH.parent), os.environ.get("PYTHONPATH", "")]))
    env.pop(tuning.TUNING_ENV, None)
    return env


@pytest.mark.skipif(not triton_backend.can_run(DEVICE)[0], reason="Triton cannot run here")
@pytest.mark.parametrize("scope", [
    pytest.param("--pipelines-only", id="pipelines-only", marks=pytest.mark.slow),  # ~12 s
    pytest.param("--rows-only", id="rows-only", marks=pytest.mark.slow),  # ~1 min
    pytest.param(None, id="all-stages", marks=pytest.mark.slow),  # ~3 min: the tile kernels' shapes too
])
def test_sweep_smoke_writes_an_accepted_tuning(tmp_path, monkeypatch, scope):
    out = tmp_path / "tuning.json"
    env = _script_env()
    run = subprocess.run([sys.executable, str(BENCH / "gpu_sweep.py"), "--smoke", *([scope] if scope else []),
                          str(out)], cwd=BENCH, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "pipeline (whole group, wall clock" in run.stdout
    assert run.stdout.count("winner:") == {"--pipelines-only": 1, "--rows-only": 4, None: 6}[scope]
    assert ("rows pass (columns, rows_tap_loads)" in run.stdout) == (scope != "--pipelines-only")
    assert ("pass 1 (rows, cols" in run.stdout) == (scope is None)  # else the tile kernels keep their shapes
    chosen = json.loads(out.read_text())
    assert set(chosen) == set(tuning.TUNING)
    monkeypatch.setenv(tuning.TUNING_ENV, json.dumps(chosen))
    monkeypatch.setattr(tuning, "TUNING", dict(tuning.TUNING))
    tuning.apply_tuning_override()  # raises on any value the package would not take
    assert tuning.TUNING == chosen


def test_report_table_from_benchmark_json(tmp_path):
    def bench(name, group, median, nbytes=None):
        return {"name": name, "group": group, "stats": {"median": median},
                "extra_info": {} if nbytes is None else {"bytes": nbytes}}

    data = {"benchmarks": [
        bench("test_copy_bandwidth", "copy", 1e-3, 4e9),                         # 4 TB/s
        bench("test_ours_triton[float32-32x1080p]", "32x1080p", 1e-3, 1e9),      # floor 250 us
        bench("test_ours_triton[bfloat16-32x1080p]", "32x1080p", 8e-4, 6e8),
        bench("test_ours_torch_backend[32x1080p]", "32x1080p", 2e-2),
        bench("test_hf_torchvision_cuda[32x1080p]", "32x1080p", 8e-3),
        bench("test_ours_triton_cuda_graph[32x1080p]", "32x1080p", 9e-4),
        bench("test_ours_triton_pipeline[rows-float32-32x1080p]", "32x1080p", 1e-3, 1e9),
        bench("test_ours_triton_pipeline[tiles-float32-32x1080p]", "32x1080p", 2e-3, 1e9),
        bench("test_ours_triton_pipeline[rows-bfloat16-32x1080p]", "32x1080p", 9e-4, 6e8),
        bench("test_ours_triton_pipeline[tiles-bfloat16-32x1080p]", "32x1080p", 1.5e-3, 6e8),
    ]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    run = subprocess.run([sys.executable, str(BENCH / "gpu_report.py"), str(path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "copy bandwidth (read+write): 4.00 TB/s" in run.stdout
    row = next(line for line in run.stdout.splitlines() if line.startswith("| 32x1080p"))
    assert row.split(" | ")[1:] == ["1000 us", "800 us", "20000 us", "8000 us", "250 us", "8.0x", "4.00x",
                                   "0.80 |"]
    assert "captured in a CUDA graph (input copy + replay): 900 us (eager 1000 us)" in run.stdout
    assert ("32x1080p: rows pipeline 1000 us, tile kernels 2000 us fp32; bf16 900 / 1500 us "
            "(bf16 / fp32: 0.90 / 0.75)") in run.stdout
