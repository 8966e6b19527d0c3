"""Timing one callable: `triton.testing.do_bench` on CUDA, a warmed-up wall-clock median on CPU.

Both return per-call seconds as (median, p10, p90, num_samples). On CUDA do_bench flushes L2
between calls and times with CUDA events (Triton docs, `triton.testing.do_bench`); on CPU each
sample is one `time.perf_counter` interval around one call, after warm-up calls.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True, slots=True)
class Timing:
    median_s: float
    p10_s: float
    p90_s: float
    num_samples: int


def bench(fn: Callable[[], object], device: str, min_time_s: float = 0.05, warmup: int = 2,
          max_samples: int = 50, min_samples: int = 5) -> Timing:
    """Per-call seconds of `fn()` on `device` ("cpu" or "cuda")."""
    if device == "cuda":
        return _bench_cuda(fn, min_time_s)
    return summarize(cpu_samples(fn, min_time_s, warmup, max_samples, min_samples))


def cpu_samples(fn: Callable[[], object], min_time_s: float = 0.05, warmup: int = 2, max_samples: int = 50,
                min_samples: int = 5) -> list[float]:
    """Wall-clock seconds of single calls after `warmup` calls: at least min_samples, until min_time_s."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < min_samples or (spent < min_time_s and len(samples) < max_samples):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        samples.append(dt)
        spent += dt
    return samples


def _bench_cuda(fn: Callable[[], object], min_time_s: float) -> Timing:
    import triton.testing

    ms = triton.testing.do_bench(fn, warmup=max(1, int(min_time_s * 250)), rep=max(5, int(min_time_s * 1000)),
                                 return_mode="all")
    return summarize([m / 1e3 for m in ms])


def summarize(samples_s: list[float]) -> Timing:
    a = np.asarray(samples_s, dtype=float)
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return Timing(float(med), float(p10), float(p90), int(a.size))


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
