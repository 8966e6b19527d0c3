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
    python benchmarks/bench_validate.py --sensitivity OUT/vllm-cpu-0 ...  # p50s under per-pass noise / bias

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


def sensitivity(folder: Path, seeds: int = 12) -> None:
    """How much the simulator's p50s move under per-pass noise and bias, on one run folder's profile and rate
    (from bench_validate.json beside it): each pass's seconds times exp(x), x an AR(1) series with the sd and
    lag-1 autocorrelation of that run's per-pass log error (measured_steps: predicted_s vs measured), mean 0,
    over `seeds` seeds; then a uniform -1 % / -2 % bias."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from app.cmd_validate import _calibrated, with_rate
    from simulator.simulate import simulate
    from simulator.workload import build_workload

    parts = folder.name.split("-")
    summary = folder.parent / "bench_validate.json"
    if len(parts) != 3 or not summary.is_file() or not (folder / "profile-insitu-cpu.parquet").is_file():
        sys.exit(f"--sensitivity {folder}: expected a run folder SCHED-CLOCK-REPEAT of a bench_validate --out "
                 "folder (with profile-insitu-cpu.parquet, and bench_validate.json beside it)")
    sched, _, rep = parts
    runs = json.loads(summary.read_text())["runs"]
    run = next((r for r in runs if r["scheduler"] == sched and str(r["repeat"]) == rep), None)
    if run is None:
        sys.exit(f"--sensitivity {folder}: no run {sched} #{rep} in {summary}")
    data = quick_config(sched)
    data["hardware"] = {"gpu_file": str(folder / "cpu.yaml")}
    data["cost_model"] = {"kind": "profiled", "profile": str(folder / "profile-insitu-cpu.parquet")}
    cfg = with_rate(validate_config(data), run["rate_per_s"])
    _, cost = _calibrated(cfg)
    m = pd.read_parquet(folder / "measured_steps.parquet")
    x = np.log(m["predicted_s"] / (m["end_s"] - m["start_s"])).to_numpy()
    sd, rho = float(np.std(x)), float(np.corrcoef(x[:-1], x[1:])[0, 1])

    class Noisy:
        def __init__(self, base, seed, bias=0.0, noise=True):
            self.base, self.rng, self.x, self.bias, self.noise = base, np.random.default_rng(seed), 0.0, bias, noise

        def stage_seconds(self, shape):
            if self.noise:
                self.x = rho * self.x + np.sqrt(1 - rho ** 2) * self.rng.normal(0.0, sd)
            return self.base.stage_seconds(shape) * np.exp(self.x + self.bias)

        def step_cost(self, shape):
            c = self.base.step_cost(shape)
            k = self.stage_seconds(shape) / c.stage_s
            return dataclasses.replace(c, total_s=c.total_s * k, stage_s=c.stage_s * k)

        def __getattr__(self, name):
            return getattr(self.base, name)

    def p50s(cm):
        s = simulate(cfg, requests=build_workload(cfg.workload, cfg.simulation.seed).to_requests(), cost_model=cm).summary
        return np.array([s["ttft_s"]["p50"], s["tpot_s"]["p50"], s["e2e_s"]["p50"]])

    ref = p50s(cost)
    out = np.array([p50s(Noisy(cost, seed)) / ref - 1 for seed in range(seeds)])
    print(f"{folder}: per-pass log error sd {sd:.3f}, lag-1 autocorrelation {rho:.2f}")
    print(f"  noise only, {seeds} seeds: TTFT / TPOT / e2e p50 sd " + " / ".join(f"{v:.1%}" for v in out.std(0))
          + ", range " + " / ".join(f"{a:+.1%}..{b:+.1%}" for a, b in zip(out.min(0), out.max(0))))
    for bias in (-0.01, -0.02):
        e = p50s(Noisy(cost, 0, bias=bias, noise=False)) / ref - 1
        print(f"  uniform bias {bias:+.0%}: TTFT / TPOT / e2e p50 " + " / ".join(f"{v:+.1%}" for v in e))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--sensitivity":
        for d in sys.argv[2:]:
            sensitivity(Path(d))
        return
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
