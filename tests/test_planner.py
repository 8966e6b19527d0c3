"""Planner: capacity bisection vs exhaustive scan, SLO verdicts, search space, sizing and ranking."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels.errors import UserError
from simulator.config import Config, SLOConfig
from simulator.planner.capacity import (CapacityResult, ProbeResult, find_capacity, k_of, rate_of, scan_capacity,
                                        slo_metrics)
from simulator.planner.config import PlanConfig, SearchSpace, load_plan_config, validate_plan_config
from simulator.planner.prune import Survivor
from simulator.planner.search import LayoutOutcome, build_deployments, rank_key, replica_options
from simulator.planner.space import Candidate, enumerate_candidates


def threshold_probe(capacity: float, calls: list[float] | None = None):
    def probe(rate: float) -> ProbeResult:
        if calls is not None:
            calls.append(rate)
        ok = rate <= capacity
        return ProbeResult(rate, ok, 0.1 * rate, 0.01, 1.0, 1.0 if ok else 0.5, 0.5, 0, 0, "" if ok else "ttft")
    return probe


# ---- capacity search ----------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(cap=st.floats(0.001, 2e4), start=st.floats(0.02, 5e3), tol=st.sampled_from([0.02, 0.05, 0.1, 0.3]))
def test_bisection_equals_exhaustive_scan_for_monotone_feasibility(cap, start, tol):
    calls: list[float] = []
    res = find_capacity(threshold_probe(cap, calls), start_rate_per_s=start, tol=tol, min_rate_per_s=0.01,
                        max_rate_per_s=1e4, max_probes=60)
    ref = scan_capacity(threshold_probe(cap), tol=tol, min_rate_per_s=0.01, max_rate_per_s=1e4)
    assert res.max_rate_per_s == pytest.approx(ref, rel=1e-12)
    assert len(calls) == len(set(calls)), "a rate was simulated twice"
    if ref > 0 and not res.capped:
        assert res.first_fail is not None and res.first_fail.rate_per_s == pytest.approx(ref * (1 + tol))
    # Logarithmic number of probes, not a scan.
    assert len(calls) <= 2 * math.log2(math.log(1e6) / math.log1p(tol)) + 4


def test_capacity_zero_and_capped():
    low = find_capacity(threshold_probe(0.001), start_rate_per_s=5.0, min_rate_per_s=0.01)
    assert low.max_rate_per_s == 0.0 and low.best is None and low.first_fail is not None
    high = find_capacity(threshold_probe(1e9), start_rate_per_s=5.0, max_rate_per_s=100.0)
    assert high.capped and high.max_rate_per_s <= 100.0 and high.max_rate_per_s > 100.0 / 1.05


def test_grid_is_shared():
    assert rate_of(k_of(3.7, 0.05), 0.05) <= 3.7 < rate_of(k_of(3.7, 0.05) + 1, 0.05)


# ---- SLO verdicts -------------------------------------------------------------------------------

def test_slo_metrics_percentile_and_unfinished():
    slo = SLOConfig(ttft_s=1.0, tpot_s=0.1, percentile=90)
    ttft = np.array([0.1] * 9 + [5.0])
    tpot = np.array([0.05] * 10)
    e2e = np.array([2.0] * 10)
    _, _, _, att, violated = slo_metrics(ttft, tpot, e2e, slo)
    assert violated == "" and att == pytest.approx(0.9)  # exactly 90 % meet TTFT: met
    ttft2 = ttft.copy()
    ttft2[0] = np.nan  # one request never finished: now only 80 % meet it
    e2e2 = e2e.copy()
    e2e2[0] = np.nan
    p_ttft, _, _, att2, violated2 = slo_metrics(ttft2, tpot, e2e2, slo)
    assert violated2 == "ttft" and att2 == pytest.approx(0.8)
    tpot3 = np.array([0.05] * 8 + [0.2, np.nan])  # NaN tpot of a finished 1-token request meets TPOT
    _, _, _, _, v = slo_metrics(np.full(10, 0.1), tpot3, e2e, slo)
    assert v == ""
    _, _, _, _, v = slo_metrics(np.full(10, 0.1), np.array([0.05] * 8 + [0.2, 0.3]), e2e, slo)
    assert v == "tpot"


def test_slo_metrics_attainment_mode():
    slo = SLOConfig(ttft_s=1.0, attainment=0.95)
    ttft = np.array([0.1] * 19 + [2.0])
    assert slo_metrics(ttft, np.full(20, np.nan), np.full(20, 1.0), slo)[4] == ""
    ttft[0] = 2.0
    assert slo_metrics(ttft, np.full(20, np.nan), np.full(20, 1.0), slo)[4] == "attainment"


# ---- config and search space --------------------------------------------------------------------

def test_plan_config_yaml_with_plan_section(tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text("model: {name: llama-3.1-8b}\nslo: {ttft_s: 2, tpot_s: 0.1}\n"
                 "plan:\n  space: {gpus: [h100-sxm, a100-80gb], tp: [1, 2]}\n  max_gpus: 8\n")
    pc = load_plan_config(p)
    assert pc.base.slo.ttft_s == 2 and pc.space.gpus == ("h100-sxm", "a100-80gb") and pc.max_gpus == 8
    with pytest.raises(Exception):
        pc.max_gpus = 3  # frozen
    bad = tmp_path / "bad.yaml"
    bad.write_text("plan:\n  space: {tp: [0]}\n  max_gpuz: 8\n")
    with pytest.raises(UserError) as e:
        load_plan_config(bad)
    assert "plan.max_gpuz" in str(e.value) and "plan.space.tp.0" in str(e.value)
    with pytest.raises(UserError) as e:
        validate_plan_config({"slo": {"ttft_s": -1}})
    assert "slo.ttft_s" in str(e.value) and "base." not in str(e.value)


def test_enumerate_defaults_and_dedup():
    pc = PlanConfig(base=Config(), max_gpus=4,
                    space=SearchSpace(gpus=("h100-sxm",), schedulers=("vllm", "sarathi"), chunk_size=(256, 512)))
    cands = enumerate_candidates(pc, available_schedulers=("vllm", "sarathi"))
    assert sorted({c.tp for c in cands}) == [1, 2, 4]  # powers of two up to max_gpus
    # vllm has no chunk size: one vllm candidate per TP, two sarathi ones.
    assert sum(c.scheduler == "vllm" for c in cands) == 3 and sum(c.scheduler == "sarathi" for c in cands) == 6
    assert len(set(cands)) == len(cands)
    cfg = [c for c in cands if c.scheduler == "sarathi"][0].to_config(Config(), replicas=3)
    assert cfg.scheduler.kind == "sarathi" and cfg.scheduler.chunk_size in (256, 512) and cfg.parallel.replicas == 3
    only = enumerate_candidates(pc, available_schedulers=("vllm",))
    assert {c.scheduler for c in only} == {"vllm", "sarathi"}  # explicit lists are kept (plan_serve validates)


# ---- sizing and ranking -------------------------------------------------------------------------

def _outcome(gpu: str, tp: int, qps: float, price: float, ttft: float = 1.0) -> LayoutOutcome:
    c = Candidate(gpu, tp, 1, "vllm", 256, 8192, None, 16, "bf16", "bf16")
    sv = Survivor(c, price, 80e9, 16e9, 100000, 0.1, 0.01, 1.0)
    best = ProbeResult(qps, True, ttft, 0.05, 5.0, 1.0, 0.8) if qps > 0 else None
    return LayoutOutcome(sv, CapacityResult(qps, best, None, [best] if best else []), 0.0)


def test_replicas_for_target_qps_and_max_gpus():
    outs = [_outcome("a", 1, 10.0, 2.0), _outcome("b", 2, 25.0, 3.0), _outcome("c", 1, 0.0, 1.0)]
    pc = PlanConfig(base=Config(slo=SLOConfig(ttft_s=1)), target_qps=45.0, max_gpus=4)
    rows, dropped = build_deployments(outs, pc, mean_output_tokens=100.0)
    # a: ceil(45/10) = 5 replicas = 5 GPUs > 4 -> dropped; b: ceil(45/25) = 2 x TP2 = 4 GPUs
    assert [(d.candidate.gpu, d.replicas, d.num_gpus) for d in rows] == [("b", 2, 4)]
    assert dropped == {"target_over_max_gpus": 1, "slo_unmet_simulated": 1}
    d = rows[0]
    assert d.usd_per_hour == pytest.approx(4 * 3.0)
    assert d.usd_per_mtok == pytest.approx(12.0 / 3600 / (45.0 * 100.0) * 1e6)


def test_ranking_by_cost_per_token_without_target():
    outs = [_outcome("cheap-slow", 1, 10.0, 1.0), _outcome("fast-pricey", 1, 15.0, 2.0)]
    pc = PlanConfig(base=Config(slo=SLOConfig(ttft_s=1)), max_gpus=8)
    rows, _ = build_deployments(outs, pc, 100.0)
    assert [d.candidate.gpu for d in rows] == ["cheap-slow", "fast-pricey"]  # $0.1/req/s/h vs $0.133
    assert rows[0].replicas == 8 and rows[0].max_qps == pytest.approx(80.0)
    assert replica_options(2, 6.0, 10.0, PlanConfig(budget_usd_per_hour=20.0)) == [3]


@settings(max_examples=100, deadline=None)
@given(qps=st.lists(st.floats(0.1, 50.0), min_size=1, max_size=4), tps=st.lists(st.sampled_from([1, 2, 4]),
       min_size=4, max_size=4), target=st.floats(0.5, 300.0), max_gpus=st.integers(1, 16))
def test_sizing_meets_target_within_max_gpus(qps, tps, target, max_gpus):
    outs = [_outcome(f"g{i}", tps[i], q, 1.0 + i) for i, q in enumerate(qps)]
    pc = PlanConfig(base=Config(slo=SLOConfig(ttft_s=1)), target_qps=target, max_gpus=max_gpus)
    rows, dropped = build_deployments(outs, pc, 50.0)
    assert len(rows) + sum(dropped.values()) == len(outs)
    for d in rows:
        assert d.max_qps >= target * (1 - 1e-9) and d.num_gpus <= max_gpus
        assert (d.replicas - 1) * d.outcome.capacity.max_rate_per_s < target  # no replica more than needed
    assert [rank_key(d, pc) for d in rows] == sorted(rank_key(d, pc) for d in rows)


def test_pareto_front_keeps_only_undominated_points():
    from simulator.planner.report import pareto_front

    pts = [{"usd_per_mtok": c, "latency_s": l} for c, l in [(1, 5), (2, 3), (2, 4), (3, 3), (4, 1), (5, 2)]]
    assert [(p["usd_per_mtok"], p["latency_s"]) for p in pareto_front(pts)] == [(1, 5), (2, 3), (4, 1)]


def test_explicit_replica_list_respects_max_gpus():
    outs = [_outcome("a", 2, 10.0, 2.0)]
    pc = PlanConfig(base=Config(slo=SLOConfig(ttft_s=1)), space=SearchSpace(replicas=(1, 2, 4)), max_gpus=4)
    rows, dropped = build_deployments(outs, pc, 100.0)
    assert [(d.replicas, d.num_gpus, d.max_qps) for d in rows] == [(1, 2, 10.0), (2, 4, 20.0)] and not dropped
