"""Fit the roofline efficiency factors (hwmodels/roofline.py) and link alpha/efficiency (hwmodels/hardware.py)
on Vidur's op-level GPU and NCCL timings.

Data: /work/shared/profiles/vidur/compute/{a100,h100}/*/*/mlp.csv (microsoft/vidur @ 7d47513, MIT), fp16
kernel times per layer per GPU for several models, TP 1..8, num_tokens 1..4096 (32768 for Llama-3).
Model:  t = fixed_s + max(FLOPs / (eff_c * peak_fp16), bytes / (eff_m * HBM B/s)), FLOPs and bytes from
hwmodels.ops (the same formulas the cost model uses). Objective: mean |log(pred / measured)| over rows, each
power-of-two bucket of num_tokens weighted equally (Nelder-Mead); reports median and p90 relative error of the
fitted model.

Usage: python benchmarks/fit_roofline_efficiency.py [profiles_dir]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from hwmodels.config import QuantConfig
from hwmodels.hardware import get_gpu
from hwmodels.ops import Formats, gemm_op

GPU_OF = {"a100": "a100-80gb", "h100": "h100-sxm"}  # Vidur profiled A100 80GB and H100 80GB (DGX, SXM)
GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE = ("input_layernorm", "post_attention_layernorm", "mlp_act", "add")


def load_rows(profiles: Path, gpu_dir: str) -> pd.DataFrame:
    """One row per (file, tokens, tp, op): flops, bytes, measured seconds (median)."""
    f = Formats.of(QuantConfig(dtype="fp16"))
    out = []
    for path in sorted((profiles / "vidur" / "compute" / gpu_dir).glob("*/*/mlp.csv")):
        df = pd.read_csv(path)
        for d in df.to_dict("records"):
            tp, T = int(d["num_tensor_parallel_workers"]), float(d["num_tokens"])
            h, nh, nkv, inter = int(d["n_embd"]), int(d["n_head"]), int(d["n_kv_head"]), int(d["n_expanded_embd"])
            hd = h // nh
            q, kv = nh // tp * hd, max(1, nkv // tp) * hd
            i_loc = inter // tp
            up = (2 if bool(d["use_gated_mlp"]) else 1) * i_loc
            shapes = {"attn_pre_proj": (h, q + 2 * kv), "attn_post_proj": (q, h), "mlp_up_proj": (h, up),
                      "mlp_down_proj": (i_loc, h)}
            for op, (k, n) in shapes.items():
                g = gemm_op(op, T, k, n, f, 1)
                out.append((path.parent.name, op, "gemm", T, tp, g.flops, g.bytes, d[f"time_stats.{op}.median"]))
            ew = {"input_layernorm": (5 * T * h, 2 * T * h * 2), "post_attention_layernorm": (5 * T * h, 2 * T * h * 2),
                  "mlp_act": (4 * T * i_loc, (up + i_loc) * T * 2), "add": (T * h, 3 * T * h * 2)}
            for op, (fl, by) in ew.items():
                if f"time_stats.{op}.median" not in d:  # phi-2 (parallel attention) has no post-attention norm
                    continue
                out.append((path.parent.name, op, "elementwise", T, tp, fl, by, d[f"time_stats.{op}.median"]))
    rows = pd.DataFrame(out, columns=["model", "op", "kind", "num_tokens", "tp", "flops", "bytes", "ms"])
    rows["seconds"] = rows["ms"] * 1e-3
    return rows[rows["seconds"] > 0]


def predict(rows: pd.DataFrame, peak: float, bw: float, ec: float, em: float, fixed_s: float) -> np.ndarray:
    return fixed_s + np.maximum(rows["flops"].to_numpy() / (ec * peak), rows["bytes"].to_numpy() / (em * bw))


def fit(rows: pd.DataFrame, peak: float, bw: float, with_compute: bool) -> tuple[float, float, float]:
    meas = rows["seconds"].to_numpy()
    # Weight rows so that every power-of-two bucket of num_tokens counts equally: the files hold 10x more
    # rows above 256 tokens than below, yet decode steps (1..64 tokens) are most of a serving run.
    bucket = np.floor(np.log2(rows["num_tokens"].to_numpy()))
    _, inv, counts = np.unique(bucket, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    w /= w.sum()

    def loss(x: np.ndarray) -> float:
        ec, em, fixed_us = x
        if not (0.05 < ec <= 1.0 and 0.05 < em <= 1.0 and 0 <= fixed_us < 50):
            return 1e9
        return float(np.sum(w * np.abs(np.log(predict(rows, peak, bw, ec, em, fixed_us * 1e-6) / meas))))

    x0 = np.array([0.7, 0.7, 2.0])
    res = minimize(loss, x0, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 4000})
    ec, em, fixed_us = res.x
    return (ec if with_compute else 1.0), em, fixed_us * 1e-6


def report(rows: pd.DataFrame, pred: np.ndarray, label: str) -> None:
    err = np.abs(pred / rows["seconds"].to_numpy() - 1)
    print(f"  {label:<28} rows={len(rows):6d}  median|err|={np.median(err) * 100:5.1f}%  "
          f"p90|err|={np.percentile(err, 90) * 100:5.1f}%  mean|err|={np.mean(err) * 100:5.1f}%")


# (vidur node folder, collective, rows' (num_workers, devices_per_node)) measured over each link type. DGX A100 has
# NVLink3 via NVSwitch and 8x HDR InfiniBand; DGX H100 NVLink4 and 8x NDR. devices_per_node=1: one GPU per node.
LINK_DATA = {
    "nvlink3": [("a100_dgx", "all_reduce", {(2, 2), (4, 4), (8, 8)}), ("a100_dgx", "send_recv", {(2, 2)})],
    "nvlink4": [("h100_dgx", "all_reduce", {(2, 2), (4, 4), (8, 8)}), ("h100_dgx", "send_recv", {(2, 2)})],
    "ib-hdr": [("a100_dgx", "all_reduce", {(2, 1)}), ("a100_dgx", "send_recv", {(2, 1)})],
    "ib-ndr": [("h100_dgx", "send_recv", {(2, 1)})],
}


def load_link_rows(profiles: Path, sources: list) -> pd.DataFrame:
    out = []
    for node, coll, groups in sources:
        df = pd.read_csv(profiles / "vidur" / "network" / node / f"{coll}.csv")
        for d in df.to_dict("records"):
            if (int(d["num_workers"]), int(d["devices_per_node"])) in groups:
                out.append((coll, int(d["num_workers"]), float(d["size"]), d[f"time_stats.{coll}.median"] * 1e-3))
    return pd.DataFrame(out, columns=["collective", "n", "bytes", "seconds"])


def predict_link(rows: pd.DataFrame, bw: float, alpha_s: float, eff: float) -> np.ndarray:
    """All-reduce 2·log2(n)·a + 2(n-1)/n·S/(eff·B); send/recv a + S/(eff·B) (hwmodels.collectives)."""
    n, S = rows["n"].to_numpy(), rows["bytes"].to_numpy()
    ar = rows["collective"].to_numpy() == "all_reduce"
    return np.where(ar, 2 * np.ceil(np.log2(n)) * alpha_s + 2 * (n - 1) / n * S / (eff * bw),
                    alpha_s + S / (eff * bw))


def fit_link(rows: pd.DataFrame, bw: float) -> tuple[float, float]:
    """Fit on all-reduce rows when there are any (TP's collective, every layer), else on send/recv rows; each
    power-of-two message-size bucket weighted equally (decode's messages are small, most rows are large)."""
    if (rows["collective"] == "all_reduce").any():
        rows = rows[rows["collective"] == "all_reduce"]
    meas = rows["seconds"].to_numpy()
    _, inv, counts = np.unique(np.floor(np.log2(rows["bytes"].to_numpy())), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    w /= w.sum()

    def loss(x: np.ndarray) -> float:
        alpha_us, eff = x
        if not (0 <= alpha_us < 100 and 0.01 < eff <= 1.0):
            return 1e9
        return float(np.sum(w * np.abs(np.log(predict_link(rows, bw, alpha_us * 1e-6, eff) / meas))))

    res = minimize(loss, np.array([2.0, 0.7]), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    return res.x[0] * 1e-6, res.x[1]


def main() -> None:
    profiles = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "profiles"
    from hwmodels.hardware import LINKS
    for link, sources in LINK_DATA.items():
        rows = load_link_rows(profiles, sources)
        bw = LINKS[link].bandwidth_bytes_per_s
        alpha, eff = fit_link(rows, bw)
        print(f"{link}: latency_s={alpha:.2e} efficiency={eff:.3f} (datasheet {bw / 1e9:.0f} GB/s/dir)")
        for coll in ("all_reduce", "send_recv"):
            s = rows[rows["collective"] == coll]
            if len(s):
                report(s, predict_link(s, bw, alpha, eff), f"  {coll}")
                small = s[s["bytes"] <= 1e6]
                if len(small):
                    report(small, predict_link(small, bw, alpha, eff), f"  {coll} <= 1 MB")
    for gpu_dir, gpu_name in GPU_OF.items():
        gpu = get_gpu(gpu_name)
        peak, bw = gpu.peak_flops("fp16"), gpu.hbm_bytes_per_s
        rows = load_rows(profiles, gpu_dir)
        g = rows[rows["kind"] == "gemm"]
        e = rows[rows["kind"] == "elementwise"]
        ec, em, fixed = fit(g, peak, bw, with_compute=True)
        _, em_e, fixed_e = fit(e, peak, bw, with_compute=False)
        print(f"{gpu_dir} ({gpu_name}): gemm_flops={ec:.3f} gemm_mem={em:.3f} gemm_fixed_s={fixed:.2e}  "
              f"elem_mem={em_e:.3f} elem_fixed_s={fixed_e:.2e}")
        report(g, predict(g, peak, bw, ec, em, fixed), "GEMM (fit)")
        for op in GEMMS:
            s = g[g["op"] == op]
            report(s, predict(s, peak, bw, ec, em, fixed), f"  {op}")
        report(e, predict(e, peak, bw, 1.0, em_e, fixed_e), "elementwise (fit)")
        big = g[g["num_tokens"] >= 256]
        report(big, predict(big, peak, bw, ec, em, fixed), "GEMM tokens>=256")
        small = g[g["num_tokens"] < 256]
        report(small, predict(small, peak, bw, ec, em, fixed), "GEMM tokens<256")
        tiny = g[g["num_tokens"] <= 32]
        report(tiny, predict(tiny, peak, bw, ec, em, fixed), "GEMM tokens<=32 (decode)")


if __name__ == "__main__":
    main()
