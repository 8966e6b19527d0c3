"""Exact timelines of tiny scenarios through the SimPy engine, with a known per-pass cost."""
from __future__ import annotations

import math

import pytest

from hwmodels.cost import LinearCostModel
from policies.config import (ContiguousKVConfig, PagedKVConfig, RouterConfig, SarathiSchedulerConfig,
                             StaticSchedulerConfig, VLLMSchedulerConfig)
from policies.request import Request
from simulator.engine import EngineSpec, run_engine


def spec(scheduler, pp=1, replicas=1, num_blocks=64, kv=None, base_s=0.01, **kw):
    return EngineSpec(cost_model=LinearCostModel(base_s=base_s, pp=pp), scheduler_cfg=scheduler,
                      kv_cfg=kv or PagedKVConfig(block_size=4), router_cfg=RouterConfig(),
                      num_replicas=replicas, num_kv_blocks=num_blocks, max_model_len=1024, pp=pp, **kw)


def reqs(*specs):
    return [Request(id=i, arrival_s=a, prompt_len=p, output_len=o) for i, (a, p, o) in enumerate(specs)]


def times(rs):
    return [(r.id, round(r.first_token_s, 9), round(r.finish_s, 9)) for r in rs]


def test_vllm_prefill_first_timeline():
    rs = reqs((0.0, 4, 3), (0.005, 4, 3))
    raw = run_engine(spec(VLLMSchedulerConfig()), rs)
    # pass 1 [0, .01]: prefill r0; pass 2 [.01, .02]: prefill r1 (prefill-first); passes 3-4: decode both.
    assert times(rs) == [(0, 0.01, 0.04), (1, 0.02, 0.04)]
    assert [(s[1], s[2], s[3], s[5], s[6]) for s in raw.step_rows()] == [
        (0.0, 0.01, 1, 4, 0), (0.01, 0.02, 1, 4, 0), (0.02, 0.03, 2, 0, 2), (0.03, 0.04, 2, 0, 2)]
    # r0: tokens at .01 (first), .03, .04 -> ITL .02, .01 ; r1: .02, .03, .04 -> .01, .01
    assert sorted(round(x, 9) for x in raw.itl_s) == [0.01, 0.01, 0.01, 0.02]


def test_idle_gap_and_late_arrival():
    rs = reqs((0.0, 2, 1), (1.0, 2, 2))
    run_engine(spec(VLLMSchedulerConfig()), rs)
    assert times(rs) == [(0, 0.01, 0.01), (1, 1.01, 1.02)]


def test_pipeline_parallel_microbatches_overlap():
    # pp=2, one sequence per micro-batch: r1's prefill enters stage 0 while r0's is in stage 1.
    rs = reqs((0.0, 4, 2), (0.0, 4, 2))
    raw = run_engine(spec(VLLMSchedulerConfig(max_batch_size=1), pp=2), rs)
    assert times(rs) == [(0, 0.02, 0.04), (1, 0.03, 0.05)]
    assert len(raw.step_rows()) == 4


def test_rejected_request_reported_with_reason():
    rs = reqs((0.0, 2000, 10),)
    run_engine(spec(VLLMSchedulerConfig()), rs)
    assert rs[0].reject_reason and "max_model_len" in rs[0].reject_reason
    assert math.isnan(rs[0].finish_s)


def test_replicas_round_robin():
    rs = reqs((0.0, 4, 2), (0.0, 4, 2), (0.0, 4, 2))
    run_engine(spec(VLLMSchedulerConfig(), replicas=2), rs)
    assert [r.replica for r in rs] == [0, 1, 0]
    # replica 0 prefills r0 and r2 together; replica 1 runs r1 alone: same timeline.
    assert times(rs) == [(0, 0.01, 0.02), (1, 0.01, 0.02), (2, 0.01, 0.02)]


