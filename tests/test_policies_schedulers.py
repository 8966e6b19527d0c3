"""Tiny exact scenarios for each scheduler: plans, preemptions and block ids pinned step by step."""
from __future__ import annotations

import typing

import pytest

from policies.config import (ContiguousKVConfig, OrcaSchedulerConfig, SarathiSchedulerConfig, SchedulerConfig,
                             SplitFuseSchedulerConfig, StaticSchedulerConfig, VLLMSchedulerConfig)
from policies.core import ReplicaCore
from policies.kv import ContiguousKVManager, PagedKVManager, PrefixCachingKVManager, make_kv_manager
from policies.request import FINISHED, REJECTED, RUNNING, WAITING, Request
from policies.schedulers import REGISTRY, make_scheduler


def step(core: ReplicaCore, t: float):
    """One pass at time t (ends at t + 1): returns ({id: tokens}, [preempted ids], [finished ids])."""
    plan = core.next_plan(t)
    if plan is None:
        return None
    done = core.complete(plan, t + 1)
    return plan.as_dict(), [r.id for r in plan.preempted], [r.id for r in done]


def run(core: ReplicaCore, t: float = 0.0, max_steps: int = 50) -> list:
    out = []
    while core.has_work() and len(out) < max_steps:
        s = step(core, t)
        assert s is not None, "work left but no plan"
        out.append(s)
        t += 1
    return out


def test_registry_matches_config_union():
    union = typing.get_args(typing.get_args(SchedulerConfig)[0])
    kinds = {typing.get_args(c.model_fields["kind"].annotation)[0] for c in union}
    assert set(REGISTRY) == kinds
    for c in union:
        assert type(make_scheduler(c())) is REGISTRY[c().kind]


def test_vllm_recompute_pins_blocks_and_plans():
    kv = PagedKVManager(num_blocks=4, block_size=4)
    core = ReplicaCore(make_scheduler(VLLMSchedulerConfig(max_batch_size=4, max_num_batched_tokens=16,
                                                          watermark=0.0)), kv, max_model_len=64)
    a, b = Request(0, 0.0, 6, 4), Request(1, 0.0, 3, 6)
    assert core.add(a) and core.add(b)
    assert step(core, 0) == ({0: 6, 1: 3}, [], [])  # prefill-only pass, whole prompts
    assert (a.blocks, b.blocks) == ([0, 1], [2])
    assert step(core, 1) == ({0: 1, 1: 1}, [], [])
    assert step(core, 2) == ({0: 1, 1: 1}, [], [])  # b's 5th token opens block 3
    assert b.blocks == [2, 3] and kv.num_free_blocks == 0
    # a's 9th token needs a block: b (the back of the queue) is preempted and recomputed later.
    assert step(core, 3) == ({0: 1}, [1], [0])
    assert (b.state, b.num_computed, b.num_generated, b.num_preemptions) == (WAITING, 0, 3, 1)
    assert list(kv.free_list) == [3, 0, 1, 2]  # b's blocks returned first, then a's when it finished
    assert step(core, 4) == ({1: 6}, [], [])  # prompt + 3 generated tokens recomputed
    assert b.blocks == [3, 0]
    assert run(core, 5) == [({1: 1}, [], []), ({1: 1}, [], [1])]
    assert kv.num_free_blocks == 4 and core.num_kv_tokens == 0 and core.num_outstanding == 0
    assert (a.first_token_s, a.finish_s, b.first_token_s, b.finish_s) == (1, 4, 1, 7)


def test_vllm_preempts_only_as_many_as_needed():
    """Two decodes need a block with one free: the first takes it, the back request yields one more."""
    kv = PagedKVManager(num_blocks=4, block_size=2)
    core = ReplicaCore(make_scheduler(VLLMSchedulerConfig(watermark=0.0)), kv, 64)
    reqs = [Request(0, 0.0, 2, 5), Request(1, 0.0, 2, 5), Request(2, 0.0, 1, 5)]
    for r in reqs:
        core.add(r)
    assert step(core, 0) == ({0: 2, 1: 2, 2: 1}, [], [])
    assert step(core, 1) == ({0: 1, 1: 1}, [2], [])
    assert [r.blocks for r in reqs] == [[0, 3], [1, 2], []]


