"""Wall time of one decode step through the policy layer: plan + next_plan + complete (no SimPy).

Usage: taskset -c 0 python benchmarks/bench_policies.py [--steps N] [--repeats R]
Prints µs per step (best of R runs) for each scheduler × KV manager at batch 8, 32 and 128 (all requests decoding,
none finishing during the timed steps; one block allocation per request every block_size steps).
"""
from __future__ import annotations

import argparse
import time

from policies.config import (ContiguousKVConfig, OrcaSchedulerConfig, PagedKVConfig, SarathiSchedulerConfig,
                             SplitFuseSchedulerConfig, StaticSchedulerConfig, VLLMSchedulerConfig)
from policies.core import ReplicaCore
from policies.kv import make_kv_manager
from policies.request import Request
from policies.schedulers import make_scheduler

BIG = 1 << 20  # token budget large enough to prefill the whole batch (static/orca/vllm take whole prompts)
SCHEDULERS = [StaticSchedulerConfig(max_batch_size=256, max_num_batched_tokens=BIG),
              OrcaSchedulerConfig(max_num_batched_tokens=BIG), VLLMSchedulerConfig(max_num_batched_tokens=BIG),
              SarathiSchedulerConfig(), SplitFuseSchedulerConfig()]
KVS = [PagedKVConfig(), PagedKVConfig(prefix_caching=True), ContiguousKVConfig(reserve="oracle")]


def bench(sched, kv_cfg, batch: int, steps: int, prompt_len: int = 512) -> float:
    """Seconds per decode step with `batch` running requests."""
    max_model_len = 32768
    output_len = 2 * steps + 64
    num_blocks = batch * (-(-(prompt_len + batch + output_len) // kv_cfg.block_size))
    kv = make_kv_manager(kv_cfg, num_blocks * 102 // 100 + 1, max_model_len)  # + vLLM's 1% watermark
    core = ReplicaCore(make_scheduler(sched), kv, max_model_len)
    core.itl_s = []  # as the simulator's engine does
    for i in range(batch):
        core.add(Request(i, 0.0, prompt_len + i, output_len))
    t = 0.0
    while core.waiting or any(r.num_generated == 0 for r in core.running):  # prefill everything first
        t += 1.0
        core.complete(core.next_plan(t), t)
    next_plan, complete = core.next_plan, core.complete
    before = [r.num_generated for r in core.running]
    t0 = time.perf_counter()
    for _ in range(steps):
        t += 1.0
        complete(next_plan(t), t)
    dt = (time.perf_counter() - t0) / steps
    assert len(core.running) == batch, "batch did not fit"
    assert [r.num_generated for r in core.running] == [g + steps for g in before], "not a pure decode benchmark"
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    args = ap.parse_args()
    print(f"{'scheduler':10s} {'kv':22s} " + " ".join(f"{'b=' + str(b):>9s}" for b in (8, 32, 128)) + "  (µs/step)")
    for s in SCHEDULERS:
        for k in KVS:
            name = k.kind + ("+prefix" if getattr(k, "prefix_caching", False) else "") + (
                f"({k.reserve})" if k.kind == "contiguous" else "")
            # The minimum is the run least disturbed by other processes on a shared machine.
            us = [min(bench(s, k, b, args.steps) for _ in range(args.repeats)) * 1e6 for b in (8, 32, 128)]
            print(f"{s.kind:10s} {name:22s} " + " ".join(f"{u:9.2f}" for u in us))


if __name__ == "__main__":
    main()
