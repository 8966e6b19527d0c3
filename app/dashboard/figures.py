"""Pure figure builders for the dashboard: DataFrames in, plotly figures out (never shown or saved).

Inputs follow the simulator's result schemas:
- requests: id, replica, arrival_s, scheduled_s, first_token_s, finish_s, input_tokens, output_tokens,
  num_generated, num_preemptions, state (unfinished requests have NaN times);
- steps: replica, start_s, end_s, batch_size, num_tokens, prefill_tokens, decode_tokens, kv_used_blocks,
  kv_free_blocks, kv_tokens, num_waiting, num_running, num_preempted.
Runs to overlay (Compare page) come as a mapping `label -> frame`; one colour per label across figures.
Times are SI seconds inside; axes show milliseconds where that reads better.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from simulator import metrics

PALETTE = qualitative.Plotly
# Operator kinds of hwmodels.cost.OpCost, in a fixed colour order so every breakdown reads the same.
KIND_COLOURS = {"gemm": "#636EFA", "attention": "#EF553B", "moe": "#AB63FA", "collective": "#00CC96",
                "elementwise": "#FFA15A", "sampling": "#19D3F3", "overhead": "#B6B6B6"}
LATENCY_METRICS = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "End-to-end"}


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _layout(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=20, t=60, b=40))
    return fig


def _name(label: str, what: str, num_runs: int) -> str:
    """Legend entry: just `what` for a single run, `label: what` when runs are overlaid."""
    return what if num_runs == 1 else f"{label}: {what}"


# ---- per-request metrics ---------------------------------------------------------------------


def request_latencies(requests: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per finished request: ttft_s, tpot_s (only requests with >= 2 tokens), e2e_s, queue_s arrays,
    with the library's definitions (simulator.metrics), so the charts agree with the summary."""
    return metrics.request_latencies(requests)


