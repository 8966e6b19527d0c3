"""ProfiledCostModel and its table fit: interpolation, fitted fallback, protocol, sources, errors, Vidur data."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hwmodels.build import build_cost_model
from hwmodels.config import HardwareConfig, ParallelConfig, ProfiledCostConfig, QuantConfig
from hwmodels.cost import CostModel
from hwmodels.errors import UserError
from hwmodels.hardware import get_gpu
from hwmodels.models import ModelSpec, get_model
from hwmodels.profiled import (COLUMNS, META_KEY, ProfiledCostModel, _Curve, attention_work,
                               causal_pairs, elementwise_work, fit_report, fit_roofline, gemm_work, op_shapes,
                               read_profile, typed_frame)
from hwmodels.roofline import RooflineCostModel
from hwmodels.shapes import BatchShape

TINY = ModelSpec(name="tiny", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                 intermediate_size=128, vocab_size=256)
DEV = "synthetic:roofline"
# A synthetic "device": every op takes LAUNCH + max(flops/F, bytes/B) exactly (a noiseless roofline).
F, B, LAUNCH = 2e11, 2e10, 3e-6


def _truth(flops: float, nbytes: float) -> float:
    return LAUNCH + max(flops / F, nbytes / B)


def _row(op: str, flops: float, nbytes: float, t: float | None = None, **shape) -> dict:
    t = _truth(flops, nbytes) if t is None else t
    r = {c: 0 for c in COLUMNS}
    r.update(device=DEV, op=op, impl="synthetic", dtype="fp32", name="", measured_at="", median_s=t, p10_s=t,
             p90_s=t, num_samples=1, flops=flops, bytes=nbytes, flops_per_s=flops / t, bytes_per_s=nbytes / t,
             algbw_bytes_per_s=0.0, busbw_bytes_per_s=0.0)
    r.update(shape)
    return r


def synthetic_rows(model: ModelSpec = TINY, tokens=(1, 4, 16, 64, 256), seqs=(1, 2, 4), ctxs=(32, 64, 128, 256),
                   chunk_ctxs=(100, 400)):
    sh = op_shapes(model, 1)
    rows = []
    for name, (k, n) in sh.gemms.items():
        for m in tokens:
            rows.append(_row("gemm", *gemm_work(m, n, k, 4), m=m, n=n, k=k, name=name))
    for t in tokens:
        rows.append(_row("rmsnorm", *elementwise_work("rmsnorm", t, sh.hidden, 4), num_tokens=t, hidden=sh.hidden))
        rows.append(_row("swiglu", *elementwise_work("swiglu", t, sh.ffn_local, 4), num_tokens=t, hidden=sh.ffn_local))
        rows.append(_row("rope", *elementwise_work("rope", t, sh.rope_heads * sh.head_dim, 4), num_tokens=t,
                         num_heads=sh.rope_heads, head_dim=sh.head_dim))
    heads = dict(num_heads=sh.heads, num_kv_heads=sh.kv_heads, head_dim=sh.head_dim)
    for b in seqs:
        for c in ctxs:
            fl, by = attention_work(b * c, b, b * c, sh.heads, sh.kv_heads, sh.head_dim, 4)
            rows.append(_row("attention_decode", fl, by, num_seqs=b, num_tokens=b, context_len=c, block_size=16,
                             **heads))
            fl, by = attention_work(b * causal_pairs(c, c), b * c, b * c, sh.heads, sh.kv_heads, sh.head_dim, 4)
            rows.append(_row("attention_prefill", fl, by, num_seqs=b, num_tokens=b * c, **heads))
            for cc in chunk_ctxs:  # a chunk of c new tokens on cc cached ones; slower per pair than a prompt
                fl, by = attention_work(b * causal_pairs(c, cc + c), b * c, b * (cc + c), sh.heads, sh.kv_heads,
                                        sh.head_dim, 4)
                rows.append(_row("attention_prefill", fl, by, t=3 * _truth(fl, by), num_seqs=b, num_tokens=b * c,
                                 context_len=cc, **heads))
    for world in (2, 4):
        for size in (4096, 65536, 1 << 20):
            t = 20e-6 + size / 5e9
            rows.append(_row("all_reduce", 0.0, size, t=t, world_size=world, size_bytes=size))
    return rows


def write_table(path, rows, runs=({"device": DEV},)):
    df = typed_frame(pd.DataFrame(rows, columns=list(COLUMNS)))
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({META_KEY: json.dumps({"runs": list(runs)}).encode()})
    pq.write_table(table, path)
    return path


@pytest.fixture
def table(tmp_path):
    return write_table(tmp_path / "p.parquet", synthetic_rows())


def _cm(path, model=TINY, tp=1, dtype="fp32"):
    return ProfiledCostModel(path, model, get_gpu("a100-80gb"), ParallelConfig(tp=tp), QuantConfig(dtype=dtype))


def test_curve_is_exact_for_power_laws():
    """log-log interpolation is exact on t = c·x^a·y^b, in x, and between y rows."""
    def t(y, x):
        return 1e-6 * x ** 0.8 * y ** 0.5
    pts = {y: {x: (t(y, x), (0.0, 0.0, y)) for x in (10.0, 100.0, 1000.0)} for y in (1.0, 4.0)}
    c = _Curve(pts)
    assert c.query(4.0, 100.0) == (pytest.approx(t(4.0, 100.0)), True)
    got, exact = c.query(2.0, 333.0)
    assert not exact and got == pytest.approx(t(2.0, 333.0), rel=1e-9)
    assert c.query(8.0, 100.0) is None and c.query(1.0, 5000.0) is None and c.query(1.0, 5.0) is None


def test_fit_roofline_recovers_parameters():
    rng = np.random.default_rng(0)
    fl = rng.uniform(1e5, 1e10, 300)
    by = rng.uniform(1e3, 1e8, 300)
    t = np.array([_truth(a, b) for a, b in zip(fl, by)])
    fit = fit_roofline(fl, by, t)
    pred = np.array([fit.seconds(a, b) for a, b in zip(fl, by)])
    assert np.median(np.abs(pred / t - 1)) < 0.02
    assert fit.flops_per_s == pytest.approx(F, rel=0.1) and fit.bytes_per_s == pytest.approx(B, rel=0.1)


def test_measured_interpolated_and_fitted_sources(table):
    cm = _cm(table)
    sh = op_shapes(TINY, 1)
    k, n = sh.gemms["qkv_proj"]
    t16, src = cm.fit.gemm(16, n, k, "fp32")
    assert src == "measured" and t16 == pytest.approx(_truth(*gemm_work(16, n, k, 4)))
    t32, src = cm.fit.gemm(32, n, k, "fp32")
    assert src == "interpolated" and t32 == pytest.approx(_truth(*gemm_work(32, n, k, 4)), rel=0.3)
    # beyond the largest measured m: the roofline fitted on the table, anchored at m=256
    t_big, src = cm.fit.gemm(4096, n, k, "fp32")
    assert src == "fitted" and t_big == pytest.approx(_truth(*gemm_work(4096, n, k, 4)), rel=0.15)
    # a weight shape the table never saw: fitted roofline of the gemm family
    t_new, src = cm.fit.gemm(64, 96, 80, "fp32")
    assert src == "fitted" and t_new == pytest.approx(_truth(*gemm_work(64, 96, 80, 4)), rel=0.15)


def test_cost_model_protocol_and_breakdown(table):
    cm = _cm(table)
    assert isinstance(cm, CostModel)
    shape = BatchShape.from_seqs([(1, 64)] * 4)  # four decodes: inside the decode grid
    sc = cm.step_cost(shape)
    assert sc.stage_s == pytest.approx(cm.stage_seconds(shape))
    assert sc.total_s == pytest.approx(sum(op.seconds for op in sc.ops))
    assert sc.total_s == pytest.approx(sc.stage_s)  # pp = 1
    src = {op.name: op.source for op in sc.ops}
    assert src["qkv_proj"] == "measured" and src["input_norm"] == "measured" and src["mlp_act"] == "measured"
    assert src["attention_decode"] in ("measured", "interpolated") and "attention_prefill" not in src
    assert src["embedding"] == "roofline" and src["sampling"] == "roofline"  # not profiled: datasheet roofline
    attn = next(op for op in sc.ops if op.name == "attention_decode")
    fl, by = attention_work(4 * 65, 4, 4 * 65, 4, 2, 16, 4)
    assert attn.seconds / TINY.num_layers == pytest.approx(_truth(fl, by), rel=0.1)
    assert cm.p2p_seconds(shape) == 0.0
    assert cm.stage_seconds(BatchShape()) == 0.0


def test_gemm_interpolates_within_the_alignment_class_of_m(tmp_path):
    from hwmodels.profiled import ProfileFit, gemm_alignment, read_profile

    assert [gemm_alignment(m) for m in (1, 2, 3, 4, 6, 8, 12, 16, 24, 256, 258)] == [1, 2, 1, 4, 2, 8, 4, 8, 8, 8, 2]

    # A sawtooth: aligned m (multiples of 8) 3 % faster than a smooth line through the unaligned ones.
    def t(m):
        return 1e-6 * m * (0.97 if m % 8 == 0 else 1.0)

    ms = (33, 50, 64, 69, 102, 128, 129, 162)
    rows = [_row("gemm", *gemm_work(m, 96, 32, 4), t=t(m), m=m, n=96, k=32, name="g") for m in ms]
    fit = ProfileFit.from_frame(read_profile(write_table(tmp_path / "g.parquet", rows))[0])
    for m in (41, 99, 101, 141, 66, 106, 150):  # odd / 2 mod 4: on their class's line, not pulled down by 64, 128
        assert fit.gemm(m, 96, 32, "fp32")[0] == pytest.approx(t(m), rel=1e-9), m
    for m in (60, 124):  # 4 mod 8 has no rows: all rows, so the aligned 64 and 128 pull these down
        assert fit.gemm(m, 96, 32, "fp32")[0] < t(m) * 0.999
    assert fit.gemm(96, 96, 32, "fp32")[0] == pytest.approx(t(96), rel=1e-9)  # aligned: between 64 and 128
    assert fit.gemm(128, 96, 32, "fp32") == (pytest.approx(t(128)), "measured")
    # an aligned m outside its class's rows falls back to all rows (here: between 129 and 162, unaligned)
    assert fit.gemm(160, 96, 32, "fp32")[0] == pytest.approx(t(160) / 0.97, rel=1e-9)


def test_without_leaves_named_ops_out_of_every_pass(table):
    cm = _cm(table)
    for seqs in ([(1, 64)] * 4, [(100, 0)], [(32, 64), (1, 64), (1, 128)]):
        shape = BatchShape.from_seqs(seqs)
        full = {op.name: op.seconds for op in cm.step_cost(shape).ops}
        cm.stage_seconds(shape)  # fill the original's caches first: the copy must not read them
        lean = cm.without(("embedding", "sampling"))
        sc = lean.step_cost(shape)
        assert {op.name for op in sc.ops} == set(full) - {"embedding", "sampling"}
        dropped = full["embedding"] + full["sampling"]
        assert dropped > 0
        assert lean.stage_seconds(shape) == pytest.approx(cm.stage_seconds(shape) - dropped)
        assert sc.stage_s == pytest.approx(sc.total_s)
    assert cm.left_out == frozenset()  # the original is unchanged


def test_mixed_batch_sums_prefill_and_decode_parts(table):
    cm = _cm(table)
    shape = BatchShape.from_seqs([(40, 0), (1, 100), (1, 60)])
    secs, parts = cm.attention_seconds(shape), cm.attention_parts(shape)
    assert [p[0] for p in parts] == ["attention_prefill", "attention_decode"]
    assert secs == pytest.approx(sum(p[1] for p in parts))
    sh = op_shapes(TINY, 1)
    fl_p, by_p = attention_work(causal_pairs(40, 40), 40, 40, sh.heads, sh.kv_heads, sh.head_dim, 4)
    fl_d, by_d = attention_work(162, 2, 162, sh.heads, sh.kv_heads, sh.head_dim, 4)
    assert parts[0][1] == pytest.approx(_truth(fl_p, by_p), rel=0.3)
    assert parts[1][1] == pytest.approx(_truth(fl_d, by_d), rel=0.3)
    sc = cm.step_cost(shape)
    ops = {op.name: op for op in sc.ops}
    assert ops["attention_prefill"].seconds == pytest.approx(parts[0][1] * TINY.num_layers)


def test_pure_prefill_is_interpolated(table):
    cm = _cm(table)
    shape = BatchShape.from_seqs([(100, 0), (100, 0)])
    secs, parts = cm.attention_seconds(shape), cm.attention_parts(shape)
    assert [p[2] for p in parts] == ["interpolated"]
    sh = op_shapes(TINY, 1)
    fl, by = attention_work(2 * causal_pairs(100, 100), 200, 200, sh.heads, sh.kv_heads, sh.head_dim, 4)
    assert secs == pytest.approx(_truth(fl, by), rel=0.3)


def test_collectives_measured_for_known_world_and_alpha_beta_otherwise(tmp_path):
    model = ModelSpec(name="t2", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                      intermediate_size=128, vocab_size=256)
    rows = synthetic_rows(model)
    sh2 = op_shapes(model, 2)  # also profile the tp=2 shapes so GEMMs are measured
    for name, (k, n) in sh2.gemms.items():
        for m in (1, 4, 16, 64, 256):
            rows.append(_row("gemm", *gemm_work(m, n, k, 4), m=m, n=n, k=k, name=name))
    path = write_table(tmp_path / "c.parquet", rows)
    cm = ProfiledCostModel(path, model, get_gpu("a100-80gb"), ParallelConfig(tp=2), QuantConfig(dtype="fp32"))
    sc = cm.step_cost(BatchShape.from_seqs([(16, 0)]))
    ar = next(op for op in sc.ops if op.name == "attn_allreduce")
    assert ar.source in ("interpolated", "measured")
    nbytes = 16 * 64 * 4
    assert ar.seconds / ar.count == pytest.approx(20e-6 + nbytes / 5e9, rel=0.2)
    cm8 = ProfiledCostModel(path, get_model("llama-2-7b"), get_gpu("a100-80gb"), ParallelConfig(tp=8),
                            QuantConfig(dtype="fp32"))
    sc8 = cm8.step_cost(BatchShape.from_seqs([(16, 0)]))
    assert next(op for op in sc8.ops if op.name == "attn_allreduce").source == "alpha-beta"  # world 8 not profiled


def test_outside_table_matches_roofline_where_nothing_measured(table):
    """A model with no matching rows still gets a price for every op, and the same op list as the roofline."""
    big = get_model("llama-2-7b")
    cm = ProfiledCostModel(table, big, get_gpu("a100-80gb"), ParallelConfig(), QuantConfig(dtype="fp32"))
    shape = BatchShape.from_seqs([(128, 0), (1, 500)])
    sc = cm.step_cost(shape)
    ref = RooflineCostModel(big, get_gpu("a100-80gb"), ParallelConfig(), QuantConfig(dtype="fp32")).step_cost(shape)
    assert [op.name for op in sc.ops] == [op.name for op in ref.ops]
    assert all(op.seconds > 0 and math.isfinite(op.seconds) for op in sc.ops)
    assert {op.source for op in sc.ops} <= {"fitted", "roofline", "interpolated", "measured"}


def test_stage_seconds_is_deterministic_and_cached(table):
    cm = _cm(table)
    shapes = [BatchShape.from_seqs([(1, 40 + i)] * (1 + i % 4)) for i in range(50)]
    a = [cm.stage_seconds(s) for s in shapes]
    b = [_cm(table).stage_seconds(s) for s in shapes]
    assert a == b
    assert len(cm._attn_cache) == len({s.key() for s in shapes})


def test_build_cost_model_profiled(table):
    cm = build_cost_model(TINY, get_gpu("a100-80gb"), ParallelConfig(), QuantConfig(dtype="fp32"), HardwareConfig(),
                          ProfiledCostConfig(profile=str(table)))
    assert isinstance(cm, ProfiledCostModel)


def test_user_errors(tmp_path, table):
    with pytest.raises(UserError, match="file not found"):
        _cm(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(UserError, match="not a parquet file"):
        _cm(bad)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    with pytest.raises(UserError, match="missing columns"):
        _cm(other)
    with pytest.raises(UserError, match="quant.dtype = 'bf16'.*fp32"):
        _cm(table, dtype="bf16")
    with pytest.raises(UserError, match="device"):
        ProfiledCostModel(table, TINY, get_gpu("a100-80gb"), ParallelConfig(), QuantConfig(dtype="fp32"),
                          device="nope")


def test_fit_report_noiseless_table_is_accurate(table):
    df, runs = read_profile(table)
    assert runs and runs[0]["device"] == DEV
    rep = fit_report(df, holdout=0.2, seed=1).set_index("family")
    assert set(rep.index) == {"gemm", "attention", "elementwise", "collective", "all"}
    assert rep.loc["all", "num_test"] >= 10
    # interpolating a noiseless roofline: error comes only from the max() kink between grid points
    assert rep.loc["all", "median_abs_rel_err"] < 0.05


def test_fit_report_detects_a_bad_table(tmp_path):
    """Random timings (no relation to work) must score badly: the report is not vacuous."""
    rng = np.random.default_rng(0)
    rows = synthetic_rows()
    for r in rows:
        r["median_s"] = float(rng.uniform(1e-6, 1e-2))
    df, _ = read_profile(write_table(tmp_path / "r.parquet", rows))
    rep = fit_report(df, seed=0).set_index("family")
    assert rep.loc["all", "median_abs_rel_err"] > 0.3


def test_vidur_a100_op_timings(profiles_dir, tmp_path):
    """Vidur's published A100 Llama-2-7B op times: measured shapes reproduce exactly, held-out rows < 10 %."""
    from profiler.import_vidur import compute_rows
    from profiler.table import append_rows

    csv = profiles_dir / "vidur" / "compute" / "a100" / "meta-llama" / "Llama-2-7b-hf" / "mlp.csv"
    path = tmp_path / "vidur.parquet"
    assert append_rows(path, compute_rows(csv, "vidur:a100"), {"device": "vidur:a100"}) > 100
    df, _ = read_profile(path)
    rep = fit_report(df, seed=0).set_index("family")
    assert rep.loc["gemm", "median_abs_rel_err"] < 0.10
    assert rep.loc["all", "median_abs_rel_err"] < 0.10

    model = get_model("llama-2-7b")
    cm = ProfiledCostModel(path, model, get_gpu("a100-80gb"), ParallelConfig(tp=1), QuantConfig(dtype="fp16"))
    raw = pd.read_csv(csv)
    r = raw[(raw["num_tensor_parallel_workers"] == 1) & (raw["num_tokens"] == 512)].iloc[0]
    sc = cm.step_cost(BatchShape.from_seqs([(512, 0)]))
    ops = {op.name: op for op in sc.ops}
    for ours, theirs in (("qkv_proj", "attn_pre_proj"), ("o_proj", "attn_post_proj"), ("mlp_up", "mlp_up_proj"),
                         ("mlp_down", "mlp_down_proj")):
        assert ops[ours].source == "measured"
        assert ops[ours].seconds == pytest.approx(r[f"time_stats.{theirs}.median"] * 1e-3 * model.num_layers)
    # the roofline's efficiency-fitted GEMM time and the measured one agree within 2x at this shape
    roof = RooflineCostModel(model, get_gpu("a100-80gb"), ParallelConfig(), QuantConfig(dtype="fp16"))
    rops = {op.name: op for op in roof.step_cost(BatchShape.from_seqs([(512, 0)])).ops}
    assert 0.5 < ops["mlp_up"].seconds / rops["mlp_up"].seconds < 2.0


