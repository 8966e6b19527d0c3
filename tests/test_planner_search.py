"""Planner end to end on the real simulator: exhaustive agreement, backends, CLI answers."""
from __future__ import annotations

import functools
import json

import pytest
import yaml
from typer.testing import CliRunner

from simulator.config import ArrivalConfig, Config, SLOConfig, SyntheticWorkload, UniformLength
from simulator.planner.backends import ray_available
from simulator.planner.capacity import scan_capacity
from simulator.planner.config import CapacitySearchConfig, PlanConfig, SearchSpace
from simulator.planner.prune import Pruned, check_candidate
from simulator.planner.search import build_probe_workload, plan_serve, probe_once
from simulator.planner.space import enumerate_candidates

N = 80  # requests per probe: tiny, the test is about the search, not the numbers
BASE = Config(workload=SyntheticWorkload(num_requests=N, arrival=ArrivalConfig(process="poisson", rate_per_s=1.0),
                                         input_len=UniformLength(low=200, high=1200),
                                         output_len=UniformLength(low=20, high=120)),
              slo=SLOConfig(ttft_s=0.4, tpot_s=0.012))
SEARCH = CapacitySearchConfig(max_requests_per_probe=N, rel_tolerance=0.25, min_rate_per_s=1.0, max_rate_per_s=160.0)
# l40s cannot decode llama-3.1-8b under 12 ms per token (roofline bound) and is pruned without simulation.
SPACE = SearchSpace(gpus=("h100-sxm", "a100-80gb", "l40s"), tp=(1, 2), schedulers=("vllm",))


def test_planner_choice_equals_exhaustive_search():
    plan = PlanConfig(base=BASE, space=SPACE, search=SEARCH)
    res = plan_serve(plan, backend="serial", verify_best=False)

    # Reference: simulate every point of the space at every rate of the grid (pruned points included).
    from hwmodels.build import build_cost_model
    from hwmodels.hardware import resolve_gpu
    from hwmodels.models import resolve_model

    pw = build_probe_workload(BASE, N)
    ref: dict = {}
    for c in enumerate_candidates(plan):
        cfg = c.to_config(BASE)
        cm = build_cost_model(resolve_model(cfg.model), resolve_gpu(cfg.hardware), cfg.parallel, cfg.quant,
                              cfg.hardware, cfg.cost_model)
        ref[c] = scan_capacity(lambda r: probe_once(cfg, cm, pw, r), tol=SEARCH.rel_tolerance,
                               min_rate_per_s=SEARCH.min_rate_per_s, max_rate_per_s=SEARCH.max_rate_per_s)
        verdict = check_candidate(c, BASE, pw.input_tokens, pw.output_tokens)
        if isinstance(verdict, Pruned):  # pruning is sound: nothing it drops meets the SLOs at any rate
            assert ref[c] == 0.0, (c.label(), verdict.reason)
    # Cheapest per token = lowest $/h per unit of sustainable rate (one replica: no bounds given).
    price = {"h100-sxm": resolve_gpu(BASE.hardware.model_copy(update={"gpu": "h100-sxm"})).usd_per_hour,
             "a100-80gb": resolve_gpu(BASE.hardware.model_copy(update={"gpu": "a100-80gb"})).usd_per_hour}
    feasible = {c: q for c, q in ref.items() if q > 0}
    best = min(feasible, key=lambda c: price[c.gpu] * c.tp / feasible[c])
    assert res.best is not None and res.best.candidate == best and res.best.replicas == 1
    assert res.best.max_qps == pytest.approx(ref[best])
    assert res.pruned.get("tpot_bound") == 2
    for o in res.outcomes:  # bisection found the scan's capacity for every simulated layout
        assert o.capacity.max_rate_per_s == pytest.approx(ref[o.candidate]), o.candidate.label()
    assert sum(len(o.capacity.probes) for o in res.outcomes) < 0.5 * len(res.outcomes) * 21


SMALL = PlanConfig(base=BASE, space=SearchSpace(gpus=("h100-sxm", "a100-80gb"), tp=(1,), schedulers=("vllm",)),
                   search=SEARCH, max_gpus=4)


