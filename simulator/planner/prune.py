"""Pruning before simulation: layouts that cannot fit, cannot be split, or cannot meet the SLOs.

Bounds are lower bounds on latency that hold for every scheduler: a request's TTFT is at least its
prompt's prefill run alone in one pass (chunking only adds weight reads and KV re-reads), and each of
its output tokens takes at least one batch-1 decode pass at its prompt's context (batching and longer
contexts only add work), both across all `pp` stages. Percentiles of elementwise lower bounds bound
the percentiles, so a layout whose bound misses an SLO can be dropped without simulating it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.errors import UserError
from hwmodels.shapes import BatchShape
from simulator.config import Config
from simulator.planner.space import Candidate

# Reasons, in the order they are checked (the first that applies is reported).
REASONS = {
    "layout": "heads/layers not divisible by TP/PP (or layout not supported)",
    "over_max_gpus": "one replica needs more GPUs than --max-gpus",
    "over_budget": "one replica costs more per hour than --budget-usd-per-hour",
    "memory": "weights + activations + minimum KV do not fit in GPU memory",
    "kv_too_small": "KV cache too small for enough of the requests to meet the SLOs",
    "unsupported": "the cost model cannot price this layout (e.g. dtype unsupported on this GPU)",
    "ttft_bound": "roofline lower bound on TTFT (isolated prefill) already misses the SLO",
    "tpot_bound": "roofline lower bound on TPOT (batch-1 decode) already misses the SLO",
    "e2e_bound": "roofline lower bound on end-to-end latency already misses the SLO",
    "attainment_bound": "roofline lower bounds leave too few requests able to meet the SLOs",
}


@dataclass(frozen=True, slots=True)
class Pruned:
    candidate: Candidate
    reason: str  # a key of REASONS
    message: str


@dataclass(frozen=True, slots=True)
class Survivor:
    candidate: Candidate
    usd_per_gpu_hour: float
    hbm_bytes: float
    weights_bytes_per_gpu: float
    kv_capacity_tokens: int
    ttft_bound_s: float  # at the SLO percentile
    tpot_bound_s: float
    start_rate_per_s: float  # roofline guess of the capacity, where the search starts


def pass_seconds(cost_model, shape: BatchShape, pp: int) -> float:
    """One micro-batch through all pp stages, with the pp-1 activation hops."""
    return pp * cost_model.stage_seconds(shape) + (pp - 1) * cost_model.p2p_seconds(shape)


def latency_bounds(cost_model, pp: int, input_tokens: np.ndarray, output_tokens: np.ndarray, window: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per-request lower bounds (TTFT, TPOT) in seconds; TPOT is NaN for single-token outputs."""
    cache_p: dict[int, float] = {}
    cache_d: dict[int, float] = {}
    ttft = np.empty(len(input_tokens))
    tpot = np.empty(len(input_tokens))
    for i, (p, o) in enumerate(zip(input_tokens.tolist(), output_tokens.tolist())):
        if p not in cache_p:
            cache_p[p] = pass_seconds(cost_model, BatchShape.from_seqs([(p, 0)], window=window), pp)
            cache_d[p] = pass_seconds(cost_model, BatchShape.from_seqs([(1, p)], window=window), pp)
        ttft[i] = cache_p[p]
        tpot[i] = cache_d[p] if o > 1 else np.nan
    return ttft, tpot


