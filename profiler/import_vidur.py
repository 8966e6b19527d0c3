"""Convert Vidur's published op-level GPU timings into profile-table rows.

Vidur (Agrawal et al., MLSys 2024; microsoft/vidur @ 7d47513, MIT) profiled per-layer, per-GPU
kernel times of several models on A100/H100 in `compute/<gpu>/<org>/<model>/mlp.csv` (milliseconds,
columns `time_stats.<op>.median`, fp16) and NCCL collectives in `network/<node>/{all_reduce,
send_recv}.csv`. Their op names map onto ours as below; shapes per GPU follow Megatron TP sharding
(hwmodels.layout). Attention kernels are not in the published files.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from hwmodels.profiled import elementwise_work, gemm_work
from profiler.table import row

VIDUR_DTYPE = "fp16"  # Vidur profiles fp16 weights and activations
_ITEM = 2.0


def compute_rows(csv_path: str | Path, device: str) -> list[dict]:
    """Rows for one `mlp.csv`: GEMMs (qkv, o, up, down), RMSNorm, SwiGLU, RoPE; repeated shapes keep the first."""
    df = pd.read_csv(csv_path)
    out: list[dict] = []
    for d in df.to_dict("records"):
        tp, T = int(d["num_tensor_parallel_workers"]), int(d["num_tokens"])
        h, nh, nkv, inter = int(d["n_embd"]), int(d["n_head"]), int(d["n_kv_head"]), int(d["n_expanded_embd"])
        gated = bool(d["use_gated_mlp"])
        hd = h // nh
        heads, kvh = nh // tp, max(1, nkv // tp)
        i_loc = inter // tp
        gemms = {"attn_pre_proj": ("qkv_proj", h, (heads + 2 * kvh) * hd), "attn_post_proj": ("o_proj", heads * hd, h),
                 "mlp_up_proj": ("mlp_up", h, (2 if gated else 1) * i_loc), "mlp_down_proj": ("mlp_down", i_loc, h)}
        for col, (name, k, n) in gemms.items():
            t = _median_s(d, col)
            if t is None:
                continue
            fl, by = gemm_work(T, n, k, _ITEM)
            out.append(_row(device, "gemm", t, d, col, fl, by, name, m=T, n=n, k=k))
        t = _median_s(d, "input_layernorm")
        if t is not None:
            fl, by = elementwise_work("rmsnorm", T, h, _ITEM)
            out.append(_row(device, "rmsnorm", t, d, "input_layernorm", fl, by, "norm", num_tokens=T, hidden=h))
        t = _median_s(d, "mlp_act")
        if t is not None and gated:
            fl, by = elementwise_work("swiglu", T, i_loc, _ITEM)
            out.append(_row(device, "swiglu", t, d, "mlp_act", fl, by, "mlp_act", num_tokens=T, hidden=i_loc))
        t = _median_s(d, "attn_rope")
        if t is not None:
            fl, by = elementwise_work("rope", T, (heads + kvh) * hd, _ITEM)
            out.append(_row(device, "rope", t, d, "attn_rope", fl, by, "rope", num_tokens=T, num_heads=heads + kvh,
                            head_dim=hd))
    return out


def network_rows(csv_path: str | Path, device: str, intra_node_only: bool = True) -> list[dict]:
    """Rows for one `all_reduce.csv` / `send_recv.csv` (size in bytes; busbw per nccl-tests)."""
    df = pd.read_csv(csv_path)
    out: list[dict] = []
    for d in df.to_dict("records"):
        coll = str(d["collective"])
        n, size = int(d["num_workers"]), int(d["size"])
        if intra_node_only and int(d["devices_per_node"]) != n:
            continue
        t = _median_s(d, coll)
        if t is None or t <= 0:
            continue
        factor = 2.0 * (n - 1) / n if coll == "all_reduce" else 1.0
        algbw = size / t
        out.append(row(device, coll, "vidur", VIDUR_DTYPE, t, _ms(d, coll, "min"), _ms(d, coll, "max"), 1,
                       nbytes=size, name=coll, algbw_bytes_per_s=algbw, busbw_bytes_per_s=algbw * factor,
                       world_size=n, size_bytes=size))
    return out


def _median_s(d: dict, op: str) -> float | None:
    v = d.get(f"time_stats.{op}.median")
    return None if v is None or pd.isna(v) else float(v) * 1e-3


def _ms(d: dict, op: str, stat: str) -> float:
    v = d.get(f"time_stats.{op}.{stat}")
    return 0.0 if v is None or pd.isna(v) else float(v) * 1e-3


def _row(device, op, t, d, col, fl, by, name, **shape) -> dict:
    # NOTE: Vidur publishes min/max, not p10/p90; they fill those columns (wider than p10/p90).
    return row(device, op, "vidur", VIDUR_DTYPE, t, _ms(d, col, "min"), _ms(d, col, "max"), 1, flops=fl, nbytes=by,
               name=name, **shape)
