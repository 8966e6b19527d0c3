"""Simulate: one configuration on one workload → KPI cards and charts."""
from __future__ import annotations

import json

import streamlit as st
import yaml

from app.dashboard import forms, render, runs
from hwmodels.errors import UserError
from simulator.config import validate_config

render.page_setup("Simulate")
P = "sim"

st.title("Simulate")
base = forms.base_of(P)

with st.sidebar:
    with st.expander("Load a scenario file (YAML/JSON)"):
        up = st.file_uploader("Scenario", type=["yaml", "yml", "json"], key="sim_scenario_upload",
                              label_visibility="collapsed")
        if up is not None and st.session_state.get("sim_scenario_loaded") != up.file_id:
            try:
                data = json.loads(up.getvalue()) if up.name.endswith(".json") else yaml.safe_load(up.getvalue())
                cfg = validate_config(data or {}, up.name)
            except UserError as exc:
                st.error(str(exc))
            except (ValueError, yaml.YAMLError) as exc:
                st.error(f"{up.name}: not valid YAML/JSON: {exc}")
            else:
                st.session_state["sim_scenario_loaded"] = up.file_id
                forms.load_into(P, cfg.model_dump(mode="json"))
                st.rerun()
    if st.session_state.get("plan.loaded_label"):
        st.info(f"Loaded from the planner: {st.session_state['plan.loaded_label']}")
    sections: dict = {}
    form_errors: list[str] = []
    st.subheader("System")
    sections.update(forms.system_form(P, base, form_errors))
    st.subheader("Workload")
    sections.update(forms.workload_form(P, base, form_errors))
    st.subheader("SLOs")
    sections.update(forms.slo_form(P, base, form_errors))
    run = st.button("Run simulation", type="primary", key="sim_run", width="stretch")

failed = bool(form_errors)
for msg in form_errors:
    st.error(msg)
if run and not form_errors:
    try:
        cfg = forms.build_config(sections, base)
    except UserError as exc:
        st.error(forms.user_message(exc, st.session_state.get("__uploads__")))
        failed = True
    else:
        cancel_slot, bar = st.empty(), st.progress(0.0, text="starting…")
        cancel_slot.button("Cancel", key="sim_cancel")
        try:
            runs.simulate_with_progress(cfg, lambda f, text: bar.progress(f, text=text or None))
        except UserError as exc:
            st.error(forms.user_message(exc, st.session_state.get("__uploads__")))
            failed = True
        except runs.Cancelled:
            st.warning("Simulation cancelled.")
            failed = True
        else:
            st.session_state["sim.result_key"] = runs.config_key(cfg)
        finally:
            bar.empty()
            cancel_slot.empty()
if st.session_state.get("sim_cancel"):
    st.warning("Simulation cancelled.")

key = st.session_state.get("sim.result_key")
if key is None:
    st.info("Set up a scenario in the sidebar and press **Run simulation**. The default is a small run "
            "(200 requests) that takes about a second.")
else:
    result = runs.cached_simulation(key)
    s = result.summary
    if failed:
        st.caption("Below: the last successful run.")
    st.caption(f"{s['num_finished']:,} of {s['num_requests']:,} requests finished "
               f"({s['num_rejected']:,} rejected, {s['num_unfinished']:,} unfinished) in "
               f"{(s['duration_s'] or 0):,.2f} s simulated · {s['num_steps']:,} steps · "
               f"{s['num_preemptions']:,} preemptions")
    render.kpi_cards(s)
    for note in s.get("notes") or []:
        st.info(note)
    if s.get("reject_reasons"):
        st.warning("Rejected: " + "; ".join(f"{n}× {r}" for r, n in s["reject_reasons"].items()))
    render.result_charts(result, "sim", key)
    with st.expander("Requests, steps and config"):
        st.dataframe(result.requests, height=240)
        st.download_button("requests.csv", result.requests.to_csv(index=False), "requests.csv", key="sim_dl_req")
        st.download_button("steps.csv", result.steps.to_csv(index=False), "steps.csv", key="sim_dl_steps")
        st.download_button("config.yaml", yaml.safe_dump(json.loads(key), sort_keys=False), "config.yaml",
                           key="sim_dl_cfg")
        st.json(json.loads(key), expanded=False)
