"""Views of a PlanResult: table rows and the cost-vs-latency Pareto figure (returned, never saved)."""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from simulator.planner.search import PlanResult
from simulator.planner.space import varying_fields

LATENCY_FIELDS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s"}


def table_rows(res: PlanResult, limit: int | None = None) -> list[dict[str, Any]]:
    """One dict per ranked deployment, the columns the CLI prints (units in the keys)."""
    q = res.plan.base.slo.percentile
    extra = varying_fields([o.candidate for o in res.outcomes])
    rows = []
    for i, d in enumerate(res.deployments[:limit]):
        c = d.candidate
        rows.append({"rank": i + 1, "layout": c.label(extra), "replicas": d.replicas, "GPUs": d.num_gpus,
                     "max QPS": d.max_qps, "QPS/GPU": d.goodput_per_gpu, "$/h": d.usd_per_hour,
                     "$/Mtok": d.usd_per_mtok, f"p{q:g} TTFT s": d.ttft_s, f"p{q:g} TPOT s": d.tpot_s,
                     "KV headroom": d.mem_headroom})
    return rows


def probe_points(res: PlanResult, latency: str = "ttft") -> list[dict[str, Any]]:
    """Every probe that met the SLOs, as (cost per M output tokens at that rate, latency) points.

    Running a layout hotter lowers its cost per token and raises its latency, so each layout gives a
    curve; the front over all of them is the cost/latency trade-off the user can buy.
    """
    field = LATENCY_FIELDS[latency]
    pts = []
    extra = varying_fields([o.candidate for o in res.outcomes])
    for o in res.outcomes:
        c, sv = o.candidate, o.survivor
        usd_per_s = c.gpus_per_replica * sv.usd_per_gpu_hour / 3600.0
        for p in o.capacity.probes:
            if not p.feasible or p.rate_per_s <= 0:
                continue
            pts.append({"layout": c.label(extra), "rate_per_s": p.rate_per_s,
                        "usd_per_mtok": usd_per_s / (p.rate_per_s * res.mean_output_tokens) * 1e6,
                        "latency_s": getattr(p, field), "ttft_s": p.ttft_s, "tpot_s": p.tpot_s})
    return pts


def pareto_front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points not dominated in (usd_per_mtok, latency_s), both minimised; sorted by cost."""
    front, best = [], float("inf")
    for p in sorted(points, key=lambda p: (p["usd_per_mtok"], p["latency_s"])):
        if p["latency_s"] < best:
            front.append(p)
            best = p["latency_s"]
    return front


def pareto_figure(res: PlanResult, latency: str = "ttft") -> go.Figure:
    """Scatter of every SLO-meeting probe by layout, with the Pareto front as a line."""
    q = res.plan.base.slo.percentile
    pts = probe_points(res, latency)
    fig = go.Figure()
    for layout in dict.fromkeys(p["layout"] for p in pts):
        mine = [p for p in pts if p["layout"] == layout]
        fig.add_trace(go.Scatter(
            x=[p["usd_per_mtok"] for p in mine], y=[p["latency_s"] for p in mine], mode="markers", name=layout,
            customdata=[[p["rate_per_s"], p["ttft_s"], p["tpot_s"]] for p in mine],
            hovertemplate=(f"{layout}<br>%{{customdata[0]:.3g}} req/s per replica<br>$%{{x:.3g}}/Mtok<br>"
                           f"p{q:g} TTFT %{{customdata[1]:.3g}} s, TPOT %{{customdata[2]:.3g}} s<extra></extra>")))
    front = pareto_front(pts)
    fig.add_trace(go.Scatter(x=[p["usd_per_mtok"] for p in front], y=[p["latency_s"] for p in front],
                             mode="lines", name="Pareto front", line={"color": "black", "dash": "dash"},
                             hoverinfo="skip"))
    fig.update_layout(title=f"cost vs p{q:g} {latency.upper()} of every configuration and rate meeting the SLOs",
                      xaxis_title="$ per million output tokens", yaxis_title=f"p{q:g} {latency.upper()} (s)",
                      template="plotly_white")
    return fig
