"""Compare: two or more configurations on the same workload and SLOs, charts overlaid."""
from __future__ import annotations

import json

import streamlit as st

from app.dashboard import figures as F
from app.dashboard import forms, render, runs
from hwmodels.errors import UserError
from app.dashboard.forms import overlay

render.page_setup("Compare")
P = "cmp"
# Starting points: the same system under different schedulers (edit freely).
VARIANTS = ({"scheduler": {"kind": "vllm"}}, {"scheduler": {"kind": "sarathi", "chunk_size": 512}},
            {"scheduler": {"kind": "orca"}}, {"scheduler": {"kind": "splitfuse", "chunk_size": 512}})
LETTERS = "ABCD"

st.title("Compare")
base = forms.base_of(P)
errors: list[str] = []
uploads = st.session_state.get("__uploads__")

with st.sidebar:
    num = int(st.number_input("Configurations", min_value=2, max_value=len(VARIANTS), value=2, key="cmp.num"))
    last_sim = st.session_state.get("sim.result_key")
    if last_sim and st.button("A ← the last Simulate run", key="cmp_from_sim",
                              help="copy the configuration, workload and SLOs of the Simulate page's last run"):
        data = json.loads(last_sim)
        forms.load_into("cmp0", data)
        forms.load_into(P, data)
        st.session_state["cmp.num"] = num
        st.rerun()
    shared: dict = {}
    st.subheader("Workload (shared)")
    shared.update(forms.workload_form(P, base, errors))
    st.subheader("SLOs (shared)")
    shared.update(forms.slo_form(P, base, errors))
    run = st.button("Run all", type="primary", key="cmp_run", width="stretch")

systems: list[dict] = []
for i, col in enumerate(st.columns(num)):
    prefix = f"{P}{i}"
    if f"{prefix}.__base__" not in st.session_state:
        forms.load_into(prefix, overlay(forms.default_base(), VARIANTS[i]))
    with col:
        st.markdown(f"#### Configuration {LETTERS[i]}")
        mine: list[str] = []
        systems.append(forms.system_form(prefix, forms.base_of(prefix), mine))
        errors += [f"{LETTERS[i]}: {msg}" for msg in mine]

for msg in errors:
    st.error(msg)
if run and not errors:
    configs = {}
    for i, sys_sections in enumerate(systems):
        try:
            cfg = forms.build_config({**sys_sections, **shared}, forms.base_of(f"{P}{i}"))
        except UserError as exc:
            st.error(f"{LETTERS[i]}: {forms.user_message(exc, uploads)}")
            continue
        configs[LETTERS[i]] = cfg
    if len(configs) == num:
        cancel_slot, bar = st.empty(), st.progress(0.0, text="starting…")
        cancel_slot.button("Cancel", key="cmp_cancel")
        keys = {}
        try:
            for j, (label, cfg) in enumerate(configs.items()):
                def show(f: float, text: str, j: int = j, label: str = label) -> None:
                    bar.progress((j + f) / len(configs), text=f"{label} ({j + 1}/{len(configs)}): {text}")
                runs.simulate_with_progress(cfg, show)
                keys[label] = runs.config_key(cfg)
        except UserError as exc:
            st.error(f"{label}: {forms.user_message(exc, uploads)}")
        except runs.Cancelled:
            st.warning("Comparison cancelled.")
        else:
            st.session_state["cmp.result_keys"] = keys
        finally:
            bar.empty()
            cancel_slot.empty()
if st.session_state.get("cmp_cancel"):
    st.warning("Comparison cancelled.")

keys = st.session_state.get("cmp.result_keys")
if not keys:
    st.info("Edit the configurations, then press **Run all** in the sidebar. Every configuration replays "
            "the same requests (same workload and seed).")
else:
    results = {label: runs.cached_simulation(k) for label, k in keys.items()}
    summaries = {label: r.summary for label, r in results.items()}
    table = render.kpi_table(summaries)
    table.columns = [f"{label}: {render.short_label(results[label].config)}" for label in table.columns]
    st.dataframe(table, key="cmp.kpis", height=36 * (len(table) + 1) + 3)
    st.plotly_chart(F.kpi_bars(summaries, render.COMPARE_METRICS), key="cmp.bars")
    slo = next(iter(results.values())).config.slo
    st.plotly_chart(F.latency_cdfs({k: r.requests for k, r in results.items()},
                                   slo_s={"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "e2e_s": slo.e2e_s}),
                    key="cmp.cdf")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(F.throughput_and_queue({k: r.steps for k, r in results.items()}), key="cmp.tput")
    with right:
        st.plotly_chart(F.kv_usage({k: r.steps for k, r in results.items()}), key="cmp.kv")
