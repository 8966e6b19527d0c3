"""Profile tables (parquet from `llmsim profile`) against the datasheet roofline, and saved validate reports.

Pure functions over DataFrames/dicts; the Validate page only lays them out.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from hwmodels.collectives import allgather_seconds, allreduce_seconds, alltoall_seconds, p2p_seconds, \
    reduce_scatter_seconds
from hwmodels.config import HardwareConfig, ParallelConfig, QuantConfig
from hwmodels.hardware import GPUSpec, intra_link
from hwmodels.models import get_model
from hwmodels.ops import Op
from hwmodels.profiled import ATTENTION_OPS, COLLECTIVE_OPS, ELEMENTWISE_OPS, GEMM_OPS
from hwmodels.roofline import RooflineCostModel

PRICING_MODEL = "llama-3.1-8b"  # only builds the pricer; op_seconds of one compute op does not depend on it
# Device-name fragments (torch.cuda.get_device_name) → catalog accelerator.
DEVICE_HINTS = (("h100 pcie", "h100-pcie"), ("h100", "h100-sxm"), ("h200", "h200"), ("a100-sxm4-40", "a100-40gb"),
                ("a100 40", "a100-40gb"), ("a100", "a100-80gb"), ("b200", "b200"), ("l40s", "l40s"), ("l4", "l4"),
                ("a10g", "a10g"), ("mi300x", "mi300x"))


def guess_gpu(device: str) -> str | None:
    """Catalog name of a measured device name, or None (CPU runs, unknown parts)."""
    d = device.lower().replace("_", " ")
    for fragment, name in DEVICE_HINTS:
        if fragment in d:
            return name
    return None


def roofline_seconds(row: dict[str, Any], gpu: GPUSpec, hardware: HardwareConfig = HardwareConfig(),
                     pricer: RooflineCostModel | None = None) -> float:
    """The datasheet roofline time of one profile row on `gpu`: compute ops priced by the simulator's own
    `RooflineCostModel.op_seconds` (launch + max(FLOPs / (eff_c·peak), bytes / (eff_m·HBM B/s))), collectives
    by the alpha-beta model over the GPU's intra-node link. NaN for ops the roofline has no family for."""
    op = row["op"]
    if op in COLLECTIVE_OPS:
        link, n, nbytes = intra_link(gpu, hardware), max(int(row["world_size"]), 1), float(row["size_bytes"])
        fn = {"all_reduce": allreduce_seconds, "all_gather": allgather_seconds,
              "reduce_scatter": reduce_scatter_seconds, "all_to_all": alltoall_seconds}.get(op)
        return fn(nbytes, n, link) if fn else p2p_seconds(nbytes, link)
    kind = ("gemm" if op in GEMM_OPS else "attention" if op in ATTENTION_OPS
            else "elementwise" if op in ELEMENTWISE_OPS else None)
    if kind is None:
        return float("nan")
    pricer = pricer or _pricer(gpu, hardware)
    return pricer.op_seconds(Op(op, kind, flops=float(row["flops"]), bytes=float(row["bytes"]),
                                compute_dtype=str(row["dtype"])))


def _pricer(gpu: GPUSpec, hardware: HardwareConfig) -> RooflineCostModel:
    """A RooflineCostModel for pricing single ops on `gpu`; op_seconds of compute ops depends only on the GPU
    and its efficiencies, so any catalog model stands in for the model it is built with."""
    return RooflineCostModel(get_model(PRICING_MODEL), gpu, ParallelConfig(), QuantConfig(), hardware)


def shape_text(row: dict[str, Any]) -> str:
    """The non-zero shape columns of a row, e.g. 'm=128 n=4096 k=4096'."""
    from hwmodels.profiled import SHAPE_COLUMNS

    return " ".join(f"{c}={int(row[c])}" for c in SHAPE_COLUMNS if int(row[c]))


