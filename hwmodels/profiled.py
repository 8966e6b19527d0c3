"""Profile-calibrated cost model: operator times read from a measured table (written by `llmsim profile`).

Inside the measured range an operator's time is interpolated between table rows (log time linear in
log work, e.g. GEMM seconds vs tokens for one weight shape; decode attention vs KV entries read, then
between batch sizes); an exact hit is 'measured'. Outside the range, or for a shape the table lacks,
a model fitted on that table's rows of the same family supplies the trend ('fitted'): a roofline
`launch + max(FLOPs/F, bytes/B)` for GEMMs and elementwise ops, an additive `c0 + c1·seqs + c2·FLOPs
+ c3·bytes` for attention (per kind: decode, whole prompts, chunks on cached context) and an
alpha-beta line per (collective, world size); when the shape's own curve exists the fit is scaled to
its nearest measurement. Operators the table has no rows for at all (embedding, sampling, MoE
experts, an unprofiled world size) fall back to the datasheet RooflineCostModel ('roofline' /
'alpha-beta'). Attention is priced as its prefill part plus its decode part (BatchShape splits them).

The table schema lives here (hwmodels reads it with pandas/pyarrow; profiler/ writes it).
"""
from __future__ import annotations

import bisect
import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hwmodels.config import HardwareConfig, ParallelConfig, QuantConfig
from hwmodels.cost import OpCost, StepCost
from hwmodels.dtypes import dtype_bytes
from hwmodels.errors import UserError
from hwmodels.hardware import GPUSpec
from hwmodels.layout import check_layout, kv_heads_per_gpu
from hwmodels.models import ModelSpec
from hwmodels.ops import Formats, Op, attention_ops, logit_ops, ops_for, token_ops
from hwmodels.roofline import RooflineCostModel
from hwmodels.shapes import BatchShape

# ---------------------------------------------------------------------------------------------- schema
SHAPE_COLUMNS = ("m", "n", "k", "num_seqs", "num_tokens", "context_len", "num_heads", "num_kv_heads", "head_dim",
                 "block_size", "hidden", "world_size", "size_bytes")
KEY_COLUMNS = ("device", "op", "impl", "dtype", *SHAPE_COLUMNS)
VALUE_COLUMNS = ("name", "median_s", "p10_s", "p90_s", "num_samples", "flops", "bytes", "flops_per_s",
                 "bytes_per_s", "algbw_bytes_per_s", "busbw_bytes_per_s", "measured_at")
COLUMNS = (*KEY_COLUMNS, *VALUE_COLUMNS)
META_KEY = b"llmsim"

GEMM_OPS = ("gemm",)
ATTENTION_OPS = ("attention_prefill", "attention_decode")
ELEMENTWISE_OPS = ("rmsnorm", "swiglu", "rope")
COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
ALL_OPS = (*GEMM_OPS, *ATTENTION_OPS, *ELEMENTWISE_OPS, *COLLECTIVE_OPS)
# hwmodels.ops comm kinds -> table op names
_COMM_OP = {"allreduce": "all_reduce", "allgather": "all_gather", "alltoall": "all_to_all", "p2p": "send_recv",
            "reducescatter": "reduce_scatter"}


def typed_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in schema order with schema dtypes (str / int64 / float64)."""
    df = df.copy()
    for c in ("device", "op", "impl", "dtype", "name", "measured_at"):
        df[c] = df[c].astype(str)
    for c in (*SHAPE_COLUMNS, "num_samples"):
        df[c] = df[c].astype("int64")
    for c in ("median_s", "p10_s", "p90_s", "flops", "bytes", "flops_per_s", "bytes_per_s",
              "algbw_bytes_per_s", "busbw_bytes_per_s"):
        df[c] = df[c].astype("float64")
    return df[list(COLUMNS)].reset_index(drop=True)


def read_profile(path: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    """(rows, run metadata). UserError if the file is missing or not an llmsim profile table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise UserError(f"profile = {str(p)!r}: file not found (write one with `llmsim profile --out FILE`)")
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"profile = {str(p)!r}: not a parquet file ({exc})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"profile = {str(p)!r}: not an llmsim profile table (missing columns {missing})")
    raw = (table.schema.metadata or {}).get(META_KEY)
    runs = json.loads(raw).get("runs", []) if raw else []
    return typed_frame(table.to_pandas()), runs


# ---------------------------------------------------------------------------------------------- work
def causal_pairs(len_q: int, len_k: int) -> int:
    """Query-key pairs of bottom-right causal attention: Σ_i min(len_k, i + 1 + len_k − len_q)."""
    if len_k >= len_q:
        return len_q * (len_k - len_q) + len_q * (len_q + 1) // 2
    return sum(max(0, i + 1 + len_k - len_q) for i in range(len_q))


def gemm_work(m: float, n: float, k: float, itemsize: float) -> tuple[float, float]:
    """(FLOPs, bytes) of C[m,n] = A[m,k]·B[k,n]: 2mnk; each operand read once, C written once."""
    return 2.0 * m * n * k, (m * k + k * n + m * n) * itemsize


