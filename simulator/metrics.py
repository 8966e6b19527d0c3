"""Serving metrics: per-request and per-step DataFrames → a JSON-ready summary dict.

Definitions (times in seconds; latency metrics over finished requests):
  ttft = first_token_s − arrival_s; e2e = finish_s − arrival_s; queue = scheduled_s − arrival_s;
  tpot = (finish_s − first_token_s) / (num_generated − 1), for requests with ≥ 2 generated tokens;
  itl = the gaps between consecutive tokens of a request, as recorded by the engine (`itl_s`).
  duration_s = first arrival → last finish; throughputs count finished requests and their tokens.
  A request is *good* if it finished and meets every SLO that is set (tpot is met by a request with
  fewer than 2 tokens, which has none). slo_attainment = good / num_requests (rejected and unfinished
  requests count as misses); goodput_per_s = good / duration_s. With no SLO set every finished request
  is good: goodput equals request throughput and attainment is the finished fraction (1.0 when all
  finish). slo_met: attainment ≥ slo.attainment if that is set, else each set SLO is met by at least
  slo.percentile % of all requests; None when no SLO is set.
  gpu_hours = num_gpus × duration_s / 3600 (the cluster is held for the whole run).
Undefined values (no finished request, zero duration) are None, never NaN.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from simulator.config import SLOConfig

REQUEST_COLUMNS = ("id", "replica", "arrival_s", "scheduled_s", "first_token_s", "finish_s", "input_tokens",
                   "output_tokens", "num_generated", "num_preemptions", "num_cached_tokens", "state",
                   "reject_reason")
STEP_COLUMNS = ("replica", "start_s", "end_s", "batch_size", "num_tokens", "prefill_tokens", "decode_tokens",
                "kv_used_blocks", "kv_free_blocks", "kv_tokens", "num_waiting", "num_running", "num_preempted")
PERCENTILES = (50, 90, 99)


def _f(x: Any) -> float | None:
    """A plain float, or None for NaN/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def percentiles(x: Any) -> dict[str, float | None]:
    """{mean, p50, p90, p99} of the finite values of x (linear interpolation); all None if there are none."""
    a = np.asarray(x)
    if a.dtype.kind != "f":  # keep float32 inputs (the engine's gaps) as they are: no 2x copy
        a = a.astype(np.float64)
    a = a.ravel()
    finite = np.isfinite(a)
    if not finite.all():
        a = a[finite]
    if a.size == 0:
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    # One percentile call: one working copy however many percentiles (the ITL array can be ~1e8 long).
    qs = np.percentile(a, list(PERCENTILES))
    return {"mean": float(a.mean(dtype=np.float64)), **{f"p{q}": float(v) for q, v in zip(PERCENTILES, qs)}}


def _ratio(num: float, den: float | None) -> float | None:
    return _f(num / den) if den else None


def _check_columns(df: pd.DataFrame, expected: tuple[str, ...], what: str) -> None:
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise ValueError(f"{what} DataFrame lacks column(s) {missing}")


