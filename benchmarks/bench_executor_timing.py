"""What moves the executor's pass times on this CPU: the measurements behind `llmsim validate`'s profiling choices.

    python benchmarks/bench_executor_timing.py layout        # decode attention vs KV block run length
    python benchmarks/bench_executor_timing.py drift [SECS]  # one fixed pass in 10 s windows (machine drift)
    python benchmarks/bench_executor_timing.py predecessor   # a decode pass after itself / a prompt / Python work
    python benchmarks/bench_executor_timing.py models [SECS] # pass-time spread: examples/tiny-llama vs small-llama

Every number is thread CPU time of one torch thread pinned to one core, on synthetic passes of the
executor (`profiler.executor`), with the allocator settings `llmsim validate` uses. Results as of
2026-11-25 on the 2-core VM (AMD EPYC, 1 MB L2 per core, 32 MB shared L3), small-llama (512 hidden):

- layout: 4 decodes x 128 context, attention of the pass: 1.30 ms with every block scattered, 1.07 / 0.96
  / 0.91 / 0.79 ms with runs of 2 / 3 / 6 / all consecutive blocks. 8 x 256: 4.06 ms scattered, 2.45 ms
  contiguous.
- drift: 4 decodes x 128 in 10 s windows over 240 s: mean 5.65 ms, cv 1.5 %, range -3.4 %..+3.1 %, a 128-token
  prompt the same (cv 1.9 %), moving together.
- predecessor: one decode after itself 2.59 ms, after a 160-token prompt pass 3.50 ms, after 8 decodes
  2.94 ms, after ~2 ms of Python dict work 2.60 ms (4 decodes: 5.57 / 6.15 / 5.66 / 5.68 ms). Without the
  fixed malloc thresholds the Python work cost the next decode +18 % (3.02 ms).
- models: 3 s windows over 60 s, 4 decodes x 128: tiny-llama cv 2.7 % (range -4.5..+6.3 %), small-llama
  cv 1.0 % (-1.7..+2.2 %).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from profiler.executor import LlamaDims, LlamaModel  # noqa: E402
from profiler.executor.attention import PagedKVCache  # noqa: E402
from profiler.executor.insitu import _pass_fn, _time_pass  # noqa: E402
from profiler.executor.layout import block_order  # noqa: E402
from profiler.executor.server import steady_allocator  # noqa: E402

SMALL = LlamaDims(hidden_size=512, intermediate_size=1376, num_layers=4, num_heads=8, num_kv_heads=4)  # small-llama
TINY = LlamaDims()  # examples/tiny-llama
CLOCK = time.thread_time
NUM_BLOCKS = 2200


def _setup(dims: LlamaDims):
    model = LlamaModel(dims, seed=0, dtype=torch.float32)
    cache = PagedKVCache(dims.num_layers, NUM_BLOCKS, 16, dims.num_kv_heads, dims.head_dim, model.dtype, model.device)
    return model, cache


def layout() -> None:
    model, cache = _setup(SMALL)
    for seqs in ([(1, 128)] * 4, [(1, 256)] * 8):
        for run in (None, 2, 3, 4, 6, 8, 16, NUM_BLOCKS):
            perm = block_order(NUM_BLOCKS, [run] if run else None, seed=0)
            reps = _time_pass(model, cache, seqs, 16, perm, 0.3, 10, 200, CLOCK)
            att = np.median([sum(s for op, _, s in rec if op == "attention") for _, _, rec in reps])
            label = "scattered" if run is None else ("contiguous" if run == NUM_BLOCKS else f"runs of {run}")
            print(f"{len(seqs)} decodes x {seqs[0][1]}: {label:12s} attention {att * 1e3:.3f} ms", flush=True)


def drift(seconds: float = 240.0, window_s: float = 10.0, models=(("small-llama", SMALL),)) -> None:
    fns = {}
    for name, dims in models:
        model, cache = _setup(dims)
        perm = block_order(NUM_BLOCKS, [3], 0).tolist()
        fns[name] = (_pass_fn(model, cache, [(1, 128)] * 4, 16, perm, CLOCK),
                     _pass_fn(model, cache, [(128, 0)], 16, perm[600:], CLOCK))
    t0, w = time.perf_counter(), 0.0
    buf = {k: ([], []) for k in fns}
    series = {k: ([], []) for k in fns}
    while time.perf_counter() - t0 < seconds:
        for k, (dec, pre) in fns.items():
            for _ in range(3):
                buf[k][0].append(dec())
            buf[k][1].append(pre())
        if time.perf_counter() - t0 > w + window_s:
            w += window_s
            for k in fns:
                series[k][0].append(np.median(buf[k][0]))
                series[k][1].append(np.median(buf[k][1]))
                buf[k] = ([], [])
    for k in fns:
        for i, name in enumerate(("4 decodes x 128", "128-token prompt")):
            s = np.array(series[k][i])
            print(f"{k} {name}: mean {s.mean() * 1e3:.3f} ms, cv {s.std() / s.mean():.1%}, range "
                  f"{s.min() / s.mean() - 1:+.1%}..{s.max() / s.mean() - 1:+.1%} over {s.size} windows of "
                  f"{window_s:.0f} s")
            print("   " + " ".join(f"{x * 1e3:.2f}" for x in s))


def predecessor() -> None:
    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    dec1 = _pass_fn(model, cache, [(1, 128)], 16, perm, CLOCK)
    dec4 = _pass_fn(model, cache, [(1, 128)] * 4, 16, perm, CLOCK)
    prompt = _pass_fn(model, cache, [(160, 0)], 16, perm[1000:], CLOCK)
    dec8 = _pass_fn(model, cache, [(1, 200)] * 8, 16, perm[1200:], CLOCK)

    def python_work():
        x = {}
        for i in range(20000):
            x[i] = i * 2
        return len(x)

    for name, before in (("itself", None), ("a 160-token prompt", prompt), ("8 decodes", dec8),
                         ("Python work", python_work)):
        for target, fn in (("1 decode", dec1), ("4 decodes", dec4)):
            ts = []
            for _ in range(60):
                if before:
                    before()
                ts.append(fn())
            print(f"{target} after {name}: {np.median(ts[5:]) * 1e3:.3f} ms", flush=True)


def main() -> None:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    steady_allocator()
    what = sys.argv[1] if len(sys.argv) > 1 else "layout"
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else None
    if what == "layout":
        layout()
    elif what == "drift":
        drift(secs or 240.0)
    elif what == "predecessor":
        predecessor()
    elif what == "models":
        drift(secs or 60.0, 3.0, (("tiny-llama", TINY), ("small-llama", SMALL)))
    else:
        sys.exit(f"unknown measurement {what!r}: layout | drift | predecessor | models")


if __name__ == "__main__":
    main()
