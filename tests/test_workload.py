"""Synthetic workloads: arrival processes and length distributions have the right moments; determinism;
the Workload container's operations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from hwmodels.errors import UserError
from simulator.config import (ArrivalConfig, EmpiricalLength, FixedLength, LognormalLength, SyntheticWorkload,
                              TraceWorkload, UniformLength, validate_config)
from simulator.workload import Workload, build_workload, sample_lengths, synthetic_arrivals

N = 20_000


def gaps(process: str, rate: float, cv: float = 2.0, n: int = N, seed: int = 1) -> np.ndarray:
    t = synthetic_arrivals(ArrivalConfig(process=process, rate_per_s=rate, cv=cv), n, np.random.default_rng(seed))
    assert t[0] == 0.0 and len(t) == n and np.all(np.diff(t) >= 0)
    return np.diff(t)


def test_poisson_mean_and_cv():
    g = gaps("poisson", 5.0)
    # exponential gaps: mean 0.2 s, sd of the sample mean 0.2/sqrt(N) = 0.0014 → 5 sd
    assert abs(g.mean() - 0.2) < 5 * 0.2 / math.sqrt(N)
    assert abs(g.std() / g.mean() - 1.0) < 0.05


def test_gamma_mean_and_burstiness():
    g = gaps("gamma", 5.0, cv=2.0)
    # shape 1/4: sd of the sample mean = 2 * 0.2 / sqrt(N) = 0.0028; sd of the sample cv ≈ 0.022 (measured
    # over 200 seeds) → 5 sd each
    assert abs(g.mean() - 0.2) < 5 * 0.4 / math.sqrt(N)
    assert abs(g.std() / g.mean() - 2.0) < 0.12
    g1 = gaps("gamma", 5.0, cv=1.0)  # cv=1 is exponential
    assert abs(g1.std() / g1.mean() - 1.0) < 0.05


def test_constant_and_burst():
    np.testing.assert_allclose(gaps("constant", 4.0, n=9), np.full(8, 0.25))
    rng = np.random.default_rng(0)
    assert synthetic_arrivals(ArrivalConfig(process="burst"), 5, rng).tolist() == [0.0] * 5
    assert synthetic_arrivals(ArrivalConfig(process="poisson", rate_per_s=math.inf), 5, rng).tolist() == [0.0] * 5
    assert synthetic_arrivals(ArrivalConfig(), 1, rng).tolist() == [0.0]


def test_inf_rate_from_yaml_style_config():
    data = yaml.safe_load("workload: {kind: synthetic, num_requests: 3, arrival: {rate_per_s: .inf}}")
    cfg = validate_config(data)
    assert build_workload(cfg.workload, 0).arrival_s.tolist() == [0.0, 0.0, 0.0]


def test_fixed_and_uniform_lengths():
    rng = np.random.default_rng(2)
    assert sample_lengths(FixedLength(value=7), 4, rng)[0].tolist() == [7] * 4
    x, notes = sample_lengths(UniformLength(low=10, high=20), N, rng)
    assert x.min() == 10 and x.max() == 20 and notes == []  # both ends inclusive
    # discrete uniform on 11 values: sd = sqrt((11² - 1)/12) = 3.16; sd of the mean 0.022 → 5 sd
    assert abs(x.mean() - 15.0) < 5 * 3.16 / math.sqrt(N)


def test_lognormal_mean_and_clip():
    x, _ = sample_lengths(LognormalLength(mean=500, sigma=1.0, max=10**9), N, np.random.default_rng(3))
    # sd of a lognormal = mean * sqrt(e^{σ²} - 1) = 1.31 * 500; sd of the mean 4.6 → 5 sd
    assert abs(x.mean() - 500) < 5 * 1.31 * 500 / math.sqrt(N)
    assert abs(np.median(x) - 500 * math.exp(-0.5)) < 15  # median = exp(mu) = mean·e^{-σ²/2} = 303
    clipped, _ = sample_lengths(LognormalLength(mean=500, sigma=1.0, min=100, max=800), N,
                                np.random.default_rng(3))
    assert clipped.min() == 100 and clipped.max() == 800 and clipped.dtype == np.int64


def test_empirical_resamples_the_column(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{v},1\n" for v in (3, 5, 0, 100)))
    x, notes = sample_lengths(EmpiricalLength(path=str(p), column="num_prefill_tokens"), N,
                              np.random.default_rng(4))
    assert set(x.tolist()) == {1, 3, 5, 100}  # the 0 became 1, with a note
    assert "1 request(s) with l.csv:num_prefill_tokens = 0 set to 1" in notes[0]
    assert abs(x.mean() - 109 / 4) < 5 * np.std([1, 3, 5, 100]) / math.sqrt(N)
    with pytest.raises(UserError, match=r"l\.csv:1: no column 'input'; columns: num_prefill_tokens, num_decode"):
        sample_lengths(EmpiricalLength(path=str(p), column="input"), 3, np.random.default_rng(0))
    with pytest.raises(UserError, match="not found"):
        sample_lengths(EmpiricalLength(path=str(tmp_path / "x.csv"), column="a"), 3, np.random.default_rng(0))


def test_empirical_from_shared_trace(traces_dir):
    path = traces_dir / "etalon/sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
    cfg = SyntheticWorkload(num_requests=N, input_len=EmpiricalLength(path=str(path), column="num_prefill_tokens"))
    wl = build_workload(cfg, seed=0)
    from simulator.traces import load_trace

    pool = load_trace(path).input_tokens
    assert set(np.unique(wl.input_tokens)) <= set(np.unique(pool))
    assert abs(wl.input_tokens.mean() - pool.mean()) < 5 * pool.std() / math.sqrt(N)


def test_build_is_deterministic_and_streams_are_independent():
    base = SyntheticWorkload(num_requests=500, arrival=ArrivalConfig(process="gamma", rate_per_s=3, cv=3),
                             input_len=UniformLength(low=1, high=1000), output_len=LognormalLength(mean=200))
    a, b = build_workload(base, 7), build_workload(base, 7)
    for col in ("arrival_s", "input_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    c = build_workload(base, 8)
    assert not np.array_equal(a.arrival_s, c.arrival_s) and not np.array_equal(a.input_tokens, c.input_tokens)
    # another output distribution leaves arrivals and inputs as they were
    d = build_workload(base.model_copy(update={"output_len": FixedLength(value=5)}), 7)
    np.testing.assert_array_equal(a.arrival_s, d.arrival_s)
    np.testing.assert_array_equal(a.input_tokens, d.input_tokens)
    assert "synthetic: 500 requests, gamma 3/s, cv 3" in a.source


def test_trace_workload_config(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{5 + i},{i + 1},2\n" for i in range(6)))
    wl = build_workload(TraceWorkload(path=str(p), num_requests=3, rate_scale=2.0), seed=0)
    assert wl.arrival_s.tolist() == [0.0, 0.5, 1.0] and wl.notes == ()
    wl = build_workload(TraceWorkload(path=str(p), arrival=ArrivalConfig(rate_per_s=9)), seed=0)
    assert "workload.arrival ignored: the plain trace has its own timestamps" in wl.notes


def test_config_rejects_reversed_ranges():
    with pytest.raises(UserError, match=r"workload\.synthetic\.input_len\.uniform.*low \(9\) must be <= high \(3\)"):
        validate_config({"workload": {"kind": "synthetic", "input_len": {"kind": "uniform", "low": 9, "high": 3}}})
    with pytest.raises(UserError, match=r"min \(9\) must be <= max \(3\)"):
        validate_config({"workload": {"kind": "synthetic", "output_len": {"kind": "lognormal", "mean": 5, "min": 9, "max": 3}}})


# ---- the Workload container ------------------------------------------------------------------------


def small() -> Workload:
    return Workload(arrival_s=[1.0, 2.0, 4.0, 8.0], input_tokens=[10, 20, 30, 40], output_tokens=[1, 2, 3, 4],
                    hash_ids=[(1,), (1, 2), (), (3,)], source="test")


def test_head_scale_shift_and_requests():
    wl = small()
    assert len(wl) == 4 and len(wl.head(2)) == 2 and wl.head(10) is wl
    assert wl.head(2).hash_ids == [(1,), (1, 2)]
    assert wl.scaled(2.0).arrival_s.tolist() == [1.0, 1.5, 2.5, 4.5]  # gaps halved, first kept
    assert wl.shifted_to_zero().arrival_s.tolist() == [0.0, 1.0, 3.0, 7.0]
    reqs = wl.to_requests()
    assert [(r.id, r.arrival_s, r.prompt_len, r.output_len, r.hash_ids) for r in reqs] == [
        (0, 1.0, 10, 1, (1,)), (1, 2.0, 20, 2, (1, 2)), (2, 4.0, 30, 3, ()), (3, 8.0, 40, 4, (3,))]
    assert type(reqs[0].arrival_s) is float and type(reqs[0].prompt_len) is int
    assert wl.to_requests()[0] is not reqs[0]  # fresh objects each time
    with pytest.raises(UserError):
        wl.head(0)
    with pytest.raises(UserError):
        wl.scaled(0.0)


def test_workload_is_immutable_and_validated():
    wl = small()
    with pytest.raises(ValueError):
        wl.arrival_s[0] = 5.0
    assert wl.input_tokens.dtype == np.int64 and wl.arrival_s.dtype == np.float64
    with pytest.raises(ValueError, match="non-decreasing"):
        Workload([2.0, 1.0], [1, 1], [1, 1], None, "x")
    with pytest.raises(ValueError, match=">= 1"):
        Workload([0.0, 1.0], [1, 0], [1, 1], None, "x")
    with pytest.raises(ValueError, match="hash_ids"):
        Workload([0.0], [1], [1], [(), ()], "x")