def request_latencies(requests: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-request ttft/tpot/e2e/queue arrays over finished requests (tpot: only those with ≥ 2 tokens)."""
    fin = requests[requests["state"] == "finished"]
    arrival = fin["arrival_s"].to_numpy(np.float64)
    first = fin["first_token_s"].to_numpy(np.float64)
    finish = fin["finish_s"].to_numpy(np.float64)
    gen = fin["num_generated"].to_numpy(np.int64)
    multi = gen >= 2
    return {"ttft_s": first - arrival, "e2e_s": finish - arrival,
            "queue_s": fin["scheduled_s"].to_numpy(np.float64) - arrival,
            "tpot_s": (finish[multi] - first[multi]) / (gen[multi] - 1)}


def slo_masks(requests: pd.DataFrame, slo: SLOConfig) -> dict[str, np.ndarray]:
    """Per SLO that is set, per request (all rows): finished and within the target. A finished request
    with fewer than 2 tokens meets a TPOT target (it has no TPOT)."""
    fin = (requests["state"] == "finished").to_numpy()
    arrival = requests["arrival_s"].to_numpy(np.float64)
    first = requests["first_token_s"].to_numpy(np.float64)
    finish = requests["finish_s"].to_numpy(np.float64)
    gen = requests["num_generated"].to_numpy(np.int64)
    masks = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if slo.ttft_s is not None:
            masks["ttft_s"] = fin & ((first - arrival) <= slo.ttft_s)
        if slo.tpot_s is not None:
            tpot = np.where(gen >= 2, (finish - first) / np.maximum(gen - 1, 1), 0.0)
            masks["tpot_s"] = fin & (tpot <= slo.tpot_s)
        if slo.e2e_s is not None:
            masks["e2e_s"] = fin & ((finish - arrival) <= slo.e2e_s)
    return masks


def good_mask(requests: pd.DataFrame, slo: SLOConfig) -> np.ndarray:
    """Per request (all rows): finished and meeting every SLO that is set."""
    ok = (requests["state"] == "finished").to_numpy().copy()
    for m in slo_masks(requests, slo).values():
        ok &= m
    return ok


def _slo_met(masks: dict[str, np.ndarray], attainment: float | None, slo: SLOConfig) -> bool | None:
    """attainment ≥ slo.attainment if set; else each set target is met by ≥ slo.percentile % of all
    requests (the percentile of that latency, counting rejected/unfinished as infinite, is within it)."""
    if not masks or attainment is None:
        return None
    if slo.attainment is not None:
        return bool(attainment >= slo.attainment)
    return all(float(m.mean()) >= slo.percentile / 100.0 for m in masks.values())


def summarize(requests: pd.DataFrame, steps: pd.DataFrame, itl_s: np.ndarray, *, slo: SLOConfig,
              num_gpus: int, usd_per_gpu_hour: float, kv_blocks_total: int, block_size: int) -> dict:
    """The summary of one run: counts, throughput, latency percentiles, goodput, KV peak and cost.
    kv_peak_utilization is the max over steps of one replica's kv_used / (kv_used + kv_free) blocks;
    kv_blocks_total (the cluster's KV capacity, all replicas) is reported as is. All values are plain
    JSON types; undefined ones are None."""
    _check_columns(requests, REQUEST_COLUMNS, "requests")
    _check_columns(steps, STEP_COLUMNS, "steps")
    state = requests["state"]
    finished = requests[state == "finished"]
    n, n_fin = len(requests), len(finished)
    lat = request_latencies(requests)

    duration_s = None
    if n_fin:
        duration_s = _f(finished["finish_s"].max() - requests["arrival_s"].min())
    out_tokens = int(finished["num_generated"].sum())
    in_tokens = int(finished["input_tokens"].sum())
    masks = slo_masks(requests, slo)
    good = (state == "finished").to_numpy().copy()
    for m in masks.values():
        good &= m
    n_good = int(good.sum())
    attainment = n_good / n if n else None

    kv_peak = None
    used = steps["kv_used_blocks"].to_numpy(np.float64)
    capacity = used + steps["kv_free_blocks"].to_numpy(np.float64)
    if np.any(capacity > 0):
        kv_peak = _f(np.max(used[capacity > 0] / capacity[capacity > 0]))
    gpu_hours = num_gpus * duration_s / 3600.0 if duration_s is not None else None
    usd_total = gpu_hours * usd_per_gpu_hour if gpu_hours is not None else None
    reasons = requests.loc[state == "rejected", "reject_reason"].fillna("").astype(str).value_counts()
    cached = int(finished["num_cached_tokens"].sum())

    return {
        "num_requests": int(n), "num_finished": int(n_fin),
        "num_rejected": int((state == "rejected").sum()), "num_unfinished": int((state == "unfinished").sum()),
        "reject_reasons": {str(k): int(v) for k, v in reasons.items()},
        "duration_s": duration_s,
        "request_throughput_per_s": _ratio(n_fin, duration_s),
        "output_throughput_tokens_per_s": _ratio(out_tokens, duration_s),
        "total_throughput_tokens_per_s": _ratio(out_tokens + in_tokens, duration_s),
        "num_output_tokens": out_tokens, "num_input_tokens": in_tokens,
        "ttft_s": percentiles(lat["ttft_s"]), "tpot_s": percentiles(lat["tpot_s"]),
        "itl_s": percentiles(itl_s), "e2e_s": percentiles(lat["e2e_s"]), "queue_s": percentiles(lat["queue_s"]),
        "goodput_per_s": _ratio(n_good, duration_s), "slo_attainment": _f(attainment),
        "slo_met": _slo_met(masks, attainment, slo),
        "kv_peak_utilization": kv_peak,
        "kv_peak_used_blocks": int(steps["kv_used_blocks"].max()) if len(steps) else None,
        "kv_blocks_total": int(kv_blocks_total), "kv_block_size": int(block_size),
        "prefix_cache_hit_rate": _ratio(cached, in_tokens),
        "num_preemptions": int(requests["num_preemptions"].sum()),
        "num_steps": int(len(steps)),
        "gpu_hours": _f(gpu_hours), "usd_total": _f(usd_total),
        "usd_per_million_output_tokens": _ratio(usd_total * 1e6, out_tokens) if usd_total is not None else None,
    }


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1e3:,.1f}"


def _num(x: Any, fmt: str = ",.2f") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    return format(x, fmt)


def format_summary_table(summary: dict) -> Table:
    """A rich table of a summary: counts and rates, then latency percentiles in ms."""
    t = Table(title="simulation summary", show_header=True, header_style="bold")
    for col, justify in (("metric", "left"), ("mean", "right"), ("p50", "right"), ("p90", "right"),
                         ("p99", "right")):
        t.add_column(col, justify=justify)
    s = summary
    rows = [("requests (finished / total)", f"{s['num_finished']:,} / {s['num_requests']:,}"),
            ("rejected / unfinished", f"{s['num_rejected']:,} / {s['num_unfinished']:,}"),
            ("duration (s)", _num(s["duration_s"])),
            ("throughput (req/s)", _num(s["request_throughput_per_s"], ",.3f")),
            ("output throughput (tok/s)", _num(s["output_throughput_tokens_per_s"], ",.1f")),
            ("total throughput (tok/s)", _num(s["total_throughput_tokens_per_s"], ",.1f")),
            ("goodput (req/s)", _num(s["goodput_per_s"], ",.3f")),
            ("SLO attainment", "–" if s["slo_attainment"] is None else f"{s['slo_attainment']:.1%}"),
            ("SLO met", _num(s.get("slo_met"))),
            ("KV peak utilization", "–" if s["kv_peak_utilization"] is None else f"{s['kv_peak_utilization']:.1%}"),
            ("preemptions", _num(s["num_preemptions"])),
            ("GPU-hours", _num(s["gpu_hours"], ",.3f")),
            ("USD total", _num(s["usd_total"], ",.4f")),
            ("USD / 1M output tokens", _num(s["usd_per_million_output_tokens"]))]
    for name, value in rows:
        t.add_row(name, value, "", "", "")
    t.add_section()
    for key, label in (("ttft_s", "TTFT (ms)"), ("tpot_s", "TPOT (ms)"), ("itl_s", "ITL (ms)"),
                       ("e2e_s", "E2E (ms)"), ("queue_s", "queue (ms)")):
        p = s[key]
        t.add_row(label, _ms(p["mean"]), _ms(p["p50"]), _ms(p["p90"]), _ms(p["p99"]))
    return t
