"""Widgets that build the root `Config`, shared by the Simulate, Compare and Plan pages.

Each form reads its defaults from a *base* config dict (the library's defaults, a loaded scenario
file, or a planner recommendation) and returns the config sections it owns; `build_config` overlays
them on the base and validates through `simulator.config.validate_config`, so a bad value raises the
same `UserError` message as the CLI. Widget keys are `<prefix>.<field>`; `load_into` replaces the base
and forgets those keys so the widgets show the new values.
"""
from __future__ import annotations

import hashlib
import math
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import streamlit as st
from pydantic import TypeAdapter

from hwmodels.errors import UserError
from hwmodels.hardware import list_gpus
from hwmodels.models import list_models
from policies.config import SchedulerConfig
from simulator.config import Config, validate_config

SCHEDULERS = ("vllm", "sarathi", "splitfuse", "orca", "static")
ROUTERS = ("round_robin", "least_outstanding", "least_kv", "power_of_two")
DTYPES = ("bf16", "fp16", "fp8", "fp32")
WEIGHT_DTYPES = ("same as dtype", "bf16", "fp16", "fp8", "int8", "int4")
KV_DTYPES = ("same as dtype", "bf16", "fp16", "fp8", "int8")
TRACE_FORMATS = ("auto", "azure", "mooncake", "lengths", "plain")
ARRIVALS = ("poisson", "gamma", "constant", "burst")
LENGTH_KINDS = ("fixed", "uniform", "lognormal", "empirical")
UPLOAD_MODEL = "upload a Hugging Face config.json…"

# Small default scenario: a page run takes about a second (the library default is 1000 requests).
DASHBOARD_DEFAULTS: dict[str, Any] = {
    "workload": {"kind": "synthetic", "num_requests": 200, "arrival": {"process": "poisson", "rate_per_s": 30.0},
                 "input_len": {"kind": "lognormal", "mean": 1024, "sigma": 0.8, "min": 16, "max": 8192},
                 "output_len": {"kind": "lognormal", "mean": 256, "sigma": 0.8, "min": 4, "max": 2048}},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
}
UPLOAD_DIR = Path(tempfile.gettempdir()) / "llmsim-dashboard-uploads"


