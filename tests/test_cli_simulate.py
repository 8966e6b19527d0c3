"""`llmsim simulate` end to end through the real CLI: JSON contract, outputs, and clear errors."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from app.cli import app
from simulator.config import load_config

runner = CliRunner()
SMALL = ["--num-requests", "60", "--input-len", "128", "--output-len", "16", "--rate", "20"]


def run(*args):
    return runner.invoke(app, ["simulate", *args])


def test_json_summary_contract(tmp_path):
    r = run(*SMALL, "--json", "--out", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for key in ("num_requests", "num_finished", "duration_s", "request_throughput_per_s",
                "output_throughput_tokens_per_s"):
        assert isinstance(s[key], (int, float))
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(s[key]) >= {"mean", "p50", "p90", "p99"}
        assert 0 < s[key]["p50"] <= s[key]["p99"]
    assert s["num_requests"] == s["num_finished"] == 60
    reqs = pd.read_parquet(tmp_path / "out" / "requests.parquet")
    steps = pd.read_parquet(tmp_path / "out" / "steps.parquet")
    assert len(reqs) == 60 and len(steps) > 16
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["num_finished"] == 60
    # The written config replays to the same numbers.
    again = run("--config", str(tmp_path / "out" / "config.yaml"), "--json")
    assert json.loads(again.stdout)["e2e_s"] == s["e2e_s"]


def test_table_output_and_flags_map_onto_config():
    r = run(*SMALL, "--scheduler", "sarathi", "--chunk-size", "256", "--tp", "2", "--replicas", "2",
            "--router", "least_outstanding", "--kv-dtype", "fp8", "--block-size", "32")
    assert r.exit_code == 0, r.output
    assert "TTFT" in r.output and "throughput" in r.output


def test_same_seed_same_numbers():
    a = json.loads(run(*SMALL, "--seed", "7", "--json").stdout)
    b = json.loads(run(*SMALL, "--seed", "7", "--json").stdout)
    c = json.loads(run(*SMALL, "--seed", "8", "--json").stdout)
    assert a == b and a["e2e_s"] != c["e2e_s"]


def test_rate_inf_is_offline_batch():
    s = json.loads(run(*SMALL[:-2], "--rate", "inf", "--json").stdout)
    assert s["num_finished"] == 60


@pytest.mark.parametrize("args, needle", [
    (["--tp", "3"], "tp"),
    (["--rate", "fast"], "--rate"),
    (["--rate", "-1"], "--rate"),
    (["--scheduler", "fifo"], "scheduler"),
    (["--chunk-size", "128"], "sarathi"),
    (["--model", "llama-9"], "llama-9"),
    (["--gpu", "tpu-v9"], "tpu-v9"),
    (["--model", "llama-3.1-405b", "--gpu", "l4"], "405b"),
])
def test_bad_flags_give_one_clear_error(args, needle):
    r = run(*SMALL, *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and needle in r.output


def test_malformed_trace_names_file_line_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                   "2023-11-16 18:15:46.6805900,374,44\n"
                   "2023-11-16 18:15:50.9951690,abc,44\n")
    r = run("--trace", str(bad))
    assert r.exit_code == 2 and "bad.csv:3" in r.output and "abc" in r.output


def test_bad_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("parallel:\n  tp: 0\nscheduler:\n  kind: vllm\n  chunk_size: 5\n")
    r = run("--config", str(f))
    assert r.exit_code == 2 and "parallel.tp" in r.output and "chunk_size" in r.output
    f.write_text("parallel: [1, 2\n")
    r = run("--config", str(f))
    assert r.exit_code == 2 and "c.yaml:" in r.output


def test_example_config_loads():
    assert load_config("examples/default.yaml").workload.num_requests == 1000