@pytest.mark.parametrize("sched", [VLLMSchedulerConfig(), SarathiSchedulerConfig(chunk_size=8),
                                   StaticSchedulerConfig()])
def test_same_seed_same_result(sched):
    def run():
        rs = reqs(*[(0.003 * i, 3 + i % 7, 1 + i % 5) for i in range(40)])
        raw = run_engine(spec(sched, num_blocks=20), rs)
        return times(rs), raw.step_rows()
    assert run() == run()


def test_contiguous_kv_runs():
    rs = reqs((0.0, 4, 3), (0.0, 4, 3))
    run_engine(spec(VLLMSchedulerConfig(), kv=ContiguousKVConfig(block_size=4, reserve="oracle")), rs)
    assert all(r.finish_s > 0 for r in rs)


def test_progress_callback_ends_and_changes_nothing():
    def run(progress):
        rs = reqs(*[(0.5 * i, 8, 4) for i in range(200)])
        raw = run_engine(spec(VLLMSchedulerConfig()), rs, progress)
        return times(rs), raw.step_rows()
    seen = []
    assert run(seen.append) == run(None)
    assert 40 <= len(seen) <= 60 and seen == sorted(seen) and seen[-1] >= 99.5


# -- step jitter (SimulationConfig.step_jitter) -------------------------------------------------------------
def test_step_jitter_series_has_the_asked_spread_mean_and_autocorrelation():
    import numpy as np

    from simulator.engine import StepJitter

    for sd, rho in ((0.03, 0.0), (0.05, 0.6)):
        j = StepJitter(sd, rho, seed=3, replica=0)
        f = np.array([j() for _ in range(60_000)])
        x = np.log(f)
        assert abs(f.mean() - 1.0) < 0.003  # mean pass time unchanged (lognormal mean correction)
        assert abs(x.std() - sd) < 0.1 * sd
        r = np.corrcoef(x[:-1], x[1:])[0, 1]
        assert abs(r - rho) < 0.03


def test_step_jitter_is_seeded_and_off_by_default():
    def run(**kw):
        rs = reqs(*[(0.003 * i, 3 + i % 7, 1 + i % 5) for i in range(40)])
        raw = run_engine(spec(VLLMSchedulerConfig(), num_blocks=40, **kw), rs)
        return times(rs), raw.step_rows()

    plain = run()
    jit = run(jitter_sd=0.05, jitter_rho=0.5, seed=1)
    assert jit == run(jitter_sd=0.05, jitter_rho=0.5, seed=1)  # same seed, same numbers
    assert jit != plain and jit != run(jitter_sd=0.05, jitter_rho=0.5, seed=2)
    # with zero jitter the engine is the deterministic one (every pass exactly base_s)
    assert run(jitter_sd=0.0, jitter_rho=0.5) == plain
    # another draw of the jitter (jitter_seed) on the same requests
    assert run(jitter_sd=0.05, jitter_rho=0.5, seed=1, jitter_seed=1) == jit
    assert run(jitter_sd=0.05, jitter_rho=0.5, seed=1, jitter_seed=9) != jit
    durations = [round(s[2] - s[1], 12) for s in jit[1]]
    assert len(set(durations)) > len(durations) // 2 and all(0.008 < d < 0.0125 for d in durations)


def test_step_jitter_config_errors_name_the_field():
    from hwmodels.errors import UserError
    from simulator.config import validate_config

    cfg = validate_config({"simulation": {"step_jitter": {"sd": 0.02, "autocorrelation": 0.5}}})
    assert cfg.simulation.step_jitter.sd == 0.02
    for bad, word in (({"sd": -0.1}, "sd"), ({"sd": 0.02, "autocorrelation": 1.0}, "autocorrelation"),
                      ({"sd": 0.02, "rho": 0.5}, "rho")):
        with pytest.raises(UserError) as e:
            validate_config({"simulation": {"step_jitter": bad}})
        assert "step_jitter" in str(e.value) and word in str(e.value)
