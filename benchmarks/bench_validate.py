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
    python benchmarks/bench_validate.py --jitter OUT/vllm-cpu-0 ...  # p50 errors with / without measured jitter
    python benchmarks/bench_validate.py --oracle OUT/vllm-cpu-0 ...  # p50 errors with the run's own pass error
    python benchmarks/bench_validate.py --timeline OUT/*-cpu-* ...  # pass error by second of run, mean of runs
    python benchmarks/bench_validate.py --summary FILE [NOTE]      # recorded runs whose note has NOTE
    python benchmarks/bench_validate.py --kinds OUT/*-cpu-* ...     # pass error by pass kind, mean of runs
    python benchmarks/bench_validate.py --layout OUT/vllm-cpu-0 ...  # KV layout through the run vs pass error
    python benchmarks/bench_validate.py --gaps OUT/vllm-cpu-0 ...    # loop time between passes, by arrivals
    python benchmarks/bench_validate.py --windows OUT/*-cpu-* ...   # pass error within/between runs; p50s vs it
    python benchmarks/bench_validate.py --residues OUT/*-cpu-* ...  # prompt-pass error by token count mod 8

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


def _steps(folder: Path, flag: str):
    """measured_steps.parquet of a run folder (written by bench_validate / `llmsim validate --out`), with the cost
    model's `predicted_s`; exits with a clear message otherwise."""
    import pandas as pd

    f = folder / "measured_steps.parquet"
    if not f.is_file():
        sys.exit(f"{flag} {folder}: no measured_steps.parquet there (expected a run folder of bench_validate --out "
                 "or llmsim validate --out)")
    m = pd.read_parquet(f)
    if "predicted_s" not in m:
        sys.exit(f"{flag} {f}: no predicted_s column (written before per-pass predictions were recorded)")
    from app.cmd_validate import pass_seconds

    m["d"] = pass_seconds(m)  # with the loop's work after each pass where the run recorded it (cycle_end_s)
    return m


def analyze(folder: Path) -> None:
    """Per-pass residuals of one run's output folder (`measured_steps.parquet` with `predicted_s`): by pass kind
    and decode batch size, the share of decode-only passes right after a pass with prompt tokens, and the
    cost model's error over the run in eighths of its time."""
    import numpy as np
    import pandas as pd

    m = _steps(folder, "--analyze")
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


def _folder_run(folder: Path, flag: str):
    """(config at the run's rate, calibrated cost model without the dry-run terms, the run's record) of one run
    folder SCHED-CLOCK-REPEAT of a bench_validate --out folder."""
    from app.cmd_validate import _calibrated, with_rate

    parts = folder.name.split("-")
    summary = folder.parent / "bench_validate.json"
    if len(parts) != 3 or not summary.is_file() or not (folder / "profile-insitu-cpu.parquet").is_file():
        sys.exit(f"{flag} {folder}: expected a run folder SCHED-CLOCK-REPEAT of a bench_validate --out "
                 "folder (with profile-insitu-cpu.parquet, and bench_validate.json beside it)")
    sched, _, rep = parts
    runs = json.loads(summary.read_text())["runs"]
    run = next((r for r in runs if r["scheduler"] == sched and str(r["repeat"]) == rep), None)
    if run is None:
        sys.exit(f"{flag} {folder}: no run {sched} #{rep} in {summary}")
    data = quick_config(sched)
    data["hardware"] = {"gpu_file": str(folder / "cpu.yaml")}
    data["cost_model"] = {"kind": "profiled", "profile": str(folder / "profile-insitu-cpu.parquet")}
    cfg = with_rate(validate_config(data), run["rate_per_s"])
    _, cost = _calibrated(cfg)
    return cfg, cost, run


def _p50s(cfg, cost) -> "np.ndarray":
    import numpy as np

    from simulator.simulate import simulate
    from simulator.workload import build_workload

    s = simulate(cfg, requests=build_workload(cfg.workload, cfg.simulation.seed).to_requests(), cost_model=cost).summary
    return np.array([s["ttft_s"]["p50"], s["tpot_s"]["p50"], s["e2e_s"]["p50"]])


def sensitivity(folder: Path, seeds: int = 12) -> None:
    """How much the simulator's p50s move under per-pass noise and bias, on one run folder's profile and rate
    (from bench_validate.json beside it): each pass's seconds times exp(x), x an AR(1) series with the sd and
    lag-1 autocorrelation of that run's per-pass log error (measured_steps: predicted_s vs measured), mean 0,
    over `seeds` seeds; then a uniform -1 % / -2 % bias. Cost model without the dry-run terms."""
    import dataclasses

    import numpy as np
    import pandas as pd

    cfg, cost, _ = _folder_run(folder, "--sensitivity")
    m = _steps(folder, "--sensitivity")
    x = np.log(m["predicted_s"] / m["d"]).to_numpy()
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

    ref = _p50s(cfg, cost)
    out = np.array([_p50s(cfg, Noisy(cost, seed)) / ref - 1 for seed in range(seeds)])
    print(f"{folder}: per-pass log error sd {sd:.3f}, lag-1 autocorrelation {rho:.2f}")
    print(f"  noise only, {seeds} seeds: TTFT / TPOT / e2e p50 mean " + " / ".join(f"{v:+.1%}" for v in out.mean(0))
          + ", sd " + " / ".join(f"{v:.1%}" for v in out.std(0))
          + ", range " + " / ".join(f"{a:+.1%}..{b:+.1%}" for a, b in zip(out.min(0), out.max(0))))
    for bias in (-0.01, -0.02):
        e = _p50s(cfg, Noisy(cost, 0, bias=bias, noise=False)) / ref - 1
        print(f"  uniform bias {bias:+.0%}: TTFT / TPOT / e2e p50 " + " / ".join(f"{v:+.1%}" for v in e))


def jitter(folder: Path, seeds: int = 12) -> None:
    """The measured pass-time jitter's effect (simulation.step_jitter from the run's profile, op
    executor_jitter): p50 errors vs the run's measured p50s without jitter and over `seeds` jitter draws
    (the workload fixed). Cost model without the dry-run terms."""
    import numpy as np

    import simulator.engine as engine
    from app.cmd_validate import _with_jitter, step_jitter

    cfg, cost, run = _folder_run(folder, "--jitter")
    j = step_jitter(folder / "profile-insitu-cpu.parquet")
    if j is None:
        sys.exit(f"--jitter {folder}: its profile has no executor_jitter series (a run before this mode existed)")
    meas = np.array([run["measured_ms"][k] for k in ("ttft", "tpot", "e2e")]) / 1e3
    base = _p50s(cfg, cost) / meas - 1
    orig = engine.StepJitter.__init__
    out = []
    try:
        for js in range(seeds):  # other jitter draws on the same workload
            def init(self, sd, rho, seed, replica, js=js):
                orig(self, sd, rho, seed + 1000 * (js + 1), replica)
            engine.StepJitter.__init__ = init
            out.append(_p50s(_with_jitter(cfg, j), cost) / meas - 1)
    finally:
        engine.StepJitter.__init__ = orig
    out = np.array(out)
    print(f"{folder}: jitter log-sd {j['sd']:.2%}, autocorrelation {j['autocorrelation']:.2f}; TTFT / TPOT / e2e p50 "
          "errors without jitter " + " / ".join(f"{v:+.1%}" for v in base) + f", with it (mean of {seeds} draws) "
          + " / ".join(f"{v:+.1%}" for v in out.mean(0)) + ", sd " + " / ".join(f"{v:.1%}" for v in out.std(0)))


def oracle(folder: Path, window_s: float = 1.0) -> None:
    """How much of a run's latency error is pass-time error (a diagnostic; it reads the served run, so it
    is never a calibration): p50 errors with the cost model as calibrated, scaled by the run's own
    measured / predicted pass seconds over the whole run, and scaled per `window_s` window of the run."""
    import inspect
    import textwrap

    import numpy as np
    import pandas as pd

    import simulator.engine as engine

    cfg, cost, run = _folder_run(folder, "--oracle")
    m = _steps(folder, "--oracle")
    d = m["d"]
    whole = float(d.sum() / m["predicted_s"].sum())
    w = (m["start_s"] // window_s).astype(int)
    by_window = (d.groupby(w).sum() / m["predicted_s"].groupby(w).sum()).to_dict()
    now = [0.0]
    src = textwrap.dedent(inspect.getsource(engine.Engine._replica)).replace(
        "t = cost(plan.shape)", "NOW[0] = env.now; t = cost(plan.shape)")
    if "NOW[0]" not in src:
        sys.exit("--oracle: simulator.engine.Engine._replica changed; update this diagnostic")
    scope = {**vars(engine), "NOW": now}
    exec(compile(src, "oracle", "exec"), scope)

    class Scaled:
        def __init__(self, per_window: bool):
            self.per_window = per_window

        def stage_seconds(self, shape):
            k = by_window.get(int(now[0] // window_s), whole) if self.per_window else whole
            return cost.stage_seconds(shape) * k

        def __getattr__(self, name):
            return getattr(cost, name)

    meas = np.array([run["measured_ms"][k] for k in ("ttft", "tpot", "e2e")]) / 1e3
    orig = engine.Engine._replica
    engine.Engine._replica = scope["_replica"]
    try:
        rows = [("as calibrated", _p50s(cfg, cost)), (f"x {whole:.3f} (whole run)", _p50s(cfg, Scaled(False))),
                (f"per {window_s:g} s window", _p50s(cfg, Scaled(True)))]
    finally:
        engine.Engine._replica = orig
    print(f"{folder}: TTFT / TPOT / e2e p50 errors, " + "; ".join(
        f"{name} " + " / ".join(f"{v:+.1%}" for v in p / meas - 1) for name, p in rows))


def timeline(folders: list[Path], window_s: float = 1.0) -> None:
    """The cost model's error on served passes per `window_s` of run time, averaged over run folders (the
    quick preset serves the same requests in every run, so a common shape in time is the workload's or the
    run's state, not chance), per scheduler."""
    import pandas as pd

    cols: dict[str, dict[str, pd.Series]] = {}
    for f in folders:
        m = _steps(f, "--timeline")
        w = (m["start_s"] // window_s).astype(int)
        err = m["predicted_s"].groupby(w).sum() / m["d"].groupby(w).sum() - 1
        cols.setdefault(f.name.split("-")[0], {})[str(f)] = err
    for sched, c in sorted(cols.items()):
        d = pd.DataFrame(c)
        print(f"{sched}, {d.shape[1]} runs, error by {window_s:g} s of run time (mean over runs): "
              + " ".join(f"{int(k * window_s)}s {v:+.1%}" for k, v in d.mean(axis=1).items()))


def windows(folders: list[Path]) -> None:
    """How the cost model's error on served pass cycles varies within and between runs, and how latency p50
    errors follow it. Per run folder: the error over the whole run and over 1/2, 1/4, 1/8 of its time; runs
    are grouped by their parent folder (one bench invocation, one code version) and each group's mean is taken
    out before the spreads. Prints the spread (sd) of the error over whole runs and over windows, the lag
    correlation of eighths (how long the machine's speed stays put), and the least-squares fit of each p50
    error (TTFT, TPOT, e2e; from the run's measured and simulated request frames) on the run's pass error."""
    import numpy as np
    import pandas as pd

    from app.cmd_validate import pass_error_by_part
    from simulator.metrics import request_latencies

    rows = []
    for f in folders:
        m = _steps(f, "--windows")
        r = {"group": str(f.parent), "run": str(f), "all": m["predicted_s"].sum() / m["d"].sum() - 1}
        for k in (2, 4, 8):
            for q, x in enumerate(pass_error_by_part(m, m["predicted_s"].to_numpy(), k)):
                r[f"{k}_{q}"] = np.nan if x is None else x
        try:
            lat = [request_latencies(pd.read_parquet(f / n)) for n in ("measured_requests.parquet",
                                                                      "simulated_requests.parquet")]
            for key in ("ttft", "tpot", "e2e"):
                r[key] = float(np.median(lat[1][f"{key}_s"]) / np.median(lat[0][f"{key}_s"]) - 1)
        except (OSError, KeyError, ValueError):
            pass
        rows.append(r)
    d = pd.DataFrame(rows)
    num = d.drop(columns=["group", "run"])
    dev = num - num.groupby(d["group"]).transform("mean")
    print(f"{len(d)} runs in {d['group'].nunique()} groups; pass-cycle error over the whole run: mean "
          f"{num['all'].mean():+.2%}, sd {num['all'].std():.2%} (sd within groups {dev['all'].std():.2%})")
    for k in (2, 4, 8):
        v = np.concatenate([dev[f"{k}_{q}"].to_numpy() for q in range(k)])
        print(f"  sd within groups over 1/{k} of a run: {np.nanstd(v):.2%}")
    rng = num[[f"4_{q}" for q in range(4)]].max(axis=1) - num[[f"4_{q}" for q in range(4)]].min(axis=1)
    from app.cmd_validate import QUARTER_RANGE_NOTE

    print(f"  range of the error over a run's quarters: median {rng.median():.2%}, over {QUARTER_RANGE_NOTE:.0%} "
          f"(validate's note) in {(rng > QUARTER_RANGE_NOTE).sum()} of {len(rng)} runs")
    e = np.array([dev[f"8_{q}"].to_numpy() for q in range(8)]).T
    print("  lag correlation of eighths: " + " ".join(
        f"{lag}: {np.corrcoef(e[:, :-lag].ravel(), e[:, lag:].ravel())[0, 1]:.2f}" for lag in range(1, 8)))
    for key in ("ttft", "tpot", "e2e"):
        if key in num and num[key].notna().sum() > 2:
            ok = num[key].notna()
            slope, icpt = np.polyfit(num["all"][ok], num[key][ok], 1)
            corr = np.corrcoef(num["all"][ok], num[key][ok])[0, 1]
            print(f"  {key} p50 error = {slope:.2f} x pass error {icpt:+.2%} (correlation {corr:.2f}, "
                  f"{int(ok.sum())} runs)")


def summary(path: Path, note: str = "") -> None:
    """Recorded runs (a --record file) whose note contains `note`: per scheduler, how many met the target and
    the mean / range of each p50 error and of the cost model's error on the served passes."""
    import numpy as np

    if not path.is_file():
        sys.exit(f"--summary {path}: no such file (a bench_validate --record file)")
    by: dict[str, list[dict]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"--summary {path}:{i}: not JSON ({e.msg})")
        if note in rec.get("note", ""):
            for r in rec.get("runs", []):
                by.setdefault(r["scheduler"], []).append(r)
    if not by:
        sys.exit(f"--summary {path}: no record whose note contains {note!r}")
    keys = ("ttft_p50", "tpot_p50", "e2e_p50", "ttft_p90", "tpot_p90", "e2e_p90")
    for sched, runs in sorted(by.items()):
        met = sum(all(abs(r["errors"][k]) < 0.10 for k in keys[:3]) for r in runs)
        parts = []
        for k in keys:
            v = np.array([r["errors"][k] for r in runs])
            parts.append(f"{k} {v.mean():+.1%} ({v.min():+.1%}..{v.max():+.1%})")
        p = np.array([r["cost_model_on_measured_passes"] for r in runs])
        print(f"{sched}: {len(runs)} runs, {met} within 10 % on all p50s; mean (range): " + ", ".join(parts)
              + f"; passes {p.mean():+.1%} ({p.min():+.1%}..{p.max():+.1%})")


def kinds(folders: list[Path]) -> None:
    """The cost model's error on served passes by pass kind (prompt only / prompt and decode rows / decode
    right after a pass with prompt tokens / other decode) and decode batch size, as mean and sd over run
    folders, with the kind's share of the run's pass time, per scheduler."""
    import numpy as np
    import pandas as pd

    rows = []
    for f in folders:
        m = _steps(f, "--kinds")
        pf = (m["prefill_tokens"] > 0).to_numpy()
        after = np.r_[False, pf[:-1]]
        m["kind"] = np.where(pf, np.where(m["decode_tokens"] > 0, "prompt+decode", "prompt"),
                             np.where(after, "decode after prompt", "decode"))
        m["bin"] = pd.cut(m["decode_tokens"], [-1, 0, 1, 2, 4, 8, 16, 64]).astype(str)
        total = m["d"].sum()
        for (k, b), x in m.groupby(["kind", "bin"]):
            rows.append((f.name.split("-")[0], k, b, x["predicted_s"].sum() / x["d"].sum() - 1, x["d"].sum() / total))
    d = pd.DataFrame(rows, columns=["scheduler", "kind", "decodes", "error", "share"])
    out = d.groupby(["scheduler", "kind", "decodes"]).agg(error=("error", "mean"), sd=("error", "std"),
                                                         share=("share", "mean"), runs=("error", "size"))
    print(out.to_string(formatters={"error": "{:+.1%}".format, "sd": "{:.1%}".format, "share": "{:.1%}".format}))


def residues(folders: list[Path]) -> None:
    """The cost model's error on served passes with prompt tokens by their token count mod 8 (GEMM time is a
    sawtooth in m: `hwmodels.profiled.gemm_alignment`), mean and sd over run folders, per scheduler."""
    import numpy as np
    import pandas as pd

    rows = []
    for f in folders:
        m = _steps(f, "--residues")
        pf = (m["prefill_tokens"] > 0).to_numpy()
        t = m["num_tokens"].to_numpy()
        for r in range(8):
            k = pf & (t % 8 == r)
            if k.any():
                x = m[k]
                rows.append((f.name.split("-")[0], r, int(k.sum()), x["predicted_s"].sum() / x["d"].sum() - 1,
                             float((x["predicted_s"] - x["d"]).mean())))
    d = pd.DataFrame(rows, columns=["scheduler", "mod8", "passes", "error", "error_us"])
    d["error_us"] *= 1e6
    out = d.groupby(["scheduler", "mod8"]).agg(passes=("passes", "mean"), error=("error", "mean"),
                                               sd=("error", "std"), error_us=("error_us", "mean"),
                                               runs=("error", "size"))
    print(out.to_string(formatters={"error": "{:+.2%}".format, "sd": "{:.2%}".format, "passes": "{:.1f}".format,
                                    "error_us": "{:+.0f}".format}))


def gaps(folder: Path) -> None:
    """The serving loop's time between passes (end of a pass to the start of the next, when the executor did
    not go idle), by how many requests arrived during the pass (they are admitted in that gap), and the cost
    model's error on passes with and without it: end − start vs the cycle to the end of the loop's work after
    the pass (cycle_end_s; runs before it was recorded: the next pass's start, idle gaps over 2 ms left out)."""
    import numpy as np
    import pandas as pd

    m = _steps(folder, "--gaps")
    req = folder / "measured_requests.parquet"
    if not req.is_file():
        sys.exit(f"--gaps {folder}: no measured_requests.parquet there")
    r = pd.read_parquet(req)
    end = m["cycle_end_s"] if "cycle_end_s" in m else m["start_s"].shift(-1)
    g = end - m["end_s"]
    busy = g.notna() & (g < 0.002)
    arr = np.sort(r["arrival_s"].to_numpy())
    n_arr = np.searchsorted(arr, m["end_s"]) - np.searchsorted(arr, m["start_s"])
    pas = m["end_s"] - m["start_s"]
    by = pd.DataFrame({"arrivals": np.minimum(n_arr, 3), "gap_us": g * 1e6})[busy]
    print(f"{folder}: {int(busy.sum())} passes followed by loop work ({len(m) - int(busy.sum())} by an idle "
          f"wait), mean {g[busy].mean() * 1e6:.0f} us (median {g[busy].median() * 1e6:.0f} us), "
          f"{g[busy].sum() / pas[busy].sum():.2%} of their pass time")
    print("  by arrivals during the pass (3: 3 or more): " + ", ".join(
        f"{k}: n={len(x)} median {x['gap_us'].median():.0f} us" for k, x in by.groupby("arrivals")))
    p = m["predicted_s"][busy]
    print(f"  cost model vs end − start {p.sum() / pas[busy].sum() - 1:+.2%}, vs the cycle "
          f"{p.sum() / (pas[busy] + g[busy]).sum() - 1:+.2%}")


def layout(folder: Path, per_break_s: float = 6e-6) -> None:
    """Replays a run's policy decisions with its measured pass times (the real scheduler and KV manager, a
    null forward pass, a virtual clock that returns each measured pass in turn; checked to reproduce every
    pass), and reports per eighth of the run the mean run of consecutive KV blocks of the decode rows and the
    cost model's error, then the error with a per-pass term `per_break_s` x (runs - the run's mean rate x
    blocks): what a cost model that saw each pass's own layout would change. per_break_s: ~6 us a run for
    small-llama's 4 layers (`bench_executor_timing.py layout`: 4 x 128 decodes 0.78 ms scattered vs 0.58 ms
    contiguous over 32 breaks, 8 x 256 2.36 vs 1.64 ms over 128)."""
    import numpy as np
    import pandas as pd

    from profiler.executor import LlamaDims, LlamaModel
    from profiler.executor.layout import _NoCache, run_lengths
    from profiler.executor.server import Executor, VirtualClock, make_core
    from simulator.workload import build_workload

    cfg, _, _ = _folder_run(folder, "--layout")
    m = _steps(folder, "--layout")
    st, en = m["start_s"].to_numpy(), m["end_s"].to_numpy()
    gap = np.r_[st[1:] - en[:-1], 0.0]
    dur = iter(en - st + np.where(gap < 1e-3, gap, np.median(gap)))  # pass + loop, not idle jumps
    stats = []

    class Replay(Executor):
        def _forward(self, ids, seqs, sample_rows):
            bs = self.core.kv.block_size
            nb = nr = 0
            for n, ctx, blocks in seqs:
                if n == 1 and ctx > 0:
                    r = run_lengths(blocks[: -(-(ctx + 1) // bs)])
                    nb, nr = nb + sum(r), nr + len(r)
            stats.append((len(seqs), sum(n for n, _, _ in seqs), nb, nr))
            return [0] * len(sample_rows)

    from simulator.simulate import resolve

    sc = resolve(cfg)
    nblocks = sc.num_kv_blocks
    core = make_core(cfg.scheduler, cfg.kv_cache, nblocks, sc.max_model_len)
    Replay(LlamaModel(LlamaDims(), seed=0), core, clock=VirtualClock(lambda s: next(dur)),
           cache=_NoCache(nblocks, cfg.kv_cache.block_size)).serve(
        build_workload(cfg.workload, cfg.simulation.seed).to_requests())
    s = pd.DataFrame(stats, columns=["b", "tok", "nb", "nr"])
    if len(s) != len(m) or (s["b"].to_numpy() != m["batch_size"].to_numpy()).any() or (
            s["tok"].to_numpy() != m["num_tokens"].to_numpy()).any():
        sys.exit(f"--layout {folder}: the replay did not reproduce the served passes")
    rate = s["nr"].sum() / s["nb"].sum()
    m["run"] = np.where(s["nr"] > 0, s["nb"] / s["nr"].clip(lower=1), np.nan)
    m["adj"] = m["predicted_s"] + per_break_s * (s["nr"] - rate * s["nb"])
    g = m.groupby(pd.qcut(m["start_s"], 8, labels=False))
    print(f"{folder}: replay reproduced all {len(m)} passes; by eighth of the run:")
    print("  mean KV run (decode rows) " + " ".join(f"{x:.2f}" for x in g["run"].mean()))
    print("  error                     " + " ".join(f"{x['predicted_s'].sum() / x['d'].sum() - 1:+.1%}" for _, x in g))
    print(f"  with {per_break_s * 1e6:g} us a run    " + " ".join(f"{x['adj'].sum() / x['d'].sum() - 1:+.1%}" for _, x in g))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--summary":
        summary(Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
        return
    modes = {"--sensitivity": sensitivity, "--jitter": jitter, "--oracle": oracle, "--layout": layout,
             "--gaps": gaps}
    if len(sys.argv) > 2 and sys.argv[1] in ("--timeline", "--kinds", "--windows", "--residues"):
        {"--timeline": timeline, "--kinds": kinds, "--windows": windows,
         "--residues": residues}[sys.argv[1]]([Path(d) for d in sys.argv[2:]])
        return
    if len(sys.argv) > 2 and sys.argv[1] in modes:
        for d in sys.argv[2:]:
            modes[sys.argv[1]](Path(d))
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
                         "profile_drift": res.profile_drift, "profile_drift_during": res.profile_drift_during,
                         "pass_error_by_quarter": res.as_json()["pass_error_by_quarter"],
                         "load_avg_after": list(os.getloadavg())})
            r = runs[-1]
            print(f"{sched:8s} #{rep} " + " ".join(f"{k} {r['errors'][k]:+.1%}" for k in KEYS
                                                   if r["errors"][k] is not None)
                  + f" | passes {r['cost_model_on_measured_passes']:+.1%}"
                  + (f" | drift {res.profile_drift:+.1%}" if res.profile_drift is not None else "")
                  + (f" (during {res.profile_drift_during:+.1%})" if res.profile_drift_during is not None else "")
                  + f" | load {before[0]:.1f}->"
                    f"{r['load_avg_after'][0]:.1f} | {r['run_s']:.0f} s", flush=True)
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host_cores": os.cpu_count(),
              "load_avg_start": list(load0), "preset": "validate --quick (small-llama, in-situ profile before, during and after serving)",
              "runs": runs}
    (args.out / "bench_validate.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.record:
        with args.record.open("a") as f:
            f.write(json.dumps(record) + "\n")
    ok = [all(abs(r["errors"][k] or 9) < 0.10 for k in ("ttft_p50", "tpot_p50", "e2e_p50")) for r in runs]
    print(f"target |p50 error| < 10 %: met in {sum(ok)} of {len(ok)} runs; results in {args.out}")


if __name__ == "__main__":
    main()