def overlay(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `over` into a copy of `base`; a mapping whose `kind` changes is replaced, not merged,
    so fields of the old kind (a fixed length's `value`, vLLM's `watermark`) do not leak into the new one."""
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        if isinstance(v, Mapping) and isinstance(old, Mapping) and v.get("kind", old.get("kind")) == old.get("kind"):
            out[k] = overlay(old, v)
        else:
            out[k] = dict(v) if isinstance(v, Mapping) else v
    return out


def default_base() -> dict[str, Any]:
    return overlay(Config().model_dump(mode="json"), DASHBOARD_DEFAULTS)


def base_of(prefix: str) -> dict[str, Any]:
    """The base config dict of a form (created on first use)."""
    key = f"{prefix}.__base__"
    if key not in st.session_state:
        st.session_state[key] = default_base()
    return st.session_state[key]


def load_into(prefix: str, cfg: Mapping[str, Any]) -> None:
    """Make `cfg` the form's base and reset its widgets so they show it (e.g. a planner recommendation)."""
    for k in [k for k in st.session_state if isinstance(k, str) and k.startswith(prefix + ".")]:
        del st.session_state[k]
    st.session_state[f"{prefix}.__base__"] = dict(cfg)


def save_upload(name: str, data: bytes) -> Path:
    """Store uploaded bytes under a content-addressed temp path (same bytes → same path → same cache key)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "upload"
    path = UPLOAD_DIR / digest / safe
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def user_message(exc: UserError, uploads: Mapping[str, str] | None = None) -> str:
    """The library's message, with temp paths of uploads shown as the names the user uploaded."""
    msg = str(exc)
    for path, name in (uploads or {}).items():
        msg = msg.replace(path, f"uploaded file {name}")
    return msg


def build_config(sections: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> Config:
    """Overlay form sections on `base` and validate (UserError with the CLI's message on bad values).

    Mappings whose `kind` changed (scheduler, KV cache, workload, length distributions, cost model)
    replace the base's instead of merging (see `overlay`).
    """
    return validate_config(overlay(base or default_base(), sections), "dashboard form")


def scheduler_defaults(kind: str) -> dict[str, Any]:
    """The library's default knobs of one scheduler kind (policies.config)."""
    return TypeAdapter(SchedulerConfig).validate_python({"kind": kind}).model_dump(mode="json")


def opt_index(options: tuple[str, ...] | list[str], value: Any, default: int = 0) -> int:
    return list(options).index(value) if value in options else default


def _uploads() -> dict[str, str]:
    return st.session_state.setdefault("__uploads__", {})


def store_upload(upload: Any) -> str:
    path = str(save_upload(upload.name, upload.getvalue()))
    _uploads()[path] = upload.name
    return path


# ---- the forms -------------------------------------------------------------------------------


def system_form(prefix: str, base: Mapping[str, Any], errors: list[str], container: Any = st) -> dict[str, Any]:
    """Model, accelerator, layout, dtypes, scheduler (+knobs), KV cache and router sections.

    Problems the widgets alone can see are appended to `errors` and every widget is still drawn (a widget
    skipped in one run would lose its value)."""
    c = container
    k = lambda name: f"{prefix}.{name}"  # noqa: E731
    models = [m.name for m in list_models()]
    gpus = [g.name for g in list_gpus()]
    mb, hb, pb, qb = base["model"], base["hardware"], base["parallel"], base["quant"]
    sb, kb = base["scheduler"], base["kv_cache"]
    out: dict[str, Any] = {}

    choice = c.selectbox("Model", models + [UPLOAD_MODEL], key=k("model"),
                         index=len(models) if mb.get("hf_config") else opt_index(models, mb.get("name")))
    if choice == UPLOAD_MODEL:
        up = c.file_uploader("Hugging Face config.json", type=["json"], key=k("hf_upload"))
        if up is not None:
            stem = Path(up.name).stem
            label = c.text_input("Name it", value=stem if stem != "config" else "hf-model", key=k("hf_name"))
            out["model"] = {"name": label or "hf-model", "hf_config": store_upload(up)}
        elif mb.get("hf_config"):
            out["model"] = {"name": mb.get("name"), "hf_config": mb["hf_config"]}
        else:
            errors.append("model: upload a Hugging Face config.json or pick a catalog model")
    else:
        out["model"] = {"name": choice, "hf_config": None}
    gpu = c.selectbox("Accelerator", gpus, key=k("gpu"), index=opt_index(gpus, hb.get("gpu")))
    out["hardware"] = {"gpu": gpu}
    if hb.get("gpu_file"):
        c.caption(f"accelerator from {hb['gpu_file']} (hardware.gpu_file) overrides the catalog choice")

    c1, c2, c3 = c.columns(3)
    out["parallel"] = {
        "tp": int(c1.number_input("TP", min_value=1, max_value=64, value=int(pb["tp"]), key=k("tp"))),
        "pp": int(c2.number_input("PP", min_value=1, max_value=64, value=int(pb["pp"]), key=k("pp"))),
        "replicas": int(c3.number_input("Replicas", min_value=1, max_value=256, value=int(pb["replicas"]),
                                        key=k("replicas"))),
    }
    c1, c2, c3 = c.columns(3)
    wd = c2.selectbox("Weights", WEIGHT_DTYPES, key=k("weight_dtype"),
                      index=opt_index(WEIGHT_DTYPES, qb.get("weight_dtype")))
    kd = c3.selectbox("KV cache", KV_DTYPES, key=k("kv_dtype"), index=opt_index(KV_DTYPES, qb.get("kv_dtype")))
    out["quant"] = {"dtype": c1.selectbox("Dtype", DTYPES, key=k("dtype"), index=opt_index(DTYPES, qb.get("dtype"))),
                    "weight_dtype": None if wd == WEIGHT_DTYPES[0] else wd,
                    "kv_dtype": None if kd == KV_DTYPES[0] else kd}

    kind = c.selectbox("Scheduler", SCHEDULERS, key=k("scheduler"), index=opt_index(SCHEDULERS, sb.get("kind")))
    # Knobs start from the base's values for its own kind, else from the library's defaults for this kind.
    sd = {**scheduler_defaults(kind), **(sb if sb.get("kind") == kind else {})}
    c1, c2 = c.columns(2)
    sched: dict[str, Any] = {
        "kind": kind,
        "max_batch_size": int(c1.number_input("Max batch size", min_value=1, max_value=1 << 16,
                                              value=int(sd["max_batch_size"]), key=k(f"{kind}.max_batch_size"))),
        "max_num_batched_tokens": int(c2.number_input(
            "Max batched tokens", min_value=1, max_value=1 << 24, value=int(sd["max_num_batched_tokens"]),
            key=k(f"{kind}.max_num_batched_tokens"))),
    }
    if "chunk_size" in sd:
        sched["chunk_size"] = int(c.number_input("Chunk size (tokens per iteration)", min_value=1, max_value=1 << 24,
                                                 value=int(sd["chunk_size"]), key=k(f"{kind}.chunk_size")))
    if "preemption" in sd:
        opts = ("recompute", "swap")
        sched["preemption"] = c.selectbox("Preemption", opts, key=k(f"{kind}.preemption"),
                                          index=opt_index(opts, sd["preemption"]))
    out["scheduler"] = sched

    with c.expander("KV cache, router, cost model"):
        kinds = ("paged", "contiguous")
        kv_kind = st.selectbox("KV manager", kinds, key=k("kv_kind"), index=opt_index(kinds, kb.get("kind")))
        c1, c2 = st.columns(2)
        kv: dict[str, Any] = {
            "kind": kv_kind,
            "block_size": int(c1.number_input("Block size (tokens)", min_value=1, max_value=1024,
                                              value=int(kb.get("block_size", 16)), key=k("block_size"))),
            "gpu_memory_utilization": float(c2.number_input(
                "GPU memory utilisation", min_value=0.05, max_value=1.0, step=0.01,
                value=float(kb.get("gpu_memory_utilization", 0.9)), key=k("gpu_memory_utilization"))),
        }
        if kv_kind == "paged":
            kv["prefix_caching"] = st.checkbox("Prefix caching", value=bool(kb.get("prefix_caching", False)),
                                               key=k("prefix_caching"))
        out["kv_cache"] = kv
        methods = ("none", "gptq", "awq")
        out["quant"]["weight_method"] = st.selectbox(
            "Weight quantization method", methods, key=k("weight_method"),
            index=opt_index(methods, qb.get("weight_method")),
            help="none: weights run at their dtype (fp8/int8: W8A8 tensor cores); gptq/awq: weight-only, "
                 "dequantised to the compute dtype inside the GEMM")
        out["router"] = {"kind": st.selectbox("Router", ROUTERS, key=k("router"),
                                              index=opt_index(ROUTERS, base["router"].get("kind")))}
        price = st.number_input("USD per GPU-hour (0 = catalog price)", min_value=0.0, step=0.1,
                                value=float(hb.get("usd_per_gpu_hour") or 0.0), key=k("usd_per_gpu_hour"))
        out["hardware"]["usd_per_gpu_hour"] = price or None
        cm = base.get("cost_model", {"kind": "roofline"})
        cm_kind = st.radio("Cost model", ("roofline", "profiled"), horizontal=True, key=k("cost_kind"),
                           index=1 if cm.get("kind") == "profiled" else 0)
        if cm_kind == "profiled":
            up = st.file_uploader("Profile table (parquet from `llmsim profile`)", type=["parquet"],
                                  key=k("profile_upload"))
            path = store_upload(up) if up is not None else st.text_input(
                "…or its path", value=cm.get("profile", ""), key=k("profile_path"))
            out["cost_model"] = {"kind": "profiled", "profile": path}
        else:
            out["cost_model"] = {"kind": "roofline"}
    return out


def _length_widgets(prefix: str, label: str, dist: Mapping[str, Any], container: Any) -> dict[str, Any]:
    k = lambda name: f"{prefix}.{label}.{name}"  # noqa: E731
    c = container
    kind = c.selectbox(f"{label.capitalize()} length", LENGTH_KINDS, key=k("kind"),
                       index=opt_index(LENGTH_KINDS, dist.get("kind"), 2))
    same = dist.get("kind") == kind
    get = lambda f, d: dist.get(f, d) if same else d  # noqa: E731
    typical = 512 if label == "input" else 128
    if kind == "fixed":
        return {"kind": "fixed", "value": int(c.number_input("tokens", min_value=1, value=int(get("value", typical)),
                                                             key=k("value")))}
    if kind == "uniform":
        a, b = c.columns(2)
        return {"kind": "uniform",
                "low": int(a.number_input("low", min_value=1, value=int(get("low", typical // 2)), key=k("low"))),
                "high": int(b.number_input("high", min_value=1, value=int(get("high", typical * 2)), key=k("high")))}
    if kind == "empirical":
        a, b = c.columns(2)
        return {"kind": "empirical",
                "path": a.text_input("CSV path", value=str(get("path", "")), key=k("path"),
                                     help="resample a column of positive integers, e.g. a length-only trace"),
                "column": b.text_input("column", value=str(get("column", "num_prefill_tokens" if label == "input"
                                                                     else "num_decode_tokens")), key=k("column"))}
    a, b = c.columns(2)
    return {"kind": "lognormal",
            "mean": float(a.number_input("mean", min_value=1.0, value=float(get("mean", typical)), key=k("mean"))),
            "sigma": float(b.number_input("sigma", min_value=0.01, value=float(get("sigma", 0.8)), key=k("sigma"))),
            "min": int(get("min", 1)), "max": int(get("max", 32768))}


def workload_form(prefix: str, base: Mapping[str, Any], errors: list[str], container: Any = st) -> dict[str, Any]:
    """Workload section (synthetic, or a trace file: uploaded or a path) and the simulation seed; problems
    are appended to `errors` (see system_form)."""
    c = container
    k = lambda name: f"{prefix}.{name}"  # noqa: E731
    wb = base["workload"]
    arrival = wb.get("arrival", {})
    source = c.radio("Workload", ("synthetic", "trace"), horizontal=True, key=k("wl_kind"),
                     index=1 if wb.get("kind") == "trace" else 0)
    out: dict[str, Any] = {}
    if source == "synthetic":
        wl: dict[str, Any] = {"kind": "synthetic", "num_requests": int(c.number_input(
            "Requests", min_value=1, max_value=1_000_000, value=int(wb.get("num_requests", 200)),
            key=k("num_requests")))}
    else:
        up = c.file_uploader("Trace file (Azure CSV, Mooncake JSONL, length-only CSV, plain CSV/JSONL)",
                             type=["csv", "jsonl", "json", "txt"], key=k("trace_upload"))
        path = store_upload(up) if up is not None else c.text_input("…or a trace path on the server",
                                                                value=wb.get("path", ""), key=k("trace_path"))
        if not path:
            errors.append("workload.path: upload a trace file or give its path")
        a, b = c.columns(2)
        n = int(a.number_input("First N requests (0 = all)", min_value=0, value=int(wb.get("num_requests") or 200),
                               key=k("trace_n")))
        wl = {"kind": "trace", "path": path,
              "format": b.selectbox("Format", TRACE_FORMATS, key=k("trace_format"),
                                    index=opt_index(TRACE_FORMATS, wb.get("format"))),
              "num_requests": n or None,
              "rate_scale": float(c.number_input("Rate scale (×, speeds up timestamps)", min_value=0.001,
                                                 value=float(wb.get("rate_scale", 1.0)), key=k("rate_scale")))}
    a, b = c.columns(2)
    process = a.selectbox("Arrivals" + (" (length-only traces)" if source == "trace" else ""), ARRIVALS,
                          key=k("process"), index=opt_index(ARRIVALS, arrival.get("process")))
    rate = arrival.get("rate_per_s", 10.0)
    arr: dict[str, Any] = {"process": process}
    if process != "burst":
        arr["rate_per_s"] = float(b.number_input("Rate (req/s)", min_value=0.001,
                                                 value=float(rate) if math.isfinite(rate) else 10.0, key=k("rate")))
    if process == "gamma":
        arr["cv"] = float(c.number_input("Burstiness (CV of inter-arrival times)", min_value=0.01,
                                         value=float(arrival.get("cv", 2.0)), key=k("cv")))
    wl["arrival"] = arr
    if source == "synthetic":
        wl["input_len"] = _length_widgets(prefix, "input", wb.get("input_len", {}), c)
        wl["output_len"] = _length_widgets(prefix, "output", wb.get("output_len", {}), c)
    out["workload"] = wl
    out["simulation"] = {"seed": int(c.number_input("Seed", min_value=0, value=int(base["simulation"].get("seed", 0)),
                                                    key=k("seed")))}
    return out


def slo_form(prefix: str, base: Mapping[str, Any], errors: list[str], container: Any = st) -> dict[str, Any]:
    """SLO section, entered in milliseconds (0 = no target)."""
    c = container
    sb = base["slo"]
    cols = c.columns(3)
    slo: dict[str, Any] = {}
    for col, (field, label) in zip(cols, (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "e2e"))):
        ms = col.number_input(f"{label} SLO (ms)", min_value=0.0, value=float((sb.get(field) or 0.0) * 1e3),
                              step=10.0, key=f"{prefix}.slo_{field}", help="0 = no target")
        slo[field] = ms / 1e3 if ms > 0 else None
    return {"slo": slo}