def attention_work(pairs: float, num_q: float, kv_read: float, heads: int, kv_heads: int, head_dim: int,
                   itemsize: float) -> tuple[float, float]:
    """(FLOPs, bytes): 4·D per pair per head (QKᵀ, PV); read Q and every K/V entry once, write O."""
    return (4.0 * pairs * heads * head_dim,
            (2.0 * num_q * heads + 2.0 * kv_read * kv_heads) * head_dim * itemsize)


def elementwise_work(op: str, num_tokens: float, width: float, itemsize: float) -> tuple[float, float]:
    """(FLOPs, bytes) of one memory-bound op over num_tokens rows of `width` elements.

    rmsnorm: ~4 FLOPs/element, read x + weight, write y; swiglu (width = FFN columns): ~5 FLOPs,
    read gate and up, write y; rope (width = rotated heads·head_dim): 3 FLOPs, read and write x.
    """
    e = num_tokens * width
    if op == "rmsnorm":
        return 4.0 * e, (2.0 * e + width) * itemsize
    if op == "swiglu":
        return 5.0 * e, 3.0 * e * itemsize
    if op == "rope":
        return 3.0 * e, 2.0 * e * itemsize
    raise ValueError(f"unknown elementwise op {op!r}")


@dataclass(frozen=True)
class OpShapes:
    """Per-GPU operator shapes of one model under a TP degree: what the profiler sweeps and what the
    profiled cost model looks up. GEMM weights are (k, n) per hwmodels.ops names."""

    gemms: dict[str, tuple[int, int]]
    hidden: int
    ffn_local: int  # 0 unless the FFN is gated (SwiGLU)
    rope_heads: int  # 0 unless RoPE: q + kv heads per GPU that are rotated
    heads: int
    kv_heads: int
    head_dim: int


def op_shapes(model: ModelSpec, tp: int) -> OpShapes:
    """Shapes per GPU under `tp`, mirroring hwmodels.ops.token_ops (dense FFN; MoE experts are not swept)."""
    h, hd = model.hidden_size, model.head_dim
    heads, kvh = model.num_heads // tp, kv_heads_per_gpu(model, tp)
    q_loc, kv_loc = heads * hd, kvh * hd
    gemms = {"qkv_proj": (h, q_loc + 2 * kv_loc), "o_proj": (q_loc, h),
             "lm_head": (h, math.ceil(model.vocab_size / tp))}
    ffn = 0
    if not model.is_moe:
        i_loc = model.intermediate_size // tp
        gemms["mlp_up"] = (h, (2 if model.ffn_kind == "gated" else 1) * i_loc)
        gemms["mlp_down"] = (i_loc, h)
        ffn = i_loc if model.ffn_kind == "gated" else 0
    return OpShapes(gemms=gemms, hidden=h, ffn_local=ffn, rope_heads=heads + kvh if model.pos_encoding == "rope" else 0,
                    heads=heads, kv_heads=kvh, head_dim=hd)


# ---------------------------------------------------------------------------------------------- curves
def _group_and_xy(op: str, r: dict) -> tuple[tuple, float, float] | None:
    """(exact-match group, y, x) under which a row (or a query with the same fields) is interpolated."""
    if op == "gemm":
        return (op, r["dtype"], r["n"], r["k"]), 1.0, float(r["m"])
    if op == "attention_prefill":  # whole prompts and chunks on cached context are separate curves
        return ((op, r["dtype"], r["num_heads"], r["num_kv_heads"], r["head_dim"], r["context_len"] > 0),
                float(r["num_seqs"]), float(r["pairs"]))
    if op == "attention_decode":
        return ((op, r["dtype"], r["num_heads"], r["num_kv_heads"], r["head_dim"]), float(r["num_seqs"]),
                float(r["num_seqs"] * r["context_len"]))
    if op in ("rmsnorm", "swiglu"):
        return (op, r["dtype"], r["hidden"]), 1.0, float(r["num_tokens"])
    if op == "rope":
        return (op, r["dtype"], r["num_heads"], r["head_dim"]), 1.0, float(r["num_tokens"])
    if op in COLLECTIVE_OPS:
        return (op, r["world_size"]), 1.0, float(r["size_bytes"])
    return None


def gemm_alignment(m: int) -> int:
    """The alignment class of a GEMM's row count m: the largest power of two dividing it, at most 8.

    NOTE: GEMM time is a sawtooth in m, not a smooth curve: BLAS kernels block m in registers (and GPU
    tensor cores want dimensions in multiples of 8 for fp16: NVIDIA's "Matrix Multiplication Background"
    performance guide), so an aligned m runs faster than its neighbours. Measured on
    this project's 2-core CPU VM (MKL, fp32, small-llama's weights, prompt passes of every length 32..256,
    2026-11-26, `benchmarks/bench_executor_timing.py interp`): over a curve through multiples of 8, lengths
    ≡ 4 mod 8 took +1.0 %, ≡ 2, 6 +1.9 / +1.7 %, odd ones +2.3..+3.5 %. Interpolating only between rows of
    one class keeps an aligned row (e.g. a 256-token chunk) from pulling down its unaligned neighbours: served
    prompt passes of `llmsim validate --quick` came out −0.4..−1.1 % (lengths ≡ 1, 2, 5, 6 mod 8) and
    −1.7..−1.8 % (≡ 3, 7) under the cost model with one curve, +0.2 % at multiples of 8 (28 runs); with
    the classes and the in-situ grid's odd lengths spread over residues, −0.5..+0.5 % at every residue (12
    runs; `benchmarks/bench_validate.py --residues`).
    """
    return min(8, m & -m)


