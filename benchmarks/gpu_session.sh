#!/usr/bin/env bash
# One lent-GPU session in one call: the GPU-marked tests and the CUDA paths of the executor tests, then
# the CUDA profile table of llama-3.1-8b (bf16, TP 1, Triton and torch implementations) on that GPU.
#
#   bash benchmarks/gpu_session.sh OUTDIR [SECONDS] [PRIOR_TABLE]
#
# PRIOR_TABLE: a table from an earlier call on the same GPU (carried in an ignored folder); it is
# copied to OUTDIR/cuda.parquet and resumed, so rows measured before are not measured again.
# SECONDS (default 420) is a deadline for the whole script: the quick grid is measured first so that
# the table covers every family, then the full grid extends it family by family (the table is
# resumable: keys already measured are skipped) until the deadline. Each family is written when it
# finishes, so a family cut off by the deadline is lost and the table keeps what came before.
# Missing Python packages (pydantic, simpy, plotly on the CUDA image) travel as wheels in .whl/
# (see the device tool's README); the script installs them into /tmp/site.
set -u
OUT=${1:?usage: gpu_session.sh OUTDIR [SECONDS]}
BUDGET=${2:-420}
PRIOR=${3:-}
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 3; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv \
  | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, pydantic, simpy, plotly, app.cli; print('torch', torch.__version__, 'triton', \
triton.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt" || { echo "imports failed"; exit 4; }

TABLE="$OUT/cuda.parquet"
if [ -n "$PRIOR" ]; then cp "$PRIOR" "$TABLE"; fi
echo "== quick grid ($(left) s left)"
timeout 150 python3 -m app.cli profile --device cuda --quick --out "$TABLE" --json > "$OUT/quick.json" 2>&1
echo "quick exit $?"; tail -3 "$OUT/quick.json"

echo "== tests ($(left) s left)"
timeout 200 python3 -m pytest -v -p no:cacheprovider -rs --timeout 100 --tb=short --durations 8 \
  tests/test_profiler_kernels.py tests/test_profiler_sweep.py tests/test_profiler_collectives.py tests/test_executor.py \
  tests/test_executor_equivalence.py > "$OUT/gpu_tests.log" 2>&1
echo "pytest exit $?"; grep -E "FAILED|ERROR|Timeout|passed|failed" "$OUT/gpu_tests.log" | tail -20

for fam in gemm decode elementwise attention; do
  t=$(( $(left) - 15 ))
  if [ "$t" -lt 20 ]; then echo "no time left for $fam"; continue; fi
  echo "== full grid: $fam (${t} s left)"
  timeout "$t" python3 -m app.cli profile --device cuda --ops "$fam" --out "$TABLE" --json > "$OUT/full_$fam.json" 2>&1
  echo "$fam exit $?"; tail -3 "$OUT/full_$fam.json"
done
python3 -m app.cli profile fit-report "$TABLE" > "$OUT/fit_report.txt" 2>&1; cat "$OUT/fit_report.txt"
echo "done in $(( $(date +%s) - START )) s"
