"""Validate / profiles: a profile table's measured operator times vs the modelled ones, and saved
`llmsim validate` reports."""
from __future__ import annotations

import streamlit as st
import streamlit.components.v1 as components

from app.dashboard import figures as F
from app.dashboard import forms, render, profiles
from hwmodels.errors import UserError
from hwmodels.hardware import get_gpu, list_gpus
from hwmodels.profiled import fit_report, read_profile

render.page_setup("Validate")
st.title("Validate / profiles")
uploads = st.session_state.get("__uploads__")
prof_tab, report_tab = st.tabs(["Profile table", "Validate report"])

with prof_tab:
    st.markdown("Operator times measured by `llmsim profile` against the datasheet roofline the simulator "
                "uses without a profile, and the held-out error of the profile-calibrated model.")
    up = st.file_uploader("Profile table (parquet)", type=["parquet"], key="val.profile_upload")
    path = forms._stored(up) if up is not None else st.text_input("…or its path on the server",
                                                                    key="val.profile_path")
    if path:
        try:
            table, meta = read_profile(path)
        except UserError as exc:
            st.error(forms.user_message(exc, st.session_state.get("__uploads__")))
        else:
            devices = sorted(table["device"].unique())
            c1, c2, c3 = st.columns(3)
            device = c1.selectbox("Measured device", devices, key="val.device")
            gpus = [g.name for g in list_gpus()]
            guess = profiles.guess_gpu(device)
            gpu = c2.selectbox("Model it as", gpus, key="val.gpu", index=gpus.index(guess) if guess in gpus else 0,
                               help="catalog accelerator whose datasheet roofline is compared")
            ops = sorted(table["op"].unique())
            chosen = c3.multiselect("Operators", ops, default=ops, key="val.ops")
            rows = table[(table["device"] == device) & table["op"].isin(chosen)]
            cmp = profiles.compare_to_roofline(rows, get_gpu(gpu))
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
    st.markdown("A report saved by `llmsim validate` (HTML or JSON): real executor vs simulator on the same "
                "config.")
    rep = st.file_uploader("Validate report", type=["html", "htm", "json"], key="val.report_upload")
    if rep is not None:
        try:
            kind, content = profiles.parse_report(rep.name, rep.getvalue())
        except ValueError as exc:
            st.error(str(exc))
        else:
            if kind == "html":
                components.html(content, height=900, scrolling=True)
            else:
                tables = profiles.report_tables(content)
                for name, df in tables.items():
                    st.markdown(f"**{name}**")
                    st.dataframe(df, hide_index=True, key=f"val.report.{name}")
                with st.expander("Raw JSON", expanded=not tables):
                    st.json(content, expanded=False)
