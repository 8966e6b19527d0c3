"""Simulator fidelity on this CPU (issue #5): `llmsim validate --quick` for the vllm and sarathi schedulers.

Each run is exactly what `llmsim validate --quick --scheduler S` does (`run_validation` with the quick
preset): a policy dry run for the KV layout, half of the in-situ profile of this CPU (op-level only), the
real executor serving 300 requests at 70 % of the simulated capacity, the other half of the profile, then
the simulator on the same requests. Prints and records the signed errors (simulated / measured − 1) of
TTFT, TPOT and e2e at p50/p90, throughput and per-pass time, with the machine's load average before and
after (timing on a shared machine is only as good as its quietness). Target: |p50 TTFT|, |p50 TPOT|,
|p50 e2e| < 10 %.

    python benchmarks/bench_validate.py [--repeats N] [--clock cpu|wall] [--out DIR] [--record FILE]
    python benchmarks/bench_validate.py --analyze OUT/vllm-cpu-0 ...   # per-pass residuals of run folders

Recorded runs (one JSON line per invocation, with load averages): benchmarks/bench_validate.results.jsonl
(`--record benchmarks/bench_validate.results.jsonl`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.cmd_validate import quick_config, run_validation  # noqa: E402
from simulator.config import validate_config  # noqa: E402

KEYS = ("ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90", "e2e_p50", "e2e_p90", "throughput", "step_time")


def analyze(folder: Path) -> None:
    """Per-pass residuals of one run's output folder (`measured_steps.parquet` with `predicted_s`): by pass kind
    and decode batch size, the share of decode-only passes right after a pass with prompt tokens, and the
    cost model's error over the run in eighths of its time."""
    import numpy as np
    import pandas as pd

    m = pd.read_parquet(folder / "measured_steps.parquet")
    m["d"] = m["end_s"] - m["start_s"]
    pf = (m["prefill_tokens"] > 0).to_numpy()
    m["after_prompt"] = np.r_[False, pf[:-1]]
    m["bin"] = pd.cut(m["decode_tokens"], [-1, 0, 1, 2, 4, 8, 16, 64])

    def err(x):
        return f"{x['predicted_s'].sum() / x['d'].sum() - 1:+.1%}"

    print(folder, f"all passes {err(m)}")
    for name, sub in (("with prompt tokens", m[pf]), ("decode only", m[~pf])):
        for b, x in sub.groupby("bin", observed=True):
            extra = f", after a prompt pass {x['after_prompt'].mean():.0%}" if name == "decode only" else ""
            print(f"  {name:18s} decodes {str(b):8s} n={len(x):4d} error {err(x)}{extra}")
    m["eighth"] = pd.qcut(m["start_s"], 8, labels=False)
    print("  by eighth of the run: " + " ".join(err(x) for _, x in m.groupby("eighth")))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--analyze":
        for d in sys.argv[2:]:
            analyze(Path(d))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    ap.add_argument("--schedulers", default="vllm,sarathi")
    ap.add_argument("--repeats", type=int, default=1, help="runs per scheduler (alternating schedulers)")
    ap.add_argument("--load", type=float, default=0.7)
    ap.add_argument("--out", type=Path, default=Path("/tmp/llmsim-bench-validate"))
    ap.add_argument("--record", type=Path, default=None, help="append the results as one JSON line here")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    runs = []
    for rep in range(args.repeats):
        for sched in args.schedulers.split(","):
            cfg = validate_config(quick_config(sched))
            before = os.getloadavg()
            t1 = time.perf_counter()
            work = args.out / f"{sched}-{args.clock}-{rep}"
            res = run_validation(cfg, work_dir=work, load=args.load, threads=1, quick=True, clock=args.clock)
            st = res.as_json()["step_time"]
            res.write_frames(work)
            runs.append({"scheduler": sched, "clock": args.clock, "repeat": rep,
                         "errors": {k: res.errors[k] for k in KEYS},
                         "measured_ms": {m: res.measured[f"{m}_s"]["p50"] * 1e3 for m in ("ttft", "tpot", "e2e")},
                         "simulated_ms": {m: res.simulated[f"{m}_s"]["p50"] * 1e3 for m in ("ttft", "tpot", "e2e")},
                         "cost_model_on_measured_passes": st.get("predicted_over_measured_sum"),
                         "decode_passes": st.get("decode_only_predicted_over_measured_sum"),
                         "passes_with_prompt_tokens": st.get("with_prefill_predicted_over_measured_sum"),
                         "rate_per_s": res.rate_per_s, "capacity_per_s": res.capacity_per_s,
                         "num_requests": int(len(res.measured_requests)), "run_s": time.perf_counter() - t1,
                         "phases_s": res.wall_s, "load_avg_before": list(before),
                         "profile_drift": res.profile_drift,
                         "load_avg_after": list(os.getloadavg())})
            r = runs[-1]
            print(f"{sched:8s} #{rep} " + " ".join(f"{k} {r['errors'][k]:+.1%}" for k in KEYS
                                                   if r["errors"][k] is not None)
                  + f" | passes {r['cost_model_on_measured_passes']:+.1%}"
                  + (f" | drift {res.profile_drift:+.1%}" if res.profile_drift is not None else "")
                  + f" | load {before[0]:.1f}->"
                    f"{r['load_avg_after'][0]:.1f} | {r['run_s']:.0f} s", flush=True)
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host_cores": os.cpu_count(),
              "load_avg_start": list(load0), "preset": "validate --quick (small-llama, in-situ split profile)",
              "runs": runs}
    (args.out / "bench_validate.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.record:
        with args.record.open("a") as f:
            f.write(json.dumps(record) + "\n")
    ok = [all(abs(r["errors"][k] or 9) < 0.10 for k in ("ttft_p50", "tpot_p50", "e2e_p50")) for r in runs]
    print(f"target |p50 error| < 10 %: met in {sum(ok)} of {len(ok)} runs; results in {args.out}")


if __name__ == "__main__":
    main()
