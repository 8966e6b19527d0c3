"""Property tests: every scheduler × KV manager, with and without pipelining, on random small workloads.

Invariants: every request finishes exactly once (or is rejected with a reason); arrival ≤ scheduled ≤
first token ≤ finish; KV blocks are conserved, ref-counted and never over capacity; the KV of every
scheduled request holds its tokens; token counts add up (prompt + output − 1, less prefix hits, plus
recomputation); plans respect the batch size and token budgets; runs are deterministic.
"""
from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from hwmodels.shapes import BatchShape
from policies.config import (OrcaSchedulerConfig, SarathiSchedulerConfig, SplitFuseSchedulerConfig,
                             StaticSchedulerConfig, VLLMSchedulerConfig)
from policies.core import ReplicaCore
from policies.kv import ContiguousKVManager, PagedKVManager, PrefixCachingKVManager
from policies.request import FINISHED, REJECTED, Request
from policies.schedulers import make_scheduler

MAX_MODEL_LEN = 36


@st.composite
def scheduler_cfgs(draw):
    kind = draw(st.sampled_from(["static", "orca", "vllm", "sarathi", "splitfuse"]))
    common = dict(max_batch_size=draw(st.integers(1, 4)), max_num_batched_tokens=draw(st.integers(8, 40)))
    if kind == "static":
        return StaticSchedulerConfig(**common)
    if kind == "orca":
        return OrcaSchedulerConfig(**common)
    extra = dict(preemption=draw(st.sampled_from(["recompute", "swap"])), watermark=draw(st.sampled_from([0.0, 0.1])))
    if kind == "vllm":
        return VLLMSchedulerConfig(**common, **extra)
    cls = SarathiSchedulerConfig if kind == "sarathi" else SplitFuseSchedulerConfig
    return cls(**common, **extra, chunk_size=draw(st.integers(1, 16)))


@st.composite
def kv_specs(draw):
    kind = draw(st.sampled_from(["paged", "prefix", "max_model_len", "pow2", "oracle"]))
    block_size = draw(st.sampled_from([1, 2, 4]))
    return kind, draw(st.integers(16, 64)) // block_size, block_size, draw(st.integers(0, 12))


def make_kv(spec):
    kind, num_blocks, block_size, host = spec
    if kind == "paged":
        return PagedKVManager(num_blocks, block_size, host)
    if kind == "prefix":
        return PrefixCachingKVManager(num_blocks, block_size, host)
    return ContiguousKVManager(num_blocks, block_size, MAX_MODEL_LEN, kind)


workloads = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 16), st.integers(1, 16),
                               st.sampled_from([None, (1,), (2,), (1, 3)])), min_size=1, max_size=12)


def check_kv(core: ReplicaCore) -> None:
    kv = core.kv
    holders: dict[int, int] = {}
    gpu = list(core.running)
    for r in gpu:
        assert len(set(r.blocks)) == len(r.blocks)
        for b in r.blocks:
            holders[b] = holders.get(b, 0) + 1
    for r in list(core.waiting) + list(core.swapped):
        assert r.blocks == [] and r.num_computed == (r.num_computed if r in core.swapped else 0)
    assert all(0 <= b < kv.num_blocks for b in holders)
    assert kv.num_used_blocks == len(holders) and kv.num_free_blocks == kv.num_blocks - len(holders)
    if isinstance(kv, PagedKVManager):
        assert all(kv.ref_counts[b] == n for b, n in holders.items())
        assert sum(1 for c in kv.ref_counts if c) == len(holders)
        host_used = sum(r.num_swapped_blocks for r in core.swapped)
        assert 0 <= kv.num_free_host_blocks == kv.num_host_blocks - host_used
    else:
        assert not set(holders) & {b for s, n in zip(kv.starts, kv.lengths) for b in range(s, s + n)}
    assert core.num_kv_tokens == sum(r.num_computed for r in gpu)
    for r in gpu:
        assert r.num_computed <= len(r.blocks) * kv.block_size


def simulate(sched_cfg, kv_spec, work, depth: int, window: int = 0):
    core = ReplicaCore(make_scheduler(sched_cfg), make_kv(kv_spec), MAX_MODEL_LEN, window=window)
    core.pipelined = depth > 1
    core.itl_s = []  # as the engine does (this also takes complete()'s pure-decode path)
    reqs = [Request(i, float(a), p, o, hash_ids=h) for i, (a, p, o, h) in enumerate(work)]
    pending = deque(sorted(reqs, key=lambda r: (r.arrival_s, r.id)))
    in_flight: deque = deque()
    trace, computed, extra = [], 0, 0  # extra: recomputed tokens minus prefix hits
    finished_ids: list[int] = []
    t = 0.0
    for _ in range(5000):
        while pending and pending[0].arrival_s <= t:
            r = pending.popleft()
            if not core.add(r):
                assert r.state == REJECTED and r.reject_reason
        plan = None
        if len(in_flight) < depth:
            before = {id(r): r.num_computed for r in core.running}
            plan = core.next_plan(t)
            if plan is not None:
                for r in plan.preempted:
                    if r.state != 2:  # recompute: computed tokens are lost
                        extra += before[id(r)]
                extra -= sum(plan.cached)
                check_plan(core, sched_cfg, plan)
                check_kv(core)
                trace.append((t, tuple(plan.as_dict().items()), tuple(r.id for r in plan.preempted)))
                in_flight.append((t + depth, plan))
        if plan is None and not in_flight:
            if not pending:
                assert not core.has_work(), "deadlock: queued work and no plan"
                break
            t = max(t, pending[0].arrival_s)
            continue
        t += 1.0
        while in_flight and in_flight[0][0] <= t:
            _, p = in_flight.popleft()
            computed += sum(p.num_tokens)
            finished_ids += [r.id for r in core.complete(p, t)]
            check_kv(core)
    else:
        raise AssertionError("no progress after 5000 iterations")
    return core, reqs, trace, computed, extra, finished_ids


