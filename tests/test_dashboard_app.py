"""Dashboard pages driven with streamlit.testing.v1.AppTest: set widgets, run, and check that the KPI
cards, charts and error messages are the library's own for the same config."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app.dashboard import forms, render, runs  # noqa: E402
from hwmodels.errors import UserError  # noqa: E402
from simulator.config import validate_config  # noqa: E402
from simulator.simulate import simulate  # noqa: E402

HOME = str(Path(__file__).resolve().parents[1] / "app" / "dashboard" / "Home.py")
N = 60  # requests per test run: keeps each page run well under a second
TIMEOUT = 90


def _page(page: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def _expected_config(**sections) -> object:
    base = forms.default_base()
    base["workload"]["num_requests"] = N
    return validate_config(forms.overlay(base, sections))


def _check_kpis(at: AppTest, summary: dict) -> None:
    shown = {m.label: m.value for m in at.metric}
    assert len(shown) == len(render.KPI_SPECS)
    for label, path, scale, _ in render.KPI_SPECS:
        node = summary
        for part in path.split("."):
            node = node[part]
        if node is None:
            assert shown[label] == "–"
            continue
        # the card rounds to its format; compare to the library's number at that precision
        assert float(shown[label].replace(",", "")) == pytest.approx(node * scale, rel=5e-3, abs=0.051), label


# ---- Simulate --------------------------------------------------------------------------------


def test_simulate_page_shows_the_library_result(monkeypatch):
    calls = []
    real = runs._simulate
    monkeypatch.setattr(runs, "_simulate", lambda cfg, prog: calls.append(cfg) or real(cfg, prog))
    runs.cached_simulation.clear()
    at = _page("pages/1_Simulate.py")
    at.number_input(key="sim.num_requests").set_value(N)
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    expected = _expected_config()
    assert json.loads(at.session_state["sim.result_key"]) == json.loads(expected.model_dump_json())
    _check_kpis(at, simulate(expected).summary)
    # memory, CDFs, throughput+queue, KV, batch composition, operator breakdown, timeline
    assert len(_charts(at)) == 7
    assert len(calls) == 1
    # re-rendering (a widget change, no Run) shows the cached result without simulating again
    at.number_input(key="sim.seed").set_value(1)
    at.run()
    assert len(calls) == 1
    assert len(at.metric) == len(render.KPI_SPECS) and len(_charts(at)) == 7


def test_simulate_page_tp_not_dividing_heads_shows_the_cli_message():
    at = _page("pages/1_Simulate.py")
    at.number_input(key="sim.num_requests").set_value(N)
    at.number_input(key="sim.tp").set_value(3)
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception
    with pytest.raises(UserError) as exc:
        simulate(_expected_config(parallel={"tp": 3}))
    assert [e.value for e in at.error] == [str(exc.value)]
    assert "parallel.tp = 3" in at.error[0].value
    assert not at.metric


def test_simulate_page_model_that_does_not_fit_shows_the_error():
    at = _page("pages/1_Simulate.py")
    at.selectbox(key="sim.model").set_value("llama-3.1-70b")
    at.selectbox(key="sim.gpu").set_value("l4")
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception
    with pytest.raises(UserError) as exc:
        simulate(_expected_config(model={"name": "llama-3.1-70b"}, hardware={"gpu": "l4"}))
    assert [e.value for e in at.error] == [str(exc.value)]


def test_simulate_page_malformed_trace_upload_names_the_file_and_line():
    at = _page("pages/1_Simulate.py")
    at.radio(key="sim.wl_kind").set_value("trace")
    at.run()
    bad = b"arrival_s,input_tokens,output_tokens\n0.0,10,5\n0.5,ten,5\n"
    at.file_uploader(key="sim.trace_upload").set_value(("bad.csv", bad, "text/csv"))
    at.run()
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    msg = at.error[0].value
    assert "uploaded file bad.csv:3" in msg, msg
    assert "llmsim-dashboard-uploads" not in msg
    assert not at.metric


def test_simulate_page_bad_form_value_uses_the_config_validation_message():
    at = _page("pages/1_Simulate.py")
    at.selectbox(key="sim.input.kind").set_value("uniform")
    at.run()
    at.number_input(key="sim.input.low").set_value(900)
    at.number_input(key="sim.input.high").set_value(100)
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception
    base = forms.default_base()
    base["workload"]["num_requests"] = 200
    with pytest.raises(UserError) as exc:
        validate_config(forms.overlay(base, {"workload": {"input_len": {"kind": "uniform", "low": 900, "high": 100}}}),
                        "dashboard form")
    assert [e.value for e in at.error] == [str(exc.value)]
    assert "low (900) must be <= high (100)" in at.error[0].value


# ---- Compare ---------------------------------------------------------------------------------


def test_compare_page_runs_each_config_on_the_same_workload():
    at = _page("pages/2_Compare.py")
    at.number_input(key="cmp.num_requests").set_value(N)
    at.number_input(key="cmp1.tp").set_value(2)
    at.button(key="cmp_run").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    keys = at.session_state["cmp.result_keys"]
    assert len(keys) == 2
    a = _expected_config(scheduler={"kind": "vllm"})
    b = _expected_config(scheduler={"kind": "sarathi", "chunk_size": 512}, parallel={"tp": 2})
    got = [json.loads(k) for k in keys.values()]
    assert got == [json.loads(a.model_dump_json()), json.loads(b.model_dump_json())]
    table = at.dataframe[0].value
    assert [c[:2] for c in table.columns] == ["A:", "B:"] and "sarathi/512" in table.columns[1]
    for col, cfg in zip(table.columns, (a, b)):
        expected = dict((label, text) for label, text, _ in render.kpis(simulate(cfg).summary))
        assert table[col].to_dict() == expected
    assert len(_charts(at)) == 4  # KPI bars, CDFs, throughput+queue, KV


# ---- Plan ------------------------------------------------------------------------------------


def test_plan_page_ranks_and_loads_the_recommendation_into_simulate():
    at = _page("pages/3_Plan.py")
    at.multiselect(key="plan.tps").set_value([1, 2])
    at.multiselect(key="plan.scheds").set_value(["vllm"])
    at.number_input(key="plan.probe_n").set_value(30)
    at.number_input(key="plan.tol").set_value(0.25)
    at.number_input(key="plan.num_requests").set_value(N)
    at.button(key="plan_run").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    plan_json, backend = at.session_state["plan.result"]
    res = runs.cached_plan(plan_json, backend)
    assert at.success and at.success[0].value == res.answer
    table = at.dataframe[0].value
    assert len(table) == len(res.deployments) >= 1
    from simulator.planner.report import table_rows

    assert table["layout"].tolist() == [r["layout"] for r in table_rows(res)]
    assert table["max QPS"].tolist() == pytest.approx([d.max_qps for d in res.deployments])
    assert len(_charts(at)) == 2
    rec = res.recommended_config()
    at.button(key="plan_load").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Simulate"]  # st.switch_page took us there
    # AppTest stays on the page it was pointed at; follow the switch as the browser's URL would
    at.switch_page("pages/1_Simulate.py")
    at.run()
    assert at.number_input(key="sim.tp").value == rec.parallel.tp
    assert at.selectbox(key="sim.scheduler").value == rec.scheduler.kind
    assert at.number_input(key="sim.rate").value == pytest.approx(rec.workload.arrival.rate_per_s)
    at.button(key="sim_run").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert json.loads(at.session_state["sim.result_key"]) == json.loads(rec.model_dump_json())


# ---- progress and cancellation ---------------------------------------------------------------


def test_run_with_progress_cancels_the_worker_when_the_script_is_interrupted():
    seen = {}
    started = threading.Event()

    def work(prog):
        started.set()
        try:
            for i in range(10_000):
                prog.update(i / 10_000)
                time.sleep(0.001)
        except runs.Cancelled:
            seen["cancelled_at"] = prog.fraction
            raise
        return "finished"

    class Interrupt(Exception):  # stands in for Streamlit's rerun/stop exceptions
        pass

    calls = []

    def on_progress(f, text):
        calls.append(f)
        if len(calls) == 3:
            raise Interrupt()

    with pytest.raises(Interrupt):
        runs.run_with_progress(work, on_progress)
    for _ in range(100):
        if "cancelled_at" in seen:
            break
        time.sleep(0.01)
    assert started.is_set() and 0 < seen["cancelled_at"] < 1


def test_simulation_progress_reaches_all_requests_and_matches_simulate():
    cfg = _expected_config()
    fractions = []
    prog = runs.Progress()
    orig = prog.update

    def spy(f, text=""):
        fractions.append(f)
        orig(f, text)

    prog.update = spy
    res = runs._simulate(cfg, prog)
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    ref = simulate(cfg)
    assert res.summary == ref.summary
    assert res.requests.equals(ref.requests) and res.steps.equals(ref.steps)


# ---- uploads: real trace, Hugging Face config --------------------------------------------------


def test_simulate_page_replays_an_uploaded_azure_trace(traces_dir):
    lines = (traces_dir / "azure_2023" / "AzureLLMInferenceTrace_conv.csv").read_text().splitlines()[:N + 1]
    data = ("\n".join(lines) + "\n").encode()
    at = _page("pages/1_Simulate.py")
    at.radio(key="sim.wl_kind").set_value("trace")
    at.run()
    at.file_uploader(key="sim.trace_upload").set_value(("azure_conv_head.csv", data, "text/csv"))
    at.run()
    at.number_input(key="sim.trace_n").set_value(0)
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    cfg = json.loads(at.session_state["sim.result_key"])
    assert cfg["workload"]["kind"] == "trace" and cfg["workload"]["num_requests"] is None
    assert Path(cfg["workload"]["path"]).read_bytes() == data
    summary = simulate(validate_config(cfg)).summary
    assert summary["num_requests"] == N
    _check_kpis(at, summary)


def test_simulate_page_accepts_a_hugging_face_config_upload(tmp_path):
    hf = {"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8,
          "num_hidden_layers": 16, "intermediate_size": 8192, "vocab_size": 128256,
          "max_position_embeddings": 131072, "tie_word_embeddings": True}  # Llama-3.2-1B's shape
    at = _page("pages/1_Simulate.py")
    at.number_input(key="sim.num_requests").set_value(N)
    at.selectbox(key="sim.model").set_value(forms.UPLOAD_MODEL)
    at.run()
    assert at.error and "upload a Hugging Face config.json" in at.error[0].value
    at.file_uploader(key="sim.hf_upload").set_value(("config.json", json.dumps(hf).encode(), "application/json"))
    at.run()
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(hf))
    expected = _expected_config(model={"name": "hf-model", "hf_config": str(path)})
    got = json.loads(at.session_state["sim.result_key"])
    assert Path(got["model"]["hf_config"]).read_text() == path.read_text()
    got["model"]["hf_config"] = str(path)
    assert got == json.loads(expected.model_dump_json())
    _check_kpis(at, simulate(expected).summary)
    assert json.loads(at.session_state["sim.result_key"])["model"]["name"] == "hf-model"


# ---- Validate / profiles -----------------------------------------------------------------------


def _profile_parquet() -> bytes:
    import io

    import pandas as pd

    from hwmodels.profiled import COLUMNS, SHAPE_COLUMNS, typed_frame

    rows = []
    # Hand-made rows for plumbing only (these times are not measurements of anything).
    for m, t in ((16, 40e-6), (256, 90e-6), (4096, 1.1e-3)):
        r = {c: 0 for c in SHAPE_COLUMNS}
        r.update(device="NVIDIA H100 80GB HBM3", op="gemm", impl="triton", dtype="bf16", m=m, n=4096, k=4096,
                 name=f"gemm m={m}", median_s=t, p10_s=t, p90_s=t, num_samples=10, flops=2.0 * m * 4096 * 4096,
                 bytes=2.0 * (4096 * 4096 + 2 * m * 4096), flops_per_s=0.0, bytes_per_s=0.0,
                 algbw_bytes_per_s=0.0, busbw_bytes_per_s=0.0, measured_at="")
        rows.append(r)
    buf = io.BytesIO()
    typed_frame(pd.DataFrame(rows, columns=list(COLUMNS))).to_parquet(buf)
    return buf.getvalue()


def test_validate_page_compares_a_profile_table_to_the_roofline():
    from hwmodels.hardware import get_gpu
    from hwmodels.roofline import efficiency_for

    at = _page("pages/4_Validate.py")
    upload = ("prof.parquet", _profile_parquet(), "application/octet-stream")
    at.file_uploader(key="val.profile_upload").set_value(upload)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="val.gpu").value == "h100-sxm"  # guessed from the device name
    assert len(_charts(at)) == 1
    rows = at.dataframe[2].value  # error by op, fit report, all measurements
    gpu = get_gpu("h100-sxm")
    eff = efficiency_for(gpu)
    for _, r in rows.iterrows():
        m = int(r["shape"].split()[0].split("=")[1])
        flops, nbytes = 2.0 * m * 4096 * 4096, 2.0 * (4096 * 4096 + 2 * m * 4096)
        expect = eff.gemm_fixed_s + max(flops / (gpu.peak_flops("bf16") * eff.gemm_flops),
                                        nbytes / (gpu.hbm_bytes_per_s * eff.gemm_mem))
        assert r["modelled_s"] == pytest.approx(expect)
        assert r["rel_error"] == pytest.approx(expect / r["measured_s"] - 1)


def test_validate_page_shows_a_json_report_and_rejects_a_broken_one():
    at = _page("pages/4_Validate.py")
    report = {"config": {"model": "tiny"}, "errors": [
        {"metric": "ttft_s", "stat": "p50", "measured": 0.10, "predicted": 0.12, "rel_error": 0.2},
        {"metric": "tpot_s", "stat": "p50", "measured": 0.02, "predicted": 0.019, "rel_error": -0.05}]}
    upload = ("report.json", json.dumps(report).encode(), "application/json")
    at.file_uploader(key="val.report_upload").set_value(upload)
    at.run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert table["metric"].tolist() == ["ttft_s", "tpot_s"] and table["rel_error"].tolist() == [0.2, -0.05]
    broken = b'{"errors": [\n  {"metric": }'
    at.file_uploader(key="val.report_upload").set_value(("broken.json", broken, "application/json"))
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["broken.json:2:14: not an HTML or JSON validate report (Expecting value)"]


def test_validate_page_reads_a_validate_output_folder(tmp_path):
    """A folder in `llmsim validate --out` layout: result.json errors table + measured/simulated CDFs."""
    cfg = _expected_config()
    sim = simulate(cfg)
    other = simulate(_expected_config(simulation={"seed": 1}))
    # Two real simulator runs stand in for "measured" and "simulated" (the page only lays them out).
    sim.requests.to_parquet(tmp_path / "measured_requests.parquet")
    other.requests.to_parquet(tmp_path / "simulated_requests.parquet")
    m, s = sim.summary, other.summary
    result = {"errors": {"ttft_p50": s["ttft_s"]["p50"] / m["ttft_s"]["p50"] - 1,
                         "throughput": s["output_throughput_tokens_per_s"] / m["output_throughput_tokens_per_s"] - 1},
              "measured": m, "simulated": s, "step_time": {}, "notes": ["a note"]}
    (tmp_path / "result.json").write_text(json.dumps(result, default=str))
    at = _page("pages/4_Validate.py")
    at.text_input(key="val.report_dir").set_value(str(tmp_path))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert table["metric"].tolist() == ["ttft_p50", "throughput"]
    assert table["measured"].tolist() == pytest.approx([m["ttft_s"]["p50"], m["output_throughput_tokens_per_s"]])
    assert table["simulated"].tolist() == pytest.approx([s["ttft_s"]["p50"], s["output_throughput_tokens_per_s"]])
    assert len(_charts(at)) == 2  # error bars, CDF overlay
    at.text_input(key="val.report_dir").set_value(str(tmp_path / "nope"))
    at.run()
    assert [e.value for e in at.error] == [f"validate folder {str(tmp_path / 'nope')!r}: not a directory "
                                           "(run `llmsim validate --out FOLDER`)"]


# ---- loading scenarios, the CLI command --------------------------------------------------------


SCENARIO = """\
parallel: {tp: 2, replicas: 2}
scheduler: {kind: sarathi, chunk_size: 256}
router: {kind: least_outstanding}
workload: {kind: synthetic, num_requests: 60, arrival: {process: gamma, rate_per_s: 12.0, cv: 3.0}}
slo: {ttft_s: 0.3}
"""


def test_a_scenario_file_loads_into_the_simulate_form(tmp_path):
    at = _page("pages/1_Simulate.py")
    at.file_uploader(key="sim_scenario_upload").set_value(("scenario.yaml", SCENARIO.encode(), "text/yaml"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.number_input(key="sim.tp").value == 2 and at.number_input(key="sim.replicas").value == 2
    assert at.selectbox(key="sim.scheduler").value == "sarathi"
    assert at.number_input(key="sim.sarathi.chunk_size").value == 256
    assert at.selectbox(key="sim.process").value == "gamma" and at.number_input(key="sim.cv").value == 3.0
    at.button(key="sim_run").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    from simulator.config import load_config

    assert json.loads(at.session_state["sim.result_key"]) == json.loads(load_config(path).model_dump_json())
    _check_kpis(at, simulate(load_config(path)).summary)


def test_home_preloads_the_cli_config_into_simulate(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    monkeypatch.setattr("sys.argv", ["Home.py", "--config", str(path)])
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.run()
    assert at.success and str(path) in at.success[0].value
    at.switch_page("pages/1_Simulate.py")
    at.run()
    assert at.number_input(key="sim.tp").value == 2 and at.selectbox(key="sim.router").value == "least_outstanding"


def test_dashboard_command_line():
    from app.cmd_dashboard import streamlit_command

    cmd = streamlit_command(8600, "127.0.0.1", True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("app/dashboard/Home.py")
    assert cmd[cmd.index("--server.port") + 1] == "8600" and cmd[cmd.index("--server.headless") + 1] == "true"
    with pytest.raises(UserError, match="--port = 70000"):
        streamlit_command(70000, "127.0.0.1", True)
    with pytest.raises(UserError, match="--config = nope.yaml: file not found"):
        streamlit_command(8600, "127.0.0.1", True, Path("nope.yaml"))


@pytest.mark.parametrize("widgets, sections", [
    ({"sim.scheduler": "sarathi", "sim.sarathi.chunk_size": 256},
     {"scheduler": {"kind": "sarathi", "chunk_size": 256}}),
    ({"sim.scheduler": "splitfuse"}, {"scheduler": {"kind": "splitfuse", "chunk_size": 512}}),
    ({"sim.scheduler": "orca", "sim.orca.max_batch_size": 32}, {"scheduler": {"kind": "orca", "max_batch_size": 32}}),
    ({"sim.scheduler": "static"}, {"scheduler": {"kind": "static"}}),  # the library's defaults for static
    ({"sim.vllm.preemption": "swap", "sim.pp": 2, "sim.replicas": 2, "sim.router": "least_kv"},
     {"scheduler": {"kind": "vllm", "preemption": "swap"}, "parallel": {"pp": 2, "replicas": 2},
      "router": {"kind": "least_kv"}}),
    ({"sim.kv_kind": "contiguous", "sim.weight_dtype": "fp8", "sim.kv_dtype": "fp8"},
     {"kv_cache": {"kind": "contiguous"}, "quant": {"weight_dtype": "fp8", "kv_dtype": "fp8"}}),
    ({"sim.weight_dtype": "int4", "sim.weight_method": "awq", "sim.dtype": "fp16"},
     {"quant": {"weight_dtype": "int4", "weight_method": "awq", "dtype": "fp16"}}),
    ({"sim.prefix_caching": True, "sim.block_size": 32, "sim.gpu": "a100-80gb", "sim.usd_per_gpu_hour": 1.5},
     {"kv_cache": {"prefix_caching": True, "block_size": 32},
      "hardware": {"gpu": "a100-80gb", "usd_per_gpu_hour": 1.5}}),
])
def test_every_form_knob_reaches_the_config(widgets, sections):
    at = _page("pages/1_Simulate.py")
    at.number_input(key="sim.num_requests").set_value(N)
    for key, value in widgets.items():
        at.run()  # knobs of a newly chosen scheduler appear after a rerun
        el = at.get_by_key(key)
        el.check() if value is True else el.set_value(value)
    at.run()
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    expected = _expected_config(**sections)
    assert json.loads(at.session_state["sim.result_key"]) == json.loads(expected.model_dump_json())
    _check_kpis(at, simulate(expected).summary)


def test_compare_takes_configuration_a_from_the_last_simulate_run():
    at = _page("pages/1_Simulate.py")
    at.number_input(key="sim.num_requests").set_value(N)
    at.number_input(key="sim.tp").set_value(2)
    at.selectbox(key="sim.scheduler").set_value("splitfuse")
    at.button(key="sim_run").click()
    at.run()
    sim_key = at.session_state["sim.result_key"]
    at.switch_page("pages/2_Compare.py")
    at.run()
    at.button(key="cmp_from_sim").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="cmp0.tp").value == 2 and at.selectbox(key="cmp0.scheduler").value == "splitfuse"
    assert at.number_input(key="cmp.num_requests").value == N
    at.button(key="cmp_run").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert list(at.session_state["cmp.result_keys"].values())[0] == sim_key


def test_empirical_lengths_from_a_real_length_trace(traces_dir):
    path = str(traces_dir / "etalon" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    at = _page("pages/1_Simulate.py")
    at.number_input(key="sim.num_requests").set_value(N)
    for label in ("input", "output"):
        at.selectbox(key=f"sim.{label}.kind").set_value("empirical")
    at.run()
    for label in ("input", "output"):
        at.text_input(key=f"sim.{label}.path").set_value(path)
    at.button(key="sim_run").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    expected = _expected_config(workload={
        "input_len": {"kind": "empirical", "path": path, "column": "num_prefill_tokens"},
        "output_len": {"kind": "empirical", "path": path, "column": "num_decode_tokens"}})
    assert json.loads(at.session_state["sim.result_key"]) == json.loads(expected.model_dump_json())
    _check_kpis(at, simulate(expected).summary)


def test_a_multi_replica_run_lets_you_pick_the_replica_for_batch_composition():
    at = _page("pages/1_Simulate.py")
    at.number_input(key="sim.num_requests").set_value(N)
    at.number_input(key="sim.replicas").set_value(3)
    at.button(key="sim_run").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="sim.replica").options == ["0", "1", "2"]
    at.selectbox(key="sim.replica").set_value(2)
    at.run()
    assert not at.exception
    batch = json.loads(_charts(at)[4].proto.spec)
    assert "replica 2" in batch["layout"]["title"]["text"]