def test_vllm_swap_keeps_computed_tokens():
    kv = PagedKVManager(num_blocks=4, block_size=4, num_host_blocks=4)
    core = ReplicaCore(make_scheduler(VLLMSchedulerConfig(preemption="swap", watermark=0.0)), kv, 64)
    a, b = Request(0, 0.0, 6, 4), Request(1, 0.0, 3, 6)
    core.add(a), core.add(b)
    trace = run(core)
    assert trace[3] == ({0: 1}, [1], [0])
    assert trace[4:] == [({1: 1}, [], []), ({1: 1}, [], []), ({1: 1}, [], [1])]  # swapped in, no recompute
    assert (core.num_swapped_blocks_out, core.num_swapped_blocks_in) == (2, 2)
    assert kv.num_free_host_blocks == 4 and b.num_preemptions == 1 and b.state == FINISHED


def test_vllm_preemption_counts_only_unshared_blocks():
    """A victim's shared prefix blocks stay held by the other request: they do not free memory."""
    kv = PrefixCachingKVManager(num_blocks=5, block_size=4)
    sched = make_scheduler(VLLMSchedulerConfig(watermark=0.0))
    core = ReplicaCore(sched, kv, 64)
    a = Request(0, 0.0, 8, 2, hash_ids=(7,))
    core.add(a)
    assert step(core, 0) == ({0: 8}, [], [])
    assert kv.num_cached_blocks == 2
    b = Request(1, 0.0, 9, 10, hash_ids=(7,))
    core.add(b)
    plan = core.next_plan(1)  # b shares a's two blocks and computes 1 token on top of them
    assert plan.admitted == [b] and plan.cached == [8] and plan.as_dict() == {1: 1}
    assert b.blocks[:2] == a.blocks and kv.ref_counts[a.blocks[0]] == 2 and b.num_cached_tokens == 8
    core.complete(plan, 2)
    assert kv.blocks_freed_by(b) == 1 and kv.blocks_freed_by(a) == 0  # a's 2 blocks are both shared


def test_sarathi_decodes_first_then_chunks():
    kv = PagedKVManager(num_blocks=3, block_size=4)
    core = ReplicaCore(make_scheduler(SarathiSchedulerConfig(chunk_size=4, watermark=0.0)), kv, 64)
    a, b = Request(0, 0.0, 6, 2), Request(1, 0.0, 5, 2)
    core.add(a), core.add(b)
    assert step(core, 0) == ({0: 4}, [], [])
    assert a.blocks == [0, 1]  # the whole prompt is reserved at admission
    assert step(core, 1) == ({0: 2}, [], [])  # b needs 2 blocks for its prompt, 1 is free
    assert step(core, 2) == ({0: 1}, [], [0])
    assert step(core, 3) == ({1: 4}, [], [])
    assert b.blocks == [2, 0]
    assert run(core) == [({1: 1}, [], []), ({1: 1}, [], [1])]


