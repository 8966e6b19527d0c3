"""Micro-benchmark of RooflineCostModel.stage_seconds, the simulator's hot path (budget ~1.5 us per call).

Replays shapes like a vLLM-style run makes: decode batches of growing context plus occasional prefill chunks,
so token counts repeat (cache hits) while attention sums change every call.
Usage: python benchmarks/bench_cost_model.py
"""
from __future__ import annotations

import time

import numpy as np

from hwmodels.config import ParallelConfig, QuantConfig
from hwmodels.hardware import get_gpu
from hwmodels.models import get_model
from hwmodels.roofline import RooflineCostModel
from hwmodels.shapes import BatchShape


def shapes(n: int, seed: int = 0) -> list[BatchShape]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = BatchShape()
        for _ in range(int(rng.integers(1, 64))):
            s.add(1, int(rng.integers(1, 4000)), decode=True, samples=True)
        if rng.random() < 0.2:
            s.add(int(rng.integers(16, 2048)), 0, decode=False, samples=True)
        out.append(s)
    return out


def main() -> None:
    for name, gpu, par in (("llama-3.1-8b", "h100-sxm", ParallelConfig()),
                           ("llama-3.1-70b", "h100-sxm", ParallelConfig(tp=4, pp=2)),
                           ("mixtral-8x7b", "a100-80gb", ParallelConfig(tp=4, ep=2))):
        cm = RooflineCostModel(get_model(name), get_gpu(gpu), par, QuantConfig())
        batch = shapes(50_000)
        t0 = time.perf_counter()
        for s in batch:
            cm.stage_seconds(s)
        cold = (time.perf_counter() - t0) / len(batch)
        t0 = time.perf_counter()
        for _ in range(4):
            for s in batch:
                cm.stage_seconds(s)
        warm = (time.perf_counter() - t0) / (4 * len(batch))
        print(f"{name:14s} {gpu:10s} tp={par.tp} pp={par.pp} ep={par.ep}: first pass {cold * 1e6:.2f} us/call "
              f"({len(cm._tok_cache)} token counts, {len(cm._logit_cache)} logit counts cached), "
              f"warm {warm * 1e6:.2f} us/call")


if __name__ == "__main__":
    main()
