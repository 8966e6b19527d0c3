"""In-situ op profiling: every kernel of the executor timed where it runs, inside real forward passes.

A kernel timed in a tight loop (`profiler.sweep`) finds its operands in L1/L2; inside a pass the
previous operator has just evicted them (measured on this 2-core VM: a 150x256 RMSNorm takes 17 us in a
loop and 28 us right after a GEMM; a 1x256x512 GEMM 6 us vs 18-23 us). Like Vidur's profiler (Agrawal et
al., MLSys'24, which times each operator inside a model forward), this module runs the executor's own
forward over a grid of synthetic passes, times each kernel call in place (perf_counter around the call)
and writes one profile-table row per (op, shape) — median over calls and repetitions — in the same
schema and keys as `llmsim profile`, so `ProfiledCostModel` reads it unchanged. The pass time not spent
in any timed kernel (embedding, residual adds, KV writes, batch building, sampling) becomes the op
`executor_overhead`: per instrumented pass, its total minus its timed kernels and the clock reads around
them (a difference within one pass, so kernel noise cancels); median over passes. Every timed call is
net of one clock read (`clock_overhead`). Synthetic sequences lie on KV blocks laid out as the
configured KV manager lays out served ones (`profiler.executor.layout`). No row is derived from a
serving run: each pass is synthetic and isolated.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from hwmodels.profiled import attention_work, causal_pairs, elementwise_work, gemm_work
from profiler.devices import device_name, run_metadata
from profiler.executor.attention import PagedKVCache, build_batch
from profiler.executor.layout import block_order, ragged_contexts
from profiler.executor.model import LlamaModel
from profiler.executor.overhead import OP as OVERHEAD_OP
from profiler.table import append_rows, row

IMPL = "executor"  # table impl label: timed inside executor passes
AFTER_PROMPT_OP = "executor_after_prompt"  # extra seconds of a decode pass right after a pass with prompt tokens
AFTER_PROMPT_SEQS = (1, 2, 4, 8, 16, 32, 64)
# Extra seconds per pass of attention over prompt and decode rows together vs the two run alone (num_seqs:
# decodes, num_tokens: prompt tokens); the decodes' KV reads come after the prompt's temporaries evicted them.
MIXED_OP = "executor_mixed_attention"


@dataclass(frozen=True)
class InsituGrid:
    """Synthetic passes: decode batches (B sequences at one context), prompts (B x L) and prompt chunks."""

    decode_seqs: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    decode_contexts: tuple[int, ...] = (16, 32, 64, 128, 192, 256, 384, 512)
    # GEMM time on CPU is not smooth in m at small m (MKL register blocking; `benchmarks/bench_executor_timing.py
    # gemm`, 2026-11-25, 512x1024 weight inside passes: m=5/6/7/8 take 217/217/254/226 us, so interpolating odd m
    # between even ones is up to ~10 % off): every batch size up to 16 gets a GEMM row, at two contexts.
    # Above 16 the GEMM rows' batch sizes are 1, 2, 5 or 6 mod 8, as the prompt grid's lengths below.
    decode_extra: tuple[tuple[int, int], ...] = tuple((b, c) for b in (5, 7, 9, 10, 11, 13, 14, 15, 18, 29, 41, 54)
                                                      for c in (64, 256))
    # GEMM time is not a power law in tokens on CPU (MKL blocking): midpoints keep log-log interpolation
    # within ~1 % (vs ~3.6 % between powers of two, measured for the 256x1376 weight here). And it is a
    # sawtooth in the token count: a prompt whose length is a multiple of 8 runs ~2 % faster than its
    # neighbours (measured 2026-11-26, small-llama, every length 32..256: lengths off the old grid of
    # multiples of 8 took +2.15 % / +1.62 % (two sittings) over log-log interpolation between its rows; by
    # length mod 8: 0 +0.5, 1 +2.4, 2 +1.9, 3 +3.5, 4 +1.0, 5 +2.3, 6 +1.7, 7 +3.4 %, mean +2.1 %;
    # `benchmarks/bench_executor_timing.py interp`). Served prompts have any length. The cost model interpolates
    # GEMM rows within alignment classes of m (odd, 2 mod 4, 4 mod 8, 0 mod 8: `hwmodels.profiled.
    # gemm_alignment`), so from 32 tokens up the lengths alternate between the two unaligned classes, and
    # the odd ones between the faster residues 1, 5 and the slower 3, 7 mod 8 (neighbours in the class
    # bracket its mean); aligned m's get rows from chunks, mixed and decode passes. (With one curve for
    # all m, lengths at 1, 2, 5, 6 mod 8 gave -0.05 % mean interpolation error, `interp new` before this
    # change; but rows of aligned m from the other passes pulled the curve down near them.)
    prefill: tuple[tuple[int, int], ...] = (
        *((1, n) for n in (8, 12, 16, 24, 33, 50, 71, 102, 129, 162, 187, 222, 249, 322, 391, 454, 513, 642, 771,
                           1030)),
        (2, 65), (2, 127), (2, 257), (2, 509), (3, 125), (4, 129), (4, 255), (4, 511))
    chunks: tuple[tuple[int, int], ...] = tuple((n, c) for n in (16, 64, 128, 192, 256) for c in (32, 128, 256))
    # (chunk tokens, chunk context, decodes, decode context): the mixed passes of chunked-prefill schedulers,
    # for the glue of a pass with both kinds of rows (and GEMM rows at their token counts).
    mixed: tuple[tuple[int, int, int, int], ...] = tuple((n, c, b, 128) for n in (16, 64, 256) for c in (0, 128)
                                                         for b in (4, 16))


def passes(grid: InsituGrid) -> list[tuple[str, list[tuple[int, int]]]]:
    """(kind, [(num_new, ctx), ...]) of every synthetic pass."""
    out = [("decode", [(1, c)] * b) for b in grid.decode_seqs for c in grid.decode_contexts]
    out += [("decode-gemm", [(1, c)] * b) for b, c in grid.decode_extra]
    out += [("prefill", [(length, 0)] * b) for b, length in grid.prefill]
    out += [("chunk", [(n, c)]) for n, c in grid.chunks]
    out += [("mixed", [(n, c)] + [(1, dc)] * b) for n, c, b, dc in grid.mixed]
    return out


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


# Extra seconds of the k-th (num_tokens = k) one-sequence decode pass in a row after other passes
SINGLE_STREAK_OP = "executor_single_streak"
SINGLE_STREAK_PASSES = 12

# Pass-to-pass variability: a series of back-to-back decode passes whose batch size walks as served ones do
JITTER_OP = "executor_jitter"
JITTER_SEQS = (2, 16)  # batch sizes walked (one-sequence passes are left out: their runs carry a decay of
#                        their own, SINGLE_STREAK_OP, which is not noise)
JITTER_PASSES = 400

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


def _cases(model: LlamaModel, grid: InsituGrid) -> list[tuple[str, list[tuple[int, int]]]]:
    return [(k, seqs) for k, seqs in passes(grid) if max(n + c for n, c in seqs) <= model.dims.max_position]


def need_blocks(model: LlamaModel, grid: InsituGrid = InsituGrid(), block_size: int = 16, num_blocks: int = 0) -> int:
    """KV blocks the grid's largest pass (plus the conditioning pass) needs, at least num_blocks."""
    # + one block per sequence: ragged decode contexts (`ragged_contexts`) keep the total context, not the blocks
    need = (max(_num_blocks(seqs, block_size) + len(seqs) for _, seqs in _cases(model, grid))
            + _num_blocks(CONDITION, block_size))
    return max(need, num_blocks)


