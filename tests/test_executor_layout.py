"""KV block layout from the policies, the split in-situ profile, and the executor's process settings."""
from __future__ import annotations

import json
import platform
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from profiler.executor.layout import block_order, policy_dry_run, ragged_contexts, run_lengths  # noqa: E402

SMALL_MODEL = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512}


def _small_cfg(tmp_path, scheduler: str):
    """The quick preset on a 2-layer 64-hidden model with 64 KV blocks."""
    from app.cmd_validate import quick_config
    from simulator.config import validate_config

    (tmp_path / "config.json").write_text(json.dumps(SMALL_MODEL))
    d = quick_config(scheduler)
    d["model"] = {"name": "small", "hf_config": str(tmp_path / "config.json")}
    d["kv_cache"]["num_blocks"] = 64
    return validate_config(d)


def test_run_lengths():
    assert run_lengths([7, 8, 9, 2, 40, 41]) == [3, 1, 2]
    assert run_lengths([5]) == [1] and run_lengths([]) == []
    assert run_lengths([3, 2, 1]) == [1, 1, 1]


def test_block_order_is_a_permutation_made_of_the_given_runs():
    for runs in (None, [1], [4], [2, 3, 7]):
        order = block_order(200, runs, seed=1)
        assert sorted(order.tolist()) == list(range(200))
    got = run_lengths(block_order(200, [4], seed=1).tolist())
    # shuffled runs of 4 can abut in id order by chance (then they read as one longer run): never shorter
    assert all(r % 4 == 0 for r in got[:-1]) and np.mean(got) >= 4
    scattered = run_lengths(block_order(200, None, seed=1).tolist())
    assert np.mean(scattered) < 1.1
    assert (block_order(200, [2, 3], seed=5) == block_order(200, [2, 3], seed=5)).all()


def _cfg(rate: float):
    from app.cmd_validate import quick_config, with_rate
    from simulator.config import validate_config

    d = quick_config("vllm")
    d["workload"]["num_requests"] = 60
    return with_rate(validate_config(d), rate)


def test_policy_dry_run_layout_fragments_with_overlap():
    """Requests that never overlap get contiguous blocks (one run per sequence); overlapping ones interleave
    their decode blocks and recycle each other's, so runs get shorter — the effect the profile must see."""
    from hwmodels.shapes import BatchShape
    from profiler.executor import LlamaDims, LlamaModel
    from simulator.workload import build_workload

    model = LlamaModel(LlamaDims(hidden_size=64, intermediate_size=96, num_layers=1, num_heads=4, num_kv_heads=2,
                                 vocab_size=128, max_position=2048))

    def step(s: BatchShape) -> float:
        return 1e-3 + 1e-5 * s.num_tokens

    means, spread = {}, {}
    for rate in (0.05, 200.0):
        cfg = _cfg(rate)
        dry = policy_dry_run(cfg.scheduler, cfg.kv_cache, 1024, 2048, build_workload(cfg.workload, 0).to_requests(),
                             step, model)
        runs = dry.runs
        assert runs and min(runs) >= 1
        means[rate] = float(np.mean(runs))
        spread[rate] = dry.ctx_ratios
        again = policy_dry_run(cfg.scheduler, cfg.kv_cache, 1024, 2048,
                               build_workload(cfg.workload, 0).to_requests(), step, model).runs
        assert again == runs  # no timing involved: deterministic
    assert means[0.05] > 2 * means[200.0], means
    # decode contexts of one pass: none at 0.05 req/s (one request at a time), spread around 1 when they overlap
    assert spread[0.05] == [] and len(spread[200.0]) > 100
    r = np.asarray(spread[200.0])
    assert r.min() > 0 and abs(r.mean() - 1) < 0.05 and r.std() > 0.1


