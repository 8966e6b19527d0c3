"""Writing the profile table: tidy rows (schema in hwmodels.profiled), appended to a parquet file.

`KEY_COLUMNS` identify a measurement (shape columns are 0 where they do not apply). Run metadata
(device, driver, versions, date, host, timing method) is a JSON list under the `llmsim` key of the
parquet schema metadata, one entry per run that added rows. Appending never overwrites: rows whose
key is already in the file are kept as they were, so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hwmodels.profiled import COLUMNS, KEY_COLUMNS, META_KEY, SHAPE_COLUMNS, read_profile, typed_frame

TABLE_VERSION = 1


def row(device: str, op: str, impl: str, dtype: str, median_s: float, p10_s: float, p90_s: float,
        num_samples: int, flops: float = 0.0, nbytes: float = 0.0, name: str = "", measured_at: str = "",
        algbw_bytes_per_s: float = 0.0, busbw_bytes_per_s: float = 0.0, **shape: int) -> dict:
    """One table row; an unknown shape key is an error (a typo would silently become a new key)."""
    bad = set(shape) - set(SHAPE_COLUMNS)
    if bad:
        raise ValueError(f"unknown shape columns {sorted(bad)}; allowed: {SHAPE_COLUMNS}")
    out = {"device": device, "op": op, "impl": impl, "dtype": dtype}
    out.update({c: int(shape.get(c, 0)) for c in SHAPE_COLUMNS})
    out.update(name=name, median_s=float(median_s), p10_s=float(p10_s), p90_s=float(p90_s),
               num_samples=int(num_samples), flops=float(flops), bytes=float(nbytes),
               flops_per_s=float(flops / median_s) if median_s > 0 else 0.0,
               bytes_per_s=float(nbytes / median_s) if median_s > 0 else 0.0,
               algbw_bytes_per_s=float(algbw_bytes_per_s), busbw_bytes_per_s=float(busbw_bytes_per_s),
               measured_at=measured_at)
    return out


def key_of(r: dict) -> tuple:
    return tuple(r[c] for c in KEY_COLUMNS)


def existing_keys(path: str | Path) -> set[tuple]:
    """Keys already measured in `path` (empty if the file does not exist yet)."""
    if not Path(path).exists():
        return set()
    df, _ = read_profile(path)
    return set(df[list(KEY_COLUMNS)].itertuples(index=False, name=None))


def append_rows(path: str | Path, rows: Iterable[dict], run_meta: dict) -> int:
    """Append the rows whose key is new; returns how many. Atomic: temp file, then rename."""
    p = Path(path)
    new = pd.DataFrame(list(rows), columns=list(COLUMNS))
    if new.empty:
        return 0
    old, runs = read_profile(p) if p.exists() else (None, [])
    new = typed_frame(new).drop_duplicates(subset=list(KEY_COLUMNS), keep="first")
    if old is not None and len(old):
        seen = set(old[list(KEY_COLUMNS)].itertuples(index=False, name=None))
        fresh = [k not in seen for k in new[list(KEY_COLUMNS)].itertuples(index=False, name=None)]
        new = new[fresh]
        if new.empty:
            return 0
        df = pd.concat([old, new], ignore_index=True)
    else:
        df = new.reset_index(drop=True)
    runs = [*runs, {**run_meta, "rows_added": int(len(new)), "table_version": TABLE_VERSION}]
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {**(table.schema.metadata or {}), META_KEY: json.dumps({"runs": runs}).encode()}
    table = table.replace_schema_metadata(meta)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, p)
    return int(len(new))
