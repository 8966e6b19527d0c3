"""Draw a SimulationResult: KPI cards and charts (used by the Simulate and Compare pages).

`kpis(summary)` is pure (label, value text, help) so tests can check the numbers the cards show;
everything else only arranges figures from `figures.py` on the page.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import streamlit as st

from app.dashboard import figures as F
from hwmodels.shapes import BatchShape

# (label with unit, summary path, scale, format)
KPI_SPECS: tuple[tuple[str, str, float, str], ...] = (
    ("TTFT p50 (ms)", "ttft_s.p50", 1e3, ",.1f"),
    ("TTFT p90 (ms)", "ttft_s.p90", 1e3, ",.1f"),
    ("TPOT p50 (ms)", "tpot_s.p50", 1e3, ",.2f"),
    ("TPOT p90 (ms)", "tpot_s.p90", 1e3, ",.2f"),
    ("E2E p50 (ms)", "e2e_s.p50", 1e3, ",.0f"),
    ("E2E p90 (ms)", "e2e_s.p90", 1e3, ",.0f"),
    ("Throughput (req/s)", "request_throughput_per_s", 1.0, ",.2f"),
    ("Output (tok/s)", "output_throughput_tokens_per_s", 1.0, ",.0f"),
    ("Goodput (req/s)", "goodput_per_s", 1.0, ",.2f"),
    ("SLO attainment (%)", "slo_attainment", 100.0, ".1f"),
    ("KV peak (%)", "kv_peak_utilization", 100.0, ".1f"),
    ("USD / M output tokens", "usd_per_million_output_tokens", 1.0, ",.3f"),
)
KPI_HELP = {
    "TTFT p50 (ms)": "time to first token = first_token − arrival, over finished requests",
    "TPOT p50 (ms)": "time per output token after the first = (finish − first_token) / (generated − 1)",
    "Goodput (req/s)": "finished requests meeting every SLO that is set, per second",
    "SLO attainment (%)": "fraction of all requests that finished within every SLO",
    "KV peak (%)": "most KV-cache blocks in use at once, as a share of a replica's blocks",
    "USD / M output tokens": "GPU-hours of the run × USD per GPU-hour, per million output tokens",
}
COMPARE_METRICS = (("ttft_s.p90", "TTFT p90 (ms)", 1e3), ("tpot_s.p90", "TPOT p90 (ms)", 1e3),
                   ("e2e_s.p90", "E2E p90 (ms)", 1e3), ("output_throughput_tokens_per_s", "output tok/s", 1.0),
                   ("goodput_per_s", "goodput (req/s)", 1.0),
                   ("usd_per_million_output_tokens", "$ / M output tokens", 1.0))


def page_setup(title: str) -> None:
    """Page config shared by every page: wide layout and a sidebar wide enough for three inputs a row."""
    st.set_page_config(page_title=f"llmsim · {title}", layout="wide")
    st.markdown("<style>section[data-testid='stSidebar']{min-width:24rem}</style>", unsafe_allow_html=True)


def kpis(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value text, help) of each KPI card; '–' where the library reports None."""
    out = []
    for label, path, scale, fmt in KPI_SPECS:
        v = F.summary_value(summary, path)
        out.append((label, "–" if v is None else format(v * scale, fmt), KPI_HELP.get(label, path)))
    return out


def kpi_cards(summary: Mapping[str, Any], per_row: int = 6) -> None:
    cards = kpis(summary)
    for i in range(0, len(cards), per_row):
        for col, (label, text, helptext) in zip(st.columns(per_row), cards[i:i + per_row]):
            col.metric(label, text, help=helptext)