def test_ragged_contexts_keep_the_total_and_follow_the_served_spread():
    rng = np.random.default_rng(0)
    pool = [0.5, 1.0, 1.5]
    for b, c in ((2, 16), (8, 200), (64, 512), (5, 1)):
        got = ragged_contexts(b, c, pool, rng, 512)
        assert len(got) == b and sum(got) == b * c and min(got) >= 1 and max(got) <= 512, (b, c, got)
    wide = ragged_contexts(64, 200, pool, np.random.default_rng(1), 2047)
    assert np.std(wide) > 50 and 2.8 < max(wide) / min(wide) < 3.2  # the pool's 1.5 / 0.5, up to rounding
    assert ragged_contexts(8, 200, [], rng, 512) == [200] * 8  # no served spread: uniform
    assert ragged_contexts(1, 200, pool, rng, 512) == [200]
    a = ragged_contexts(16, 100, pool, np.random.default_rng(3), 512)
    assert a == ragged_contexts(16, 100, pool, np.random.default_rng(3), 512)  # seeded


def test_split_profile_pools_samples_from_both_sides_of_the_run(tmp_path):
    from app.cmd_validate import ensure_profile
    from hwmodels.profiled import read_profile
    from profiler.executor.insitu import InsituGrid

    cfg = _small_cfg(tmp_path, "vllm")
    grid = InsituGrid(decode_seqs=(1, 2), decode_contexts=(16, 32), decode_extra=(), mixed=((8, 0, 2, 16),),
                      prefill=((1, 8),), chunks=((8, 16),))
    prof = ensure_profile(cfg, tmp_path / "out", None, None, True, lambda s: None, clock="cpu", insitu_grid=grid,
                          split=True)

    def glue_samples():
        df, _ = read_profile(prof.path)
        g = df[(df.op == "executor_overhead") & (df.num_seqs == 1) & (df.num_tokens == 1)]
        assert len(g) == 1
        return int(g.num_samples.iloc[0]), df

    n1, df1 = glue_samples()  # the pilot sweep
    assert prof.rounds_after > 0 and "executor_loop" in set(df1.op)
    assert "executor_after_prompt" not in set(df1.op)  # measured on the served layout only
    assert prof.relayout([2], prompt_len=32)
    n2, df2 = glue_samples()
    assert n2 > n1
    ap = df2[df2.op == "executor_after_prompt"]
    assert len(ap) >= 2 and set(ap.num_seqs) >= {1, 2} and (ap.median_s >= 0).all()
    mx = df2[df2.op == "executor_mixed_attention"]  # the mixed pass vs its prompt part and decode part alone
    assert len(mx) == 1 and (int(mx.num_seqs.iloc[0]), int(mx.num_tokens.iloc[0])) == (2, 8)
    assert prof.finish() and not prof.finish()  # the second call has nothing left to do
    n3, df3 = glue_samples()
    assert n3 > n2 and set(df3.op) == set(df2.op)  # more samples, same ops (the loop rows are carried over)


def test_after_prompt_overhead_applies_to_decode_passes_only():
    from app.cmd_validate import WithExecutorOverhead
    from hwmodels.cost import LinearCostModel
    from hwmodels.shapes import BatchShape
    from profiler.executor.overhead import OverheadFit, PassOverhead

    base = LinearCostModel(1e-3, 1e-5)
    zero = OverheadFit(0.0, 0.0, 0.0)
    plain = WithExecutorOverhead(base, PassOverhead(zero, zero))
    cost = WithExecutorOverhead(base, PassOverhead(zero, zero), OverheadFit(2e-4, 1e-5, 0.0), 0.25)
    dec, pre = BatchShape.from_seqs([(1, 100)] * 4), BatchShape.from_seqs([(64, 0), (1, 100)])
    assert cost.stage_seconds(dec) == pytest.approx(plain.stage_seconds(dec) + 0.25 * (2e-4 + 4e-5))
    assert cost.stage_seconds(pre) == pytest.approx(plain.stage_seconds(pre))
    # per batch-size bin (b-1).bit_length(): 4 sequences are bin 2; past the last bin, the last share
    binned = WithExecutorOverhead(base, PassOverhead(zero, zero), OverheadFit(2e-4, 1e-5, 0.0), (0.0, 0.1, 0.5))
    assert binned.stage_seconds(dec) == pytest.approx(plain.stage_seconds(dec) + 0.5 * (2e-4 + 4e-5))
    one = BatchShape.from_seqs([(1, 100)])
    assert binned.stage_seconds(one) == pytest.approx(plain.stage_seconds(one))
    big = BatchShape.from_seqs([(1, 100)] * 40)
    assert binned.stage_seconds(big) == pytest.approx(plain.stage_seconds(big) + 0.5 * (2e-4 + 40e-5))