def test_sarathi_shape_mixes_decode_and_prefill_chunks():
    kv = PagedKVManager(num_blocks=16, block_size=4)
    core = ReplicaCore(make_scheduler(SarathiSchedulerConfig(chunk_size=4, watermark=0.0)), kv, 64)
    a, b = Request(0, 0.0, 2, 3), Request(1, 0.0, 7, 2)
    core.add(a), core.add(b)
    assert step(core, 0) == ({0: 2, 1: 2}, [], [])
    plan = core.next_plan(1)
    assert plan.as_dict() == {0: 1, 1: 3}  # a's decode first, then b's chunk under the budget of 4
    s = plan.shape
    assert (s.num_seqs, s.num_tokens, s.num_decode_tokens, s.num_prefill_tokens, s.num_prefill_seqs) == (2, 4, 1, 3, 1)
    assert s.num_logits == 1  # b's chunk does not reach the end of its prompt
    assert s.attn_pairs == (2 + 1) + (3 * 2 + 3 * 4 // 2) and s.kv_read_tokens == 3 + 5


def test_splitfuse_allocates_per_chunk():
    kv = PagedKVManager(num_blocks=3, block_size=4)
    core = ReplicaCore(make_scheduler(SplitFuseSchedulerConfig(chunk_size=4, watermark=0.0)), kv, 64)
    a, b = Request(0, 0.0, 6, 2), Request(1, 0.0, 5, 2)
    core.add(a), core.add(b)
    assert step(core, 0) == ({0: 4}, [], [])
    assert a.blocks == [0]
    assert step(core, 1) == ({0: 2, 1: 2}, [], [])  # b starts at once: its first chunk needs 1 block
    assert (a.blocks, b.blocks) == ([0, 1], [2])
    assert step(core, 2) == ({0: 1, 1: 2}, [], [0])  # b's chunk is cut to the 2 slots its block holds
    assert step(core, 3) == ({1: 1}, [], [])  # the prompt's last token, in a fresh block
    assert b.blocks == [2, 0]
    assert run(core) == [({1: 1}, [], [1])]


def test_splitfuse_stalled_prefills_preempt_the_last():
    """Two prompts in progress, no free block for either: the last one yields its blocks."""
    kv = PagedKVManager(num_blocks=3, block_size=2)
    core = ReplicaCore(make_scheduler(SplitFuseSchedulerConfig(chunk_size=4, watermark=0.0)), kv, 64)
    a, b = Request(0, 0.0, 5, 1), Request(1, 0.0, 5, 1)
    for r, n in ((a, 4), (b, 2)):  # the state after their first chunks: every block full, none free
        assert core.add(r)
        core.waiting.remove(r)
        kv.allocate(r, n)
        r.num_computed, r.state = n, RUNNING
        core.running.append(r)
    core.num_kv_tokens = 6
    assert step(core, 0) == ({}, [1], [])
    assert run(core, 1) == [({0: 1}, [], [0]), ({1: 4}, [], []), ({1: 1}, [], [1])]


def test_orca_reserves_max_length_contiguously():
    kv = ContiguousKVManager(num_blocks=10, block_size=2, max_model_len=8, reserve="max_model_len")
    core = ReplicaCore(make_scheduler(OrcaSchedulerConfig()), kv, max_model_len=8)
    a, b, c = Request(0, 0.0, 3, 2), Request(1, 0.0, 2, 3), Request(2, 0.0, 2, 1)
    for r in (a, b, c):
        core.add(r)
    assert step(core, 0) == ({0: 3, 1: 2}, [], [])  # c's 4 blocks do not fit in the 2 left
    assert (a.blocks, b.blocks) == ([0, 1, 2, 3], [4, 5, 6, 7])
    assert step(core, 1) == ({0: 1, 1: 1}, [], [0])
    assert (kv.starts, kv.lengths) == ([0, 8], [4, 2])
    assert step(core, 2) == ({1: 1, 2: 2}, [], [1, 2])  # selective batching: decode + a whole prompt
    assert c.blocks == [] and (kv.starts, kv.lengths) == ([0], [10])


def test_orca_oracle_reservation_fits_more():
    kv = make_kv_manager(ContiguousKVConfig(block_size=2, reserve="oracle"), 10, 8)
    core = ReplicaCore(make_scheduler(OrcaSchedulerConfig()), kv, max_model_len=8)
    reqs = [Request(0, 0.0, 3, 2), Request(1, 0.0, 2, 3), Request(2, 0.0, 2, 1)]
    for r in reqs:
        core.add(r)
    assert step(core, 0) == ({0: 3, 1: 2, 2: 2}, [], [2])
    assert [r.blocks for r in reqs] == [[0, 1, 2], [3, 4, 5], []]


def test_static_batch_runs_to_completion_with_padding():
    kv = PagedKVManager(num_blocks=16, block_size=4)
    core = ReplicaCore(make_scheduler(StaticSchedulerConfig(max_batch_size=2)), kv, 64)
    a, b, c = Request(0, 0.0, 3, 1), Request(1, 0.0, 2, 3), Request(2, 0.0, 2, 1)
    for r in (a, b, c):
        core.add(r)
    assert step(core, 0) == ({0: 3, 1: 2}, [], [0])
    assert (a.blocks, b.blocks) == ([], [1, 2])  # final length reserved; a finished at once
    plan = core.next_plan(1)
    assert plan.as_dict() == {1: 1} and plan.admitted == []  # c waits for the batch to end
    # a's row is padding: it still decodes at a's position (prompt 3 + 0 decode passes).
    assert (plan.shape.num_seqs, plan.shape.num_tokens, plan.shape.kv_read_tokens) == (2, 2, 3 + 4)
    core.complete(plan, 2)
    assert run(core) == [({1: 1}, [], [1]), ({2: 2}, [], [2])]


def test_rejections_name_the_limit():
    kv = PagedKVManager(num_blocks=4, block_size=4)
    core = ReplicaCore(make_scheduler(VLLMSchedulerConfig(max_num_batched_tokens=8, watermark=0.25)), kv, 64)
    too_long = Request(0, 0.0, 9, 1)
    assert not core.add(too_long) and too_long.state == REJECTED
    assert "max_num_batched_tokens=8" in too_long.reject_reason
    too_big = Request(1, 0.0, 8, 8)
    assert not core.add(too_big) and "watermark" in too_big.reject_reason
    assert not core.add(Request(2, 0.0, 8, 100)) and core.num_outstanding == 0


@pytest.mark.parametrize("cfg", [VLLMSchedulerConfig(), SarathiSchedulerConfig(), SplitFuseSchedulerConfig(),
                                 OrcaSchedulerConfig()], ids=lambda c: c.kind)
def test_pipelined_plans_skip_in_flight_requests(cfg):
    core = ReplicaCore(make_scheduler(cfg), PagedKVManager(64, 4), 256)
    core.pipelined = True
    reqs = [Request(i, 0.0, 4, 3) for i in range(2)]
    core.add(reqs[0])
    p0 = core.next_plan(0)
    core.add(reqs[1])
    p1 = core.next_plan(0)  # reqs[0] is in flight: only reqs[1] can be scheduled
    assert p0.as_dict() == {0: 4} and p1.as_dict() == {1: 4} and core.num_in_flight == 2
    assert core.next_plan(0) is None
    core.complete(p0, 1)
    assert core.next_plan(1).as_dict() == {0: 1}


def _offline_run(sched_cfg, kv, n: int = 40, seed: int = 3) -> tuple[float, float]:
    """Mean running batch and mean KV token utilisation (tokens held / slots allocated) over the passes."""
    import random

    rng = random.Random(seed)
    core = ReplicaCore(make_scheduler(sched_cfg), kv, max_model_len=256)
    for i in range(n):
        assert core.add(Request(i, 0.0, rng.randint(8, 64), rng.randint(8, 64)))
    batch, util, t = [], [], 0.0
    while core.has_work():
        plan = core.next_plan(t)
        batch.append(len(core.running))
        util.append(core.num_kv_tokens / max(1, kv.num_used_blocks * kv.block_size))
        t += 1
        core.complete(plan, t)
    return sum(batch) / len(batch), sum(util) / len(util)


def test_reservation_waste_orders_as_in_the_vllm_paper():
    """Same memory, same requests: paged KV batches the most and wastes the least; contiguous
    reservation wastes more the further it over-reserves (max_model_len > pow2 > oracle)."""
    res = {m: _offline_run(OrcaSchedulerConfig(), ContiguousKVManager(160, 4, 256, m))
           for m in ("max_model_len", "pow2", "oracle")}
    res["paged"] = _offline_run(VLLMSchedulerConfig(watermark=0.0), PagedKVManager(160, 4))
    order = ["max_model_len", "pow2", "oracle", "paged"]
    assert [res[m][0] for m in order] == sorted(res[m][0] for m in order)  # mean batch grows
    assert [res[m][1] for m in order] == sorted(res[m][1] for m in order)  # utilisation grows
    assert res["max_model_len"][0] <= 2  # 640 slots hold two 256-token reservations
    assert res["paged"][1] > 0.9  # waste is at most the last, partly filled 4-token block per request


def test_sarathi_prefix_hit_starts_after_the_cached_blocks():
    kv = PrefixCachingKVManager(num_blocks=16, block_size=4)
    core = ReplicaCore(make_scheduler(SarathiSchedulerConfig(chunk_size=6, watermark=0.0)), kv, 64)
    a = Request(0, 0.0, 10, 1, hash_ids=(3,))
    core.add(a)
    assert run(core) == [({0: 6}, [], []), ({0: 4}, [], [0])]
    assert kv.num_cached_blocks == 2 and kv.num_evictable == 2 and kv.num_free_blocks == 16
    b = Request(1, 0.0, 13, 2, hash_ids=(3,))
    core.add(b)
    plan = core.next_plan(2)
    assert plan.cached == [8] and plan.as_dict() == {1: 5}  # 8 tokens cached, the other 5 fit the budget
    assert b.blocks[:2] == [0, 1] and len(b.blocks) == 4 and b.num_computed == 8 and b.num_cached_tokens == 8
    assert (plan.shape.attn_pairs, plan.shape.kv_read_tokens) == (5 * 8 + 15, 13)
    core.complete(plan, 3)
    assert run(core, 3) == [({1: 1}, [], [1])]