def check_plan(core, cfg, plan) -> None:
    ids = [r.id for r in plan.reqs]
    assert len(set(ids)) == len(ids) and all(n >= 1 for n in plan.num_tokens)
    assert len(plan.reqs) <= cfg.max_batch_size
    assert set(plan.admitted) <= set(plan.reqs) and set(plan.swapped_in) <= set(plan.reqs)
    assert not set(plan.preempted) & set(plan.reqs)
    tokens = sum(plan.num_tokens)
    s = plan.shape
    if cfg.kind == "static":
        assert s.num_tokens >= tokens and s.num_seqs >= len(ids)
    else:
        assert (s.num_tokens, s.num_seqs) == (tokens, len(ids))
    assert s.num_prefill_tokens + s.num_decode_tokens == s.num_tokens
    if cfg.kind in ("sarathi", "splitfuse"):
        assert tokens <= min(cfg.chunk_size, cfg.max_num_batched_tokens)
    elif not (cfg.kind == "vllm" and len(plan.reqs) == 1):  # a long recompute may run alone
        assert tokens <= cfg.max_num_batched_tokens
    ref = BatchShape()  # the fast paths' shape must equal the one built sequence by sequence
    for r, n in zip(plan.reqs, plan.num_tokens):
        ctx = r.num_computed
        ref.add(n, ctx, n == 1 and ctx >= r.prompt_len, ctx + n == r.prompt_len + r.num_generated, core.window)
    if cfg.kind != "static":
        assert s == ref
    for r, n in zip(plan.reqs[:plan.num_decodes], plan.num_tokens):  # leading sampling decodes
        assert n == 1 and r.prompt_len <= r.num_computed == r.prompt_len + r.num_generated - 1
    for r, n in zip(plan.reqs, plan.num_tokens):
        assert r.num_computed + n <= r.prompt_len + r.num_generated
        assert r.num_computed + n <= len(r.blocks) * core.kv.block_size


def check_run(sched, kv_spec, work, depth, window) -> ReplicaCore:
    core, reqs, trace, computed, extra, finished_ids = simulate(sched, kv_spec, work, depth, window)
    assert len(finished_ids) == len(set(finished_ids))
    done = [r for r in reqs if r.state == FINISHED]
    assert sorted(finished_ids) == sorted(r.id for r in done)
    for r in reqs:
        assert r.state in (FINISHED, REJECTED)
        if r.state == REJECTED:
            assert r.reject_reason and r.num_generated == 0
            continue
        assert r.arrival_s <= r.scheduled_s < r.first_token_s <= r.last_token_s == r.finish_s
        assert r.num_generated == r.output_len and r.blocks == []
        assert 0 <= r.num_cached_tokens < r.prompt_len
    assert computed == sum(r.prompt_len + r.output_len - 1 for r in done) + extra
    assert len(core.itl_s) == sum(r.output_len - 1 for r in done) and min(core.itl_s, default=1) > 0
    kv = core.kv
    assert kv.num_free_blocks == kv.num_blocks and core.num_kv_tokens == 0 and core.num_outstanding == 0
    assert core.num_in_flight == 0 and not core.has_work()
    # Same inputs, same run.
    assert simulate(sched, kv_spec, work, depth, window)[2] == trace
    return core


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sched=scheduler_cfgs(), kv_spec=kv_specs(), work=workloads, depth=st.sampled_from([1, 1, 2]),
       window=st.sampled_from([0, 0, 0, 8]))
def test_every_request_finishes_once_and_invariants_hold(sched, kv_spec, work, depth, window):
    check_run(sched, kv_spec, work, depth, window)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sched=scheduler_cfgs().filter(lambda c: c.kind in ("vllm", "sarathi", "splitfuse")),
       kind=st.sampled_from(["paged", "prefix"]), tokens=st.integers(36, 48), block_size=st.sampled_from([1, 2, 4]),
       host=st.integers(0, 12), work=st.lists(st.tuples(st.just(0), st.integers(4, 16), st.integers(8, 20),
                                                         st.sampled_from([None, (1,)])), min_size=3, max_size=10),
       depth=st.sampled_from([1, 2]))
def test_invariants_hold_under_memory_pressure(sched, kind, tokens, block_size, host, work, depth):
    check_run(sched, (kind, tokens // block_size, block_size, host), work, depth, 0)


@settings(max_examples=60, deadline=None)
@given(kv_spec=kv_specs(), work=workloads)
def test_prefix_caching_never_computes_more(kv_spec, work):
    """With the same memory, a prefix cache never increases the tokens computed without preemption."""
    kv_spec = ("paged", max(kv_spec[1], 40), kv_spec[2], 0)
    sched = SarathiSchedulerConfig(chunk_size=8, watermark=0.0)
    base = simulate(sched, kv_spec, work, 1)
    cached = simulate(sched, ("prefix",) + kv_spec[1:], work, 1)
    if base[0].num_preemptions == 0 and cached[0].num_preemptions == 0:
        assert cached[3] <= base[3]
        hits = sum(r.num_cached_tokens for r in cached[1])
        assert base[3] - cached[3] == hits