def test_dry_run_after_prompt_share_by_batch_size():
    from profiler.executor.layout import DryRun

    dry = DryRun([], decode_passes=200, decode_after_prompt=20, decode_passes_by_bin={0: 100, 2: 90, 4: 10},
                 after_prompt_by_bin={0: 2, 2: 9, 4: 9})
    # bins with fewer than 20 passes (1: none, 4: 10) take the overall 10 %
    assert dry.after_prompt_fractions() == pytest.approx((0.02, 0.1, 0.1, 0.1, 0.1))
    assert DryRun([]).after_prompt_fractions() == (0.0,)


def test_clock_overhead_is_small_and_positive():
    from profiler.executor.insitu import clock_overhead

    for clock in (time.perf_counter, time.thread_time):
        o = clock_overhead(clock, n=501)
        assert 0 <= o < 50e-6


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")
def test_steady_allocator_applies_on_glibc():
    from profiler.executor.server import steady_allocator

    assert steady_allocator() is True


def test_single_sequence_runs_are_counted_from_multi_sequence_passes():
    """DryRun.single_streak: the place of each one-sequence decode pass in its run, counted only for runs begun
    right after a decode pass of 2+ sequences; the weights are shares of all one-sequence passes."""
    from profiler.executor.layout import DryRun

    d = DryRun([], single_streak=[1, 2, 3, 0, 0, 1, 2, 14])
    w = d.single_streak_weights(12)
    assert len(w) == 12 and w[0] == pytest.approx(2 / 8) and w[1] == pytest.approx(2 / 8)
    assert w[2] == pytest.approx(1 / 8) and sum(w) == pytest.approx(5 / 8)  # 0s and k > 12 add nothing
    assert DryRun([]).single_streak_weights(3) == (0.0, 0.0, 0.0)

    from profiler.executor import LlamaDims, LlamaModel
    from profiler.executor.layout import policy_dry_run
    from simulator.workload import build_workload

    model = LlamaModel(LlamaDims(hidden_size=64, intermediate_size=96, num_layers=1, num_heads=4, num_kv_heads=2,
                                 vocab_size=128, max_position=2048))
    cfg = _cfg(8.0)  # some overlap: runs of one-sequence passes after two-sequence ones
    dry = policy_dry_run(cfg.scheduler, cfg.kv_cache, 1024, 2048, build_workload(cfg.workload, 0).to_requests(),
                         lambda s: 2e-3 + 1e-4 * s.num_tokens, model)
    assert dry.single_streak and min(dry.single_streak) >= 0 and max(dry.single_streak) >= 2
    ks = dry.single_streak
    # a run counts up by one from its first pass
    assert all(b == a + 1 for a, b in zip(ks, ks[1:]) if a > 0 and b > 1)


