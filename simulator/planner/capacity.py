"""Capacity search: the highest request rate at which a layout still meets its SLOs.

Rates live on a geometric grid, rate_k = (1 + tol)^k req/s, shared by every layout so that results
are comparable and an exhaustive scan of the grid is a well-defined reference. The search brackets
the capacity by doubling the step in k from a starting guess, then bisects the integer k. Every
probe simulates the same base requests with arrival times divided by the rate scale (common random
numbers), so the SLO check is (empirically) monotone in the rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from simulator.config import SLOConfig


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One simulated run at `rate_per_s`: latency percentiles (SLOConfig.percentile), attainment, memory."""

    rate_per_s: float
    feasible: bool
    ttft_s: float  # at the SLO percentile; inf if some request in that tail never got a token
    tpot_s: float
    e2e_s: float
    attainment: float  # fraction of requests meeting every set SLO
    kv_peak_utilization: float = float("nan")
    num_rejected: int = 0
    num_preemptions: int = 0
    violated: str = ""  # which SLO failed ("" if feasible), e.g. "ttft" or "tpot,attainment"


def slo_metrics(ttft_s: np.ndarray, tpot_s: np.ndarray, e2e_s: np.ndarray, slo: SLOConfig
                ) -> tuple[float, float, float, float, str]:
    """Latencies at slo.percentile, attainment and the violated SLOs ("" = all met), per-request arrays in.

    NaN TTFT/e2e = the request did not finish (rejected, unfinished): infinitely late. NaN TPOT with a
    finite e2e = fewer than 2 tokens: meets any TPOT target. The verdict follows simulator.metrics'
    `slo_met`: attainment >= slo.attainment if set, else each set SLO is met by >= percentile % of all
    requests, i.e. that percentile of the latency (unfinished = inf) is within the target.
    """
    finished = ~np.isnan(e2e_s)
    ttft = np.where(finished, ttft_s, np.inf)
    e2e = np.where(finished, e2e_s, np.inf)
    tpot = np.where(finished, np.nan_to_num(tpot_s, nan=0.0), np.inf)
    q = slo.percentile
    n = len(ttft)
    # method="lower": the value below which q % of requests lie, an observed value (inf stays inf).
    pct = (lambda a: float(np.percentile(a, q, method="lower")) if n else math.inf)
    p_ttft, p_tpot, p_e2e = pct(ttft), pct(tpot), pct(e2e)
    masks = {name: lat <= target for name, lat, target in
             (("ttft", ttft, slo.ttft_s), ("tpot", tpot, slo.tpot_s), ("e2e", e2e, slo.e2e_s)) if target is not None}
    good = finished.copy()
    for m in masks.values():
        good &= m
    attainment = float(good.mean()) if n else 0.0
    if slo.attainment is not None:
        violated = ["attainment"] if attainment < slo.attainment else []
    else:
        violated = [name for name, m in masks.items() if not (n and m.mean() >= q / 100.0)]
    return p_ttft, p_tpot, p_e2e, attainment, ",".join(violated)


def rate_of(k: int, tol: float) -> float:
    return (1.0 + tol) ** k


def k_of(rate_per_s: float, tol: float) -> int:
    """Grid index of the largest grid rate <= rate_per_s."""
    return math.floor(math.log(rate_per_s) / math.log1p(tol) + 1e-9)


@dataclass
class CapacityResult:
    max_rate_per_s: float  # 0.0 if even the lowest rate fails
    best: ProbeResult | None  # the probe at max_rate_per_s
    first_fail: ProbeResult | None  # the probe one grid step above (what breaks first)
    probes: list[ProbeResult] = field(default_factory=list)  # in the order run
    capped: bool = False  # feasible at max_rate: the true capacity may be higher


def find_capacity(probe: Callable[[float], ProbeResult], *, start_rate_per_s: float, tol: float = 0.05,
                  min_rate_per_s: float = 0.01, max_rate_per_s: float = 1e4, max_probes: int = 40
                  ) -> CapacityResult:
    """Highest grid rate r with probe(r).feasible, assuming feasibility is monotone (non-increasing) in r."""
    k_min, k_max = k_of(min_rate_per_s, tol) + 1, k_of(max_rate_per_s, tol)
    cache: dict[int, ProbeResult] = {}
    order: list[ProbeResult] = []

    def at(k: int) -> ProbeResult:
        if k not in cache:
            cache[k] = probe(rate_of(k, tol))
            order.append(cache[k])
        return cache[k]

    k = min(max(k_of(start_rate_per_s, tol), k_min), k_max)
    step = max(1, round(math.log(2.0) / math.log1p(tol)))  # start by factors of two
    lo: int | None = None  # highest k known feasible
    hi: int | None = None  # lowest k known infeasible
    if at(k).feasible:
        lo = k
        while hi is None and len(order) < max_probes:
            if lo >= k_max:
                return CapacityResult(rate_of(lo, tol), cache[lo], None, order, capped=True)
            nk = min(lo + step, k_max)
            step *= 2
            if at(nk).feasible:
                lo = nk
            else:
                hi = nk
    else:
        hi = k
        while lo is None and len(order) < max_probes:
            if hi <= k_min:
                return CapacityResult(0.0, None, cache[hi], order)
            nk = max(hi - step, k_min)
            step *= 2
            if at(nk).feasible:
                lo = nk
            else:
                hi = nk
    if lo is None or hi is None:  # ran out of probes while bracketing
        return CapacityResult(rate_of(lo, tol) if lo is not None else 0.0, cache.get(lo), cache.get(hi), order)
    while hi - lo > 1 and len(order) < max_probes:
        mid = (lo + hi) // 2
        if at(mid).feasible:
            lo = mid
        else:
            hi = mid
    return CapacityResult(rate_of(lo, tol), cache[lo], cache[hi] if hi - lo == 1 else None, order)


def scan_capacity(probe: Callable[[float], ProbeResult], *, tol: float, min_rate_per_s: float,
                  max_rate_per_s: float) -> float:
    """Reference: probe every grid rate in [min, max]; the highest feasible one (0.0 if none)."""
    best = 0.0
    for k in range(k_of(min_rate_per_s, tol) + 1, k_of(max_rate_per_s, tol) + 1):
        if probe(rate_of(k, tol)).feasible:
            best = rate_of(k, tol)
    return best