def compare_to_roofline(df: pd.DataFrame, gpu: GPUSpec) -> pd.DataFrame:
    """One row per measurement: op, impl, dtype, shape, measured_s (median), modelled_s (roofline on
    `gpu`), rel_error = modelled / measured − 1."""
    recs = df.to_dict("records")
    pricer = _pricer(gpu, HardwareConfig())
    out = pd.DataFrame({
        "device": [r["device"] for r in recs], "op": [r["op"] for r in recs], "impl": [r["impl"] for r in recs],
        "dtype": [r["dtype"] for r in recs], "shape": [shape_text(r) for r in recs],
        "measured_s": [float(r["median_s"]) for r in recs],
        "modelled_s": [roofline_seconds(r, gpu, pricer=pricer) for r in recs],
    })
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rel_error"] = out["modelled_s"] / out["measured_s"] - 1.0
    return out


def error_by_op(cmp: pd.DataFrame) -> pd.DataFrame:
    """Median and p90 |relative error| of the roofline per op."""
    ok = cmp[np.isfinite(cmp["rel_error"])]
    g = ok.groupby("op")["rel_error"]
    return pd.DataFrame({"rows": g.size(), "median_abs_rel_error": g.apply(lambda s: s.abs().median()),
                         "p90_abs_rel_error": g.apply(lambda s: s.abs().quantile(0.9))}).reset_index()


# ---- validate reports ------------------------------------------------------------------------


def parse_report(name: str, data: bytes) -> tuple[str, Any]:
    """('html', text) or ('json', object) for a saved `llmsim validate` report; ValueError if neither."""
    text = data.decode("utf-8", errors="replace")
    if name.lower().endswith((".html", ".htm")) or text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "html", text
    try:
        return "json", json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}:{exc.lineno}:{exc.colno}: not an HTML or JSON validate report ({exc.msg})") from None


def report_tables(report: Any) -> dict[str, pd.DataFrame]:
    """Every list of flat records in a JSON report (e.g. the per-metric error table), by its key path."""
    out: dict[str, pd.DataFrame] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
            flat = [{k: v for k, v in x.items() if not isinstance(v, (dict, list))} for x in node]
            if any(flat):
                out[path or "report"] = pd.DataFrame(flat)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))

    walk(report, "")
    return out


def validate_error_rows(result: dict[str, Any]) -> pd.DataFrame:
    """The error table of a `llmsim validate` result.json: metric, measured, simulated, error
    (= simulated / measured − 1, as the report defines it). Latencies in seconds."""
    measured, simulated = result.get("measured") or {}, result.get("simulated") or {}
    step = result.get("step_time") or {}
    rows = []
    for key, err in (result.get("errors") or {}).items():
        m = s = None
        metric, _, q = key.rpartition("_")
        if metric in ("ttft", "tpot", "e2e", "itl") and q.startswith("p"):
            m = (measured.get(f"{metric}_s") or {}).get(q)
            s = (simulated.get(f"{metric}_s") or {}).get(q)
        elif key == "throughput":
            m, s = measured.get("output_throughput_tokens_per_s"), simulated.get("output_throughput_tokens_per_s")
        elif key == "step_time":
            m, s = step.get("measured_mean_s"), step.get("simulated_mean_s")
        rows.append({"metric": key, "measured": m, "simulated": s, "error": err})
    return pd.DataFrame(rows, columns=["metric", "measured", "simulated", "error"])


def is_validate_result(report: Any) -> bool:
    return isinstance(report, dict) and isinstance(report.get("errors"), dict) and "measured" in report


def load_validate_folder(folder: str) -> tuple[tuple[str, Any], dict[str, pd.DataFrame]]:
    """(('json', result) or ('html', text), frames) from a `llmsim validate --out` folder; frames are the
    measured_/simulated_ requests and steps parquet files that exist there."""
    from pathlib import Path

    from hwmodels.errors import UserError

    p = Path(folder)
    if not p.is_dir():
        raise UserError(f"validate folder {folder!r}: not a directory (run `llmsim validate --out FOLDER`)")
    frames = {name: pd.read_parquet(p / f"{name}.parquet") for name in
              ("measured_requests", "simulated_requests", "measured_steps", "simulated_steps")
              if (p / f"{name}.parquet").is_file()}
    for name in ("result.json", "report.html"):
        if (p / name).is_file():
            return parse_report(name, (p / name).read_bytes()), frames
    raise UserError(f"validate folder {folder!r}: has neither result.json nor report.html")