def test_single_streak_rows_and_cost_term():
    from app.cmd_validate import WithExecutorOverhead
    from hwmodels.cost import LinearCostModel
    from hwmodels.shapes import BatchShape
    from profiler.executor import LlamaDims, LlamaModel
    from profiler.executor.insitu import SINGLE_STREAK_OP, SINGLE_STREAK_PASSES, InsituGrid, InsituSession
    from profiler.executor.overhead import PassOverhead, fit_overhead
    from profiler.table import read_profile

    dims = LlamaDims(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                     vocab_size=256, max_position=512)
    grid = InsituGrid(decode_seqs=(1, 2), decode_contexts=(16,), decode_extra=(), prefill=((1, 8),), chunks=(),
                      mixed=())
    s = InsituSession(LlamaModel(dims, seed=0), grid=grid, num_blocks=64, clock="cpu")
    s.measure(1, 0.0, 1, 1, 1)
    s.measure_single_streak(reps=2)
    assert len(s.single_streak) == 2 and all(len(r) == SINGLE_STREAK_PASSES for r in s.single_streak)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.parquet"
        s.write(out)
        df, _ = read_profile(out)
    rows = df[df["op"] == SINGLE_STREAK_OP].sort_values("num_tokens")
    assert rows["num_tokens"].tolist() == list(range(1, SINGLE_STREAK_PASSES + 1)) and (rows["median_s"] >= 0).all()
    zero = fit_overhead([])
    cm = WithExecutorOverhead(LinearCostModel(base_s=0.01), PassOverhead(zero, zero), single_extra_s=2e-4)
    assert cm.stage_seconds(BatchShape.from_seqs([(1, 10)])) == pytest.approx(0.01 + 2e-4)
    assert cm.stage_seconds(BatchShape.from_seqs([(1, 10)] * 2)) == pytest.approx(0.01)
    assert cm.stage_seconds(BatchShape.from_seqs([(20, 0)])) == pytest.approx(0.01)


def test_profile_sweep_during_the_run_in_slices(tmp_path):
    """The sweep due during the served run: SERVED_PAUSES slices that together measure every case once per
    round (each round in its own seeded order), keep the served KV blocks, add samples, and name their sweep for
    `speed_change`; not run during the run, `finish` runs it."""
    from app.cmd_validate import INSITU_ROUNDS, SERVED_PAUSES, ensure_profile
    from hwmodels.profiled import read_profile
    from profiler.executor.insitu import InsituGrid

    cfg = _small_cfg(tmp_path, "sarathi")
    grid = InsituGrid(decode_seqs=(1, 2), decode_contexts=(16, 32), decode_extra=(), mixed=((8, 0, 2, 16),),
                      prefill=((1, 8), (2, 9)), chunks=((8, 16),))

    def profile(sub):
        prof = ensure_profile(cfg, tmp_path / sub, None, None, True, lambda s: None, clock="cpu", insitu_grid=grid,
                              split=True)
        assert prof.relayout([2], prompt_len=16)
        return prof

    prof = profile("a")
    s = prof.session
    order = s.spread(2, 3)
    assert len(order) == 3 and abs(len(order[0]) - len(order[2])) <= 1
    flat = sum(order, [])
    assert sorted(flat) == sorted(list(range(len(s.cases))) * 2) and s.spread(2, 3) == order
    assert INSITU_ROUNDS[2] >= 1 and prof.rounds_during == INSITU_ROUNDS[2]

    served = 16  # blocks 0..15 stand for the served ones; the grid's sequences lie on all of the cache
    pauses = prof.pauses(10.0, served)
    assert [t for t, _ in pauses] == [10.0 * k / (SERVED_PAUSES + 1) for k in range(1, SERVED_PAUSES + 1)]
    assert prof.pauses(10.0, served) == []  # handed out once
    s.cache.k.fill_(1.5)
    for _, fn in pauses:
        fn()
    assert bool((s.cache.k[:, :served] == 1.5).all())  # the served blocks are as they were
    assert not bool((s.cache.k[:, served:] == 1.5).all())  # the slices did write the cache beyond them
    during = s.sweep_totals[prof.sweeps["during"]]
    assert set(during) == set(range(len(s.cases)))  # every case once
    assert prof.finish()
    assert set(prof.sweeps) == {"before", "during", "after"}
    for a, b in (("before", "after"), ("before", "during")):
        change = prof.speed_change(a, b)
        assert change is not None and -0.5 < change < 0.5

    df, _ = read_profile(prof.path)
    prof2 = profile("b")  # no pauses taken: finish runs the sweep due during the run too
    assert prof2.finish() and "during" not in prof2.sweeps and prof2.speed_change("before", "during") is None
    df2, _ = read_profile(prof2.path)
    glue = [int(x[(x.op == "executor_overhead") & (x.num_seqs == 1) & (x.num_tokens == 1)].num_samples.iloc[0])
            for x in (df, df2)]
    assert glue[0] == glue[1]  # the same number of sweeps either way
