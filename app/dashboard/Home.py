"""llmsim what-if dashboard: entry page. Start with `llmsim dashboard` (or `streamlit run app/dashboard/Home.py`)."""
from __future__ import annotations

import argparse
import sys

import streamlit as st

from app.dashboard import forms
from hwmodels.errors import UserError
from simulator.config import load_config

st.set_page_config(page_title="llmsim", page_icon="⏱", layout="wide")


def _preload() -> None:
    """`llmsim dashboard --config FILE` preloads that scenario into the Simulate form (once per session)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config")
    args, _ = parser.parse_known_args(sys.argv[1:])
    if args.config and not st.session_state.get("home.preloaded"):
        st.session_state["home.preloaded"] = True
        try:
            forms.load_into("sim", load_config(args.config).model_dump(mode="json"))
            st.success(f"Loaded {args.config} into the Simulate page.")
        except UserError as exc:
            st.error(str(exc))


_preload()
st.title("llmsim — what-if dashboard")
st.markdown(
    "A thin layer over the **llmsim** library: every page builds the same `Config` the CLI builds and "
    "calls one library function. Times are simulated; costs come from the datasheet roofline or a "
    "profile table.")
st.page_link("pages/1_Simulate.py", label="**Simulate** — one configuration on one workload: KPIs and charts")
st.page_link("pages/2_Compare.py", label="**Compare** — several configurations on the same workload, overlaid")
st.page_link("pages/3_Plan.py", label="**Plan** — search layouts under SLOs; ranked table and Pareto front")
st.page_link("pages/4_Validate.py", label="**Validate / profiles** — measured vs modelled operator times, "
             "validate reports")
