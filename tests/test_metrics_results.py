"""SimulationResult folders: round trip, and user files are never overwritten."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hwmodels.errors import UserError
from simulator.config import ArrivalConfig, Config, SLOConfig, SyntheticWorkload
from simulator.metrics import STEP_COLUMNS, summarize
from simulator.results import MANIFEST, SimulationResult


def requests_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [0, 1], "replica": [0, -1], "arrival_s": [0.0, 1.0], "scheduled_s": [0.0, math.nan],
        "first_token_s": [0.5, math.nan], "finish_s": [1.5, math.nan], "input_tokens": [10, 99999],
        "output_tokens": [3, 7], "num_generated": [3, 0], "num_preemptions": [0, 0], "num_cached_tokens": [0, 0],
        "state": ["finished", "rejected"], "reject_reason": ["", "prompt longer than max_model_len"]})


def steps_frame() -> pd.DataFrame:
    return pd.DataFrame({c: np.arange(3, dtype=np.int64) for c in STEP_COLUMNS})


def result() -> SimulationResult:
    cfg = Config(workload=SyntheticWorkload(num_requests=5, arrival=ArrivalConfig(rate_per_s=math.inf)),
                 slo=SLOConfig(ttft_s=0.6))
    req, steps, itl = requests_frame(), steps_frame(), np.array([0.5, 0.25])
    s = summarize(req, steps, itl, slo=cfg.slo, num_gpus=1, usd_per_gpu_hour=2.0, kv_blocks_total=10, block_size=16)
    return SimulationResult(cfg, req, steps, itl, s, {"weights_bytes": 16e9, "kv_bytes": np.float64(40e9)})


def test_round_trip(tmp_path):
    r = result()
    out = r.write(tmp_path / "run" / "a")
    back = SimulationResult.read(out)
    assert back.config == r.config and back.config.workload.arrival.rate_per_s == math.inf
    pd.testing.assert_frame_equal(back.requests, r.requests, check_dtype=False)
    pd.testing.assert_frame_equal(back.steps, r.steps)
    np.testing.assert_array_equal(back.itl_s, r.itl_s)
    assert back.summary == json.loads(json.dumps(r.summary)) and back.memory == {"weights_bytes": 16e9, "kv_bytes": 40e9}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, "requests.parquet", "steps.parquet", "itl_s.npy", "summary.json", "memory.json", "config.yaml"])


def test_rewrites_own_folder_but_refuses_others(tmp_path):
    r = result()
    out = r.write(tmp_path / "res")
    (out / "notes.txt").write_text("mine")
    r.write(out)  # an llmsim results folder may be written again; other files in it stay
    assert (out / "notes.txt").read_text() == "mine"
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not empty and is not an llmsim results folder"):
        r.write(user)
    assert sorted(p.name for p in user.iterdir()) == ["thesis.tex"]
    (tmp_path / "empty").mkdir()
    r.write(tmp_path / "empty")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        r.write(tmp_path / "f")


def test_read_errors(tmp_path):
    with pytest.raises(UserError, match="not an llmsim results folder"):
        SimulationResult.read(tmp_path)
    out = result().write(tmp_path / "r")
    (out / "steps.parquet").unlink()
    with pytest.raises(UserError, match="missing steps.parquet"):
        SimulationResult.read(out)