def test_rows_of_other_ops_are_ignored(tmp_path):
    """Other tools append their own ops (e.g. the executor's overhead); the fit and report skip them."""
    rows = synthetic_rows()
    base, _ = read_profile(write_table(tmp_path / "b.parquet", rows))
    rows.append(_row("executor_overhead", 0.0, 0.0, t=1e-4, num_seqs=1, num_tokens=1))
    df, _ = read_profile(write_table(tmp_path / "o.parquet", rows))
    rep = fit_report(df, seed=1)
    assert "other" not in set(rep["family"])
    assert rep.equals(fit_report(base, seed=1))
    _cm(tmp_path / "o.parquet").stage_seconds(BatchShape.from_seqs([(4, 0)]))


def test_import_vidur_cli_gives_a_tp2_cost_model(profiles_dir, tmp_path):
    """`llmsim profile import-vidur` (compute + NCCL files under one device label) → a TP=2 model whose
    GEMMs and all-reduces come from Vidur's measurements."""
    from typer.testing import CliRunner

    from app.cli import app

    out = tmp_path / "v.parquet"
    base = profiles_dir / "vidur"
    res = CliRunner().invoke(app, ["profile", "import-vidur",
                                   str(base / "compute" / "a100" / "meta-llama" / "Llama-2-7b-hf" / "mlp.csv"),
                                   str(base / "network" / "a100_dgx" / "all_reduce.csv"),
                                   "--device", "vidur:a100", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    cm = ProfiledCostModel(out, get_model("llama-2-7b"), get_gpu("a100-80gb"), ParallelConfig(tp=2),
                           QuantConfig(dtype="fp16"))
    src = {op.name: op.source for op in cm.step_cost(BatchShape.from_seqs([(256, 0), (1, 300)])).ops}
    assert src["qkv_proj"] in ("measured", "interpolated") and src["mlp_down"] in ("measured", "interpolated")
    assert src["attn_allreduce"] in ("measured", "interpolated")
    res = CliRunner().invoke(app, ["profile", "import-vidur", str(tmp_path / "nope.csv"), "--out", str(out)])
    assert res.exit_code == 2 and "file not found" in res.output


def test_chunked_prefill_reads_the_chunk_rows(tmp_path, table):
    """A prefill chunk on cached context is priced from the chunk rows (3x slower per unit of work in this
    synthetic table), a whole prompt from the prompt rows; without chunk rows, from the prompt rows."""
    sh = op_shapes(TINY, 1)
    chunk = BatchShape.from_seqs([(64, 200)])
    fl, by = attention_work(causal_pairs(64, 264), 64, 264, sh.heads, sh.kv_heads, sh.head_dim, 4)
    cm = _cm(table)
    [(name, secs, src)] = cm.attention_parts(chunk)
    assert name == "attention_prefill" and src == "interpolated"
    assert secs == pytest.approx(3 * _truth(fl, by), rel=0.3)
    no_chunks = write_table(tmp_path / "n.parquet", synthetic_rows(chunk_ctxs=()))
    [(_, secs2, _)] = _cm(no_chunks).attention_parts(chunk)
    assert secs2 == pytest.approx(_truth(fl, by), rel=0.3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.0, 1e6), min_size=2, max_size=8, unique=True),
       st.lists(st.floats(1e-7, 1e-1), min_size=8, max_size=8), st.floats(0.0, 1.0))