def _time_pass(model: LlamaModel, cache: PagedKVCache, seqs, block_size: int, perm: np.ndarray, min_time_s: float,
               min_reps: int, max_reps: int, clock=time.perf_counter):
    """Per repetition: (seconds of an untimed pass, seconds of an instrumented pass, [(op, key, seconds), ...]
    of its kernel calls).

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
        dt_rec = one(rec)
        condition()
        dt = one()  # the same pass without instrumentation: its total carries no timer overhead
        reps.append((dt, dt_rec, rec))
        spent += dt + dt_rec
    return reps


def clock_overhead(clock, n: int = 2001) -> float:
    """Median seconds between two back-to-back reads of `clock`: what one timed interval carries on top of
    the call it times (measured on this VM: ~0.44 us for thread CPU time, a system call; ~0.04 us for
    perf_counter)."""
    d = []
    for _ in range(n):
        a = clock()
        d.append(clock() - a)
    return float(np.median(d))


def _measure(kind: str, seqs, reps, calls, glue, checks, overhead: float = 0.0) -> None:
    """Pool one case's repetitions into per-(op, shape) call times and per-pass glue samples.

    Each timed call carries one clock read on top of the kernel (`overhead`, taken off); the pass's glue
    is its instrumented total minus its own timed calls and the 2 clock reads around each: a difference
    within one pass, so the kernels' run-to-run noise cancels. `checks` gets (untimed pass, instrumented
    pass minus its clock reads) pairs: the instrumentation's effect on the pass, for the record."""
    b = len(seqs)
    for untimed, instrumented, rec in reps:
        n = len(rec)
        raw = sum(sec for _, _, sec in rec)
        key_g = (b, sum(nn for nn, _ in seqs))
        glue[key_g].append(max(0.0, instrumented - raw - n * overhead))
        checks.append((untimed, instrumented - 2 * n * overhead))
        rec = [(op, key, max(0.0, sec - overhead)) for op, key, sec in rec]
        for op, key, sec in rec:
            if op == "attention" and kind == "decode-gemm":
                # NOTE: decode-gemm passes give GEMM rows at every small batch size; their attention, at two
                # contexts only, would make a curve of its own that log-log interpolation overestimates
                # between them (a + c·context is convex in log-log): the full decode grid carries attention.
                continue
            if op == "attention" and kind == "mixed":
                # One call covers the prompt rows and the decode rows: kept under the pass's shape, compared at
                # write time with the pure prompt and decode passes of the same parts (MIXED_OP).
                (n, ctx), (_, dctx) = seqs[0], seqs[1]
                calls[("attention-mixed", (b - 1, n, ctx, dctx))].append(sec)
                continue
            if op == "attention":
                n, ctx = seqs[0]
                key = ("decode", b, ctx + 1) if kind == "decode" else ("prefill", b, b * n, ctx)
            calls[(op, key)].append(sec)


