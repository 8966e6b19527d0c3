"""Metrics on tiny hand-made frames: every number worked out by hand in the comments."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from simulator.config import SLOConfig
from simulator.metrics import STEP_COLUMNS, format_summary_table, percentiles, summarize

NAN = math.nan


def requests_frame() -> pd.DataFrame:
    # r0: ttft .5, e2e 1.5, queue 0, tpot (1.5-.5)/2 = .5     r1: ttft 1, e2e 4, queue .5, tpot 3/4 = .75
    # r2: one token: ttft .25, e2e .25, no tpot               r3: rejected     r4: unfinished
    return pd.DataFrame({
        "id": [0, 1, 2, 3, 4], "replica": [0, 1, 0, -1, 1],
        "arrival_s": [0.0, 1.0, 2.0, 3.0, 4.0], "scheduled_s": [0.0, 1.5, 2.0, NAN, 4.5],
        "first_token_s": [0.5, 2.0, 2.25, NAN, 5.0], "finish_s": [1.5, 5.0, 2.25, NAN, NAN],
        "input_tokens": [10, 20, 30, 99999, 40], "output_tokens": [3, 5, 1, 7, 9],
        "num_generated": [3, 5, 1, 0, 2], "num_preemptions": [0, 1, 0, 0, 2], "num_cached_tokens": [0, 10, 0, 0, 0],
        "state": ["finished", "finished", "finished", "rejected", "unfinished"],
        "reject_reason": ["", "", "", "prompt longer than max_model_len", ""]})


def steps_frame(kv_used=(3, 8, 5), capacity=10) -> pd.DataFrame:
    n = len(kv_used)
    df = pd.DataFrame({c: np.zeros(n, dtype=np.int64) for c in STEP_COLUMNS})
    df["kv_used_blocks"] = list(kv_used)
    df["kv_free_blocks"] = [capacity - u for u in kv_used]
    return df


def run(slo: SLOConfig = SLOConfig(), requests: pd.DataFrame | None = None, steps: pd.DataFrame | None = None,
        itl=(0.5, 0.5, 1.0, 0.25)) -> dict:
    return summarize(requests_frame() if requests is None else requests,
                     steps_frame() if steps is None else steps, np.array(itl), slo=slo, num_gpus=4,
                     usd_per_gpu_hour=2.0, kv_blocks_total=20, block_size=16)


def test_kv_peak_is_per_replica():
    two = pd.concat([steps_frame((3, 8, 5)).assign(replica=0), steps_frame((9, 2), capacity=30).assign(replica=1)])
    s = run(steps=two)
    assert s["kv_peak_utilization"] == 0.8 and s["kv_peak_used_blocks"] == 9  # 8/10 beats 9/30
    assert s["kv_blocks_total"] == 20


def test_percentiles_exact():
    assert percentiles([1, 2, 3, 4]) == {"mean": 2.5, "p50": 2.5, "p90": pytest.approx(3.7), "p99": pytest.approx(3.97)}
    assert percentiles([]) == {"mean": None, "p50": None, "p90": None, "p99": None}
    assert percentiles([NAN, 2.0, math.inf]) == {"mean": 2.0, "p50": 2.0, "p90": 2.0, "p99": 2.0}


def test_summary_exact_numbers():
    s = run()
    assert (s["num_requests"], s["num_finished"], s["num_rejected"], s["num_unfinished"]) == (5, 3, 1, 1)
    assert s["reject_reasons"] == {"prompt longer than max_model_len": 1}
    assert s["duration_s"] == 5.0  # first arrival 0 → last finish 5
    assert s["request_throughput_per_s"] == pytest.approx(3 / 5)
    assert s["output_throughput_tokens_per_s"] == pytest.approx(9 / 5)  # 3 + 5 + 1 tokens
    assert s["total_throughput_tokens_per_s"] == pytest.approx((9 + 60) / 5)
    # ttft sorted [.25, .5, 1]: p90 at position 1.8 → .5 + .8·.5 = .9; p99 at 1.98 → .99
    assert s["ttft_s"] == pytest.approx({"mean": 1.75 / 3, "p50": 0.5, "p90": 0.9, "p99": 0.99})
    assert s["tpot_s"] == pytest.approx({"mean": 0.625, "p50": 0.625, "p90": 0.725, "p99": 0.7475})
    assert s["e2e_s"] == pytest.approx({"mean": 5.75 / 3, "p50": 1.5, "p90": 3.5, "p99": 3.95})
    assert s["queue_s"] == pytest.approx({"mean": 0.5 / 3, "p50": 0.0, "p90": 0.4, "p99": 0.49})
    assert s["itl_s"] == pytest.approx({"mean": 0.5625, "p50": 0.5, "p90": 0.85, "p99": 0.985})
    assert s["kv_peak_utilization"] == 0.8 and s["kv_peak_used_blocks"] == 8
    assert s["num_preemptions"] == 3
    assert s["prefix_cache_hit_rate"] == pytest.approx(10 / 60)
    assert s["gpu_hours"] == pytest.approx(4 * 5 / 3600)
    assert s["usd_total"] == pytest.approx(2.0 * 4 * 5 / 3600)
    assert s["usd_per_million_output_tokens"] == pytest.approx(2.0 * 4 * 5 / 3600 * 1e6 / 9)
    json.dumps(s, allow_nan=False)


def test_no_slo_goodput_is_throughput():
    s = run()
    assert s["goodput_per_s"] == s["request_throughput_per_s"]
    assert s["slo_attainment"] == pytest.approx(3 / 5)  # rejected and unfinished requests are misses
    assert s["slo_met"] is None
    done = requests_frame().iloc[:3]
    assert run(requests=done)["slo_attainment"] == 1.0


def test_slo_attainment_and_goodput():
    s = run(SLOConfig(ttft_s=0.6, tpot_s=0.6))
    # r0 meets both; r1 misses ttft (1.0); r2 meets ttft and has no tpot; r3, r4 did not finish
    assert s["slo_attainment"] == pytest.approx(2 / 5) and s["goodput_per_s"] == pytest.approx(2 / 5)
    assert s["slo_met"] is False  # 40 % of requests within the ttft target < 90 %
    assert run(SLOConfig(tpot_s=0.6))["slo_attainment"] == pytest.approx(2 / 5)  # r1's tpot is .75
    assert run(SLOConfig(tpot_s=0.8))["slo_attainment"] == pytest.approx(3 / 5)
    assert run(SLOConfig(e2e_s=1.5))["slo_attainment"] == pytest.approx(2 / 5)  # r0 (1.5 ≤ 1.5), r2
    assert run(SLOConfig(ttft_s=0.6, attainment=0.4))["slo_met"] is True
    assert run(SLOConfig(ttft_s=0.6, attainment=0.5))["slo_met"] is False
    done = requests_frame().iloc[:3]
    assert run(SLOConfig(ttft_s=1.0, percentile=100), requests=done)["slo_met"] is True
    assert run(SLOConfig(ttft_s=0.9, percentile=60), requests=done)["slo_met"] is True  # 2 of 3
    assert run(SLOConfig(ttft_s=0.9, percentile=70), requests=done)["slo_met"] is False


def test_nothing_finished_gives_none_not_nan():
    rejected = requests_frame().iloc[3:4]
    s = run(SLOConfig(ttft_s=1.0), requests=rejected, steps=steps_frame(()), itl=())
    assert s["num_finished"] == 0 and s["duration_s"] is None and s["request_throughput_per_s"] is None
    assert s["ttft_s"]["p99"] is None and s["kv_peak_utilization"] is None and s["gpu_hours"] is None
    assert s["slo_attainment"] == 0.0 and s["goodput_per_s"] is None and s["slo_met"] is False
    json.dumps(s, allow_nan=False)
    empty = summarize(requests_frame().iloc[:0], steps_frame(()), np.array([]), slo=SLOConfig(), num_gpus=1,
                      usd_per_gpu_hour=1.0, kv_blocks_total=0, block_size=16)
    assert empty["num_requests"] == 0 and empty["slo_attainment"] is None
    json.dumps(empty, allow_nan=False)


def test_missing_column_is_a_programming_error():
    with pytest.raises(ValueError, match="num_generated"):
        run(requests=requests_frame().drop(columns="num_generated"))


def test_summary_table_renders():
    console = Console(record=True, width=120)
    console.print(format_summary_table(run(SLOConfig(ttft_s=0.6))))
    text = console.export_text()
    assert "TTFT (ms)" in text and "900.0" in text and "40.0%" in text and "3 / 5" in text
