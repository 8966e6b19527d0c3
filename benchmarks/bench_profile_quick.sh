#!/usr/bin/env bash
# Time `llmsim profile --device cpu --quick` (target: < 3 min on 2 cores), score the calibrated cost model
# on a held-out 20 % of the rows (3 seeds), and check that simulate consumes the table (--profile).
# Usage: benchmarks/bench_profile_quick.sh [OUT_DIR]   (default: a fresh temp dir)
set -euo pipefail
OUT_DIR=${1:-$(mktemp -d /tmp/llmsim-profile-XXXX)}
TABLE="$OUT_DIR/cpu.parquet"
SPEC="$OUT_DIR/cpu.device.yaml"
echo "host: $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "profile wall: %e s (user %U s, sys %S s)" llmsim profile --device cpu --quick --out "$TABLE"
for seed in 0 1 2; do
  llmsim profile fit-report "$TABLE" --seed "$seed" --json >"$OUT_DIR/fit_$seed.json"
done
llmsim profile fit-report "$TABLE"
llmsim simulate --hf-config examples/tiny-llama --gpu-file "$SPEC" --dtype fp32 --profile "$TABLE" \
  --num-requests 20 --input-len 64 --output-len 16 --json >"$OUT_DIR/sim.json"
python - "$OUT_DIR" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
for seed in (0, 1, 2):
    r = json.loads((d / f"fit_{seed}.json").read_text())
    a = next(f for f in r["families"] if f["family"] == "all")
    print(f"seed {seed}: held-out median |err| {a['median_abs_rel_err']:.1%}, p90 {a['p90_abs_rel_err']:.1%} "
          f"({a['num_test']} rows)")
s = json.loads((d / "sim.json").read_text())
print(f"simulate --profile: {s['num_finished']} requests, TTFT p50 {s['ttft_s']['p50'] * 1e3:.2f} ms, "
      f"TPOT p50 {s['tpot_s']['p50'] * 1e3:.3f} ms")
PY
echo "table: $TABLE  spec: $SPEC"
