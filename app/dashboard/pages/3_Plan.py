"""Plan: search layouts and settings under SLOs; ranked table, Pareto chart, load the pick into Simulate."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.dashboard import figures as F
from app.dashboard import forms, render, runs
from hwmodels.errors import UserError
from hwmodels.hardware import list_gpus
from hwmodels.models import list_models

render.page_setup("Plan")
P = "plan"

st.title("Plan")
st.markdown("Find the cheapest deployment that meets the SLOs: every candidate layout is pruned by memory "
            "and roofline bounds, then its highest sustainable request rate is found by simulation.")
if f"{P}.__base__" not in st.session_state:  # probes replay the first N requests: give them enough
    forms.load_into(P, forms.overlay(forms.default_base(), {"workload": {"num_requests": 1000}}))
base = forms.base_of(P)
uploads = st.session_state.get("__uploads__")

with st.sidebar:
    models = [m.name for m in list_models()]
    model = st.selectbox("Model", models, key="plan.model", index=forms.opt_index(models, base["model"]["name"]))
    gpus_all = [g.name for g in list_gpus()]
    gpus = st.multiselect("Accelerators", gpus_all, default=[base["hardware"]["gpu"]], key="plan.gpus")
    tps = st.multiselect("TP degrees", [1, 2, 4, 8], default=[1, 2], key="plan.tps")
    pps = st.multiselect("PP degrees", [1, 2, 4], default=[1], key="plan.pps")
    scheds = st.multiselect("Schedulers", list(forms.SCHEDULERS), default=["vllm", "sarathi"], key="plan.scheds")
    c1, c2 = st.columns(2)
    target = c1.number_input("Target req/s (0 = max)", min_value=0.0, value=0.0, key="plan.target")
    max_gpus = c2.number_input("Max GPUs (0 = any)", min_value=0, value=8, key="plan.max_gpus")
    rank_by = st.selectbox("Rank by", ("cost", "qps_per_gpu", "ttft"), key="plan.rank_by")
    c1, c2 = st.columns(2)
    probe_n = c1.number_input("Requests per probe", min_value=10, value=400, key="plan.probe_n",
                              help="each capacity probe simulates the first N requests of the workload; too few "
                                   "and the planner's whole-deployment verification will flag the pick")
    tol = c2.number_input("Rate grid tolerance", min_value=0.01, max_value=1.0, value=0.1, key="plan.tol")
    backend = st.radio("Run on", ("serial", "local"), horizontal=True, key="plan.backend",
                       help="serial: in the dashboard process; local: a process pool on this machine")
    st.subheader("Workload")
    form_errors: list[str] = []
    sections = forms.workload_form(P, base, form_errors)
    st.subheader("SLOs")
    sections.update(forms.slo_form(P, base, form_errors))
    error = "\n".join(form_errors) or None
    pct = st.number_input("SLO percentile", min_value=1.0, max_value=100.0,
                          value=float(base["slo"].get("percentile", 90.0)), key="plan.pct")
    sections["slo"]["percentile"] = pct
    sections["model"] = {"name": model, "hf_config": None}
    run = st.button("Run planner", type="primary", key="plan_run", width="stretch")


def plan_config():
    from simulator.planner.config import validate_plan_config

    cfg = forms.build_config(sections, base)  # same validation (and messages) as Simulate
    data = cfg.model_dump(mode="json")
    data["plan"] = {"space": {"gpus": gpus or None, "tp": tps or None, "pp": pps or None,
                              "schedulers": scheds or None},
                    "search": {"max_requests_per_probe": int(probe_n), "rel_tolerance": float(tol)},
                    "target_qps": float(target) or None, "max_gpus": int(max_gpus) or None, "rank_by": rank_by}
    return validate_plan_config(data, "dashboard form")


if error:
    st.error(error)
elif run:
    try:
        plan = plan_config()
    except UserError as exc:
        st.error(forms.user_message(exc, uploads))
    else:
        cancel_slot, bar = st.empty(), st.progress(0.0, text="pruning candidates…")
        cancel_slot.button("Cancel", key="plan_cancel")
        try:
            runs.plan_with_progress(plan, backend, lambda f, text: bar.progress(f, text=text or None))
        except UserError as exc:
            st.error(forms.user_message(exc, uploads))
        except runs.Cancelled:
            st.warning("Planner cancelled.")
        else:
            st.session_state["plan.result"] = (plan.model_dump_json(), backend)
        finally:
            bar.empty()
            cancel_slot.empty()
if st.session_state.get("plan_cancel"):
    st.warning("Planner cancelled.")

saved = st.session_state.get("plan.result")
if not saved:
    st.info("Choose the search space, workload and SLOs in the sidebar, then press **Run planner**.")
else:
    from simulator.planner.report import pareto_figure, table_rows
    from simulator.planner.search import explain

    res = runs.cached_plan(*saved)
    best = res.best
    (st.success if best else st.warning)(res.answer)
    if best:
        st.caption(explain(res))
        rec = res.recommended_config()
        if st.button("Load the recommendation into Simulate", key="plan_load", type="primary"):
            forms.load_into("sim", rec.model_dump(mode="json"))
            st.session_state["plan.loaded_label"] = f"{best.candidate.label()} ×{best.replicas}"
            st.session_state.pop("sim.result_key", None)
            st.switch_page("pages/1_Simulate.py")
    rows = pd.DataFrame(table_rows(res))
    st.subheader(f"Ranked configurations ({len(rows)})")
    q = f"p{res.plan.base.slo.percentile:g}"
    fmt = {"max QPS": "%.1f", "QPS/GPU": "%.2f", "$/h": "%.2f", "$/Mtok": "%.4f", f"{q} TTFT s": "%.3f",
           f"{q} TPOT s": "%.4f", "KV headroom": "%.2f"}
    st.dataframe(rows, hide_index=True, key="plan.table",
                 column_config={c: st.column_config.NumberColumn(format=f) for c, f in fmt.items() if c in rows})
    if len(rows):
        left, right = st.columns(2)
        with left:
            st.plotly_chart(pareto_figure(res), key="plan.pareto")
        with right:
            st.plotly_chart(F.pareto_chart(rows, "$/Mtok", "QPS/GPU", label="layout", x_title="$ per M output tokens",
                                           y_title="sustainable req/s per GPU",
                                           title="Ranked deployments: cost vs capacity per GPU"),
                            key="plan.deployments")
    if res.pruned:
        st.subheader("Pruned")
        st.dataframe(pd.DataFrame([{"reason": k, "count": v, "example": res.pruned_examples.get(k, "")}
                                   for k, v in res.pruned.items()]), hide_index=True, key="plan.pruned")
    for note in res.notes:
        (st.warning if "MISSES" in note else st.caption)(note)
    st.caption(f"{res.num_candidates} candidates, {len(res.outcomes)} simulated, "
               f"{sum(len(o.capacity.probes) for o in res.outcomes)} probes in {res.wall_s:.1f} s")