def _pairs_of(r: dict) -> float:
    """Causal query-key pairs of a prefill row: num_seqs sequences of num_tokens/num_seqs new tokens on context_len."""
    b = max(1, int(r["num_seqs"]))
    lq = int(r["num_tokens"]) // b
    return float(b * causal_pairs(lq, lq + int(r["context_len"])))


class _Curve:
    """log t piecewise linear in log x for each y, then linear in log y between bracketing ys.

    Each point keeps its row's work (flops, bytes, num_seqs) so that a query outside the range can be
    anchored to the nearest measurement (see ProfileFit._anchored).
    """

    __slots__ = ("ys", "lys", "rows")

    def __init__(self, points: dict[float, dict[float, tuple[float, tuple[float, float, float]]]]):
        self.ys = sorted(points)
        self.lys = [math.log(y) for y in self.ys]
        self.rows = []
        for y in self.ys:
            xs = sorted(points[y])
            self.rows.append(([math.log(x) for x in xs], [math.log(points[y][x][0]) for x in xs],
                              [points[y][x] for x in xs]))

    def nearest(self, y: float, x: float) -> tuple[float, tuple[float, float, float]]:
        """(seconds, work) of the measured point nearest to (y, x) in log space (y first, then x)."""
        ly, lx = math.log(max(y, 1e-30)), math.log(max(x, 1e-30))
        i = min(range(len(self.ys)), key=lambda j: abs(self.lys[j] - ly))
        lxs, _, info = self.rows[i]
        j = min(range(len(lxs)), key=lambda q: abs(lxs[q] - lx))
        return info[j]

    def _at_y(self, i: int, lx: float) -> tuple[float, bool] | None:
        """(log seconds, exact?) on row i at log x, or None outside the row's range."""
        lxs, lts, _ = self.rows[i]
        j = bisect.bisect_left(lxs, lx - _EPS)
        if j == len(lxs):
            return None
        x1 = lxs[j]
        if x1 - lx <= _EPS:  # within _EPS of a measured x (bisect guarantees x1 >= lx - _EPS)
            return lts[j], True
        if j == 0:
            return None
        x0, t0 = lxs[j - 1], lts[j - 1]
        return t0 + (lts[j] - t0) * (lx - x0) / (x1 - x0), False

    def query(self, y: float, x: float) -> tuple[float, bool] | None:
        """(seconds, exact measurement?) or None when (y, x) lies outside the measured range."""
        if x <= 0 or y <= 0:
            return None
        lx, ly = math.log(x), math.log(y)
        lys = self.lys
        i = bisect.bisect_left(lys, ly - _EPS)
        if i == len(lys):
            return None
        if lys[i] - ly <= _EPS:
            a = self._at_y(i, lx)
            return None if a is None else (math.exp(a[0]), a[1])
        if i == 0:
            return None
        a, b = self._at_y(i - 1, lx), self._at_y(i, lx)
        if a is None or b is None:
            return None
        w = (ly - lys[i - 1]) / (lys[i] - lys[i - 1])
        return math.exp(a[0] + (b[0] - a[0]) * w), False


_EPS = 1e-12  # log-space tolerance for "the same x" (exact hits)


# ---------------------------------------------------------------------------------------------- fits
@dataclass(frozen=True)
class RooflineFit:
    """t = launch_s + max(flops / flops_per_s, bytes / bytes_per_s), fitted on one family's rows."""

    flops_per_s: float
    bytes_per_s: float
    launch_s: float
    num_rows: int

    def seconds(self, flops: float, nbytes: float) -> float:
        tc = flops / self.flops_per_s if self.flops_per_s > 0 else 0.0
        tm = nbytes / self.bytes_per_s if self.bytes_per_s > 0 else 0.0
        return self.launch_s + (tc if tc > tm else tm)


