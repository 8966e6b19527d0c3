#!/usr/bin/env bash
# Planner benchmark (issue #6): llama-3.1-8b on H100/A100, <= 8 GPUs, Azure 2023 conversation trace,
# p90 TTFT <= 2 s and p90 TPOT <= 0.1 s. Target: under 5 minutes on 2 cores.
# Usage: benchmarks/bench_plan.sh [extra llmsim plan serve flags, e.g. --serial or --ray local]
set -euo pipefail
cd "$(dirname "$0")/.."
TRACE="${LLMSIM_SHARED:-../shared}/traces/azure_2023/AzureLLMInferenceTrace_conv.csv"
OUT="${BENCH_OUT:-/tmp/llmsim-bench-plan}"
mkdir -p "$OUT"
echo "cores: $(nproc)  trace: $TRACE"
start=$(date +%s%N)
llmsim plan serve --model llama-3.1-8b --gpu h100-sxm,a100-80gb --max-gpus 8 \
  --trace "$TRACE" --slo-ttft-p90 2 --slo-tpot-p90 0.1 \
  --pareto "$OUT/pareto.html" --emit-config "$OUT/recommended.yaml" "$@"
end=$(date +%s%N)
echo "wall time: $(( (end - start) / 1000000 )) ms"
