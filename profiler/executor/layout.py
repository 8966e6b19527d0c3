"""Where a sequence's KV blocks lie in the cache, as the configured KV manager lays them out in serving.

On a CPU the paged decode attention gathers each sequence's blocks; how many of them are consecutive
in memory changes its time a lot. Measured on the 2-core VM (2026-11-25, 512-hidden llama, 4 x 128-token
decodes, 16-token blocks, thread CPU time): 1.30 ms with every block scattered, 0.96 ms with runs of 3
consecutive blocks, 0.79 ms with each sequence contiguous (`benchmarks/bench_executor_timing.py layout`). A profile
taken on one layout mispredicts a served pass on another by up to ~30 % of its attention.

The served layout is a property of the policies, not of timing: the paged manager hands blocks out
from the front of its free list and takes them back at the end, so after some churn a sequence's
blocks are runs of consecutive ids whose lengths depend on how many requests overlap. This module
finds those runs by serving the workload with the real ReplicaCore (scheduler + KV manager) and a
null forward pass on a virtual clock — no kernel runs and nothing is timed — and builds a block order
made of runs with the same length distribution for the in-situ profiler to lay its synthetic
sequences on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from hwmodels.shapes import BatchShape
from policies.request import Request  # noqa: F401  (the type of `requests`)


@dataclass
class DryRun:
    """What a policy dry run tells the profiler about served passes (no timing involved)."""

    runs: list[int]  # lengths of runs of consecutive block ids in decode sequences' block lists
    decode_passes: int = 0
    decode_after_prompt: int = 0  # decode-only passes right after a pass with prompt tokens
    # the same two counts per batch-size bin (b-1).bit_length(): 1, 2, 3-4, 5-8, 9-16, ...
    decode_passes_by_bin: dict[int, int] = field(default_factory=dict)
    after_prompt_by_bin: dict[int, int] = field(default_factory=dict)
    prompt_tokens: list[int] = field(default_factory=list)  # prompt tokens of each pass that has some
    # each decode row's KV length over the mean of its pass's decode rows (passes with 2+ decodes)
    ctx_ratios: list[float] = field(default_factory=list)
    # per one-sequence decode-only pass: its place k = 1, 2, ... in its run of such passes, begun right after a
    # decode pass of 2+ sequences or a pass with prompt tokens; 0 for the first pass after a prompt pass (the
    # decode-after-prompt term's) and for a run at the very start (`single_streak_weights`)
    single_streak: list[int] = field(default_factory=list)

    def single_streak_weights(self, max_k: int) -> tuple[float, ...]:
        """Share of one-sequence decode passes that are the k-th (k = 1..max_k) of a run of them (as counted in
        `single_streak`). NOTE: the first such passes run far slower than the profile's steady one-sequence
        pass (`InsituSession.measure_single_streak`)."""
        n = len(self.single_streak)
        if not n:
            return tuple(0.0 for _ in range(max_k))
        counts = np.bincount(np.asarray(self.single_streak, dtype=np.int64), minlength=max_k + 1)
        return tuple(float(c) / n for c in counts[1:max_k + 1])

    @property
    def after_prompt_fraction(self) -> float:
        return self.decode_after_prompt / self.decode_passes if self.decode_passes else 0.0

    def after_prompt_fractions(self, min_passes: int = 20) -> tuple[float, ...]:
        """Share of decode-only passes right after a pass with prompt tokens, per batch-size bin
        `(b-1).bit_length()` (1, 2, 3-4, 5-8, ...); a bin with fewer than `min_passes` passes gets the overall
        share. The share grows with the batch (quick vllm preset, measured serving: ~3 % of 1-sequence passes,
        ~28 % of 17-64-sequence passes; overall ~8.5 %): a large batch is there because requests keep arriving,
        and each arrival brings a prompt pass."""
        if not self.decode_passes_by_bin:
            return (self.after_prompt_fraction,)
        top = max(self.decode_passes_by_bin)
        out = []
        for k in range(top + 1):
            n = self.decode_passes_by_bin.get(k, 0)
            out.append(self.after_prompt_by_bin.get(k, 0) / n if n >= min_passes else self.after_prompt_fraction)
        return tuple(out)


def policy_dry_run(scheduler_cfg, kv_cfg, num_blocks: int, max_model_len: int, requests: Sequence[Request],
                   step_seconds: Callable[[BatchShape], float], model) -> DryRun:
    """Serve `requests` with the configured policies, a null forward pass and a virtual clock (`step_seconds`
    per pass: only the overlap of requests, hence the churn of the free list and the mix of passes,
    depends on it) and record the KV block runs of every decode sequence, how often a decode-only pass
    follows a pass with prompt tokens, the prompt tokens of such passes, and how the KV lengths of the
    decode rows of one pass spread around their mean. `requests` are consumed
    (pass fresh ones)."""
    from profiler.executor.server import Executor, VirtualClock, make_core

    out = DryRun([])
    prev_prompt = [False]
    state = {"prev": "none", "k": 0, "ok": "none"}  # prev: "prompt" | "single" | "multi"; ok: what began the run

    class _Recorder(Executor):
        def _forward(self, ids, seqs, sample_rows):
            prompt = 0
            lens = []
            for n, ctx, blocks in seqs:
                if n == 1 and ctx > 0:
                    out.runs.extend(run_lengths(blocks[: -(-(ctx + 1) // self.core.kv.block_size)]))
                    lens.append(ctx + 1)
                else:
                    prompt += n
            if len(lens) > 1:
                mean = sum(lens) / len(lens)
                out.ctx_ratios.extend(x / mean for x in lens)
            if prompt:
                out.prompt_tokens.append(prompt)
            else:
                out.decode_passes += 1
                out.decode_after_prompt += prev_prompt[0]
                k = (len(seqs) - 1).bit_length()
                out.decode_passes_by_bin[k] = out.decode_passes_by_bin.get(k, 0) + 1
                out.after_prompt_by_bin[k] = out.after_prompt_by_bin.get(k, 0) + prev_prompt[0]
            prev_prompt[0] = prompt > 0
            kind = "prompt" if prompt else ("single" if len(seqs) == 1 else "multi")
            if kind == "single":
                if state["prev"] == "single":
                    state["k"] += 1
                else:
                    state["k"], state["ok"] = 1, state["prev"]
                k, began = state["k"], state["ok"]
                # after a prompt pass: the first pass is the decode-after-prompt term's, the rest decay alike
                out.single_streak.append(k if began == "multi" or (began == "prompt" and k > 1) else 0)
            state["prev"] = kind
            return [0] * len(sample_rows)

    core = make_core(scheduler_cfg, kv_cfg, num_blocks, max_model_len)
    _Recorder(model, core, clock=VirtualClock(step_seconds), cache=_NoCache(num_blocks, core.kv.block_size)).serve(
        list(requests))
    return out


class _NoCache:
    """Stands in for the KV tensors in a dry run (the null forward never touches them)."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size