@functools.lru_cache(maxsize=None)
def _run(backend: str) -> tuple[str, list]:
    kw = {"workers": 2} if backend == "local" else {"ray_address": "local"} if backend == "ray" else {}
    r = plan_serve(SMALL, backend=backend, verify_best=False, **kw)
    return json.dumps({**r.to_json(), "wall_s": 0}), [p for o in r.outcomes for p in o.capacity.probes]


def test_local_pool_equals_serial():
    assert _run("local") == _run("serial")


@pytest.mark.skipif(not ray_available(), reason="ray is not installed (pip install 'llmsim[ray]')")
def test_ray_local_equals_serial():
    assert _run("ray") == _run("serial")


runner = CliRunner()


def _cli(*args: str):
    from app.cli import app

    return runner.invoke(app, list(args))


def test_cli_json_pareto_and_emitted_config(tmp_path):
    cfg = tmp_path / "scenario.yaml"
    cfg.write_text(yaml.safe_dump({"workload": BASE.workload.model_dump(mode="json"), "plan": {
        "search": SEARCH.model_dump(mode="json")}}))
    html, emitted = tmp_path / "pareto.html", tmp_path / "rec.yaml"
    r = _cli("plan", "serve", "--config", str(cfg), "--gpu", "h100-sxm,a100-80gb", "--tp", "1,2",
             "--scheduler", "vllm", "--slo-ttft-p90", "0.4", "--slo-tpot-p90", "0.012", "--target-qps", "50",
             "--max-gpus", "8", "--serial", "--json", "--pareto", str(html), "--emit-config", str(emitted))
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    top = out["configs"][0]
    for key in ("gpu", "num_gpus", "tp", "pp", "replicas", "scheduler", "max_qps", "usd_per_mtok"):
        assert key in top
    assert top["max_qps"] >= 50 and top["num_gpus"] <= 8 and top["num_gpus"] == top["replicas"] * top["tp"]
    assert out["verification"]["slo_met"] in (True, False) and out["answer"].startswith("deploy")
    assert "Pareto front" in html.read_text()
    from simulator.config import load_config
    rec = load_config(emitted)  # the format `llmsim simulate --config` takes
    assert rec.parallel.replicas == top["replicas"] and rec.hardware.gpu == top["gpu"]


def test_cli_model_that_fits_nowhere():
    r = _cli("plan", "serve", "--model", "llama-3.1-405b", "--gpu", "l40s", "--max-gpus", "4",
             "--input-len", "512", "--output-len", "64", "--slo-ttft-p90", "2", "--serial", "--pareto", "")
    assert r.exit_code == 0, r.output
    assert "no feasible configuration" in r.output and "memory" in r.output and "Traceback" not in r.output


def test_cli_slos_no_layout_meets():
    r = _cli("plan", "serve", "--gpu", "a100-80gb", "--tp", "1", "--scheduler", "vllm", "--input-len", "512",
             "--output-len", "64", "--slo-tpot-p90", "0.0001", "--serial", "--pareto", "", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["configs"] == [] and out["pruned"] == {"tpot_bound": 1}
    assert "no feasible configuration" in out["answer"] and "TPOT" in out["answer"]


def test_cli_bad_input_is_one_clear_message():
    r = _cli("plan", "serve", "--tp", "1,x", "--slo-ttft-p90", "1")
    assert r.exit_code == 2 and "error: --tp = '1,x': 'x' is not a valid integer" in r.output
    r = _cli("plan", "serve", "--serial")
    assert r.exit_code == 2 and "error: slo: set at least one of" in r.output
    r = _cli("plan", "serve", "--scheduler", "fifo", "--slo-ttft-p90", "1")
    assert r.exit_code == 2 and "plan.space.schedulers.0 = 'fifo'" in r.output and "Traceback" not in r.output


def test_cli_target_out_of_reach_says_how_far():
    r = _cli("plan", "serve", "--gpu", "a100-80gb", "--tp", "1", "--scheduler", "vllm", "--target-qps", "100000",
             "--max-gpus", "2", "--input-len", "512", "--output-len", "64", "--slo-ttft-p90", "1",
             "--requests-per-probe", "60", "--serial", "--pareto", "", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["configs"] == [] and out["pruned"] == {"target_over_max_gpus": 1}
    assert "no configuration reaches 100000 req/s within max_gpus=2" in out["answer"]