def typical_seqs(step: pd.Series) -> tuple[tuple[tuple[int, int], ...], str]:
    """Per-sequence `(new_tokens, context_tokens)` of a recorded step, and how they were rebuilt.

    NOTE: steps record token counts, not per-sequence contexts; decodes get the mean context (KV tokens
    held after the step, minus this step's new tokens, over the decoding sequences) and the prefill
    tokens are split evenly over the other sequences, with no prior context.
    """
    n_dec, n_seq, pre = int(step["decode_tokens"]), int(step["batch_size"]), int(step["prefill_tokens"])
    n_pre_seq = max(n_seq - n_dec, 0) or (1 if pre else 0)
    ctx = max(int(step["kv_tokens"]) - pre - n_dec, 0) // max(n_dec, 1)
    seqs = [(1, ctx)] * n_dec
    if n_pre_seq:
        share, extra = divmod(pre, n_pre_seq)
        seqs += [(share + (i < extra), 0) for i in range(n_pre_seq) if share + (i < extra) > 0]
    text = (f"Median step by tokens, rebuilt from the step record: {n_dec} decodes at ~{ctx:,} context "
            f"tokens + {pre:,} prefill tokens over {n_pre_seq} sequence(s).")
    return tuple(seqs), text


@st.cache_data(max_entries=64, show_spinner=False)
def cached_step_cost(config_json: str, seqs: tuple[tuple[int, int], ...]) -> Any:
    """The cost model's StepCost for one forward pass of the scenario in `config_json`."""
    from simulator.config import Config
    from simulator.simulate import resolve

    cfg = Config.model_validate_json(config_json)
    scenario = resolve(cfg)
    return scenario.cost_model.step_cost(BatchShape.from_seqs(seqs, window=scenario.model.sliding_window or 0))


def result_charts(result: Any, key: str, config_json: str) -> None:
    """Every chart of one run, in reading order."""
    if result.memory:
        st.plotly_chart(F.memory_bar(result.memory), key=f"{key}.memory")
    cfg_slo = result.config.slo
    st.plotly_chart(F.latency_cdfs({"run": result.requests},
                                   slo_s={"ttft_s": cfg_slo.ttft_s, "tpot_s": cfg_slo.tpot_s, "e2e_s": cfg_slo.e2e_s}),
                    key=f"{key}.cdf")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(F.throughput_and_queue({"run": result.steps}), key=f"{key}.tput")
    with right:
        st.plotly_chart(F.kv_usage({"run": result.steps}), key=f"{key}.kv")
    left, right = st.columns(2)
    with left:
        replicas = sorted(int(r) for r in result.steps["replica"].unique()) if len(result.steps) else [0]
        replica = st.selectbox("Replica", replicas, key=f"{key}.replica") if len(replicas) > 1 else replicas[0]
        st.plotly_chart(F.batch_composition(result.steps, replica=replica), key=f"{key}.batch")
    with right:
        step = F.typical_step(result.steps)
        if step is None:
            st.info("No steps were recorded (simulation.record_steps is off).")
        else:
            seqs, text = typical_seqs(step)
            cost = cached_step_cost(config_json, seqs)
            st.plotly_chart(F.operator_breakdown(cost.ops, title=f"Operator breakdown: {cost.total_s * 1e3:.2f} ms"
                                                 " per forward pass"), key=f"{key}.ops")
            st.caption(text)
    st.plotly_chart(F.request_timeline(result.requests, num_requests=40, seed=0), key=f"{key}.timeline")


def short_label(cfg: Any) -> str:
    """One line naming what differs between typical configurations."""
    p = cfg.parallel
    sched = cfg.scheduler.kind + (f"/{cfg.scheduler.chunk_size}" if hasattr(cfg.scheduler, "chunk_size") else "")
    model = cfg.model.name
    return f"{model} · {cfg.hardware.gpu} · TP{p.tp} PP{p.pp} ×{p.replicas} · {cfg.quant.weights} · {sched}"


def kpi_table(summaries: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """KPI text per run: rows are KPI labels, columns the run labels."""
    return pd.DataFrame({label: {k: v for k, v, _ in kpis(s)} for label, s in summaries.items()})