def run_lengths(blocks: Sequence[int]) -> list[int]:
    """[3, 1, 2] for blocks [7, 8, 9, 2, 40, 41]."""
    out, r = [], 1
    for a, b in zip(blocks, blocks[1:]):
        if b == a + 1:
            r += 1
        else:
            out.append(r)
            r = 1
    if len(blocks):
        out.append(r)
    return out


def block_order(num_blocks: int, runs: Sequence[int] | None, seed: int = 0) -> np.ndarray:
    """A permutation of range(num_blocks) made of runs of consecutive ids, their lengths drawn from `runs`
    (each observed run equally likely), in random order. Synthetic sequences take consecutive slices
    of it, so they see runs as served sequences do. runs None or empty: every block on its own."""
    rng = np.random.default_rng(seed)
    if not runs:
        return rng.permutation(num_blocks)
    pool = np.asarray(runs, dtype=np.int64)
    cuts, start = [], 0
    while start < num_blocks:
        n = int(pool[rng.integers(pool.size)])
        cuts.append((start, min(num_blocks, start + n)))
        start += n
    return np.concatenate([np.arange(a, b) for a, b in (cuts[i] for i in rng.permutation(len(cuts)))])


def ragged_contexts(num_seqs: int, ctx: int, ratios: Sequence[float] | None, rng: np.random.Generator,
                    max_ctx: int) -> list[int]:
    """`num_seqs` decode contexts with mean exactly `ctx` (the sum is kept), spread as `ratios` (KV length
    over its pass's mean, from `policy_dry_run`) says, each within [1, max_ctx]. No ratios or one sequence:
    all equal to ctx.

    NOTE: served decode batches are ragged, and on a CPU a ragged batch's attention can cost more than a
    uniform one with the same total context (2026-11-26, small-llama, decodes around 200 tokens: +0..+6 % of
    the pass's attention for 8 and 32 decodes, up to ~1 % of the pass, two runs; `benchmarks/
    bench_executor_timing.py ragged`), so the profile's decode passes carry the served spread while keeping
    the (sequences, total context) they are keyed by."""
    if not ratios or num_seqs < 2 or not 1 <= ctx <= max_ctx:
        return [ctx] * num_seqs
    pool = np.asarray(ratios, dtype=np.float64)
    r = pool[rng.integers(pool.size, size=num_seqs)]
    c = np.clip(np.rint(r / r.mean() * ctx), 1, max_ctx).astype(np.int64)
    diff = num_seqs * ctx - int(c.sum())
    order = np.argsort(-c) if diff < 0 else np.argsort(c)
    i = 0
    while diff:  # move the remainder one token at a time onto rows that have room, largest (or smallest) first
        j = order[i % num_seqs]
        step = 1 if diff > 0 else -1
        if 1 <= c[j] + step <= max_ctx:
            c[j] += step
            diff -= step
        i += 1
    return c.tolist()
