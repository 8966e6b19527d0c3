"""`llmsim validate` machinery: errors, overhead op, clocks, config checks, and one small end-to-end run.

The end-to-end run uses a very small model and workload and checks only that the pipeline holds
together with generous bounds; the accuracy target is measured by benchmarks/bench_validate.py.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from app.cli import app  # noqa: E402
from app.cmd_validate import (ERROR_KEYS, WithExecutorOverhead, check_executable, compute_errors,  # noqa: E402
                              quick_config, run_validation)
from hwmodels.cost import LinearCostModel  # noqa: E402
from hwmodels.errors import UserError  # noqa: E402
from hwmodels.shapes import BatchShape  # noqa: E402
from profiler.executor.overhead import fit_overhead  # noqa: E402
from profiler.executor.server import CPUClock  # noqa: E402
from simulator.config import validate_config  # noqa: E402

SMALL_MODEL = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512}


def _summary(ttft, tpot, e2e, thr):
    def p(v):
        return {"mean": v, "p50": v, "p90": 2 * v, "p99": 3 * v}
    return {"ttft_s": p(ttft), "tpot_s": p(tpot), "e2e_s": p(e2e), "output_throughput_tokens_per_s": thr}


def test_errors_are_signed_simulated_over_measured_minus_one():
    meas = _summary(0.100, 0.010, 1.0, 500.0)
    sim = _summary(0.110, 0.009, 1.0, 400.0)
    steps_m = pd.DataFrame({"start_s": [0.0, 1.0], "end_s": [0.5, 1.5]})
    steps_s = pd.DataFrame({"start_s": [0.0], "end_s": [0.6]})
    e = compute_errors(meas, sim, steps_m, steps_s)
    assert set(e) == set(ERROR_KEYS)
    assert e["ttft_p50"] == pytest.approx(0.10) and e["ttft_p90"] == pytest.approx(0.10)
    assert e["tpot_p50"] == pytest.approx(-0.10) and e["e2e_p99"] == pytest.approx(0.0)
    assert e["throughput"] == pytest.approx(-0.20) and e["step_time"] == pytest.approx(0.20)
    meas["tpot_s"]["p50"] = None
    assert compute_errors(meas, sim, steps_m, steps_s)["tpot_p50"] is None


def test_pass_error_by_part_splits_the_run_by_time():
    from app.cmd_validate import pass_error_by_part

    # a run of 8 s (quarters of 2 s, by pass start): the cost model is +10 % on the passes of the first half,
    # -20 % on the two of the third quarter and exact on the one of the last
    start = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 4.5, 7.5])
    end = start + np.array([1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 0.5])
    steps = pd.DataFrame({"start_s": start, "end_s": end})
    dur = end - start
    pred = dur * np.array([1.1, 1.1, 1.1, 1.1, 0.8, 0.8, 1.0])
    q = pass_error_by_part(steps, pred)
    assert q == pytest.approx([0.1, 0.1, -0.2, 0.0])
    assert pass_error_by_part(steps.iloc[:4], pred[:4], 8)[-1] is None  # no pass in the last eighth
    assert pass_error_by_part(steps.iloc[:0], pred[:0]) == [None] * 4


def test_overhead_fit_recovers_known_coefficients_and_is_added_per_pass():
    from profiler.executor.overhead import PassOverhead, fit_pass_overhead

    dec = [(s, s, 1e-4 + 3e-6 * s) for s in (1, 4, 16, 64)]
    pro = [(s, t, 2e-4 + 4e-6 * t) for s, t in ((1, 64), (1, 256), (2, 512), (8, 136))]
    f = fit_overhead(dec)
    assert f.per_pass_s + f.per_seq_s + f.per_token_s == pytest.approx(1e-4 + 3e-6, rel=1e-6)
    split = fit_pass_overhead(dec + pro)
    assert split.prompt.seconds(1, 300) == pytest.approx(2e-4 + 4e-6 * 300, rel=1e-6)
    assert split.decode.seconds(16, 16) == pytest.approx(1e-4 + 3e-6 * 16, rel=1e-6)
    base = LinearCostModel(base_s=0.01)
    cm = WithExecutorOverhead(base, split.plus(PassOverhead(fit_overhead([(1, 1, 5e-6), (8, 8, 5e-6)]),
                                                            fit_overhead([(1, 1, 5e-6), (8, 8, 5e-6)]))))
    shape = BatchShape.from_seqs([(1, 10)] * 4)
    assert cm.stage_seconds(shape) == pytest.approx(0.01 + 1e-4 + 4 * 3e-6 + 5e-6)
    prompt = BatchShape.from_seqs([(100, 0)])
    assert cm.stage_seconds(prompt) == pytest.approx(0.01 + 2e-4 + 4e-6 * 100 + 5e-6)
    cost = cm.step_cost(shape)
    assert cost.ops[-1].name == "executor_overhead" and cost.total_s == pytest.approx(cm.stage_seconds(shape))
    assert cm.stage_seconds(BatchShape()) == base.stage_seconds(BatchShape())  # no overhead for an empty pass


def test_cpu_clock_counts_own_cpu_time_and_jumps_over_idle_waits():
    c = CPUClock()
    c.start()
    t0 = c.now()
    time.sleep(0.05)  # sleeping costs no CPU time
    assert c.now() - t0 < 0.02
    c.sleep_until(5.0)
    assert c.now() == pytest.approx(5.0, abs=1e-3)
    x = 0
    for i in range(200_000):  # burn some CPU
        x += i
    assert c.now() > 5.0


def test_config_checks_name_the_field():
    base = quick_config("vllm")
    with pytest.raises(UserError, match="parallel"):
        check_executable(validate_config({**base, "parallel": {"tp": 2}}))
    with pytest.raises(UserError, match="kv_cache.kind"):
        check_executable(validate_config({**base, "kv_cache": {"kind": "contiguous"}}))
    with pytest.raises(UserError, match="quant"):
        check_executable(validate_config({**base, "quant": {"dtype": "fp32", "weight_dtype": "int4"}}))
    check_executable(validate_config(base))


def test_cli_usage_errors_exit_2_without_traceback():
    runner = CliRunner()
    r = runner.invoke(app, ["validate"])
    assert r.exit_code != 0 and "--config" in (r.output + str(r.exception))
    r = runner.invoke(app, ["validate", "--quick", "--check", "ttft_p42"])
    assert r.exit_code != 0 and "ttft_p42" in (r.output + str(r.exception))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("validate")
    (d / "config.json").write_text(json.dumps(SMALL_MODEL))
    cfg = quick_config("sarathi")
    cfg["model"] = {"name": "small-llama", "hf_config": str(d / "config.json")}
    cfg["scheduler"]["chunk_size"] = 64
    cfg["kv_cache"]["num_blocks"] = 256
    cfg["workload"]["num_requests"] = 24
    cfg["workload"]["input_len"] = {"kind": "uniform", "low": 8, "high": 48}
    cfg["workload"]["output_len"] = {"kind": "uniform", "low": 2, "high": 12}
    grid_cfg = validate_config(cfg)
    from profiler.executor.insitu import InsituGrid

    # A small grid keeps the test fast; the in-situ profiler, table, fit and cost model are the real ones.
    grid = InsituGrid(decode_seqs=(1, 4, 16), decode_contexts=(16, 64), decode_extra=(), mixed=(), prefill=((1, 8), (1, 32), (1, 64), (2, 64)),
                      chunks=((16, 32),))
    res = run_validation(grid_cfg, work_dir=d / "out", load=0.5, threads=1, quick=True, clock="cpu", insitu_grid=grid,
                         op_breakdown=True)
    return res, d


def test_op_breakdown_adds_up_to_the_passes(small_run):
    """The diagnostic split of served passes (every kernel timed) vs the cost model's parts per op kind."""
    res, _ = small_run
    b = res.op_breakdown
    assert set(b["op"]) == {"gemm", "attention", "elementwise", "rest"} and "decode" in set(b["pass"])
    from app.cmd_validate import pass_seconds

    m = res.measured_steps
    # each pass's cycle runs from its start past its end to the loop's work after it, and before the next pass
    assert (m["cycle_end_s"] >= m["end_s"]).all()
    assert (m["cycle_end_s"].iloc[:-1].to_numpy() <= m["start_s"].iloc[1:].to_numpy()).all()
    assert (pass_seconds(m) > (m["end_s"] - m["start_s"]).to_numpy()).mean() > 0.9
    assert b["measured_s"].sum() == pytest.approx(pass_seconds(m).sum(), rel=1e-9)
    assert b["predicted_s"].sum() == pytest.approx(res.predicted_step_s.sum(), rel=1e-9)
    kernels = b[b["op"] != "rest"]
    assert (kernels["measured_s"] > 0).all() and (kernels["predicted_s"] > 0).all()


