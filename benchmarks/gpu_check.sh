#!/usr/bin/env bash
# One call on a GPU machine: versions, the sweep (with --pipelines-only: the pipeline choice),
# the GPU benchmarks and their table, the profile, then every CUDA test (newest paths, the rest of the CUDA
# and Triton tests, GPU memory bounds, reliability and errors, fuzz, the thousand-sizes cache test) as
# parallel processes; the table again last. The timed steps run alone on the card, first; each step writes
# its file under OUTDIR as it ends, so a call cut short still returns what ran.
# Usage: [GPU_CHECK_BUDGET_S=540] bash benchmarks/gpu_check.sh [OUTDIR]
#   The "reliability" step runs every test marked cuda outside test_cuda.py / test_triton.py (model wrapper,
#   adapter, decoders, tower inputs, videos, families).
#   Each step has its own timeout, cut to what is left of GPU_CHECK_BUDGET_S (a step with under 15 s left is
#   skipped). Run one after another, the steps did not fit a budget of 470 s (H200, 2026-11-26, commit
#   185d646): it cut the last two (the thousand-sizes test alone spends minutes in Triton's compiler); the
#   tests now share the card and the host's cores after the timed steps.
set -u
OUT_DIR="${1:-${OUT:-/tmp/qvp_gpu}}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
END=$((SECONDS + ${GPU_CHECK_BUDGET_S:-100000}))
step() { echo "== $1 ($(date +%T), $((END - SECONDS)) s left)"; }
run_for() {  # run_for MAX_SECONDS CMD...: CMD under timeout min(MAX_SECONDS, budget left - 5)
    local max=$1 left=$((END - SECONDS - 5)); shift
    if [ "$left" -lt 15 ]; then echo "(skipped: budget spent)"; return 0; fi
    timeout $((max < left ? max : left)) "$@"
}
step versions
python3 - <<'PY' | tee "$OUT_DIR/versions.txt"
import torch, triton, PIL, transformers
print("card:", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
print("torch", torch.__version__, "triton", triton.__version__, "pillow", PIL.__version__,
      "transformers", transformers.__version__)
PY
step sweep
# --pipelines-only: the tile kernels and the rows pipeline's two kernels keep their shapes (GPU_TUNING's,
# from the H200 sweeps of 2026-11-26 on commits 4751c30, 9996f6e and 185d646); the time goes to the
# pipeline choice
run_for 200 python3 benchmarks/gpu_sweep.py "$OUT_DIR/tuning.json" --pipelines-only > "$OUT_DIR/sweep.txt" 2>&1; tail -4 "$OUT_DIR/sweep.txt"
if [ -s "$OUT_DIR/tuning.json" ]; then export QWEN_VIS_PREP_TRITON_TUNING="$(cat "$OUT_DIR/tuning.json")"; fi
echo "tuning: ${QWEN_VIS_PREP_TRITON_TUNING:-defaults}"
step benchmarks
run_for 200 python3 -m pytest benchmarks/test_bench_gpu.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT_DIR/bench.json" --benchmark-columns=median,iqr,rounds 2>&1 | tail -60 > "$OUT_DIR/bench.txt"
tail -3 "$OUT_DIR/bench.txt"
python3 benchmarks/gpu_report.py "$OUT_DIR/bench.json" > "$OUT_DIR/table.md" 2>&1; cat "$OUT_DIR/table.md"
step profile
run_for 60 python3 benchmarks/gpu_profile.py > "$OUT_DIR/profile.txt" 2>&1; head -8 "$OUT_DIR/profile.txt"
# The tests, side by side: nothing is timed from here on, and each pytest process keeps its own CUDA memory
# statistics, so they only share the card (and the host's cores, which Triton's compiles use)
step "tests, in parallel: newest paths, other cuda+triton tests, memory bounds, reliability and errors, fuzz, the thousand-sizes cache"
PY="python3 -m pytest -q -p no:cacheprovider --tb=short -rf"
NEW="lean or direct_launch or launcher or rows or ragged or launch_shapes or warm or in_place"
# -m "slow or not slow": the Triton tests kept out of CPU runs (every launch shape and config; slow only in
# Triton's interpreter) take seconds here
run_for 300 $PY tests/test_cuda.py tests/test_triton.py tests/test_torch_uint8.py -m "slow or not slow" -k "$NEW or torch_uint8 or cuda_gives" > "$OUT_DIR/tests_new_paths.txt" 2>&1 &
run_for 300 $PY tests/test_cuda.py tests/test_triton.py -m "slow or not slow" -k "not ($NEW)" > "$OUT_DIR/tests_gpu.txt" 2>&1 &
run_for 120 python3 benchmarks/memory_bounds.py --cuda-only > "$OUT_DIR/memory.txt" 2>&1 &
run_for 300 $PY tests/test_reliability.py tests/test_errors.py tests/test_model_family.py tests/test_hf_model.py tests/test_hf_adapter.py tests/test_hf_parity.py tests/test_io.py tests/test_module.py tests/test_tower.py tests/test_video.py tests/test_video_decode.py -m cuda -k "not thousand" > "$OUT_DIR/tests_reliability.txt" 2>&1 &
run_for 300 $PY tests/test_fuzz.py > "$OUT_DIR/tests_fuzz.txt" 2>&1 &
run_for 300 $PY tests/test_reliability.py -m cuda -k thousand > "$OUT_DIR/tests_thousand_sizes.txt" 2>&1 &
wait
for f in tests_new_paths tests_gpu tests_reliability tests_fuzz tests_thousand_sizes; do echo "-- $f"; tail -4 "$OUT_DIR/$f.txt"; done
cat "$OUT_DIR/memory.txt"
step done
cat "$OUT_DIR/table.md"