def profile_insitu(model: LlamaModel, out: str | Path, *, block_size: int = 16, dtype: str = "fp32",
                   grid: InsituGrid = InsituGrid(), min_time_s: float = 0.05, min_reps: int = 3,
                   max_reps: int = 50, seed: int = 0, clock: str = "wall", num_blocks: int = 0,
                   rounds: int = 3, cache: PagedKVCache | None = None,
                   block_runs: Sequence[int] | None = None) -> int:
    """Time every kernel of the executor inside synthetic passes; append rows to the table `out`.

    Returns the number of rows added. Shapes and keys follow `llmsim profile` (gemm m/n/k; rmsnorm,
    swiglu, rope over tokens; attention_decode over sequences x context; attention_prefill over
    sequences x tokens x cached context), so `ProfiledCostModel` interpolates them as it does a sweep.
    clock "wall": perf_counter; "cpu": this thread's CPU time (one torch thread), which leaves out the time
    other processes hold the core — the same clock as the executor's CPUClock. num_blocks: size the KV
    cache as the served one (synthetic sequences' blocks are spread over all of it, as served ones
    are); 0: just what the grid needs. cache: profile on this cache (the one the executor will serve
    from: same memory, same placement) instead of a new one; it must hold at least
    `need_blocks(model, grid, block_size, num_blocks)` blocks. block_runs: lengths of the runs of
    consecutive blocks served sequences have (`profiler.executor.layout.policy_dry_run`); synthetic
    sequences get runs drawn from them. None: every block scattered at random.
    """
    session = InsituSession(model, block_size=block_size, dtype=dtype, grid=grid, seed=seed, clock=clock,
                            num_blocks=num_blocks, cache=cache, block_runs=block_runs)
    session.measure(rounds, min_time_s / rounds, min_reps, max_reps, rounds)
    return session.write(out)