def test_small_end_to_end_validation_holds_together(small_run):
    res, d = small_run
    assert (res.measured_requests.state == "finished").all() and len(res.measured_requests) == 24
    assert (res.simulated_requests.state == "finished").all()
    assert (d / "out" / "profile-insitu-cpu.parquet").is_file() and (d / "out" / "cpu.yaml").is_file()
    assert res.capacity_per_s > 0 and res.rate_per_s == pytest.approx(0.5 * res.capacity_per_s)
    for k in ("ttft_p50", "tpot_p50", "e2e_p50", "throughput", "step_time"):
        e = res.errors[k]
        # Generous: the machinery must put both sides on the same scale (a unit or a factor-of-10 slip
        # fails); the accuracy itself is what benchmarks/bench_validate.py measures.
        assert e is not None and -0.8 < e < 4.0, (k, e, res.errors)
    assert len(res.predicted_step_s) == len(res.measured_steps) and np.all(res.predicted_step_s > 0)
    payload = res.as_json()
    assert set(ERROR_KEYS) <= set(payload["errors"]) and payload["clock"] == "cpu"
    # the sweep due during the run ran there (in slices off the clock), and the machine's speed is reported
    # for it and for the sweep after the run, each against the sweep before
    assert payload["profile_drift_during"] is not None and payload["profile_drift"] is not None
    assert len(payload["pass_error_by_quarter"]) == 4 and all(
        x is None or -0.9 < x < 9.0 for x in payload["pass_error_by_quarter"])
    json.dumps(payload)  # plain JSON types only