def test_curve_never_overshoots_its_neighbours(xs, ts, frac):
    """Inside the range a query lies between the two measurements that bracket it (log-log interpolation
    is monotone between points), and at a measured x it returns that measurement."""
    xs = sorted(xs)
    # Measured shapes are distinct sizes, not floats one ulp apart (hypothesis found 1e6 and 1e6 - 1e-10,
    # which the curve's log-space lookup cannot tell apart).
    assume(all(b > a * (1 + 1e-9) for a, b in zip(xs, xs[1:])))
    pts = {1.0: {x: (t, (0.0, 0.0, 1.0)) for x, t in zip(xs, ts)}}
    c = _Curve(pts)
    x = math.exp(math.log(xs[0]) + frac * (math.log(xs[-1]) - math.log(xs[0])))
    got = c.query(1.0, x)
    assert got is not None
    j = max(i for i, xi in enumerate(xs) if xi <= x * (1 + 1e-12))
    lo, hi = sorted((ts[j], ts[min(j + 1, len(xs) - 1)]))
    assert lo * (1 - 1e-9) <= got[0] <= hi * (1 + 1e-9)
    for xi, ti in zip(xs, ts):
        assert c.query(1.0, xi) == (pytest.approx(ti), True)


def test_simulate_names_the_profile_device_and_warns_on_a_mismatch(tmp_path, table):
    import json as _json

    from simulator.config import Config
    from simulator.simulate import simulate

    hf = tmp_path / "config.json"
    hf.write_text(_json.dumps({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
                               "vocab_size": 256, "max_position_embeddings": 512}))
    gpu = tmp_path / "synthetic.yaml"
    gpu.write_text("name: synthetic-1\nvendor: synthetic\npeak_flops_per_s: {fp32: 2.0e11}\n"
                   "hbm_bytes: 8.0e9\nhbm_bytes_per_s: 2.0e10\n")
    base = {"model": {"hf_config": str(hf)}, "quant": {"dtype": "fp32"},
            "cost_model": {"kind": "profiled", "profile": str(table)},
            "workload": {"kind": "synthetic", "num_requests": 5, "input_len": {"kind": "fixed", "value": 32},
                         "output_len": {"kind": "fixed", "value": 4}}}
    same = simulate(Config.model_validate({**base, "hardware": {"gpu_file": str(gpu)}})).summary["notes"]
    assert any(DEV in n for n in same) and not any(n.startswith("warning") for n in same)
    other = simulate(Config.model_validate({**base, "hardware": {"gpu": "h100-sxm"}})).summary["notes"]
    assert any(n.startswith("warning") and "h100-sxm" in n for n in other)