def _ecdf(values: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(np.asarray([v for v in values if np.isfinite(v)], dtype=float))
    y = np.arange(1, len(x) + 1) / max(len(x), 1)
    return x, y


def latency_cdfs(runs: Mapping[str, pd.DataFrame], slo_s: Mapping[str, float | None] | None = None) -> go.Figure:
    """Empirical CDFs of TTFT, TPOT and e2e (ms), one curve per run; dashed lines at the SLOs if given."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{v} (ms)" for v in LATENCY_METRICS.values()],
                        horizontal_spacing=0.06)
    for i, (label, reqs) in enumerate(runs.items()):
        lat = request_latencies(reqs)
        for col, metric in enumerate(LATENCY_METRICS, start=1):
            x, y = _ecdf(lat[metric])
            fig.add_trace(go.Scatter(x=x * 1e3, y=y, mode="lines", name=label, legendgroup=label,
                                     showlegend=col == 1 and len(runs) > 1, line=dict(color=_colour(i), shape="hv")),
                          row=1, col=col)
    for col, metric in enumerate(LATENCY_METRICS, start=1):
        target = (slo_s or {}).get(metric)
        if target:
            fig.add_vline(x=target * 1e3, line_dash="dash", line_color="grey", row=1, col=col,
                          annotation_text="SLO", annotation_position="bottom right")
    fig.update_yaxes(title_text="fraction of requests", range=[0, 1.02], row=1, col=1)
    return _layout(fig, "Latency CDFs")


# ---- time series -----------------------------------------------------------------------------


def _bin_width_s(t_max_s: float, num_bins: int) -> float:
    return max(t_max_s, 1e-9) / num_bins


def throughput_and_queue(runs: Mapping[str, pd.DataFrame], num_bins: int = 60) -> go.Figure:
    """Top: tokens processed per second (prefill + decode, from steps, binned by step end);
    bottom: waiting and running requests over time (summed over replicas, sampled at each step)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["Throughput (tokens/s)", "Queue length (requests)"])
    t_max = max((float(s["end_s"].max()) for s in runs.values() if len(s)), default=1.0)
    width = _bin_width_s(t_max, num_bins)
    edges = np.arange(num_bins + 1) * width
    for i, (label, steps) in enumerate(runs.items()):
        c = _colour(i)
        tokens, _ = np.histogram(steps["end_s"], bins=edges, weights=steps["num_tokens"])
        decode, _ = np.histogram(steps["end_s"], bins=edges, weights=steps["decode_tokens"])
        mid = (edges[:-1] + edges[1:]) / 2
        n = len(runs)
        fig.add_trace(go.Scatter(x=mid, y=tokens / width, name=_name(label, "all tokens", n), legendgroup=label,
                                 line=dict(color=c)), row=1, col=1)
        fig.add_trace(go.Scatter(x=mid, y=decode / width, name=_name(label, "decode tokens", n), legendgroup=label,
                                 line=dict(color=c, dash="dot")), row=1, col=1)
        waiting, running = queue_over_time(steps)
        fig.add_trace(go.Scatter(x=waiting.index, y=waiting.to_numpy(), name=_name(label, "waiting", n),
                                 legendgroup=label, line=dict(color=c, shape="hv")), row=2, col=1)
        fig.add_trace(go.Scatter(x=running.index, y=running.to_numpy(), name=_name(label, "running", n),
                                 legendgroup=label, line=dict(color=c, shape="hv", dash="dot")), row=2, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
    return _layout(fig, "Throughput and queue length over time", height=520)


def queue_over_time(steps: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Waiting and running requests summed over replicas, as step functions indexed by time (s).

    Each replica's last reported value holds until its next step (forward fill per replica).
    """
    if steps.empty:
        return pd.Series(dtype=float), pd.Series(dtype=float)
    out = []
    for col in ("num_waiting", "num_running"):
        wide = steps.pivot_table(index="start_s", columns="replica", values=col, aggfunc="last")
        out.append(wide.sort_index().ffill().fillna(0).sum(axis=1))
    return out[0], out[1]


def kv_usage(runs: Mapping[str, pd.DataFrame]) -> go.Figure:
    """KV-cache blocks in use as a percentage of each replica's blocks, per replica, over time."""
    fig = go.Figure()
    for i, (label, steps) in enumerate(runs.items()):
        for j, (replica, s) in enumerate(steps.groupby("replica", sort=True)):
            total = (s["kv_used_blocks"] + s["kv_free_blocks"]).replace(0, np.nan)
            fig.add_trace(go.Scatter(x=s["start_s"], y=100 * s["kv_used_blocks"] / total, mode="lines",
                                     name=_name(label, f"replica {replica}", len(runs)), legendgroup=label,
                                     line=dict(color=_colour(i), shape="hv", dash=None if j == 0 else "dot")))
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="KV blocks used (%)", range=[0, 101])
    return _layout(fig, "KV-cache usage over time")


def batch_composition(steps: pd.DataFrame, replica: int | None = None) -> go.Figure:
    """Prefill vs decode tokens of every forward pass (one replica: the first if not given), stacked."""
    if replica is None and len(steps):
        replica = int(steps["replica"].min())
    s = steps[steps["replica"] == replica] if len(steps) else steps
    fig = go.Figure()
    for col, name, colour in (("prefill_tokens", "prefill tokens", "#EF553B"),
                              ("decode_tokens", "decode tokens", "#636EFA")):
        fig.add_trace(go.Scatter(x=s["start_s"], y=s[col], name=name, mode="lines", stackgroup="tokens",
                                 line=dict(color=colour, width=0.5, shape="hv")))
    fig.update_xaxes(title_text="step start, simulated time (s)")
    fig.update_yaxes(title_text="tokens in the forward pass")
    return _layout(fig, f"Batch composition per step (replica {replica})")


def request_timeline(requests: pd.DataFrame, num_requests: int = 40, seed: int = 0) -> go.Figure:
    """Gantt of a random sample of finished requests: queued, prefill (scheduled → first token), decode."""
    done = requests[requests["state"] == "finished"]
    if len(done) > num_requests:
        idx = np.random.default_rng(seed).choice(len(done), size=num_requests, replace=False)
        done = done.iloc[np.sort(idx)]
    done = done.sort_values("arrival_s")
    y = [f"#{i}" for i in done["id"]]
    fig = go.Figure()
    phases = (("queued", "arrival_s", "scheduled_s", "#B6B6B6"),
              ("prefill", "scheduled_s", "first_token_s", "#EF553B"),
              ("decode", "first_token_s", "finish_s", "#636EFA"))
    for name, start, end, colour in phases:
        fig.add_trace(go.Bar(y=y, base=done[start], x=done[end] - done[start], orientation="h", name=name,
                             marker_color=colour,
                             customdata=np.stack([done["input_tokens"], done["output_tokens"]], axis=-1),
                             hovertemplate="%{y}: %{base:.3f}s + %{x:.3f}s<br>in %{customdata[0]} · "
                                           "out %{customdata[1]} tokens<extra>" + name + "</extra>"))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="request id", autorange="reversed", type="category")
    return _layout(fig, f"Timeline of {len(done)} sampled requests", height=max(300, 16 * len(done) + 120))