def test_glue_ops_are_not_priced_twice(small_run):
    """The executor's measured glue holds the embedding lookup and the sampling: the calibrated cost model
    leaves the profiled model's roofline terms for them out, and nothing else."""
    from app.cmd_validate import GLUE_OPS, _calibrated

    res, _ = small_run
    data = res.config.model_dump(mode="python")
    data["hardware"] = {**data["hardware"], "gpu_file": res.device_spec}
    data["cost_model"] = {"kind": "profiled", "profile": res.profile}
    sc, cost = _calibrated(validate_config(data, "test"))
    shape = BatchShape.from_seqs([(40, 0), (1, 30), (1, 50)])
    names = {op.name for op in cost.step_cost(shape).ops}
    full = {op.name: op.seconds for op in sc.cost_model.step_cost(shape).ops}
    assert set(GLUE_OPS) <= set(full) and not names & set(GLUE_OPS)
    assert names == set(full) - set(GLUE_OPS) | {"executor_overhead"}
    assert cost.base.stage_seconds(shape) == pytest.approx(
        sc.cost_model.stage_seconds(shape) - sum(full[n] for n in GLUE_OPS))


def test_pass_time_jitter_is_measured_in_situ_and_simulated(small_run):
    """The in-situ profile carries a series of back-to-back passes (op executor_jitter); validate turns it
    into simulation.step_jitter, and the simulated passes then vary around the cost model."""
    from hwmodels.profiled import read_profile
    from profiler.executor.insitu import JITTER_OP, JITTER_PASSES, JITTER_SEQS

    res, _ = small_run
    df, _ = read_profile(res.profile)
    j = df[df.op == JITTER_OP]
    assert len(j) == JITTER_PASSES and sorted(j.num_tokens) == list(range(1, JITTER_PASSES + 1))
    assert j.num_seqs.between(*JITTER_SEQS).all() and (j.median_s > 0).all()
    sj = res.config.simulation.step_jitter
    assert sj is not None and 0 < sj.sd < 0.5 and 0 <= sj.autocorrelation < 1
    assert res.as_json()["config"]["simulation"]["step_jitter"]["sd"] == sj.sd
    assert any("draws" in n for n in res.notes)


def test_mean_summary_averages_numbers_leaf_by_leaf():
    from app.cmd_validate import mean_summary

    a = {"n": 3, "ttft_s": {"p50": 1.0, "p90": None}, "notes": ["x"], "ok": True}
    b = {"n": 4, "ttft_s": {"p50": 2.0, "p90": 5.0}, "notes": [], "ok": False}
    m = mean_summary([a, b])
    assert m == {"n": 4, "ttft_s": {"p50": 1.5, "p90": None}, "notes": ["x"], "ok": True}