def throughput_guess(cost_model, pp: int, mean_in: float, mean_out: float, max_batch: int, kv_tokens: int,
                     window: int = 0) -> float:
    """Requests/s a replica sustains if busy all the time: prefill alone + decode at the largest batch."""
    batch = int(max(1, min(max_batch, kv_tokens // max(1.0, mean_in + mean_out))))
    ctx = int(mean_in + mean_out / 2)
    t_pre = pass_seconds(cost_model, BatchShape.from_seqs([(max(1, int(mean_in)), 0)], window=window), pp)
    t_dec = pass_seconds(cost_model, BatchShape.from_seqs([(1, ctx)] * batch, window=window), pp)
    busy_s = t_pre + max(0.0, mean_out - 1) * t_dec / batch
    return 1.0 / busy_s if busy_s > 0 else 1.0


def check_candidate(cand: Candidate, base: Config, input_tokens: np.ndarray, output_tokens: np.ndarray, *,
                    max_gpus: int | None = None, budget_usd_per_hour: float | None = None
                    ) -> Survivor | Pruned:
    """Prune `cand` (first failing check) or return what the capacity search needs to know about it."""
    from hwmodels.build import build_cost_model
    from hwmodels.hardware import resolve_gpu
    from hwmodels.layout import check_layout
    from hwmodels.memory import plan_memory
    from hwmodels.models import resolve_model

    cfg = cand.to_config(base)
    model = resolve_model(cfg.model)
    gpu = resolve_gpu(cfg.hardware)
    try:
        check_layout(model, cfg.parallel)
    except UserError as exc:
        return Pruned(cand, "layout", str(exc))
    n = cand.gpus_per_replica
    if max_gpus is not None and n > max_gpus:
        return Pruned(cand, "over_max_gpus", f"{n} GPUs per replica > max_gpus={max_gpus}")
    price = float(gpu.usd_per_hour)
    if budget_usd_per_hour is not None and n * price > budget_usd_per_hour:
        return Pruned(cand, "over_budget", f"{n} x ${price:.2f}/h = ${n * price:.2f}/h > "
                                           f"budget ${budget_usd_per_hour:.2f}/h")
    try:
        mem = plan_memory(model, gpu, cfg.parallel, cfg.quant,
                          gpu_memory_utilization=cfg.kv_cache.gpu_memory_utilization,
                          block_size=cand.block_size, max_num_batched_tokens=cand.max_num_batched_tokens)
    except UserError as exc:
        return Pruned(cand, "memory", str(exc))
    num_blocks = cfg.kv_cache.num_blocks or mem.num_kv_blocks
    if num_blocks < 1:
        return Pruned(cand, "memory", "no memory left for the KV cache after weights and activations")
    kv_tokens = int(num_blocks * cand.block_size)
    fits = (input_tokens + output_tokens) <= kv_tokens  # the others are rejected: they miss every SLO
    slo = base.slo
    q = slo.percentile
    need = slo.attainment if slo.attainment is not None else q / 100
    if len(fits) and fits.mean() < need:
        return Pruned(cand, "kv_too_small", f"KV holds {kv_tokens} tokens per replica; only {fits.mean():.1%} of "
                                            f"requests fit, {need:.1%} must meet the SLOs")
    try:
        cm = build_cost_model(model, gpu, cfg.parallel, cfg.quant, cfg.hardware, cfg.cost_model)
    except UserError as exc:
        return Pruned(cand, "unsupported", str(exc))
    window = int(getattr(model, "sliding_window", 0) or 0)
    ttft_lb, tpot_lb = latency_bounds(cm, cand.pp, input_tokens, output_tokens, window)
    tpot0 = np.nan_to_num(tpot_lb)  # single-token outputs have no TPOT: bound 0
    p_ttft = float(np.percentile(ttft_lb, q, method="lower")) if len(ttft_lb) else 0.0
    p_tpot = float(np.percentile(tpot0, q, method="lower")) if len(tpot_lb) else 0.0
    masks = {}  # per SLO: requests whose lower bound still meets it
    if slo.ttft_s is not None:
        masks["ttft_bound"] = fits & (ttft_lb <= slo.ttft_s)
    if slo.tpot_s is not None:
        masks["tpot_bound"] = fits & (tpot0 <= slo.tpot_s)
    if slo.e2e_s is not None:
        masks["e2e_bound"] = fits & (ttft_lb + tpot0 * np.maximum(output_tokens - 1, 0) <= slo.e2e_s)
    what = {"ttft_bound": f"p{q:g} TTFT >= {p_ttft:.3g} s (prefill alone) > SLO {slo.ttft_s} s",
            "tpot_bound": f"p{q:g} TPOT >= {p_tpot:.3g} s (batch-1 decode) > SLO {slo.tpot_s} s",
            "e2e_bound": f"prefill + batch-1 decodes already exceed the e2e SLO {slo.e2e_s} s"}
    if slo.attainment is not None:
        ok = fits.copy()
        for m in masks.values():
            ok &= m
        if len(ok) and ok.mean() < slo.attainment:
            return Pruned(cand, "attainment_bound", f"at most {ok.mean():.1%} of requests can meet the SLOs, "
                                                    f"attainment {slo.attainment:.1%} is required")
    else:  # the verdict of simulator.metrics: each SLO met by >= percentile % of requests
        for reason, m in masks.items():
            if len(m) and m.mean() < q / 100:
                return Pruned(cand, reason, what[reason])
    start = throughput_guess(cm, cand.pp, float(np.mean(input_tokens)), float(np.mean(output_tokens)),
                             cand.max_batch_size, kv_tokens, window)
    return Survivor(cand, price, float(gpu.hbm_bytes), float(mem.weights_bytes_per_gpu), kv_tokens,
                    p_ttft, p_tpot, start)
