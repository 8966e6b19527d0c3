"""Figure builders: exact numbers on tiny hand-made frames (the simulator's documented schemas)."""
from __future__ import annotations


import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from app.dashboard import figures as F
from hwmodels.cost import OpCost


def _requests() -> pd.DataFrame:
    # id 2 never finished; id 3 generated a single token (no TPOT).
    return pd.DataFrame({
        "id": [0, 1, 2, 3], "replica": [0, 1, 0, 1],
        "arrival_s": [0.0, 0.5, 1.0, 1.5], "scheduled_s": [0.0, 0.7, np.nan, 1.5],
        "first_token_s": [0.1, 0.9, np.nan, 1.6], "finish_s": [1.1, 2.9, np.nan, 1.6],
        "input_tokens": [10, 20, 30, 40], "output_tokens": [11, 5, 7, 1], "num_generated": [11, 5, 0, 1],
        "num_preemptions": [0, 1, 0, 0], "state": ["finished", "finished", "unfinished", "finished"],
    })


def _steps() -> pd.DataFrame:
    return pd.DataFrame({
        "replica": [0, 1, 0, 1], "start_s": [0.0, 0.0, 1.0, 1.0], "end_s": [1.0, 1.0, 2.0, 2.0],
        "batch_size": [2, 1, 2, 1], "num_tokens": [100, 50, 2, 1], "prefill_tokens": [100, 50, 0, 0],
        "decode_tokens": [0, 0, 2, 1], "kv_used_blocks": [10, 5, 20, 5], "kv_free_blocks": [90, 95, 80, 95],
        "kv_tokens": [160, 80, 320, 80], "num_waiting": [3, 1, 0, 2], "num_running": [2, 1, 2, 1],
        "num_preempted": [0, 0, 0, 0],
    })


def test_request_latencies_exact():
    lat = F.request_latencies(_requests())
    assert lat["ttft_s"].tolist() == pytest.approx([0.1, 0.4, 0.1])
    assert lat["e2e_s"].tolist() == pytest.approx([1.1, 2.4, 0.1])
    assert lat["tpot_s"].tolist() == pytest.approx([1.0 / 10, 2.0 / 4])  # id 3 has one token: no TPOT
    assert lat["queue_s"].tolist() == pytest.approx([0.0, 0.2, 0.0])


def test_latency_cdfs_one_curve_per_run_and_metric():
    fig = F.latency_cdfs({"a": _requests(), "b": _requests().iloc[:2]}, slo_s={"ttft_s": 0.2})
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 6  # 2 runs x 3 metrics
    ttft_a = fig.data[0]
    assert list(ttft_a.x) == pytest.approx([100.0, 100.0, 400.0])  # ms, sorted
    assert list(ttft_a.y) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert len(fig.data[1].x) == 2  # TPOT skips the single-token request
    assert fig.data[0].line.color != fig.data[3].line.color  # one colour per run
    assert any(s.x0 == pytest.approx(200.0) for s in fig.layout.shapes)  # SLO line


def test_throughput_and_queue_bins_tokens():
    fig = F.throughput_and_queue({"run": _steps()}, num_bins=2)
    all_tokens, decode = fig.data[0], fig.data[1]
    # bins [0,1) and [1,2], 1 s wide: every token lands in exactly one bin
    assert sum(all_tokens.y) == pytest.approx(153.0)
    assert sum(decode.y) == pytest.approx(3.0)
    waiting, running = F.queue_over_time(_steps())
    assert waiting.tolist() == [4, 2] and running.tolist() == [3, 3]


def test_queue_forward_fills_replicas_that_did_not_step():
    s = _steps().iloc[[0, 1, 2]]  # replica 1 has no step at t=1: its last value (1 waiting) holds
    waiting, _ = F.queue_over_time(s)
    assert waiting.tolist() == [4, 1]


def test_kv_usage_percent_per_replica():
    fig = F.kv_usage({"run": _steps()})
    assert len(fig.data) == 2
    assert list(fig.data[0].y) == pytest.approx([10.0, 20.0])
    assert list(fig.data[1].y) == pytest.approx([5.0, 5.0])


def test_batch_composition_stacks_prefill_and_decode_of_one_replica():
    fig = F.batch_composition(_steps())
    assert [t.name for t in fig.data] == ["prefill tokens", "decode tokens"]
    assert list(fig.data[0].y) == [100, 0] and list(fig.data[1].y) == [0, 2]
    assert all(t.stackgroup == "tokens" for t in fig.data)


def test_request_timeline_sample_is_deterministic_and_finished_only():
    big = pd.concat([_requests()] * 30, ignore_index=True)
    big["id"] = range(len(big))
    a = F.request_timeline(big, num_requests=10, seed=3)
    b = F.request_timeline(big, num_requests=10, seed=3)
    assert list(a.data[0].y) == list(b.data[0].y) and len(a.data[0].y) == 10
    small = F.request_timeline(_requests())
    assert list(small.data[0].y) == ["#0", "#1", "#3"]
    decode = small.data[2]
    assert list(decode.base) == pytest.approx([0.1, 0.9, 1.6])
    assert list(decode.x) == pytest.approx([1.0, 2.0, 0.0])


