"""Executor and simulator share the policy objects: with identical step times they decide identically.

The executor runs its real forward passes on a virtual clock where each pass takes the cost model's
time for its shape; the SimPy engine prices the same shapes with the same cost model. Every plan
(request id -> tokens), every step row and every request timestamp must match.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from hwmodels.cost import LinearCostModel  # noqa: E402
from policies.config import (OrcaSchedulerConfig, PagedKVConfig, RouterConfig, SarathiSchedulerConfig,  # noqa: E402
                             SplitFuseSchedulerConfig, VLLMSchedulerConfig)
from policies.core import ReplicaCore  # noqa: E402
from policies.request import Request  # noqa: E402
from profiler.executor import Executor, LlamaDims, LlamaModel, VirtualClock  # noqa: E402
from profiler.executor.server import make_core  # noqa: E402
from simulator.engine import EngineSpec, run_engine  # noqa: E402
from simulator.simulate import requests_frame, steps_frame  # noqa: E402

DIMS = LlamaDims(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1, vocab_size=128,
                 max_position=256)
COST = LinearCostModel(base_s=2e-3, per_token_s=4e-5, per_kv_token_s=1e-6)
NUM_BLOCKS, BLOCK_SIZE, MAX_LEN = 20, 8, 256
SCHEDULERS = [
    VLLMSchedulerConfig(max_num_batched_tokens=160, max_batch_size=12),
    SarathiSchedulerConfig(chunk_size=48, max_batch_size=12),
    OrcaSchedulerConfig(max_num_batched_tokens=160, max_batch_size=12),
    SplitFuseSchedulerConfig(chunk_size=40, max_batch_size=12),
]


def _workload(seed: int = 11, n: int = 40) -> list[tuple[float, int, int]]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(0.006, n))
    return [(float(t[i]), int(rng.integers(4, 70)), int(rng.integers(1, 24))) for i in range(n)]


def _requests(rows) -> list[Request]:
    return [Request(i, a, p, o) for i, (a, p, o) in enumerate(rows)]


@pytest.fixture
def plan_log(monkeypatch):
    """Record every plan ReplicaCore applies, in either engine: (time, request id -> tokens, preempted ids)."""
    log: list[tuple] = []
    original = ReplicaCore.next_plan

    def recording(self, now):
        plan = original(self, now)
        if plan is not None:
            log.append((now, plan.as_dict(), tuple(r.id for r in plan.preempted)))
        return plan

    monkeypatch.setattr(ReplicaCore, "next_plan", recording)
    return log


@pytest.mark.parametrize("sched", SCHEDULERS, ids=lambda c: c.kind)
def test_same_step_times_same_decisions(sched, plan_log):
    rows = _workload()
    kv_cfg = PagedKVConfig(block_size=BLOCK_SIZE, num_blocks=NUM_BLOCKS)

    spec = EngineSpec(cost_model=COST, scheduler_cfg=sched, kv_cfg=kv_cfg, router_cfg=RouterConfig(),
                      num_replicas=1, num_kv_blocks=NUM_BLOCKS, max_model_len=MAX_LEN)
    raw = run_engine(spec, _requests(rows))
    sim_plans = list(plan_log)
    plan_log.clear()

    core = make_core(sched, kv_cfg, NUM_BLOCKS, MAX_LEN)
    ex = Executor(LlamaModel(DIMS, seed=0), core, clock=VirtualClock(COST.stage_seconds))
    res = ex.serve(_requests(rows))
    exe_plans = list(plan_log)

    assert len(exe_plans) == len(sim_plans) > len(rows)
    for i, ((t_e, p_e, pre_e), (t_s, p_s, pre_s)) in enumerate(zip(exe_plans, sim_plans)):
        assert p_e == p_s and pre_e == pre_s, f"plan {i} differs"
        assert t_e == pytest.approx(t_s, abs=1e-9), f"plan {i} starts at {t_e} vs {t_s}"

    sim_req, sim_steps = requests_frame(raw.requests), steps_frame(raw.steps)
    exe_req = res.requests.sort_values("id").reset_index(drop=True)
    sim_req = sim_req.sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(exe_req, sim_req, check_dtype=False, atol=1e-9, rtol=0)
    pd.testing.assert_frame_equal(res.steps, sim_steps, check_dtype=False, atol=1e-9, rtol=0)
    np.testing.assert_allclose(np.sort(res.itl_s), np.sort(np.asarray(raw.itl_s)), atol=1e-9)
    assert (exe_req.state == "finished").all()
    if sched.kind == "vllm":
        assert exe_req.num_preemptions.sum() > 0, "scenario should exercise preemption"