# ---- cost model ------------------------------------------------------------------------------


def operator_breakdown(ops: Sequence[object], title: str = "Operator breakdown of a typical step") -> go.Figure:
    """Horizontal bars of seconds per operator (ms), coloured by kind; `ops` are hwmodels OpCost-like
    objects (name, kind, seconds, flops, bytes)."""
    rows = pd.DataFrame([{"name": o.name, "kind": o.kind, "ms": o.seconds * 1e3, "flops": o.flops,
                          "bytes": o.bytes} for o in ops])
    fig = go.Figure()
    if len(rows):
        rows = rows.sort_values("ms")
        for kind, g in rows.groupby("kind", sort=False):
            fig.add_trace(go.Bar(y=g["name"], x=g["ms"], orientation="h", name=kind,
                                 marker_color=KIND_COLOURS.get(kind, "#333333"),
                                 customdata=np.stack([g["flops"] / 1e9, g["bytes"] / 1e6], axis=-1),
                                 hovertemplate="%{y}: %{x:.4f} ms<br>%{customdata[0]:.2f} GFLOP · "
                                               "%{customdata[1]:.2f} MB<extra>" + str(kind) + "</extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="time per forward pass (ms)")
    fig.update_yaxes(categoryorder="total ascending")
    return _layout(fig, title, height=max(300, 22 * len(rows) + 120))


def typical_step(steps: pd.DataFrame) -> pd.Series | None:
    """The step whose token count is the median of all steps (ties: the earliest); None if no steps."""
    if steps.empty:
        return None
    median = steps["num_tokens"].median()
    return steps.loc[(steps["num_tokens"] - median).abs().idxmin()]


# ---- compare, plan, validate -----------------------------------------------------------------


def kpi_bars(summaries: Mapping[str, Mapping[str, object]], metrics: Sequence[tuple[str, str, float]]) -> go.Figure:
    """Grouped bars, one subplot per metric `(summary path 'a.b', label, scale)`, one bar per run."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m[1] for m in metrics],
                        horizontal_spacing=0.05)
    for col, (path, _, scale) in enumerate(metrics, start=1):
        labels = list(summaries)
        values = [summary_value(summaries[k], path) for k in labels]
        fig.add_trace(go.Bar(x=labels, y=[None if v is None else v * scale for v in values],
                             marker_color=[_colour(i) for i in range(len(labels))], showlegend=False),
                      row=1, col=col)
    return _layout(fig, "Key metrics side by side", height=340)


def summary_value(summary: Mapping[str, object], path: str) -> float | None:
    """Read `a.b` from a nested summary dict; None where absent or not a finite number."""
    node: object = summary
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    try:
        v = float(node)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def pareto_front(df: pd.DataFrame, x: str, y: str, minimize_x: bool = True, maximize_y: bool = True) -> pd.Series:
    """Boolean mask of points no other point beats on both x and y (ties do not dominate)."""
    xs = df[x].to_numpy(float) * (1 if minimize_x else -1)
    ys = df[y].to_numpy(float) * (-1 if maximize_y else 1)
    mask = np.ones(len(df), dtype=bool)
    for i in range(len(df)):
        better = (xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i]))
        mask[i] = not better.any()
    return pd.Series(mask, index=df.index)


def pareto_chart(df: pd.DataFrame, x: str, y: str, label: str | None = None, x_title: str | None = None,
                 y_title: str | None = None, minimize_x: bool = True, maximize_y: bool = True,
                 title: str = "Planner candidates and Pareto front") -> go.Figure:
    """Scatter of planner candidates; Pareto-optimal ones highlighted and joined by the frontier line."""
    fig = go.Figure()
    ok = df[df[x].notna() & df[y].notna()]
    front = pareto_front(ok, x, y, minimize_x, maximize_y) if len(ok) else pd.Series(dtype=bool)
    text = ok[label].astype(str) if label and label in ok else None
    fig.add_trace(go.Scatter(x=ok[x], y=ok[y], mode="markers", name="candidates", text=text,
                             marker=dict(color="#B6B6B6", size=8)))
    f = ok[front].sort_values(x) if len(ok) else ok
    fig.add_trace(go.Scatter(x=f[x], y=f[y], mode="lines+markers", name="Pareto front",
                             text=f[label].astype(str) if label and label in f else None,
                             marker=dict(color="#EF553B", size=11), line=dict(color="#EF553B", shape="hv")))
    fig.update_xaxes(title_text=x_title or x)
    fig.update_yaxes(title_text=y_title or y)
    return _layout(fig, title)


def measured_vs_modelled(df: pd.DataFrame, measured: str = "measured_s", modelled: str = "modelled_s",
                         label: str = "op", colour_by: str | None = None) -> go.Figure:
    """Log-log scatter of modelled vs measured seconds (ms) with the y = x line; hover shows the error."""
    d = df[(df[measured] > 0) & (df[modelled] > 0)]
    fig = go.Figure()
    groups = d.groupby(colour_by, sort=True) if colour_by and colour_by in d else [("points", d)]
    for i, (name, g) in enumerate(groups):
        err = 100 * (g[modelled] - g[measured]) / g[measured]
        fig.add_trace(go.Scatter(x=g[measured] * 1e3, y=g[modelled] * 1e3, mode="markers", name=str(name),
                                 text=g[label].astype(str) if label in g else None, customdata=err,
                                 marker=dict(color=_colour(i), size=7, opacity=0.8),
                                 hovertemplate="%{text}<br>measured %{x:.4f} ms<br>modelled %{y:.4f} ms"
                                               "<br>error %{customdata:+.1f}%<extra></extra>"))
    if len(d):
        lo = float(min(d[measured].min(), d[modelled].min())) * 1e3
        hi = float(max(d[measured].max(), d[modelled].max())) * 1e3
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line=dict(color="black", dash="dash")))
    fig.update_xaxes(type="log", dtick=1, title_text="measured (ms)")
    fig.update_yaxes(type="log", dtick=1, title_text="modelled (ms)")
    return _layout(fig, "Modelled vs measured operator time", height=450)


def error_bars(df: pd.DataFrame, metric: str = "metric", error: str = "error", tolerance: float | None = 0.1
               ) -> go.Figure:
    """Relative error per metric (%), green inside ±tolerance, red outside; dashed lines at the tolerance."""
    d = df[df[error].notna()]
    pct = d[error].astype(float) * 100
    ok = pct.abs() <= (tolerance * 100 if tolerance is not None else np.inf)
    fig = go.Figure(go.Bar(x=d[metric], y=pct, marker_color=np.where(ok, "#00CC96", "#EF553B"),
                           hovertemplate="%{x}: %{y:+.1f}%<extra></extra>"))
    if tolerance is not None:
        for sign in (1, -1):
            fig.add_hline(y=sign * tolerance * 100, line_dash="dash", line_color="grey")
    fig.update_yaxes(title_text="simulated / measured − 1 (%)")
    return _layout(fig, "Prediction error per metric")


def memory_bar(memory: Mapping[str, float]) -> go.Figure:
    """One GPU's HBM (GB) as a stacked bar: weights, activations, KV cache, the rest of the usable share,
    and what `gpu_memory_utilization` holds back. Keys as in SimulationResult.memory (bytes)."""
    hbm = float(memory.get("gpu_hbm_bytes", 0.0))
    usable = float(memory.get("usable_bytes_per_gpu", hbm))
    parts = [("weights", float(memory.get("weights_bytes_per_gpu", 0.0)), "#636EFA"),
             ("activations", float(memory.get("activation_bytes_per_gpu", 0.0)), "#FFA15A"),
             ("KV cache", float(memory.get("kv_bytes_per_gpu", 0.0)), "#00CC96")]
    used = sum(p[1] for p in parts)
    parts += [("unused", max(usable - used, 0.0), "#E5ECF6"), ("held back", max(hbm - usable, 0.0), "#B6B6B6")]
    fig = go.Figure()
    for name, nbytes, colour in parts:
        fig.add_trace(go.Bar(y=["GPU"], x=[nbytes / 1e9], name=name, orientation="h", marker_color=colour,
                             hovertemplate=f"{name}: %{{x:.2f}} GB<extra></extra>"))
    fig.update_xaxes(title_text="GB (1e9 bytes) per GPU", range=[0, max(hbm, used) / 1e9])
    fig.update_yaxes(showticklabels=False)
    _layout(fig, "Memory per GPU", height=220)
    fig.update_layout(barmode="stack", legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, xanchor="left",
                                                   traceorder="normal"),
                      margin=dict(t=80))
    return fig