def test_operator_breakdown_groups_by_kind():
    ops = [OpCost("qkv", "gemm", 1e-3, 1e9, 1e6), OpCost("attn", "attention", 2e-3),
           OpCost("mlp", "gemm", 3e-3), OpCost("allreduce", "collective", 0.5e-3)]
    fig = F.operator_breakdown(ops)
    by_kind = {t.name: dict(zip(t.y, t.x)) for t in fig.data}
    assert by_kind["gemm"] == pytest.approx({"qkv": 1.0, "mlp": 3.0})
    assert by_kind["attention"] == pytest.approx({"attn": 2.0})
    assert sum(sum(t.x) for t in fig.data) == pytest.approx(6.5)


def test_typical_step_is_the_median_token_count():
    s = F.typical_step(_steps())
    assert s["num_tokens"] in (2, 50)  # median of [100, 50, 2, 1] is 26: 50 and 2 tie at 24 → earliest
    assert s["num_tokens"] == 50
    assert F.typical_step(_steps().iloc[:0]) is None


def test_summary_value_and_kpi_bars():
    summaries = {"a": {"ttft_s": {"p90": 0.2}, "goodput_per_s": 3.0}, "b": {"ttft_s": {"p90": 0.4}}}
    assert F.summary_value(summaries["a"], "ttft_s.p90") == 0.2
    assert F.summary_value(summaries["b"], "goodput_per_s") is None
    assert F.summary_value({"x": float("nan")}, "x") is None
    fig = F.kpi_bars(summaries, [("ttft_s.p90", "TTFT p90 (ms)", 1e3), ("goodput_per_s", "goodput", 1.0)])
    assert list(fig.data[0].y) == pytest.approx([200.0, 400.0])
    assert list(fig.data[1].y)[1] is None


def test_pareto_front_and_chart():
    df = pd.DataFrame({"cost": [1.0, 2.0, 3.0, 2.0, 1.0], "rate": [1.0, 5.0, 4.0, 5.0, 0.5],
                       "name": list("abcde")})
    mask = F.pareto_front(df, "cost", "rate")
    assert mask.tolist() == [True, True, False, True, False]  # b and d tie: neither dominates
    fig = F.pareto_chart(df, "cost", "rate", label="name")
    assert len(fig.data[0].x) == 5
    assert sorted(fig.data[1].text) == ["a", "b", "d"]


def test_measured_vs_modelled_skips_nonpositive_and_draws_identity():
    df = pd.DataFrame({"op": ["a", "b", "c"], "measured_s": [1e-3, 2e-3, 0.0], "modelled_s": [2e-3, 2e-3, 1e-3],
                       "gpu": ["h100", "a100", "h100"]})
    fig = F.measured_vs_modelled(df, colour_by="gpu")
    points = [t for t in fig.data if t.name != "y = x"]
    assert sum(len(t.x) for t in points) == 2
    assert {t.name for t in points} == {"a100", "h100"}
    h100 = next(t for t in points if t.name == "h100")
    assert list(h100.customdata) == pytest.approx([100.0])
    assert fig.data[-1].name == "y = x"


def test_error_bars_colour_by_tolerance():
    df = pd.DataFrame({"metric": ["a", "b", "c"], "error": [0.05, -0.2, None]})
    fig = F.error_bars(df, tolerance=0.1)
    assert list(fig.data[0].x) == ["a", "b"]
    assert list(fig.data[0].y) == pytest.approx([5.0, -20.0])
    assert list(fig.data[0].marker.color) == ["#00CC96", "#EF553B"]


def test_every_builder_accepts_empty_frames():
    """No steps recorded (simulation.record_steps = false) and no finished request must not crash a page."""
    reqs, steps = _requests().iloc[:0], _steps().iloc[:0]
    for fig in (F.latency_cdfs({"run": reqs}), F.throughput_and_queue({"run": steps}), F.kv_usage({"run": steps}),
                F.batch_composition(steps), F.request_timeline(reqs), F.operator_breakdown([]),
                F.pareto_chart(pd.DataFrame({"x": [], "y": []}), "x", "y"),
                F.measured_vs_modelled(pd.DataFrame({"op": [], "measured_s": [], "modelled_s": []})),
                F.error_bars(pd.DataFrame({"metric": [], "error": []}))):
        assert isinstance(fig, go.Figure)


def test_memory_bar_splits_the_hbm():
    mem = {"weights_bytes_per_gpu": 16e9, "activation_bytes_per_gpu": 1e9, "kv_bytes_per_gpu": 50e9,
           "usable_bytes_per_gpu": 72e9, "gpu_hbm_bytes": 80e9}
    fig = F.memory_bar(mem)
    got = {t.name: t.x[0] for t in fig.data}
    assert got == pytest.approx({"weights": 16.0, "activations": 1.0, "KV cache": 50.0, "unused": 5.0,
                                 "held back": 8.0})
    assert sum(got.values()) == pytest.approx(80.0)