def test_jitter_stats_recover_a_known_series():
    from profiler.executor.insitu import jitter_stats

    rng = np.random.default_rng(0)
    sizes = np.clip(8 + np.cumsum(rng.integers(-1, 2, 4000)), 2, 16)
    x, xs = 0.0, []
    for e in rng.normal(0, 0.03 * np.sqrt(1 - 0.6 ** 2), 4000):
        x = 0.6 * x + e
        xs.append(x)
    series = [(int(b), (1e-3 + 2e-4 * b) * np.exp(v)) for b, v in zip(sizes, xs)]
    sd, rho = jitter_stats(series)
    assert sd == pytest.approx(0.03, rel=0.12) and rho == pytest.approx(0.6, abs=0.06)
    assert jitter_stats(series[:10]) is None  # too short to say
    flat = jitter_stats([(4, 1e-3)] * 100)
    assert flat == (0.0, 0.0)


def test_report_html_has_cdfs_and_pass_times(small_run, tmp_path):
    from app.cmd_validate import report_figure, write_report

    res, _ = small_run
    fig = report_figure(res)
    names = {t.name for t in fig.data}
    assert {"measured", "simulated", "pass (measured, predicted)"} <= names
    html = write_report(res, tmp_path / "r.html").read_text()
    assert "ttft_p50" in html and "plotly" in html.lower()


def test_insitu_profile_rows_use_the_sweep_keys(tmp_path):
    from hwmodels.profiled import read_profile
    from profiler.executor import LlamaDims, LlamaModel
    from profiler.executor.insitu import InsituGrid, profile_insitu

    dims = LlamaDims(hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2, vocab_size=200,
                     max_position=256)
    grid = InsituGrid(decode_seqs=(1, 3), decode_contexts=(16,), decode_extra=((2, 16),), mixed=((8, 0, 2, 16),), prefill=((1, 8), (2, 16), (1, 512)),
                      chunks=((8, 16),))
    n = profile_insitu(LlamaModel(dims), tmp_path / "t.parquet", block_size=8, grid=grid, min_time_s=0.0,
                       min_reps=2, max_reps=2, clock="cpu")
    df, runs = read_profile(tmp_path / "t.parquet")
    assert n == len(df) and "in-situ" in runs[0]["note"]
    assert set(df.op) == {"gemm", "rmsnorm", "swiglu", "rope", "attention_decode", "attention_prefill",
                          "executor_overhead"}
    g = df[df.op == "gemm"]
    # qkv (4+2·2 heads x 16), o, gate+up (2·96), down, lm_head (vocab 200)
    assert {(int(r.n), int(r.k)) for r in g.itertuples()} == {(128, 64), (64, 64), (192, 64), (64, 96), (200, 64)}
    assert set(g[(g.n == 128)].m) == {1, 2, 3, 8, 10, 32}  # qkv over decode (incl. extra), prompt, chunk, mixed tokens
    dec = df[df.op == "attention_decode"]
    assert set(zip(dec.num_seqs, dec.context_len)) == {(1, 17), (3, 17)}  # context incl. the new token; extras: GEMMs only
    pre = df[df.op == "attention_prefill"]
    assert set(zip(pre.num_seqs, pre.num_tokens, pre.context_len)) == {(1, 8, 0), (2, 32, 0), (1, 8, 16)}
    kern = df.op != "executor_overhead"
    assert (df[kern].median_s > 0).all() and (df[~kern].median_s >= 0).all() and (df.impl == "executor").all()


def test_single_sequence_decode_glue_is_taken_as_measured():
    """One-sequence decode glue sits far below the line through 2+ sequences (measured in-situ): the pass
    overhead uses that row as measured, the line elsewhere, and the serving loop adds on top of both."""
    from profiler.executor.overhead import PassOverhead, fit_pass_overhead

    rows = [(1, 1, 2.0e-4)] + [(s, s, 3.3e-4 + 1e-5 * s) for s in (2, 4, 8, 16, 32, 64)] + [(1, 256, 1e-3),
                                                                                            (2, 512, 2e-3)]
    g = fit_pass_overhead(rows)
    assert g.seconds(1, 1, 0) == pytest.approx(2.0e-4)
    assert g.seconds(16, 16, 0) == pytest.approx(3.3e-4 + 1.6e-4, rel=1e-6)
    assert g.seconds(1, 256, 256) == pytest.approx(1e-3, rel=1e-6)  # a one-sequence prompt pass: the prompt fit
    loop = fit_overhead([(1, 1, 5e-6), (8, 8, 5e-6)])
    both = g.plus(PassOverhead(loop, loop))
    assert both.seconds(1, 1, 0) == pytest.approx(2.05e-4) and both.seconds(16, 16, 0) == pytest.approx(4.95e-4)
    assert fit_pass_overhead(rows[1:]).decode_single is None  # no one-sequence row: the line
