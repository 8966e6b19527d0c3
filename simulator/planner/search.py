"""`plan_serve`: enumerate → prune → capacity search per surviving layout → size and rank deployments.

Capacity is searched per replica; a deployment of r replicas sustains r times that rate (requests are
spread evenly by the router; the same assumption as Vidur's config search, MLSys'24). Every probe
simulates the first `max_requests_per_probe` requests of the workload, rate-scaled.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hwmodels.errors import UserError
from simulator.config import Config, SLOConfig
from simulator.planner.backends import Progress, run_tasks
from simulator.planner.capacity import CapacityResult, ProbeResult, find_capacity, slo_metrics
from simulator.planner.config import CapacitySearchConfig, PlanConfig
from simulator.planner.prune import REASONS, Pruned, Survivor, check_candidate
from simulator.planner.space import Candidate, enumerate_candidates, varying_fields


# ---- the probe workload -------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeWorkload:
    """The base requests every probe replays (common random numbers), at `native_rate_per_s`."""

    workload: Any  # simulator.workload.Workload, first N requests
    native_rate_per_s: float

    @property
    def input_tokens(self) -> np.ndarray:
        return np.asarray(self.workload.input_tokens)

    @property
    def output_tokens(self) -> np.ndarray:
        return np.asarray(self.workload.output_tokens)

    def requests_at(self, rate_per_s: float):
        return self.workload.scaled(rate_per_s / self.native_rate_per_s).to_requests()


def build_probe_workload(base: Config, max_requests: int) -> ProbeWorkload:
    from simulator.workload import build_workload

    wl = build_workload(base.workload, base.simulation.seed).head(max_requests)
    t = np.asarray(wl.arrival_s, dtype=float)
    if len(t) < 2:
        raise UserError(f"workload: the planner needs at least 2 requests, got {len(t)}")
    span = float(t.max() - t.min())
    if not math.isfinite(span) or span <= 0:
        raise UserError("workload.arrival: every request arrives at the same time (burst / infinite rate); "
                        "the planner scales a finite arrival rate: use process poisson, gamma or constant")
    return ProbeWorkload(wl, (len(t) - 1) / span)


# ---- one layout's capacity search (runs in a worker) --------------------------------------------

@dataclass(frozen=True)
class EvalTask:
    survivor: Survivor
    base: Config
    probe_workload: ProbeWorkload
    search: CapacitySearchConfig


@dataclass
class LayoutOutcome:
    survivor: Survivor
    capacity: CapacityResult
    wall_s: float

    @property
    def candidate(self) -> Candidate:
        return self.survivor.candidate


def per_request_latencies(requests_df) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TTFT, TPOT, e2e) seconds per request of a SimulationResult.requests frame; NaN where a request did
    not finish (rejected, unfinished); TPOT also NaN for fewer than 2 generated tokens (simulator.metrics)."""
    df = requests_df
    fin = (df["state"] == "finished").to_numpy()
    arrival = df["arrival_s"].to_numpy(float)
    first = np.where(fin, df["first_token_s"].to_numpy(float), np.nan)
    finish = np.where(fin, df["finish_s"].to_numpy(float), np.nan)
    gen = df["num_generated"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(gen >= 2, (finish - first) / (gen - 1), np.nan)
    return first - arrival, tpot, finish - arrival


def probe_once(cfg: Config, cost_model, pw: ProbeWorkload, rate_per_s: float) -> ProbeResult:
    from simulator.simulate import simulate

    res = simulate(cfg, requests=pw.requests_at(rate_per_s), cost_model=cost_model)
    ttft, tpot, e2e = per_request_latencies(res.requests)
    p_ttft, p_tpot, p_e2e, att, violated = slo_metrics(ttft, tpot, e2e, cfg.slo)
    s = res.summary
    return ProbeResult(rate_per_s, not violated, p_ttft, p_tpot, p_e2e, att,
                       float(s.get("kv_peak_utilization", float("nan"))), int(s.get("num_rejected", 0)),
                       int(s.get("num_preemptions", 0)), violated)


def evaluate_layout(task: EvalTask) -> LayoutOutcome:
    """Capacity search of one surviving layout (one replica). Pure: same task, same outcome."""
    from hwmodels.build import build_cost_model
    from hwmodels.hardware import resolve_gpu
    from hwmodels.models import resolve_model

    t0 = time.perf_counter()
    cfg = task.survivor.candidate.to_config(task.base)
    cm = build_cost_model(resolve_model(cfg.model), resolve_gpu(cfg.hardware), cfg.parallel, cfg.quant,
                          cfg.hardware, cfg.cost_model)
    s = task.search
    cap = find_capacity(lambda r: probe_once(cfg, cm, task.probe_workload, r),
                        start_rate_per_s=task.survivor.start_rate_per_s, tol=s.rel_tolerance,
                        min_rate_per_s=s.min_rate_per_s, max_rate_per_s=s.max_rate_per_s, max_probes=s.max_probes)
    return LayoutOutcome(task.survivor, cap, time.perf_counter() - t0)


# ---- deployments and ranking --------------------------------------------------------------------

@dataclass
class Deployment:
    """One ranked row: a layout, its replica count, and what it sustains and costs."""

    outcome: LayoutOutcome
    replicas: int
    num_gpus: int
    max_qps: float  # cluster, = replicas x per-replica capacity
    operating_qps: float  # target_qps if given, else max_qps
    usd_per_hour: float
    usd_per_mtok: float  # at operating_qps, output tokens
    goodput_per_gpu: float  # req/s meeting the SLOs per GPU, at capacity
    ttft_s: float  # at the SLO percentile, at per-replica capacity
    tpot_s: float
    mem_headroom: float  # 1 - peak KV utilisation at capacity

    @property
    def candidate(self) -> Candidate:
        return self.outcome.candidate

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {"label": c.label(), "gpu": c.gpu, "num_gpus": self.num_gpus, "tp": c.tp, "pp": c.pp,
                "replicas": self.replicas, "scheduler": c.scheduler, "max_batch_size": c.max_batch_size,
                "max_num_batched_tokens": c.max_num_batched_tokens, "chunk_size": c.chunk_size,
                "block_size": c.block_size, "weight_dtype": c.weight_dtype, "kv_dtype": c.kv_dtype,
                "max_qps": self.max_qps, "max_qps_per_replica": self.outcome.capacity.max_rate_per_s,
                "operating_qps": self.operating_qps, "usd_per_hour": self.usd_per_hour,
                "usd_per_mtok": self.usd_per_mtok, "goodput_per_gpu": self.goodput_per_gpu,
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "mem_headroom": self.mem_headroom,
                "capacity_capped": self.outcome.capacity.capped,
                "limited_by": self.outcome.capacity.first_fail.violated if self.outcome.capacity.first_fail else ""}


def replica_options(gpus_per_replica: int, usd_per_replica_hour: float, qps_per_replica: float,
                    plan: PlanConfig) -> list[int]:
    """Replica counts to consider for one layout (before the max_gpus / budget filter)."""
    if plan.target_qps is not None:
        return [max(1, math.ceil(plan.target_qps / qps_per_replica - 1e-9))]
    if plan.space.replicas:
        return sorted(set(plan.space.replicas))
    most = math.inf
    if plan.max_gpus is not None:
        most = min(most, plan.max_gpus // gpus_per_replica)
    if plan.budget_usd_per_hour is not None:
        most = min(most, math.floor(plan.budget_usd_per_hour / usd_per_replica_hour + 1e-9))
    return [1] if most == math.inf else [max(1, int(most))]


def rank_key(d: Deployment, plan: PlanConfig) -> tuple:
    tie = (d.candidate.label(), d.replicas)
    if plan.rank_by == "qps_per_gpu":
        return (-d.goodput_per_gpu, d.usd_per_mtok) + tie
    if plan.rank_by == "ttft":
        return (d.ttft_s, d.usd_per_mtok) + tie
    if plan.target_qps is not None:
        return (d.usd_per_hour, d.usd_per_mtok, d.ttft_s) + tie
    return (d.usd_per_mtok, -d.goodput_per_gpu, d.ttft_s) + tie


def build_deployments(outcomes: list[LayoutOutcome], plan: PlanConfig, mean_output_tokens: float
                      ) -> tuple[list[Deployment], dict[str, int]]:
    """Size every layout that met the SLOs somewhere, filter by the bounds, rank. Also counts the drops."""
    rows: list[Deployment] = []
    dropped: dict[str, int] = {}
    for o in outcomes:
        qps = o.capacity.max_rate_per_s
        if qps <= 0 or o.capacity.best is None:
            dropped["slo_unmet_simulated"] = dropped.get("slo_unmet_simulated", 0) + 1
            continue
        c, sv = o.candidate, o.survivor
        per_replica_usd = c.gpus_per_replica * sv.usd_per_gpu_hour
        kept = 0
        for r in replica_options(c.gpus_per_replica, per_replica_usd, qps, plan):
            n, usd = r * c.gpus_per_replica, r * per_replica_usd
            if (plan.max_gpus is not None and n > plan.max_gpus) or (
                    plan.budget_usd_per_hour is not None and usd > plan.budget_usd_per_hour + 1e-9):
                continue
            op = plan.target_qps if plan.target_qps is not None else r * qps
            best = o.capacity.best
            rows.append(Deployment(o, r, n, r * qps, op, usd, usd / 3600.0 / (op * mean_output_tokens) * 1e6,
                                   qps / c.gpus_per_replica, best.ttft_s, best.tpot_s,
                                   1.0 - best.kv_peak_utilization))
            kept += 1
        if not kept:
            key = "target_over_max_gpus" if plan.target_qps is not None else "replicas_over_bounds"
            dropped[key] = dropped.get(key, 0) + 1
    rows.sort(key=lambda d: rank_key(d, plan))
    return rows, dropped


def deployment_config(base: Config, d: Deployment, num_requests: int) -> Config:
    """`base` with d's layout and replicas, running `num_requests` requests at d.operating_qps on average."""
    from simulator.workload import build_workload

    cfg = d.candidate.to_config(base, replicas=d.replicas)
    data = cfg.model_dump(mode="python")
    wl = data["workload"]
    if wl["kind"] == "synthetic":
        wl["num_requests"] = num_requests
        wl["arrival"] = {**wl["arrival"], "rate_per_s": d.operating_qps}
    else:  # rate_scale relative to the native rate of exactly these requests
        wl["num_requests"] = num_requests
        wl["rate_scale"] = 1.0
        t = np.asarray(build_workload(Config.model_validate(data).workload, base.simulation.seed).arrival_s)
        span = float(t.max() - t.min()) if len(t) > 1 else 0.0
        wl["rate_scale"] = d.operating_qps / ((len(t) - 1) / span) if span > 0 else 1.0
    return Config.model_validate(data)


@dataclass(frozen=True)
class Verification:
    """The recommended deployment simulated whole (all replicas, the router) at its operating rate."""

    num_requests: int
    slo_met: bool
    ttft_s: float  # at the SLO percentile
    tpot_s: float
    attainment: float


def verify(base: Config, d: Deployment, num_requests: int) -> Verification:
    """Checks the replicas x capacity assumption on the real router with one cluster-wide simulation."""
    from simulator.simulate import simulate

    cfg = deployment_config(base, d, num_requests)
    res = simulate(cfg)
    ttft, tpot, e2e = per_request_latencies(res.requests)
    p_ttft, p_tpot, _, att, violated = slo_metrics(ttft, tpot, e2e, cfg.slo)
    return Verification(len(res.requests), not violated, p_ttft, p_tpot, att)


# ---- the whole search ---------------------------------------------------------------------------

@dataclass
class PlanResult:
    plan: PlanConfig
    deployments: list[Deployment]  # ranked, best first
    pruned: dict[str, int]  # reason -> count (before and after simulation)
    pruned_examples: dict[str, str]  # reason -> one example "label: message"
    outcomes: list[LayoutOutcome]
    num_candidates: int
    num_requests_per_probe: int
    mean_output_tokens: float
    native_rate_per_s: float
    wall_s: float
    notes: list[str] = field(default_factory=list)
    answer: str = ""
    verification: Verification | None = None  # the one-line recommendation, or why there is none

    @property
    def best(self) -> Deployment | None:
        return self.deployments[0] if self.deployments else None

    def recommended_config(self) -> Config | None:
        """The scenario `llmsim simulate --config` would run for the recommendation: the whole deployment
        at its operating rate, on the first (requests per probe x replicas) requests of the workload."""
        d = self.best
        if d is None:
            return None
        return deployment_config(self.plan.base, d, self.num_requests_per_probe * d.replicas)

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "configs": [d.as_dict() for d in self.deployments],
            "pruned": dict(self.pruned),
            "pruned_examples": dict(self.pruned_examples),
            "recommendation": best.as_dict() if best else None,
            "answer": self.answer,
            "explanation": explain(self),
            "num_candidates": self.num_candidates,
            "num_simulated": len(self.outcomes),
            "num_probes": sum(len(o.capacity.probes) for o in self.outcomes),
            "num_requests_per_probe": self.num_requests_per_probe,
            "target_qps": self.plan.target_qps,
            "slo": self.plan.base.slo.model_dump(),
            "verification": None if self.verification is None else {
                "num_requests": self.verification.num_requests, "slo_met": self.verification.slo_met,
                "ttft_s": self.verification.ttft_s, "tpot_s": self.verification.tpot_s,
                "attainment": self.verification.attainment},
            "notes": list(self.notes),
            "wall_s": self.wall_s,
        }


def _slo_text(slo: SLOConfig) -> str:
    parts = [f"{name} <= {v:g} s" for name, v in (("TTFT", slo.ttft_s), ("TPOT", slo.tpot_s), ("e2e", slo.e2e_s))
             if v is not None]
    if slo.attainment is not None:
        return f"{slo.attainment:.0%} of requests with " + " and ".join(parts)
    return f"p{slo.percentile:g} " + ", ".join(parts)


def explain(res: PlanResult) -> str:
    """Why the recommendation beats the runner-up, in one or two sentences."""
    ds = res.deployments
    if len(ds) < 2:
        return "" if not ds else "it is the only configuration that meets the SLOs within the bounds."
    a, b = ds[0], ds[1]
    ca, cb = a.candidate, b.candidate
    ratio = a.goodput_per_gpu / b.goodput_per_gpu if b.goodput_per_gpu else math.inf
    price_a = a.usd_per_hour / a.num_gpus
    price_b = b.usd_per_hour / b.num_gpus
    diff = [f"{k}: {getattr(ca, k)} vs {getattr(cb, k)}" for k in ("gpu", "tp", "pp", "scheduler", "chunk_size",
            "max_batch_size", "max_num_batched_tokens", "block_size", "weight_dtype", "kv_dtype")
            if getattr(ca, k) != getattr(cb, k)]
    text = (f"vs runner-up {b.replicas} x {cb.label(varying_fields([o.candidate for o in res.outcomes]))} ({'; '.join(diff) or 'same layout'}): "
            f"{a.goodput_per_gpu:.3g} vs {b.goodput_per_gpu:.3g} req/s per GPU ({ratio:.2f}x) at "
            f"${price_a:.2f} vs ${price_b:.2f} per GPU-hour")
    if res.plan.target_qps is not None:
        text += (f" -> {a.num_gpus} vs {b.num_gpus} GPUs for {res.plan.target_qps:g} req/s, "
                 f"${a.usd_per_hour:.2f} vs ${b.usd_per_hour:.2f} per hour")
    else:
        save = 1 - a.usd_per_mtok / b.usd_per_mtok if b.usd_per_mtok else 0.0
        text += f" -> ${a.usd_per_mtok:.3g} vs ${b.usd_per_mtok:.3g} per M output tokens ({save:.0%} cheaper)"
    ff = b.outcome.capacity.first_fail
    if ff is not None:
        text += (f". The runner-up's capacity is bound by {ff.violated or 'SLOs'} "
                 f"(at {ff.rate_per_s:.3g} req/s per replica: p{res.plan.base.slo.percentile:g} TTFT "
                 f"{ff.ttft_s:.3g} s, TPOT {ff.tpot_s:.3g} s)")
    return text + "."


def plan_serve(plan: PlanConfig, *, backend: str = "local", workers: int | None = None,
               ray_address: str | None = None, on_progress: Progress | None = None,
               on_start: Callable[[int], None] | None = None, verify_best: bool = True,
               evaluate: Callable[[EvalTask], LayoutOutcome] = evaluate_layout) -> PlanResult:
    """Answer "what should I deploy for this model, traffic and SLOs, and what will it cost?"."""
    t0 = time.perf_counter()
    slo = plan.base.slo
    if slo.ttft_s is None and slo.tpot_s is None and slo.e2e_s is None:
        raise UserError("slo: set at least one of ttft_s, tpot_s, e2e_s (--slo-ttft-p90, --slo-tpot-p90); "
                        "the planner searches the highest rate that meets them")
    try:
        from policies.schedulers import REGISTRY
        available = tuple(REGISTRY)
    except ImportError:  # pragma: no cover
        available = None
    if plan.space.schedulers and available is not None:
        missing = [k for k in plan.space.schedulers if k not in available]
        if missing:
            raise UserError(f"plan.space.schedulers = {list(plan.space.schedulers)}: {missing} not implemented; "
                            f"available: {list(available)}")
    cands = enumerate_candidates(plan, available)
    pw = build_probe_workload(plan.base, plan.search.max_requests_per_probe)
    inp, out = pw.input_tokens, pw.output_tokens
    survivors: list[Survivor] = []
    pruned: dict[str, int] = {}
    examples: dict[str, str] = {}
    for c in cands:
        r = check_candidate(c, plan.base, inp, out, max_gpus=plan.max_gpus,
                            budget_usd_per_hour=plan.budget_usd_per_hour)
        if isinstance(r, Pruned):
            pruned[r.reason] = pruned.get(r.reason, 0) + 1
            examples.setdefault(r.reason, f"{c.label()}: {r.message}")
        else:
            survivors.append(r)
    if on_start:
        on_start(len(survivors))
    tasks = [EvalTask(s, plan.base, pw, plan.search) for s in survivors]
    outcomes = run_tasks(evaluate, tasks, backend=backend, workers=workers, ray_address=ray_address,
                         on_done=on_progress) if tasks else []
    mean_out = float(np.mean(out))
    deployments, dropped = build_deployments(outcomes, plan, mean_out)
    for k, v in dropped.items():
        pruned[k] = pruned.get(k, 0) + v
    for o in outcomes:
        if o.capacity.max_rate_per_s <= 0 and o.capacity.first_fail is not None:
            f = o.capacity.first_fail
            examples.setdefault("slo_unmet_simulated",
                                f"{o.candidate.label()}: at {f.rate_per_s:.3g} req/s p{slo.percentile:g} "
                                f"TTFT {f.ttft_s:.3g} s, TPOT {f.tpot_s:.3g} s ({f.violated})")
    notes = [f"each probe simulates the first {len(inp)} requests of the workload, rate-scaled "
             f"(common random numbers); capacities are on a {plan.search.rel_tolerance:.0%} rate grid",
             "deployment capacity = replicas x one replica's capacity (even spreading by the router)"]
    if any(o.capacity.capped for o in outcomes):
        notes.append(f"some layouts met the SLOs at max_rate_per_s={plan.search.max_rate_per_s:g}: "
                     f"their capacity is a lower bound")
    res = PlanResult(plan, deployments, pruned, examples, outcomes, len(cands), len(inp), mean_out,
                     pw.native_rate_per_s, 0.0, notes)
    if verify_best and res.best is not None:
        v = res.verification = verify(plan.base, res.best, len(inp) * res.best.replicas)
        q = slo.percentile
        notes.append(f"verification: the recommended deployment simulated whole ({v.num_requests} requests at "
                     f"{res.best.operating_qps:.3g} req/s through the {plan.base.router.kind} router) "
                     + ("meets" if v.slo_met else "MISSES") + f" the SLOs: p{q:g} TTFT {v.ttft_s:.3g} s, "
                     f"TPOT {v.tpot_s:.3g} s, attainment {v.attainment:.1%}")
    res.answer = _answer(res, slo)
    res.wall_s = time.perf_counter() - t0
    return res


def _answer(res: PlanResult, slo: SLOConfig) -> str:
    d = res.best
    if d is not None:
        c = d.candidate
        what = (f"{d.replicas} x ({c.gpu} TP{c.tp} PP{c.pp}, {c.scheduler}) = {d.num_gpus} GPUs")
        return (f"deploy {what}: sustains {d.max_qps:.3g} req/s at {_slo_text(slo)}, "
                f"${d.usd_per_hour:.2f}/h, ${d.usd_per_mtok:.3g} per M output tokens"
                + (f" at {res.plan.target_qps:g} req/s" if res.plan.target_qps is not None else ""))
    if res.num_candidates == 0:
        return "no configuration to search: the search space is empty"
    if not res.outcomes:
        counts = ", ".join(f"{v} {k} ({REASONS.get(k, k)})" for k, v in res.pruned.items())
        ex = "; ".join(res.pruned_examples.values())
        return f"no feasible configuration: all {res.num_candidates} were pruned before simulation: {counts}. e.g. {ex}"
    if all(o.capacity.max_rate_per_s <= 0 for o in res.outcomes):
        best = min((o.capacity.first_fail for o in res.outcomes if o.capacity.first_fail),
                   key=lambda p: (p.ttft_s, p.tpot_s), default=None)
        tail = (f"; the closest got p{slo.percentile:g} TTFT {best.ttft_s:.3g} s, TPOT {best.tpot_s:.3g} s at "
                f"{best.rate_per_s:.3g} req/s" if best else "")
        return (f"no configuration meets {_slo_text(slo)} even at {res.plan.search.min_rate_per_s:g} req/s "
                f"({len(res.outcomes)} simulated, the rest pruned){tail}: relax the SLOs or add faster GPUs")
    if res.plan.target_qps is not None:
        def most(o: LayoutOutcome) -> float:
            c = o.candidate
            r = math.inf
            if res.plan.max_gpus is not None:
                r = res.plan.max_gpus // c.gpus_per_replica
            if res.plan.budget_usd_per_hour is not None:
                r = min(r, res.plan.budget_usd_per_hour // (c.gpus_per_replica * o.survivor.usd_per_gpu_hour))
            return o.capacity.max_rate_per_s * r
        top = max(res.outcomes, key=most)
        bounds = " and ".join(b for b in (f"max_gpus={res.plan.max_gpus}" if res.plan.max_gpus else "",
                                           f"${res.plan.budget_usd_per_hour:g}/h" if res.plan.budget_usd_per_hour
                                           else "") if b)
        return (f"no configuration reaches {res.plan.target_qps:g} req/s within {bounds}: the most is "
                f"{most(top):.3g} req/s ({top.candidate.label()}, {top.capacity.max_rate_per_s:.3g} req/s per "
                f"replica); raise --max-gpus / the budget or relax the SLOs")
    return "no configuration fits the GPU and budget bounds"
