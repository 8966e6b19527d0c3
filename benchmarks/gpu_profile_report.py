"""Triton vs torch (cuBLAS / SDPA / eager) on a CUDA profile table, per op: the ratio of medians.

    python benchmarks/gpu_profile_report.py profiles/h200-llama-3.1-8b-bf16.parquet

The table is the one `bash benchmarks/gpu_session.sh` wrote on a lent GPU. Each shape is timed with
both implementations on the same seeded inputs (`profiler/sweep.py`), so the ratio is per shape;
ratio > 1 means the project's Triton kernel is slower than the torch path. Also prints the best
achieved GEMM rate and copy-like bandwidth, against the datasheet figures the catalog uses.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwmodels.profiled import read_profile  # noqa: E402

TIMING = {"impl", "median_s", "p10_s", "p90_s", "num_samples", "flops_per_s", "bytes_per_s", "algbw_bytes_per_s",
          "busbw_bytes_per_s", "measured_at", "name"}


def ratios(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in df.columns if c not in TIMING]
    wide = df.set_index(keys + ["impl"]).median_s.unstack("impl").dropna(subset=["triton", "torch"])
    wide["ratio"] = wide["triton"] / wide["torch"]
    g = wide.groupby(level="op")["ratio"]
    return pd.DataFrame({"shapes": g.size(), "p10": g.quantile(0.1), "median": g.median(), "p90": g.quantile(0.9)})


def main(path: str) -> None:
    df, runs = read_profile(path)
    df = df[df["impl"].isin(["triton", "torch"])]
    print(f"{path}: {len(df)} rows, device(s) {sorted(set(df['device']))}, runs {len(runs)}")
    print("triton / torch median time, per shape:")
    print(ratios(df).round(2).to_string())
    for op, col, unit in (("gemm", "flops_per_s", "TFLOP/s"), ("rmsnorm", "bytes_per_s", "TB/s")):
        sub = df[df["op"] == op]
        if len(sub):
            best = sub.loc[sub[col].idxmax()]
            print(f"best {op}: {best[col] / 1e12:.0f} {unit} ({best['impl']}, m={best.get('m')}, n={best.get('n')}, "
                  f"k={best.get('k')}, tokens={best.get('num_tokens')})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "profiles/h200-llama-3.1-8b-bf16.parquet")