def fit_roofline(flops: np.ndarray, nbytes: np.ndarray, seconds: np.ndarray) -> RooflineFit:
    """Minimise mean |log(pred/measured)| over a log grid of (F, B, launch), then a finer grid around the best.

    Deterministic (no RNG); F and B range over 1/8..8x the best achieved rate of the rows.
    """
    flops, nbytes, t = (np.asarray(a, dtype=float) for a in (flops, nbytes, seconds))
    ok = t > 0
    flops, nbytes, t = flops[ok], nbytes[ok], t[ok]
    if t.size == 0:
        raise ValueError("no rows to fit")
    f_hi = float(np.max(flops / t)) if np.any(flops > 0) else 0.0
    b_hi = float(np.max(nbytes / t)) if np.any(nbytes > 0) else 0.0
    lt = np.log(t)

    def grid(center_f, center_b, span, n, launches):
        fs = center_f * np.geomspace(1 / span, span, n) if center_f > 0 else np.array([0.0])
        bs = center_b * np.geomspace(1 / span, span, n) if center_b > 0 else np.array([0.0])
        best = (np.inf, 0.0, 0.0, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = np.where(fs[:, None] > 0, flops[None, :] / np.where(fs[:, None] > 0, fs[:, None], 1.0), 0.0)
            tm = np.where(bs[:, None] > 0, nbytes[None, :] / np.where(bs[:, None] > 0, bs[:, None], 1.0), 0.0)
        for la in launches:
            pred = la + np.maximum(tc[:, None, :], tm[None, :, :])  # [F, B, rows]
            pred = np.where(pred > 0, pred, 1e-30)
            err = np.abs(np.log(pred) - lt).mean(axis=2)
            i, j = np.unravel_index(int(np.argmin(err)), err.shape)
            if err[i, j] < best[0]:
                best = (float(err[i, j]), float(fs[i]), float(bs[j]), float(la))
        return best

    t_min = float(t.min())
    launches = np.concatenate([[0.0], t_min * np.geomspace(1e-2, 1.0, 15)])
    _, f1, b1, l1 = grid(f_hi, b_hi, 8.0, 31, launches)
    launches2 = np.concatenate([[0.0], l1 * np.geomspace(0.7, 1.4, 9)]) if l1 > 0 else launches
    _, f2, b2, l2 = grid(f1, b1, 8.0 ** (2 / 30), 11, launches2)
    return RooflineFit(f2, b2, l2, int(t.size))


def _fit_nonneg(features: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative least squares in relative error (rows weighted 1/t), by trying every column subset."""
    a = features / t[:, None]
    y = np.ones_like(t)
    best, best_err = np.zeros(features.shape[1]), np.inf
    cols = range(features.shape[1])
    for mask in range(1, 1 << features.shape[1]):
        idx = [c for c in cols if mask >> c & 1]
        coef, *_ = np.linalg.lstsq(a[:, idx], y, rcond=None)
        if np.any(coef < 0):
            continue
        err = float(np.sum((a[:, idx] @ coef - y) ** 2))
        if err < best_err:
            best_err = err
            best = np.zeros(features.shape[1])
            best[idx] = coef
    return best


@dataclass(frozen=True)
class LinearFit:
    """t = Σ coef_i · feature_i (non-negative), fitted in relative error."""

    coef: tuple[float, ...]
    num_rows: int

    def seconds(self, *features: float) -> float:
        return sum(c * f for c, f in zip(self.coef, features))


# ---------------------------------------------------------------------------------------------- the table fit
def _family(op: str) -> str:
    if op in GEMM_OPS:
        return "gemm"
    if op in ATTENTION_OPS:
        return "attention"
    if op in ELEMENTWISE_OPS:
        return "elementwise"
    if op in COLLECTIVE_OPS:
        return "collective"
    return "other"  # rows other tools add (e.g. the executor's overhead): not scored here


@dataclass
class ProfileFit:
    """Interpolation curves and fallback fits of one device's rows (fastest impl per shape)."""

    device: str
    curves: dict[tuple, _Curve] = field(default_factory=dict)
    roofline: dict[tuple[str, str], RooflineFit] = field(default_factory=dict)  # (family or op, dtype)
    # (dtype, decode | prefill | chunk | all) -> t = c·[1, seqs, flops, bytes]
    attention_fit: dict[tuple[str, str], LinearFit] = field(default_factory=dict)
    alpha_beta: dict[tuple[str, int], LinearFit] = field(default_factory=dict)  # (op, world) -> [1, bytes]
    dtypes: frozenset[str] = frozenset()

    @classmethod
    def from_frame(cls, df: pd.DataFrame, device: str | None = None) -> "ProfileFit":
        df = select_device(df, device)
        dev = str(df["device"].iloc[0]) if len(df) else (device or "")
        df = fastest_impl(df)
        fit = cls(device=dev)
        recs = df.to_dict("records")
        points: dict[tuple, dict[float, dict[float, tuple[float, tuple[float, float, float]]]]] = {}
        for r in recs:
            if r["op"] == "attention_prefill":
                r["pairs"] = _pairs_of(r)
            g = _group_and_xy(r["op"], r)
            if g is None or r["median_s"] <= 0:
                continue
            key, y, x = g
            if x <= 0:
                continue
            work = (float(r["flops"]), float(r["bytes"]), float(r["num_seqs"]))
            points.setdefault(key, {}).setdefault(y, {})[x] = (float(r["median_s"]), work)
            if r["op"] == "gemm" and x == int(x):  # and on the curve of its m's alignment class
                points.setdefault((*key, gemm_alignment(int(x))), {}).setdefault(y, {})[x] = (float(r["median_s"]),
                                                                                             work)
        fit.curves = {k: _Curve(v) for k, v in points.items()}
        fit.dtypes = frozenset(df.loc[~df["op"].isin(COLLECTIVE_OPS), "dtype"].unique().tolist())
        for dtype, sub in df.groupby("dtype"):
            for fam_key, ops in (("gemm", GEMM_OPS), *((op, (op,)) for op in ELEMENTWISE_OPS)):
                s = sub[sub["op"].isin(ops) & (sub["median_s"] > 0)]
                if len(s) >= 2:
                    fit.roofline[(fam_key, dtype)] = fit_roofline(s["flops"].to_numpy(), s["bytes"].to_numpy(),
                                                                  s["median_s"].to_numpy())
            att = sub[sub["op"].isin(ATTENTION_OPS) & (sub["median_s"] > 0)]
            kinds = {"all": att, "decode": att[att["op"] == "attention_decode"],
                     "prefill": att[(att["op"] == "attention_prefill") & (att["context_len"] == 0)],
                     "chunk": att[(att["op"] == "attention_prefill") & (att["context_len"] > 0)]}
            for kind, s in kinds.items():
                if len(s) >= 3:
                    feats = np.stack([np.ones(len(s)), s["num_seqs"].to_numpy(float), s["flops"].to_numpy(float),
                                      s["bytes"].to_numpy(float)], axis=1)
                    fit.attention_fit[(dtype, kind)] = LinearFit(
                        tuple(_fit_nonneg(feats, s["median_s"].to_numpy(float))), len(s))
        coll = df[df["op"].isin(COLLECTIVE_OPS) & (df["median_s"] > 0)]
        for (op, world), s in coll.groupby(["op", "world_size"]):
            if len(s) >= 2:
                feats = np.stack([np.ones(len(s)), s["size_bytes"].to_numpy(float)], axis=1)
                fit.alpha_beta[(op, int(world))] = LinearFit(tuple(_fit_nonneg(feats, s["median_s"].to_numpy(float))),
                                                             len(s))
        return fit

    # ---- queries: (seconds, source) or None when nothing in the table covers the op ------------------
    def _interp(self, op: str, r: dict) -> tuple[float, str] | None:
        g = _group_and_xy(op, r)
        if g is None:
            return None
        curve = self.curves.get(g[0])
        if curve is None:
            return None
        hit = curve.query(g[1], g[2])
        if hit is None:
            return None
        return hit[0], ("measured" if hit[1] else "interpolated")

    def _anchored(self, op: str, r: dict, model, flops: float, nbytes: float, num_seqs: float) -> float:
        """Fitted model scaled to the nearest measurement of the same group, when the group exists:
        t = t_near · model(query) / model(near), so the fit supplies only the trend beyond the range."""
        t = model(flops, nbytes, num_seqs)
        g = _group_and_xy(op, r)
        curve = self.curves.get(g[0]) if g else None
        if curve is None:
            return t
        t_near, (fl, by, ns) = curve.nearest(g[1], g[2])
        base = model(fl, by, ns)
        return t_near * t / base if base > 0 and t > 0 else t

    def gemm(self, m: float, n: int, k: int, dtype: str) -> tuple[float, str] | None:
        """Seconds of one GEMM: interpolated between measured m's of the same alignment class
        (`gemm_alignment`) where they bracket m, else between all measured m's; fitted beyond them."""
        if m == int(m) and m >= 1:
            curve = self.curves.get(("gemm", dtype, n, k, gemm_alignment(int(m))))
            hit = curve.query(1.0, float(m)) if curve is not None else None
            if hit is not None:
                return hit[0], ("measured" if hit[1] else "interpolated")
        got = self._interp("gemm", {"dtype": dtype, "n": n, "k": k, "m": m})
        if got:
            return got
        rf = self.roofline.get(("gemm", dtype))
        if rf is None:
            return None
        fl, by = gemm_work(m, n, k, dtype_bytes(dtype))
        r = {"dtype": dtype, "n": n, "k": k, "m": m}
        return self._anchored("gemm", r, lambda f, b, _s: rf.seconds(f, b), fl, by, 1.0), "fitted"

    def elementwise(self, op: str, num_tokens: float, dtype: str, hidden: int = 0, num_heads: int = 0,
                    head_dim: int = 0) -> tuple[float, str] | None:
        r = {"dtype": dtype, "hidden": hidden, "num_tokens": num_tokens, "num_heads": num_heads, "head_dim": head_dim}
        got = self._interp(op, r)
        if got:
            return got
        rf = self.roofline.get((op, dtype))
        if rf is None:
            return None
        width = hidden if op != "rope" else num_heads * head_dim
        fl, by = elementwise_work(op, num_tokens, width, dtype_bytes(dtype))
        return self._anchored(op, r, lambda f, b, _s: rf.seconds(f, b), fl, by, 1.0), "fitted"

    def attention(self, dtype: str, heads: int, kv_heads: int, head_dim: int, num_seqs: int, num_tokens: int,
                  pairs: float, kv_read: float, phase: str) -> tuple[float, str] | None:
        """phase: 'decode' (one new token per sequence), 'prefill' (no decodes) or 'mixed'.

        A prefill whose KV reads exceed its new tokens has cached context (chunked prefill): it is read
        off the chunk curve when the table has one, else off the whole-prompt curve.
        """
        base = {"dtype": dtype, "num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim,
                "num_seqs": num_seqs}
        op, r = None, None
        if phase == "decode":
            op, r = "attention_decode", {**base, "context_len": kv_read / max(1, num_seqs)}
        elif phase == "prefill":
            op, r = "attention_prefill", {**base, "pairs": pairs, "context_len": int(kv_read > num_tokens)}
            if _group_and_xy(op, r)[0] not in self.curves:
                r["context_len"] = 0  # no chunk rows in this table: the whole-prompt curve
        if op is not None:
            got = self._interp(op, r)
            if got:
                return got
        kind = "decode" if phase == "decode" else ("all" if op is None else
                                                    ("chunk" if r["context_len"] else "prefill"))
        lf = self.attention_fit.get((dtype, kind)) or self.attention_fit.get((dtype, "all"))
        if lf is None:
            return None
        fl, by = attention_work(pairs, num_tokens, kv_read, heads, kv_heads, head_dim, dtype_bytes(dtype))
        model = lambda f, b, s: lf.seconds(1.0, s, f, b)  # noqa: E731
        if op is None:
            return model(fl, by, num_seqs), "fitted"
        return self._anchored(op, r, model, fl, by, num_seqs), "fitted"

    def collective(self, op: str, size_bytes: float, world_size: int) -> tuple[float, str] | None:
        r = {"world_size": world_size, "size_bytes": size_bytes}
        got = self._interp(op, r)
        if got:
            return got
        ab = self.alpha_beta.get((op, world_size))
        if ab is None:
            return None
        return self._anchored(op, r, lambda _f, b, _s: ab.seconds(1.0, b), 0.0, size_bytes, 1.0), "fitted"

    def predict_row(self, r: dict) -> tuple[float, str] | None:
        """Predict one table row from this fit (what fit-report scores on held-out rows)."""
        op, dtype = r["op"], r["dtype"]
        if op == "gemm":
            return self.gemm(r["m"], r["n"], r["k"], dtype)
        if op in ELEMENTWISE_OPS:
            return self.elementwise(op, r["num_tokens"], dtype, hidden=r["hidden"], num_heads=r["num_heads"],
                                    head_dim=r["head_dim"])
        if op == "attention_decode":
            b = int(r["num_seqs"])
            kv = float(b * r["context_len"])
            return self.attention(dtype, r["num_heads"], r["num_kv_heads"], r["head_dim"], b, b, kv, kv, "decode")
        if op == "attention_prefill":
            b = max(1, int(r["num_seqs"]))
            kv = float(r["num_tokens"] + b * r["context_len"])
            return self.attention(dtype, r["num_heads"], r["num_kv_heads"], r["head_dim"], b, int(r["num_tokens"]),
                                  _pairs_of(r), kv, "prefill")
        if op in COLLECTIVE_OPS:
            return self.collective(op, r["size_bytes"], int(r["world_size"]))
        return None


def select_device(df: pd.DataFrame, device: str | None = None) -> pd.DataFrame:
    """Rows of one device: `device` if given, else the table's only device (or the one with most rows)."""
    if df.empty:
        return df
    if device is not None:
        sub = df[df["device"] == device]
        if sub.empty:
            raise UserError(f"profile device = {device!r}: not in the table; it has {sorted(df['device'].unique())}")
        return sub
    counts = df["device"].value_counts()
    best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]  # most rows; ties by name (deterministic)
    return df[df["device"] == best]


def fastest_impl(df: pd.DataFrame) -> pd.DataFrame:
    """One row per shape: the fastest implementation measured (what a deployment would run)."""
    if df.empty:
        return df
    shape_key = [c for c in KEY_COLUMNS if c != "impl"]
    return df.sort_values("median_s", kind="stable").drop_duplicates(subset=shape_key, keep="first")


# ---------------------------------------------------------------------------------------------- error report
def fit_report(df: pd.DataFrame, holdout: float = 0.2, seed: int = 0, device: str | None = None) -> pd.DataFrame:
    """Train on (1 − holdout) of the rows, predict the rest: abs relative error per family and overall.

    Columns: family, num_train, num_test (scored), median_abs_rel_err, p90_abs_rel_err, and how many held-out
    rows were interpolated, fitted, or left unpredicted. The split is seeded and stratified per op.
    """
    df = fastest_impl(select_device(df, device))
    df = df[df["op"].isin(ALL_OPS)].reset_index(drop=True)
    if not 0 < holdout < 1:
        raise UserError(f"holdout = {holdout}: must be in (0, 1)")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(df), dtype=bool)
    fam = df["op"].map(_family)
    for _, idx in sorted(df.groupby("op").groups.items()):  # stratified per op: every op keeps training rows
        idx = np.asarray(list(idx))
        n_test = int(round(len(idx) * holdout))
        if len(idx) >= 5 and n_test > 0:
            test[rng.choice(idx, size=n_test, replace=False)] = True
    fit = ProfileFit.from_frame(df[~test], device=None)
    out = []
    for r in df[test].to_dict("records"):
        got = fit.predict_row(r)
        if got is None:  # nothing left in training covers it: counted, not scored
            out.append({"family": _family(r["op"]), "op": r["op"], "source": "none", "rel_err": np.nan})
            continue
        out.append({"family": _family(r["op"]), "op": r["op"], "source": got[1],
                    "rel_err": abs(got[0] - r["median_s"]) / r["median_s"]})
    res = pd.DataFrame(out, columns=["family", "op", "source", "rel_err"])
    rows = []
    train_counts = fam[~test].value_counts()
    for name, sub in [*res.groupby("family"), ("all", res)]:
        scored = sub["rel_err"].dropna()
        rows.append({"family": name,
                     "num_train": int(train_counts.get(name, 0)) if name != "all" else int((~test).sum()),
                     "num_test": int(len(scored)),
                     "median_abs_rel_err": float(scored.median()) if len(scored) else float("nan"),
                     "p90_abs_rel_err": float(scored.quantile(0.9)) if len(scored) else float("nan"),
                     "num_interpolated": int(sub["source"].isin(("measured", "interpolated")).sum()),
                     "num_fitted": int((sub["source"] == "fitted").sum()),
                     "num_unpredicted": int((sub["source"] == "none").sum())})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- cost model
