"""Long library calls for the dashboard: cached on the config JSON, run off the script thread with
progress, and cancelled when the script is interrupted (Cancel button, Stop, or any rerun).

Why a worker thread: `st.cache_data` replays every `st.*` call made inside a cached function, so the
cached function itself must not draw; the script thread polls the worker's progress and draws the
bar. When Streamlit interrupts the script (a click on Cancel reruns it), the poll loop raises; we set
the worker's cancel flag, and the next progress callback inside the simulation raises `Cancelled`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from policies.request import FINISHED, REJECTED
from simulator.config import Config
from simulator.simulate import simulate
from simulator.workload import build_workload

POLL_S = 0.1


class Cancelled(Exception):
    """Raised inside a worker when the user cancelled its run."""


@dataclass
class Progress:
    """Shared between a worker (writes) and the script thread (reads); plain floats, no locking needed."""

    fraction: float = 0.0
    text: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)

    def update(self, fraction: float, text: str = "") -> None:
        if self.cancel.is_set():
            raise Cancelled()
        self.fraction = min(max(fraction, 0.0), 1.0)
        self.text = text


def run_with_progress(fn: Callable[[Progress], Any], on_progress: Callable[[float, str], None]) -> Any:
    """Run `fn(progress)` in a worker thread, calling `on_progress(fraction, text)` from this thread every
    POLL_S until it returns. Re-raises the worker's exception; cancels the worker if this thread is
    interrupted (Streamlit's rerun/stop exceptions pass through after setting the flag)."""
    prog = Progress()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = fn(prog)
        except BaseException as exc:  # noqa: BLE001 - handed to the script thread as is
            box["error"] = exc

    worker = threading.Thread(target=work, name="llmsim-dashboard-run", daemon=True)
    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is not None:
        add_script_run_ctx(worker, ctx)  # st.cache_data inside the worker needs the session's context
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_S)
            on_progress(prog.fraction, prog.text)
    except BaseException:
        prog.cancel.set()
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]


def _simulate(cfg: Config, progress: Progress | None) -> Any:
    """`simulate(cfg)` with progress = fraction of requests finished or rejected.

    NOTE: builds the workload here (as simulate does) so the progress callback can count finished
    requests; the workload's loader notes are added to the summary as simulate would add them.
    """
    if progress is None:
        return simulate(cfg)
    wl = build_workload(cfg.workload, cfg.simulation.seed)
    reqs = wl.to_requests()
    n = max(len(reqs), 1)

    def tick(now_s: float) -> None:
        done = sum(1 for r in reqs if r.state in (FINISHED, REJECTED))
        progress.update(done / n, f"simulated {now_s:,.1f} s · {done}/{n} requests done")

    result = simulate(cfg, requests=reqs, progress=tick)
    result.summary["notes"] = list(wl.notes) + list(result.summary.get("notes", []))
    return result


@st.cache_data(max_entries=32, show_spinner=False)
def cached_simulation(config_json: str, _progress: Progress | None = None) -> Any:
    """SimulationResult of the Config serialised as `config_json` (the cache key; `_progress` is not hashed)."""
    return _simulate(Config.model_validate_json(config_json), _progress)


def config_key(cfg: Config) -> str:
    """Canonical JSON of a config: equal configs give equal keys."""
    return cfg.model_dump_json()


def simulate_with_progress(cfg: Config, on_progress: Callable[[float, str], None]) -> Any:
    """Cached simulate for the dashboard, drawing progress through `on_progress`."""
    key = config_key(cfg)
    return run_with_progress(lambda prog: cached_simulation(key, prog), on_progress)


def _plan(plan_json: str, backend: str, progress: Progress | None) -> Any:
    from simulator.planner.config import PlanConfig
    from simulator.planner.search import plan_serve

    total = {"n": 0}

    def start(n: int) -> None:
        total["n"] = n
        if progress is not None:
            progress.update(0.0, f"{n} configuration(s) left after pruning; searching their capacity…")

    def done(i: int, n: int, outcome: Any) -> None:
        if progress is not None:
            progress.update(i / max(n, 1), f"{i}/{n} configurations searched · last: {outcome.candidate.label()}")

    return plan_serve(PlanConfig.model_validate_json(plan_json), backend=backend, on_start=start, on_progress=done)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_plan(plan_json: str, backend: str = "serial", _progress: Progress | None = None) -> Any:
    """PlanResult of the PlanConfig serialised as `plan_json` (cache key with the backend)."""
    return _plan(plan_json, backend, _progress)


def plan_with_progress(plan: Any, backend: str, on_progress: Callable[[float, str], None]) -> Any:
    key = plan.model_dump_json()
    return run_with_progress(lambda prog: cached_plan(key, backend, prog), on_progress)
