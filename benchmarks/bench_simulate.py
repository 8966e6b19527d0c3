"""Simulator speed (issue #3): the Azure conversation trace (19,366 requests) on llama-3.1-8b / h100-sxm
with the vllm scheduler, wall time start-up included and µs per simulated forward pass; and 1,000,000
synthetic requests over 16 replicas. Run pinned to one core:

    taskset -c 0 python benchmarks/bench_simulate.py [--trace PATH] [--million]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared" / "traces" / "azure_2023" / "AzureLLMInferenceTrace_conv.csv"


def cli_wall(trace: Path) -> float:
    """Whole `llmsim simulate` process, interpreter start-up and imports included."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "app.cli", "simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm",
                          "--scheduler", "vllm", "--trace", str(trace), "--json"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    s = json.loads(out.stdout)
    print(f"cli: {wall:.2f} s wall for {s['num_requests']} requests ({s['num_finished']} finished)")
    return wall


def in_process(trace: Path) -> None:
    from simulator.config import Config, TraceWorkload
    from simulator.engine import run_engine
    from simulator.simulate import engine_spec, resolve
    from simulator.workload import build_workload

    cfg = Config.model_validate({"model": {"name": "llama-3.1-8b"}, "hardware": {"gpu": "h100-sxm"},
                                 "scheduler": {"kind": "vllm"},
                                 "workload": TraceWorkload(path=str(trace)).model_dump()})
    t0 = time.perf_counter()
    sc = resolve(cfg)
    reqs = build_workload(cfg.workload, 0).to_requests()
    t1 = time.perf_counter()
    raw = run_engine(engine_spec(cfg, sc), reqs)
    t2 = time.perf_counter()
    from simulator.engine import STEP_COLUMNS

    n = len(raw.steps) // len(STEP_COLUMNS)
    print(f"in-process: setup+load {t1 - t0:.3f} s, engine {t2 - t1:.3f} s, {n} steps, "
          f"{(t2 - t1) / n * 1e6:.1f} µs/step, simulated {raw.end_s:.0f} s")


def million() -> None:
    from simulator.config import Config
    from simulator.simulate import simulate

    cfg = Config.model_validate({
        "model": {"name": "llama-3.1-8b"}, "hardware": {"gpu": "h100-sxm"}, "parallel": {"replicas": 16},
        "scheduler": {"kind": "vllm"}, "router": {"kind": "least_outstanding"},
        "workload": {"kind": "synthetic", "num_requests": 1_000_000,
                     # 15 req/s per replica: ~75% of the 19.6 req/s per H100 that `llmsim plan serve`
                     # finds for llama-3.1-8b on Azure-conv-like lengths under p90 TTFT 2 s / TPOT 0.1 s.
                     "arrival": {"process": "poisson", "rate_per_s": 16 * 15.0},
                     "input_len": {"kind": "lognormal", "mean": 600, "sigma": 0.8, "max": 4096},
                     "output_len": {"kind": "lognormal", "mean": 150, "sigma": 0.8, "max": 2048}},
        "simulation": {"record_steps": True}})
    t0 = time.perf_counter()
    res = simulate(cfg)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"1M requests / 16 replicas: {wall:.1f} s wall, {len(res.steps)} steps, "
          f"{wall / max(len(res.steps), 1) * 1e6:.1f} µs/step, peak RSS {rss:.0f} MiB, "
          f"finished {res.summary['num_finished']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--million", action="store_true")
    a = ap.parse_args()
    if a.million:
        million()
    else:
        cli_wall(a.trace)
        in_process(a.trace)
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
