#!/usr/bin/env bash
# One call on a GPU machine: versions, every test (CUDA ones included), the GPU benchmarks, a table last.
# Usage: bash benchmarks/gpu_check.sh [OUTDIR]
set -u
OUT_DIR="${1:-${OUT:-/tmp/qvp_gpu}}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
python3 - <<'PY' | tee "$OUT_DIR/versions.txt"
import torch, triton, PIL, transformers
print("card:", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
print("torch", torch.__version__, "triton", triton.__version__, "pillow", PIL.__version__,
      "transformers", transformers.__version__)
PY
timeout 120 python3 -m pytest tests/test_cuda.py tests/test_triton.py -q -p no:cacheprovider --tb=short -rf > "$OUT_DIR/tests_gpu.txt" 2>&1; tail -12 "$OUT_DIR/tests_gpu.txt"
timeout 60 python3 benchmarks/gpu_profile.py 2>&1 | tee "$OUT_DIR/profile.txt"
timeout 90 python3 -m pytest tests -q -p no:cacheprovider -k "not slow" --ignore=tests/test_triton.py --ignore=tests/test_cuda.py 2>&1 | tail -25 > "$OUT_DIR/tests_all.txt"; tail -3 "$OUT_DIR/tests_all.txt"
timeout 200 python3 -m pytest benchmarks/test_bench_gpu.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT_DIR/bench.json" --benchmark-columns=median,iqr,rounds 2>&1 | tail -60 > "$OUT_DIR/bench.txt"
tail -5 "$OUT_DIR/bench.txt"
python3 benchmarks/gpu_report.py "$OUT_DIR/bench.json" | tee "$OUT_DIR/table.md"
