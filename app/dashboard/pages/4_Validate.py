"""Validate / profiles: a profile table's measured operator times vs the modelled ones, and saved
`llmsim validate` reports."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from app.dashboard import figures as F
from app.dashboard import forms, render, profiles
from hwmodels.errors import UserError
from hwmodels.hardware import get_gpu, list_gpus, load_gpu_file
from hwmodels.profiled import fit_report, read_profile

render.page_setup("Validate")
SPEC_FILE = "device spec YAML…"
st.title("Validate / profiles")
uploads = st.session_state.get("__uploads__")
prof_tab, report_tab = st.tabs(["Profile table", "Validate report"])

with prof_tab:
    st.markdown("Operator times measured by `llmsim profile` against the datasheet roofline the simulator "
                "uses without a profile, and the held-out error of the profile-calibrated model.")
    up = st.file_uploader("Profile table (parquet)", type=["parquet"], key="val.profile_upload")
    path = forms.store_upload(up) if up is not None else st.text_input("…or its path on the server",
                                                                    key="val.profile_path")
    cmp = None
    if path:
        try:
            table, meta = read_profile(path)
        except UserError as exc:
            st.error(forms.user_message(exc, st.session_state.get("__uploads__")))
        else:
            devices = sorted(table["device"].unique())
            c1, c2, c3 = st.columns(3)
            device = c1.selectbox("Measured device", devices, key="val.device")
            gpus = [g.name for g in list_gpus()] + [SPEC_FILE]
            guess = profiles.guess_gpu(device)
            gpu = c2.selectbox("Model it as", gpus, key="val.gpu",
                               index=gpus.index(guess) if guess in gpus else (len(gpus) - 1 if "cpu" in device else 0),
                               help="accelerator whose datasheet roofline is compared: a catalog entry, or the "
                                    "device spec YAML `llmsim validate`/`profile` measured (e.g. cpu.yaml)")
            ops = sorted(table["op"].unique())
            chosen = c3.multiselect("Operators", ops, default=ops, key="val.ops")
            rows = table[(table["device"] == device) & table["op"].isin(chosen)]
            spec = None
            if gpu == SPEC_FILE:
                spec_up = st.file_uploader("Device spec (YAML)", type=["yaml", "yml"], key="val.spec_upload")
                spec_path = forms.store_upload(spec_up) if spec_up is not None else st.text_input(
                    "…or its path", value=str(Path(path).parent / "cpu.yaml"), key="val.spec_path")
                try:
                    spec = load_gpu_file(spec_path)
                    gpu = spec.name
                except UserError as exc:
                    st.error(forms.user_message(exc, st.session_state.get("__uploads__")))
            cmp = profiles.compare_to_roofline(rows, spec or get_gpu(gpu)) if gpu != SPEC_FILE else None
        if path and cmp is not None:
            st.caption(f"{len(rows):,} measurements of {device}"
                       + (f" · {len(meta)} profiling run(s)" if meta else ""))
            st.plotly_chart(F.measured_vs_modelled(cmp, label="shape", colour_by="op"), key="val.scatter")
            left, right = st.columns(2)
            with left:
                st.markdown(f"**Roofline ({gpu}) error by operator**")
                st.dataframe(profiles.error_by_op(cmp), hide_index=True, key="val.err_by_op")
            with right:
                st.markdown("**Profile-calibrated model, held-out error** (`hwmodels.profiled.fit_report`)")
                try:
                    st.dataframe(fit_report(table, device=device), hide_index=True, key="val.fit_report")
                except UserError as exc:
                    st.error(str(exc))
            with st.expander("All measurements"):
                st.dataframe(cmp, hide_index=True, key="val.rows")
            if meta:
                with st.expander("Profiling runs (metadata)"):
                    st.json(meta, expanded=False)

with report_tab:
    st.markdown("A run of `llmsim validate` (real executor vs simulator on the same config): upload its "
                "`result.json` or `report.html`, or give its output folder on the server.")
    rep = st.file_uploader("Validate report", type=["html", "htm", "json"], key="val.report_upload")
    folder = st.text_input("…or a validate output folder (default `validate-out`)", key="val.report_dir")
    report: tuple[str, object] | None = None
    frames: dict = {}
    if rep is not None:
        try:
            report = profiles.parse_report(rep.name, rep.getvalue())
        except ValueError as exc:
            st.error(str(exc))
    elif folder:
        try:
            report, frames = profiles.load_validate_folder(folder)
        except (ValueError, UserError) as exc:
            st.error(str(exc))
    if report is not None:
        kind, content = report
        if kind == "html":
            components.html(content, height=900, scrolling=True)
        elif profiles.is_validate_result(content):
            errors = profiles.validate_error_rows(content)
            st.plotly_chart(F.error_bars(errors), key="val.error_bars")
            st.dataframe(errors, hide_index=True, key="val.errors")
            if "measured_requests" in frames and "simulated_requests" in frames:
                st.plotly_chart(F.latency_cdfs({"measured": frames["measured_requests"],
                                                "simulated": frames["simulated_requests"]}), key="val.cdfs")
            steps = frames.get("measured_steps")
            if steps is not None and "predicted_s" in steps:
                per_pass = steps.assign(measured_s=steps["end_s"] - steps["start_s"], modelled_s=steps["predicted_s"],
                                        op="pass " + steps["num_tokens"].astype(str) + " tokens")
                st.plotly_chart(F.measured_vs_modelled(per_pass, label="op"), key="val.passes")
            for note in content.get("notes") or []:
                st.caption(note)
            with st.expander("Raw JSON"):
                st.json(content, expanded=False)
        else:
            tables = profiles.report_tables(content)
            for name, df in tables.items():
                st.markdown(f"**{name}**")
                st.dataframe(df, hide_index=True, key=f"val.report.{name}")
            with st.expander("Raw JSON", expanded=not tables):
                st.json(content, expanded=False)