def test_committed_h200_table_calibrates_llama_8b():
    """profiles/h200-llama-3.1-8b-bf16.parquet (measured on a lent H200 by benchmarks/gpu_session.sh):
    both implementations per shape, and a decode step of llama-3.1-8b is costed from its rows."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "profiles" / "h200-llama-3.1-8b-bf16.parquet"
    df, runs = read_profile(path)
    assert set(df["device"]) == {"cuda:NVIDIA H200"} and set(df["impl"]) == {"triton", "torch"}
    assert all(r["device_kind"] == "cuda" for r in runs)
    model = get_model("llama-3.1-8b")
    cm = ProfiledCostModel(path, model, get_gpu("h200"), ParallelConfig(tp=1), QuantConfig(dtype="bf16"))
    sc = cm.step_cost(BatchShape.from_seqs([(1, 1024)] * 8))
    src = {op.name: op.source for op in sc.ops}
    assert src["qkv_proj"] == "measured" and src["mlp_down"] == "measured"
    # the mlp_down GEMM at m = 8 is the fastest implementation's measured median, once per layer
    down = next(op for op in sc.ops if op.name == "mlp_down")
    rows = df[(df["op"] == "gemm") & (df["m"] == 8) & (df["n"] == model.hidden_size)
              & (df["k"] == model.intermediate_size)]
    assert down.seconds == pytest.approx(rows["median_s"].min() * model.num_layers, rel=1e-6)