class ProfiledCostModel:
    """CostModel from a profile table, roofline fallback outside it. Pure; caches per shape.

    Attention is priced as its prefill part (interpolated on prefill rows by sequences and query-key
    pairs) plus its decode part (on decode rows by sequences and KV entries read). NOTE: that is two
    kernels, as the torch executor and FlashInfer-style engines run them; a fused varlen kernel saves
    one launch. `device` picks the table's device when it holds several (default: the one with most rows).
    """

    _ATTN_CACHE_MAX = 200_000

    def __init__(self, profile_path: str | Path, model: ModelSpec, gpu: GPUSpec, parallel: ParallelConfig,
                 quant: QuantConfig, hardware: HardwareConfig = HardwareConfig(), device: str | None = None):
        check_layout(model, parallel)
        df, self.runs = read_profile(profile_path)
        if df.empty:
            raise UserError(f"profile = {str(profile_path)!r}: the table has no rows")
        self.model, self.gpu, self.parallel, self.quant, self.hardware = model, gpu, parallel, quant, hardware
        self.fit = ProfileFit.from_frame(df, device)
        if self.fit.dtypes and quant.dtype not in self.fit.dtypes:
            raise UserError(f"quant.dtype = {quant.dtype!r}: profile {str(profile_path)!r} has no kernels measured "
                            f"at that dtype; it has {', '.join(sorted(self.fit.dtypes))} (set quant.dtype to one "
                            "of them, or profile this dtype with `llmsim profile --dtype`)")
        self.roofline = RooflineCostModel(model, gpu, parallel, quant, hardware)
        self.native_dtypes = frozenset(gpu.peak_flops_per_s)
        self.shapes = op_shapes(model, parallel.tp)
        self.formats = Formats.of(quant, self.native_dtypes)
        self.layers_per_stage = model.num_layers // parallel.pp
        self._pp1 = parallel.pp == 1
        self._tok_cache: dict[int, tuple[float, float, float, float]] = {}
        self._logit_cache: dict[int, float] = {}
        self._attn_cache: dict[tuple[int, ...], float] = {}
        self.left_out: frozenset[str] = frozenset()  # op names priced elsewhere (`without`)
        sh = self.shapes
        # Hot path: this model's attention curves, looked up once.
        self._decode_curve = self.fit.curves.get(("attention_decode", quant.dtype, sh.heads, sh.kv_heads, sh.head_dim))
        prefill_key = ("attention_prefill", quant.dtype, sh.heads, sh.kv_heads, sh.head_dim)
        self._prefill_curve = self.fit.curves.get((*prefill_key, False))
        self._chunk_curve = self.fit.curves.get((*prefill_key, True)) or self._prefill_curve

    def without(self, names) -> "ProfiledCostModel":
        """A copy that leaves the operators `names` (e.g. "embedding", "sampling") out of every pass: for a
        cost model whose caller adds a measured term that already holds them (the executor's glue)."""
        out = copy.copy(self)
        out.left_out = self.left_out | frozenset(names)
        out._tok_cache, out._logit_cache = {}, {}
        return out

    # ---- one operator ----------------------------------------------------------------------------
    def op_seconds(self, op: Op, num_tokens: int, num_logits: int) -> tuple[float, str]:
        """(seconds of one call, source) of a non-attention operator."""
        got = None
        sh, f = self.shapes, self.formats
        if op.comm is not None:
            kind, nbytes, n, _ = op.comm
            name = _COMM_OP.get(kind)
            if name is not None:
                got = self.fit.collective(name, nbytes, n)
            if got is None:
                return self.roofline.op_seconds(op), "alpha-beta"
            return got
        if op.kind == "gemm" and op.name in sh.gemms and not f.weight_only:
            k, n = sh.gemms[op.name]
            m = num_logits if op.name == "lm_head" else num_tokens
            got = self.fit.gemm(m, n, k, op.compute_dtype)
        elif op.name in ("input_norm", "post_attn_norm", "final_norm") and self.model.norm == "rmsnorm":
            got = self.fit.elementwise("rmsnorm", num_tokens, self.quant.dtype, hidden=sh.hidden)
        elif op.name == "mlp_act" and sh.ffn_local:
            got = self.fit.elementwise("swiglu", num_tokens, self.quant.dtype, hidden=sh.ffn_local)
        elif op.name == "rope" and sh.rope_heads:
            got = self.fit.elementwise("rope", num_tokens, self.quant.dtype, num_heads=sh.rope_heads,
                                       head_dim=sh.head_dim)
        if got is None:
            return self.roofline.op_seconds(op), "roofline"
        return got

    def _attention_part(self, phase: str, num_seqs: int, num_tokens: int, pairs: int, kv_read: int,
                        shape: BatchShape) -> tuple[float, str]:
        if phase == "decode":
            curve = self._decode_curve
        else:  # chunks on cached context (kv reads beyond the new tokens) have their own rows
            curve = self._chunk_curve if kv_read > num_tokens else self._prefill_curve
        if curve is not None:  # fast path of ProfileFit.attention: inside the measured range
            hit = curve.query(num_seqs, kv_read if phase == "decode" else pairs)
            if hit is not None:
                return hit[0], ("measured" if hit[1] else "interpolated")
        sh = self.shapes
        got = self.fit.attention(self.quant.dtype, sh.heads, sh.kv_heads, sh.head_dim, num_seqs, num_tokens, pairs,
                                 kv_read, phase)
        if got is not None:
            return got
        part = next(op for op in attention_ops(self.model, self.parallel, self.quant, shape)
                    if op.name == f"attention_{phase}")
        return self.roofline.op_seconds(part), "roofline"

    def attention_parts(self, shape: BatchShape) -> list[tuple[str, float, str]]:
        """(part, seconds of one layer on one GPU, source) for the prefill and decode parts present."""
        parts = []
        if shape.num_prefill_tokens > 0:
            s, src = self._attention_part("prefill", shape.num_prefill_seqs, shape.num_prefill_tokens,
                                          shape.attn_pairs - shape.decode_attn_pairs,
                                          shape.kv_read_tokens - shape.decode_kv_read_tokens, shape)
            parts.append(("attention_prefill", s, src))
        if shape.num_decode_tokens > 0:
            s, src = self._attention_part("decode", shape.num_decode_tokens, shape.num_decode_tokens,
                                          shape.decode_attn_pairs, shape.decode_kv_read_tokens, shape)
            parts.append(("attention_decode", s, src))
        return parts

    def attention_seconds(self, shape: BatchShape) -> float:
        """Seconds of one layer's attention on one GPU (prefill part + decode part), cached per shape.

        NOTE: the cache maps int tuples to floats, objects CPython's cyclic GC does not track, so a
        large cache costs no GC time on the hot path.
        """
        key = shape.key()
        v = self._attn_cache.get(key)
        if v is None:
            v = 0.0
            for _, s, _ in self.attention_parts(shape):
                v += s
            if len(self._attn_cache) >= self._ATTN_CACHE_MAX:
                self._attn_cache.clear()
            self._attn_cache[key] = v
        return v

    # ---- token- and logit-dependent parts, cached ------------------------------------------------------
    def _token_part(self, num_tokens: int) -> tuple[float, float, float, float]:
        """(every-layer seconds of one stage, first-stage extras, last-stage extras, p2p) for num_tokens."""
        parts = {"layer": 0.0, "first": 0.0, "last": 0.0, "p2p": 0.0}
        for op in token_ops(self.model, self.parallel, self.quant, num_tokens, 0, self.native_dtypes):
            if op.name not in self.left_out:
                parts[op.placement] += self.op_seconds(op, num_tokens, 0)[0] * op.count
        return parts["layer"], parts["first"], parts["last"], parts["p2p"]

    def _logit_part(self, num_logits: int) -> float:
        return sum(self.op_seconds(op, 0, num_logits)[0] * op.count
                   for op in logit_ops(self.model, self.parallel, self.quant, num_logits, self.native_dtypes)
                   if op.name not in self.left_out)

    def _tokens(self, num_tokens: int) -> tuple[float, float, float, float]:
        v = self._tok_cache.get(num_tokens)
        if v is None:
            v = self._tok_cache[num_tokens] = self._token_part(num_tokens)
        return v

    # ---- CostModel protocol -------------------------------------------------------------------------
    def stage_seconds(self, shape: BatchShape) -> float:
        """Seconds the slowest pipeline stage is busy with this micro-batch (whole model when pp=1)."""
        T = shape.num_tokens
        if T <= 0:
            return 0.0
        v = self._tokens(T)
        lg = self._logit_cache.get(shape.num_logits)
        if lg is None:
            lg = self._logit_cache[shape.num_logits] = self._logit_part(shape.num_logits)
        last = v[2] + lg
        extra = v[1] + last if self._pp1 else (v[1] if v[1] > last else last)
        return v[0] + extra + self.layers_per_stage * self.attention_seconds(shape)

    def p2p_seconds(self, shape: BatchShape) -> float:
        if self._pp1 or shape.num_tokens <= 0:
            return 0.0
        return self._tokens(shape.num_tokens)[3]

    def step_cost(self, shape: BatchShape) -> StepCost:
        """Per-operator breakdown with each op's source; total_s is one pass through all stages."""
        if shape.num_tokens <= 0:
            return StepCost(total_s=0.0, stage_s=0.0, ops=())
        pp = self.parallel.pp
        ops: list[OpCost] = []
        total = 0.0
        attn = {name: (s, src) for name, s, src in self.attention_parts(shape)}
        for op in ops_for(self.model, self.parallel, self.quant, shape, self.native_dtypes):
            if op.name in self.left_out:
                continue
            n = op.count * (pp if op.placement == "layer" else (pp - 1 if op.placement == "p2p" else 1))
            if op.kind == "attention":
                s1, src = attn[op.name]
            else:
                s1, src = self.op_seconds(op, shape.num_tokens, shape.num_logits)
            total += s1 * n
            ops.append(OpCost(op.name, op.kind, s1 * n, flops=op.flops * n, bytes=op.bytes * n, count=n, source=src))
        return StepCost(total_s=total, stage_s=self.stage_seconds(shape), ops=tuple(ops))
