"""In-situ op profiling: every kernel of the executor timed where it runs, inside real forward passes.

A kernel timed in a tight loop (`profiler.sweep`) finds its operands in L1/L2; inside a pass the
previous operator has just evicted them (measured on this 2-core VM: a 150x256 RMSNorm takes 17 us in a
loop and 28 us right after a GEMM; a 1x256x512 GEMM 6 us vs 18-23 us). Like Vidur's profiler (Agrawal et
al., MLSys'24, which times each operator inside a model forward), this module runs the executor's own
forward over a grid of synthetic passes, times each kernel call in place (perf_counter around the call)
and writes one profile-table row per (op, shape) — median over calls and repetitions — in the same
schema and keys as `llmsim profile`, so `ProfiledCostModel` reads it unchanged. The pass time not spent
in any timed kernel (embedding, residual adds, KV writes, batch building, sampling) becomes the op
`executor_overhead` (median of the same pass run without instrumentation, minus the median sum of its
timed kernels). No row is derived from a serving run: each pass is synthetic and isolated.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from hwmodels.profiled import attention_work, causal_pairs, elementwise_work, gemm_work
from profiler.devices import device_name, run_metadata
from profiler.executor.attention import PagedKVCache, build_batch
from profiler.executor.model import LlamaModel
from profiler.executor.overhead import OP as OVERHEAD_OP
from profiler.table import append_rows, row

IMPL = "executor"  # table impl label: timed inside executor passes


@dataclass(frozen=True)
class InsituGrid:
    """Synthetic passes: decode batches (B sequences at one context), prompts (B x L) and prompt chunks."""

    decode_seqs: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    decode_contexts: tuple[int, ...] = (16, 32, 64, 128, 192, 256, 384, 512)
    # GEMM time is not a power law in tokens on CPU (MKL blocking): midpoints keep log-log interpolation
    # within ~1 % (vs ~3.6 % between powers of two, measured for the 256x1376 weight here).
    prefill: tuple[tuple[int, int], ...] = (
        *((1, n) for n in (8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768,
                           1024)),
        (2, 64), (2, 128), (2, 256), (2, 512), (3, 128), (4, 128), (4, 256), (4, 512))
    chunks: tuple[tuple[int, int], ...] = tuple((n, c) for n in (16, 64, 128, 192, 256) for c in (32, 128, 256))


def passes(grid: InsituGrid) -> list[tuple[str, list[tuple[int, int]]]]:
    """(kind, [(num_new, ctx), ...]) of every synthetic pass."""
    out = [("decode", [(1, c)] * b) for b in grid.decode_seqs for c in grid.decode_contexts]
    out += [("prefill", [(length, 0)] * b) for b, length in grid.prefill]
    out += [("chunk", [(n, c)]) for n, c in grid.chunks]
    return out


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


CONDITION = [(1, 128)] * 4  # the pass run before each timed pass: a small decode batch, as in serving


def _pass_fn(model: LlamaModel, cache: PagedKVCache, seqs, block_size: int, blocks: list[int], clock):
    """A closure running one packed pass of `seqs` ((num_new, ctx) each) on `blocks`; returns its seconds."""
    rows, nxt = [], 0
    for n, ctx in seqs:
        nb = -(-(n + ctx) // block_size)
        rows.append((n, ctx, blocks[nxt:nxt + nb]))
        nxt += nb
    num_tokens = sum(n for n, _ in seqs)
    sample = torch.tensor(np.cumsum([n for n, _ in seqs]) - 1)
    ids = np.random.default_rng(0).integers(0, model.dims.vocab_size, num_tokens).tolist()

    def one(record=None):
        t = clock()
        batch = build_batch(rows, block_size, model.device)
        token_ids = torch.tensor(ids, dtype=torch.long, device=model.device)
        logits = model.forward_packed(token_ids, batch, cache, sample, record=record, clock=clock)
        logits.argmax(dim=-1).tolist()
        return clock() - t

    return one


def _num_blocks(seqs, block_size: int) -> int:
    return sum(-(-(n + c) // block_size) for n, c in seqs)


def _time_pass(model: LlamaModel, cache: PagedKVCache, seqs, block_size: int, perm: np.ndarray, min_time_s: float,
               min_reps: int, max_reps: int, clock=time.perf_counter):
    """Per repetition: (seconds of an untimed pass, [(op, key, seconds), ...] of an instrumented pass).

    NOTE: a pass with prompt tokens is measured right after a small decode pass on other blocks
    (CONDITION), as in serving, where prompt passes come between decode passes (measured: repeating a
    serving run's prompt passes back to back times them ~5 % faster than they ran). A decode pass is
    measured after a copy of itself, as in serving, where it follows the previous step of the same batch.
    """
    perm = perm.tolist()
    one = _pass_fn(model, cache, seqs, block_size, perm, clock)
    cond = [(n, min(c, model.dims.max_position - n)) for n, c in CONDITION]
    if all(n == 1 and c > 0 for n, c in seqs):
        def condition():
            return 0.0
    else:
        condition = _pass_fn(model, cache, cond, block_size, perm[-_num_blocks(cond, block_size):], clock)
    one()  # warm-up
    reps, spent = [], 0.0
    while len(reps) < min_reps or (spent < min_time_s and len(reps) < max_reps):
        rec: list = []
        condition()
        spent += one(rec)
        condition()
        dt = one()  # the same pass without instrumentation: its total carries no timer overhead
        reps.append((dt, rec))
        spent += dt
    return reps


def _measure(kind: str, seqs, reps, calls, totals, kernel_sums) -> None:
    """Pool one case's repetitions into per-(op, shape) call times and per-pass totals."""
    b = len(seqs)
    for total, rec in reps:
        for op, key, sec in rec:
            if op == "attention":
                n, ctx = seqs[0]
                key = ("decode", b, ctx + 1) if kind == "decode" else ("prefill", b, b * n, ctx)
            calls[(op, key)].append(sec)
        key_g = (b, sum(n for n, _ in seqs))
        totals[key_g].append(total)
        kernel_sums[key_g].append(sum(sec for _, _, sec in rec))


def profile_insitu(model: LlamaModel, out: str | Path, *, block_size: int = 16, dtype: str = "fp32",
                   grid: InsituGrid = InsituGrid(), min_time_s: float = 0.05, min_reps: int = 3,
                   max_reps: int = 50, seed: int = 0, clock: str = "wall", num_blocks: int = 0,
                   rounds: int = 3) -> int:
    """Time every kernel of the executor inside synthetic passes; append rows to the table `out`.

    Returns the number of rows added. Shapes and keys follow `llmsim profile` (gemm m/n/k; rmsnorm,
    swiglu, rope over tokens; attention_decode over sequences x context; attention_prefill over
    sequences x tokens x cached context), so `ProfiledCostModel` interpolates them as it does a sweep.
    clock "wall": perf_counter; "cpu": this thread's CPU time (one torch thread), which leaves out the time
    other processes hold the core — the same clock as the executor's CPUClock. num_blocks: size the KV
    cache as the served one (its blocks are drawn at random from all of it, so KV reads and writes
    touch memory as spread out as in serving); 0: just what the grid needs.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r}: allowed {sorted(CLOCKS)}")
    dims = model.dims
    d, nh, hkv = dims.head_dim, dims.num_heads, dims.num_kv_heads
    item = torch.tensor([], dtype=model.dtype).element_size()
    cases = [(k, seqs) for k, seqs in passes(grid) if max(n + c for n, c in seqs) <= dims.max_position]
    need = max(_num_blocks(seqs, block_size) for _, seqs in cases) + _num_blocks(CONDITION, block_size)
    need = max(need, num_blocks)
    cache = PagedKVCache(dims.num_layers, need, block_size, hkv, d, model.dtype, model.device)
    # Scattered block ids, as a paged KV manager hands them out after some churn.
    perm = np.random.default_rng(seed).permutation(need)
    calls: dict[tuple, list[float]] = defaultdict(list)
    totals: dict[tuple[int, int], list[float]] = defaultdict(list)
    kernel_sums: dict[tuple[int, int], list[float]] = defaultdict(list)
    # NOTE: the grid is swept `rounds` times, each with 1/rounds of the sampling budget, and samples are
    # pooled: a burst of foreign load then spoils part of every row's samples (which the median drops)
    # rather than all samples of the rows measured during it.
    for _ in range(rounds):
        for kind, seqs in cases:
            _measure(kind, seqs, _time_pass(model, cache, seqs, block_size, perm, min_time_s / rounds,
                                            max(1, -(-min_reps // rounds)), max(1, max_reps // rounds),
                                            CLOCKS[clock]), calls, totals, kernel_sums)

    label = device_name(model.device.type)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")


    out_rows = []

    def add(op, samples, name, flops, nbytes, **shape):
        a = np.asarray(samples)
        p10, med, p90 = np.percentile(a, [10, 50, 90])
        out_rows.append(row(label, op, IMPL, dtype, med, p10, p90, a.size, flops=flops, nbytes=nbytes, name=name,
                            measured_at=now, **shape))

    for (op, key), samples in sorted(calls.items(), key=lambda kv: str(kv[0])):
        if op == "gemm":
            m, n, k = key
            add("gemm", samples, "gemm", *gemm_work(m, n, k, item), m=m, n=n, k=k)
        elif op in ("rmsnorm", "swiglu"):
            t, width = key
            add(op, samples, op, *elementwise_work(op, t, width, item), num_tokens=t, hidden=width)
        elif op == "rope":
            t, heads, hd = key
            add("rope", samples, "rope", *elementwise_work("rope", t, heads * hd, item), num_tokens=t,
                num_heads=heads, head_dim=hd)
        elif key[0] == "decode":
            _, b, ctx = key
            add("attention_decode", samples, "attention", *attention_work(b * ctx, b, b * ctx, nh, hkv, d, item),
                num_seqs=b, num_tokens=b, context_len=ctx, num_heads=nh, num_kv_heads=hkv, head_dim=d,
                block_size=block_size)
        else:
            _, b, t, ctx = key
            lq = t // b
            pairs = b * causal_pairs(lq, lq + ctx)
            add("attention_prefill", samples, "attention", *attention_work(pairs, t, b * (lq + ctx), nh, hkv, d, item),
                num_seqs=b, num_tokens=t, context_len=ctx, num_heads=nh, num_kv_heads=hkv, head_dim=d)
    for (b, t), samples in sorted(totals.items()):
        # glue = untimed pass − timed kernels (medians; the kernels' own timer reads are ~1 % of them)
        g = max(0.0, float(np.median(samples) - np.median(kernel_sums[(b, t)])))
        out_rows.append(row(label, OVERHEAD_OP, IMPL, dtype, g, g, g, len(samples), name="glue", measured_at=now,
                            num_seqs=b, num_tokens=t, block_size=block_size))
    meta = run_metadata(model.device.type, note=f"in-situ: every kernel timed inside executor passes "
                                                f"({len(cases)} synthetic passes, {clock} clock), model {dims}")
    return append_rows(out, out_rows, meta)
