"""Hot-path speed of ProfiledCostModel.stage_seconds: µs per call, cached and uncached shapes.

Uses a synthetic profile table of llama-3.1-8b shapes (noiseless roofline timings, so no device is
needed) and the decode/mixed batch shapes a serving simulation produces.
Usage: python benchmarks/bench_profile_cost_speed.py
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from hwmodels.config import ParallelConfig, QuantConfig
from hwmodels.hardware import get_gpu
from hwmodels.models import get_model
from hwmodels.profiled import (ProfiledCostModel, attention_work, causal_pairs, elementwise_work, gemm_work,
                               op_shapes)
from hwmodels.shapes import BatchShape


def synthetic_table(path: Path, model, dtype: str = "bf16") -> None:
    from profiler.table import append_rows, row

    sh = op_shapes(model, 1)
    gpu = get_gpu("h100-sxm")
    peak, bw = gpu.peak_flops(dtype) * 0.7, gpu.hbm_bytes_per_s * 0.8

    def t(fl, by):
        return 5e-6 + max(fl / peak, by / bw)

    rows = []
    for name, (k, n) in sh.gemms.items():
        for m in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
            fl, by = gemm_work(m, n, k, 2)
            rows.append(row("synthetic", "gemm", "x", dtype, t(fl, by), t(fl, by), t(fl, by), 1, fl, by, name,
                            m=m, n=n, k=k))
    for tok in (1, 4, 16, 64, 256, 1024, 4096, 8192):
        for op, w in (("rmsnorm", sh.hidden), ("swiglu", sh.ffn_local)):
            fl, by = elementwise_work(op, tok, w, 2)
            rows.append(row("synthetic", op, "x", dtype, t(fl, by), t(fl, by), t(fl, by), 1, fl, by,
                            num_tokens=tok, hidden=w))
    heads = dict(num_heads=sh.heads, num_kv_heads=sh.kv_heads, head_dim=sh.head_dim)
    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for c in (128, 256, 512, 1024, 2048, 4096, 8192):
            fl, by = attention_work(b * c, b, b * c, sh.heads, sh.kv_heads, sh.head_dim, 2)
            rows.append(row("synthetic", "attention_decode", "x", dtype, t(fl, by), t(fl, by), t(fl, by), 1, fl,
                            by, num_seqs=b, num_tokens=b, context_len=c, block_size=16, **heads))
    for b in (1, 2, 4, 8):
        for length in (64, 128, 256, 512, 1024, 2048, 4096):
            fl, by = attention_work(b * causal_pairs(length, length), b * length, b * length, sh.heads, sh.kv_heads,
                                    sh.head_dim, 2)
            rows.append(row("synthetic", "attention_prefill", "x", dtype, t(fl, by), t(fl, by), t(fl, by), 1, fl,
                            by, num_seqs=b, num_tokens=b * length, **heads))
    append_rows(path, rows, {"device": "synthetic"})


def per_call_us(cm, shapes) -> float:
    t0 = time.perf_counter()
    for s in shapes:
        cm.stage_seconds(s)
    return (time.perf_counter() - t0) / len(shapes) * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    model = get_model("llama-3.1-8b")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.parquet"
        synthetic_table(path, model)
        cm = ProfiledCostModel(path, model, get_gpu("h100-sxm"), ParallelConfig(), QuantConfig(dtype="bf16"))
        decode = [BatchShape.from_seqs([(1, int(c)) for c in rng.integers(100, 4000, size=int(b))])
                  for b in rng.integers(1, 200, size=20000)]
        mixed = [BatchShape.from_seqs([(int(n), 0)] + [(1, int(c)) for c in rng.integers(100, 4000, size=int(b))])
                 for n, b in zip(rng.integers(16, 512, size=5000), rng.integers(1, 100, size=5000))]
        for s in decode + mixed:  # token part (cached per token count) warm, as in a long simulation
            cm.stage_seconds(s)
        cm._attn_cache.clear()
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"decode, attention uncached: {per_call_us(cm, decode):.2f} us/call")
        print(f"decode, cached:             {per_call_us(cm, decode):.2f} us/call")
        cm._attn_cache.clear()
        print(f"mixed, attention uncached:  {per_call_us(cm, mixed):.2f} us/call")
        srcs = {}
        for s in decode[:2000] + mixed[:2000]:
            for name, _, src in cm.attention_parts(s):
                srcs[(name, src)] = srcs.get((name, src), 0) + 1
        print("attention sources:", dict(sorted(srcs.items())))


if __name__ == "__main__":
    main()