def jitter_stats(series: Sequence[tuple[int, float]]) -> tuple[float, float] | None:
    """(log-sd, lag-1 autocorrelation) of a JITTER_OP series [(batch size, seconds), ...] in pass order: the
    residuals log(seconds / median of that batch size's passes). None with fewer than 50 passes. The
    autocorrelation is clipped to [0, 0.95]."""
    if len(series) < 50:
        return None
    b = np.array([s for s, _ in series])
    t = np.array([sec for _, sec in series], dtype=float)
    if (t <= 0).any():
        return None
    med = {k: np.median(t[b == k]) for k in np.unique(b)}
    x = np.log(t / np.array([med[k] for k in b]))
    x = x - x.mean()
    sd = float(x.std())
    rho = float(np.dot(x[:-1], x[1:]) / np.dot(x, x)) if sd > 0 else 0.0
    return sd, min(0.95, max(0.0, rho))


class InsituSession:
    """In-situ samples pooled over any number of sittings (`measure`), written as one table (`write`).

    `llmsim validate` measures rounds before the served run, in slices during it (`spread`, `measure_cases`)
    and after it, so that the machine's speed while it served (on this VM it moves by ~1-3 % over seconds to
    minutes, common to every kernel) is in the cost model instead of only the speed around the run.
    """

    def __init__(self, model: LlamaModel, *, block_size: int = 16, dtype: str = "fp32",
                 grid: InsituGrid = InsituGrid(), seed: int = 0, clock: str = "wall", num_blocks: int = 0,
                 cache: PagedKVCache | None = None, block_runs: Sequence[int] | None = None,
                 ctx_ratios: Sequence[float] | None = None) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock={clock!r}: allowed {sorted(CLOCKS)}")
        dims = model.dims
        self.model, self.block_size, self.dtype, self.clock = model, block_size, dtype, clock
        self.cases = _cases(model, grid)
        need = need_blocks(model, grid, block_size, num_blocks)
        if cache is None:
            cache = PagedKVCache(dims.num_layers, need, block_size, dims.num_kv_heads, dims.head_dim, model.dtype,
                                 model.device)
        elif cache.num_blocks < need or cache.block_size != block_size:
            raise ValueError(f"cache: {cache.num_blocks} blocks of {cache.block_size}; the grid needs {need} of "
                             f"{block_size}")
        self.cache = cache
        # Block ids as a paged KV manager hands them out after some churn: runs of consecutive ids.
        self.perm = block_order(cache.num_blocks, block_runs, seed)
        self.seed = seed
        self.sweep_totals: list[dict[int, list[float]]] = []  # per measure() call: case -> untimed pass seconds
        self.ctx_ratios = list(ctx_ratios or [])
        self.calls: dict[tuple, list[float]] = defaultdict(list)
        self.glue: dict[tuple[int, int], list[float]] = defaultdict(list)
        self.checks: list[tuple[float, float]] = []
        self.after_prompt: dict[int, list[tuple[float, float]]] = defaultdict(list)
        self.single_streak: list[list[float]] = []  # per repetition: the k-th single pass's seconds, k = 1..K
        self.single_steady: list[float] = []
        self.jitter: list[tuple[int, float]] = []  # (decode batch size, seconds) of back-to-back passes, in order
        self.overhead = clock_overhead(CLOCKS[clock])

    def set_layout(self, block_runs: Sequence[int] | None, seed: int = 0,
                   ctx_ratios: Sequence[float] | None = None) -> None:
        """Lay synthetic sequences on runs drawn from `block_runs` from now on, with decode contexts spread as
        `ctx_ratios` says (`ragged_contexts`; None: as before), and drop the samples that read the KV cache
        through the old layout (attention, decode-after-prompt); the rest are kept."""
        self.perm = block_order(self.cache.num_blocks, block_runs, seed)
        if ctx_ratios is not None:
            self.ctx_ratios = list(ctx_ratios)
        for k in [k for k in self.calls if k[0] in ("attention", "attention-mixed")]:
            del self.calls[k]
        self.after_prompt.clear()
        self.single_streak.clear()
        self.single_steady.clear()
        self.jitter.clear()

    def measure(self, rounds: int, min_time_s: float, min_reps: int, max_reps: int, total_rounds: int) -> None:
        """Sweep the grid `rounds` times, each case for min_time_s and min/max_reps / total_rounds reps.

        NOTE: samples of every round are pooled: a burst of foreign load then spoils part of every row's
        samples (which the median drops) rather than all samples of the rows measured during it.
        """
        totals = self.new_sweep()
        for _ in range(rounds):
            self.measure_cases(range(len(self.cases)), min_time_s, min_reps, max_reps, total_rounds, totals)

    def new_sweep(self) -> dict[int, list[float]]:
        """Start a sweep: the untimed pass seconds of the cases measured into it are compared by `speed_change`."""
        totals: dict[int, list[float]] = defaultdict(list)
        self.sweep_totals.append(totals)
        return totals

    def measure_cases(self, indices: Iterable[int], min_time_s: float, min_reps: int, max_reps: int,
                      total_rounds: int, totals: dict[int, list[float]]) -> None:
        """Measure the grid's cases `indices` (into `self.cases`) once each, as one round of `measure` does."""
        for i in indices:
            kind, seqs = self.cases[i]
            reps = _time_pass(self.model, self.cache, self.served_rows(seqs), self.block_size, self.perm, min_time_s,
                              max(1, -(-min_reps // total_rounds)), max(1, max_reps // total_rounds),
                              CLOCKS[self.clock])
            _measure(kind, seqs, reps, self.calls, self.glue, self.checks, self.overhead)
            totals[i] += [untimed for untimed, _, _ in reps]

    def spread(self, rounds: int, parts: int) -> list[list[int]]:
        """`rounds` sweeps of the grid cut into `parts` consecutive slices of case indices, each round in its
        own seeded random order: measured at `parts` moments, every slice holds a random share of the cases
        (decode, prompt, chunk) rather than one kind."""
        rng = np.random.default_rng((self.seed, 0x5B5))
        order = np.concatenate([rng.permutation(len(self.cases)) for _ in range(rounds)]) if rounds > 0 else []
        return [[int(i) for i in part] for part in np.array_split(np.asarray(order, dtype=int), max(1, parts))]

    def speed_change(self, first: int = -2, last: int = -1) -> float | None:
        """Median over the grid's passes of (untimed pass time in sweep `last`) / (in sweep `first`) − 1 (sweeps
        in the order `new_sweep` started them): how much the machine's speed moved between them (e.g. before
        and after a served run, on the same layout). None without both sweeps or common cases."""
        if len(self.sweep_totals) < 2:
            return None
        try:
            a, b = self.sweep_totals[first], self.sweep_totals[last]
        except IndexError:
            return None
        ratios = [np.median(b[i]) / np.median(a[i]) for i in a if b.get(i) and np.median(a[i]) > 0]
        return float(np.median(ratios)) - 1.0 if ratios else None

    def served_rows(self, seqs):
        """The rows a synthetic pass runs: its decode rows at ragged contexts with the same total (seeded by
        the pass), its prompt rows as they are. Rows are keyed in the table by the uniform `seqs`."""
        dec = [c for n, c in seqs if n == 1 and c > 0]
        if len(dec) < 2 or not self.ctx_ratios:
            return seqs
        pre = [(n, c) for n, c in seqs if not (n == 1 and c > 0)]
        rng = np.random.default_rng((self.seed, len(dec), dec[0]))
        ctxs = ragged_contexts(len(dec), dec[0], self.ctx_ratios, rng, self.model.dims.max_position - 1)
        return pre + [(1, c) for c in ctxs]

    def measure_after_prompt(self, prompt_len: int, reps: int = 4, context: int = 128) -> None:
        """Extra seconds of a decode-only pass right after a pass with prompt tokens, per decode batch size.

        NOTE: the prompt pass evicts the decode pass's working set (measured 2026-11-25, small-llama: one decode
        2.59 ms after itself, 3.50 ms after a 160-token prompt; 4 decodes 5.57 vs 6.15 ms;
        `benchmarks/bench_executor_timing.py predecessor`). Each repetition times the decode pass once right
        after a `prompt_len`-token prompt pass and once right after itself; rows are the median difference.
        """
        bs, clock = self.block_size, CLOCKS[self.clock]
        prompt_len = max(1, min(prompt_len, self.model.dims.max_position))
        prompt_blocks = _num_blocks([(prompt_len, 0)], bs)
        perm = self.perm.tolist()
        for b in AFTER_PROMPT_SEQS:
            seqs = [(1, context)] * b
            if context + 1 > self.model.dims.max_position or _num_blocks(seqs, bs) + prompt_blocks > len(perm):
                continue
            dec = _pass_fn(self.model, self.cache, seqs, bs, perm, clock)
            prompt = _pass_fn(self.model, self.cache, [(prompt_len, 0)], bs, perm[-prompt_blocks:], clock)
            dec()
            for _ in range(reps):
                prompt()
                after = dec()
                self.after_prompt[b].append((after, dec()))

    def measure_single_streak(self, reps: int = 3, context: int = 128, lead: int = 12) -> None:
        """Seconds of one-sequence decode passes 1..SINGLE_STREAK_PASSES in a row right after `lead` decode
        passes of 2 sequences (on other blocks), and of the same pass after itself (steady).

        NOTE: served one-sequence decode passes come in short runs after 2-sequence passes (a request finishes)
        or prompt passes, and the first ones are far slower than the steady pass the grid times (measured
        2026-11-26, small-llama, 150 context, `benchmarks/bench_executor_timing.py streak`: after 12 passes of
        2 sequences +28.7 / +23.4 / +19.4 / +10.1 / +5.2 % for the first five, under 3 % from the 6th; after a
        prompt pass +29.2 / +15.6 / +8.3 / +5.2 / +3.8 %; at 4 or 12 sequences nothing after a batch change and
        only the first pass after a prompt; in validate runs the cost model was 7-9 % low on served
        one-sequence passes without this term). The same decay after a prompt pass is taken from these rows
        from its second pass on (`DryRun.single_streak`).
        """
        bs, clock = self.block_size, CLOCKS[self.clock]
        if context + 1 > self.model.dims.max_position:
            return
        perm = self.perm.tolist()
        one = _pass_fn(self.model, self.cache, [(1, context)], bs, perm, clock)
        two = _pass_fn(self.model, self.cache, [(1, context)] * 2, bs, perm[_num_blocks([(1, context)], bs) + 1:],
                       clock)
        one()
        for _ in range(reps):
            for _ in range(lead):
                two()
            self.single_streak.append([one() for _ in range(SINGLE_STREAK_PASSES)])
            self.single_steady += [one() for _ in range(4)]

    def measure_jitter(self, passes: int = JITTER_PASSES, context: int = 128) -> None:
        """Seconds of `passes` decode passes back to back, in order, whose batch size walks between
        JITTER_SEQS (stays, or moves by one, at random: as a served batch grows and shrinks a request at a
        time). `jitter_stats` turns the series into the spread and lag-1 autocorrelation of pass times
        around each size's median: the variability a deterministic cost model leaves out.

        NOTE: measured 2026-11-26 on the 2-core VM (small-llama, 128 context, `benchmarks/bench_executor_timing.py
        jitter`): one pass repeated back to back varies with log-sd 1.4-1.5 % (8 and 24 sequences) and lag-1
        autocorrelation 0.5-0.6; a random mix of 2/5/9/14 sequences 2.3 % and 0.63.
        """
        bs, clock = self.block_size, CLOCKS[self.clock]
        lo, hi = JITTER_SEQS
        if context + 1 > self.model.dims.max_position or _num_blocks([(1, context)] * hi, bs) > len(self.perm):
            return
        perm = self.perm.tolist()
        fns = {b: _pass_fn(self.model, self.cache, self.served_rows([(1, context)] * b), bs, perm, clock)
               for b in range(lo, hi + 1)}
        rng = np.random.default_rng((self.seed, 0x717))
        b = (lo + hi) // 2
        fns[b]()
        for step in rng.integers(-1, 2, passes):
            b = min(hi, max(lo, b + int(step)))
            self.jitter.append((b, fns[b]()))

    def instrumentation_check(self) -> dict:
        """Median of (instrumented pass net of its clock reads) / (untimed pass) − 1, and the clock's read
        time: how far timing every kernel perturbs a pass (a few % would show in the glue rows)."""
        ratio = np.array([i / u for u, i in self.checks if u > 0])
        return {"instrumented_over_untimed": float(np.median(ratio)) - 1.0 if ratio.size else None,
                "clock_read_s": self.overhead}

    def write(self, out: str | Path) -> int:
        """Append one row per (op, shape) and per glue shape (medians of all samples so far) to `out`."""
        model, dtype, block_size, clock = self.model, self.dtype, self.block_size, self.clock
        calls, glue = self.calls, self.glue
        dims = model.dims
        d, nh, hkv = dims.head_dim, dims.num_heads, dims.num_kv_heads
        item = torch.tensor([], dtype=model.dtype).element_size()
        cases = self.cases
        label = device_name(model.device.type)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        out_rows = []

        def add(op, samples, name, flops, nbytes, **shape):
            a = np.asarray(samples)
            p10, med, p90 = np.percentile(a, [10, 50, 90])
            out_rows.append(row(label, op, IMPL, dtype, med, p10, p90, a.size, flops=flops, nbytes=nbytes,
                                name=name, measured_at=now, **shape))

        for (op, key), samples in sorted(calls.items(), key=lambda kv: str(kv[0])):
            if op == "attention-mixed":
                b, n, ctx, dctx = key
                pre = calls.get(("attention", ("prefill", 1, n, ctx)))
                dec = calls.get(("attention", ("decode", b, dctx + 1)))
                if pre and dec:  # per pass: the layers' extra over the two parts run alone
                    extra = dims.num_layers * float(np.median(samples) - np.median(pre) - np.median(dec))
                    out_rows.append(row(label, MIXED_OP, IMPL, dtype, extra, extra, extra, len(samples),
                                        name="mixed-attention", measured_at=now, num_seqs=b, num_tokens=n,
                                        context_len=ctx, block_size=block_size))
                continue
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
                add("attention_decode", samples, "attention",
                    *attention_work(b * ctx, b, b * ctx, nh, hkv, d, item), num_seqs=b, num_tokens=b,
                    context_len=ctx, num_heads=nh, num_kv_heads=hkv, head_dim=d, block_size=block_size)
            else:
                _, b, t, ctx = key
                lq = t // b
                pairs = b * causal_pairs(lq, lq + ctx)
                add("attention_prefill", samples, "attention",
                    *attention_work(pairs, t, b * (lq + ctx), nh, hkv, d, item), num_seqs=b, num_tokens=t,
                    context_len=ctx, num_heads=nh, num_kv_heads=hkv, head_dim=d)
        for (b, t), samples in sorted(glue.items()):
            p10, g, p90 = np.percentile(samples, [10, 50, 90])
            out_rows.append(row(label, OVERHEAD_OP, IMPL, dtype, g, p10, p90, len(samples), name="glue",
                                measured_at=now, num_seqs=b, num_tokens=t, block_size=block_size))
        for b, pairs in sorted(self.after_prompt.items()):
            a = np.array(pairs)
            extra = max(0.0, float(np.median(a[:, 0]) - np.median(a[:, 1])))
            p10, p90 = np.percentile(a[:, 0] - a[:, 1], [10, 90])
            out_rows.append(row(label, AFTER_PROMPT_OP, IMPL, dtype, extra, p10, p90, len(pairs), name="after-prompt",
                                measured_at=now, num_seqs=b, num_tokens=b, block_size=block_size))
        if self.single_streak and self.single_steady:
            steady = float(np.median(self.single_steady))
            a = np.array(self.single_streak)
            for k in range(a.shape[1]):
                extra = max(0.0, float(np.median(a[:, k])) - steady)
                p10, p90 = np.percentile(a[:, k] - steady, [10, 90])
                out_rows.append(row(label, SINGLE_STREAK_OP, IMPL, dtype, extra, p10, p90, a.shape[0],
                                    name="single-streak", measured_at=now, num_seqs=1, num_tokens=k + 1,
                                    block_size=block_size))
        for i, (b, sec) in enumerate(self.jitter):  # the raw series: jitter_stats reads it back in order
            out_rows.append(row(label, JITTER_OP, IMPL, dtype, sec, sec, sec, 1, name="jitter-series",
                                measured_at=now, num_seqs=b, num_tokens=i + 1, context_len=128,
                                block_size=block_size))
        meta = run_metadata(model.device.type, note=f"in-situ: every kernel timed inside executor passes "
                                                    f"({len(cases)} synthetic passes, {clock} clock), model {dims}")
        return append_rows(out, out_rows, meta)
