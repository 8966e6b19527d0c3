"""Trace loaders: real request traces → Workload.

Formats (detected from the header or first JSON line when format='auto'; extra columns are ignored):
  azure     CSV `TIMESTAMP,ContextTokens,GeneratedTokens`, absolute `YYYY-MM-DD HH:MM:SS.fffffff`
            (Azure LLM inference trace 2023, Splitwise ISCA'24; an ISO-8601 offset is converted to UTC)
  mooncake  JSONL `timestamp` (ms), `input_length`, `output_length`, optional `hash_ids` (512-token
            prefix-block ids, kept for prefix caching) (Mooncake FAST'25)
  lengths   CSV `num_prefill_tokens,num_decode_tokens[,...]` (Vidur/etalon); arrivals are synthetic
  plain     CSV or JSONL `arrival_s,input_tokens,output_tokens` (JSONL may add `hash_ids`)

Policy for imperfect files, chosen so that a replay never silently differs from the file:
  * a bad cell, missing field, wrong field count, bad JSON → UserError `file:line:col (column X): ...`;
    CSV col is the 1-based field number, JSON col the character where the field's key starts;
  * negative lengths → error; a length of 0 (real traces have a few zero outputs) is set to 1, since a
    request holds at least one token, and the count is put in Workload.notes;
  * rows out of time order are sorted stably by arrival (what a replay has to do anyway) and a note
    says how many and where the first one is; request ids follow the sorted order.
Fast path: pandas/json vectorised parse; only if it fails does a line-by-line pass run, to find the
first bad line (and to parse files the fast path cannot, e.g. quoted oddities).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwmodels.errors import UserError
from simulator.config import ArrivalConfig
from simulator.workload import Workload, _describe_arrival, synthetic_arrivals


@dataclass(frozen=True)
class TraceFormat:
    name: str
    time_col: str | None  # None: lengths only
    input_col: str
    output_col: str
    time_unit_s: float  # seconds per unit of time_col (0 = timestamp strings)
    json: bool  # rows are JSON objects (False: CSV)


AZURE = TraceFormat("azure", "TIMESTAMP", "ContextTokens", "GeneratedTokens", 0.0, json=False)
MOONCAKE = TraceFormat("mooncake", "timestamp", "input_length", "output_length", 1e-3, json=True)
LENGTHS = TraceFormat("lengths", None, "num_prefill_tokens", "num_decode_tokens", 1.0, json=False)
PLAIN_CSV = TraceFormat("plain", "arrival_s", "input_tokens", "output_tokens", 1.0, json=False)
PLAIN_JSONL = TraceFormat("plain", "arrival_s", "input_tokens", "output_tokens", 1.0, json=True)
CSV_FORMATS = (AZURE, LENGTHS, PLAIN_CSV)
JSON_FORMATS = (MOONCAKE, PLAIN_JSONL)
HASH_COL = "hash_ids"
MAX_TOKENS = 1_000_000_000  # sanity bound on one request's length (and keeps int64 sums safe)


def _columns(fmt: TraceFormat) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for c in (fmt.time_col, fmt.input_col, fmt.output_col) if c))


def _expected(formats: tuple[TraceFormat, ...]) -> str:
    return "; ".join(f"{f.name} ({', '.join(_columns(f))}{', [hash_ids]' if f.json else ''})"
                     for f in formats)


_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?")


class _BadCell(Exception):
    """A cell that failed validation; the caller adds file, line and column."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


# ---- cell validators (the slow path) ----------------------------------------------------------------


def _int_cell(v: Any) -> int:
    """A non-negative integer from a CSV string or JSON value (an integral float such as 12.0 is accepted)."""
    if isinstance(v, str):
        s = v.strip()
        try:
            x = int(s)
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                raise _BadCell(f"{v!r} is not a non-negative integer") from None
            if not (math.isfinite(f) and f.is_integer()):
                raise _BadCell(f"{v!r} is not a non-negative integer") from None
            x = int(f)
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _BadCell(f"{v!r} is not a non-negative integer")
    elif isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            raise _BadCell(f"{v!r} is not a non-negative integer")
        x = int(v)
    else:
        x = v
    if x < 0:
        raise _BadCell(f"{v!r} is not a non-negative integer (lengths are token counts)")
    if x > MAX_TOKENS:
        raise _BadCell(f"{v!r} is more than {MAX_TOKENS:,} tokens; is this column a length?")
    return x


def _num_cell(v: Any) -> float:
    """A finite number (arrival time)."""
    if isinstance(v, bool):
        raise _BadCell(f"{v!r} is not a number")
    try:
        x = float(v.strip() if isinstance(v, str) else v)
    except (TypeError, ValueError):
        raise _BadCell(f"{v!r} is not a number") from None
    if not math.isfinite(x):
        raise _BadCell(f"{v!r} is not a finite number")
    return x


def _json_int_cell(v: Any) -> int:
    if isinstance(v, str):
        raise _BadCell(f"{v!r} is not a non-negative integer (a JSON string; write the number unquoted)")
    return _int_cell(v)


def _json_num_cell(v: Any) -> float:
    if isinstance(v, str):
        raise _BadCell(f"{v!r} is not a number (a JSON string; write the number unquoted)")
    return _num_cell(v)


def _time_cell(v: str) -> int:
    """Nanoseconds since the epoch (UTC) from an ISO-8601 timestamp string."""
    s = v.strip()
    if not _ISO_RE.fullmatch(s):
        raise _BadCell(f"{v!r} is not a timestamp 'YYYY-MM-DD HH:MM:SS[.fffffff]'")
    try:
        ts = pd.Timestamp(s)
    except ValueError as exc:
        raise _BadCell(f"{v!r} is not a valid timestamp ({exc})") from None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value)


def _hash_cell(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list):
        raise _BadCell(f"{_short(v)} is not a list of non-negative integers")
    for i, h in enumerate(v):
        if type(h) is not int or h < 0:
            raise _BadCell(f"element {i} = {h!r} is not a non-negative integer")
    return tuple(v)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


# ---- reading ------------------------------------------------------------------------------------


@dataclass
class _Rows:
    """Parsed columns before clamping and sorting. times: seconds, or int64 ns for timestamp strings."""

    times: np.ndarray | None
    inp: np.ndarray
    out: np.ndarray
    hash_ids: list[tuple[int, ...]] | None
    lines: np.ndarray | None = None  # file line of each row, when known (slow path)


def _read_text(p: Path) -> str:
    if not p.exists():
        raise UserError(f"trace file {p}: not found")
    if not p.is_file():
        raise UserError(f"trace file {p}: not a regular file")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"trace file {p}: not UTF-8 text (byte {exc.start}); expected a CSV or JSONL "
                        "trace") from None
    except OSError as exc:
        raise UserError(f"trace file {p}: cannot read ({exc.strerror})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _first_line(text: str) -> tuple[int, str]:
    """(line number, text) of the first non-blank line; (0, '') if there is none."""
    start, lineno = 0, 1
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if text[start:end].strip():
            return lineno, text[start:end]
        start, lineno = end + 1, lineno + 1
    return 0, ""


def detect_format(p: Path, text: str, fmt: str = "auto") -> TraceFormat:
    """The format of a trace from its header (CSV) or first object (JSONL); `fmt` forces one."""
    lineno, first = _first_line(text)
    if not first:
        raise UserError(f"trace file {p}: empty; expected a CSV with a header or JSONL rows: "
                        f"{_expected(CSV_FORMATS + JSON_FORMATS)}")
    is_json = first.lstrip().startswith("{")
    if is_json:
        try:
            obj = json.loads(first)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{p}:{lineno}: expected a JSON object per line")
        names, candidates = set(obj), JSON_FORMATS
    else:
        names, candidates = {c.strip() for c in next(csv.reader([first]))}, CSV_FORMATS
    if fmt != "auto":
        matching = [f for f in candidates if f.name == fmt]
        if not matching:
            kind = "JSONL" if is_json else "CSV"
            raise UserError(f"trace file {p}: format {fmt!r} is not a {kind} format; {kind} formats: "
                            f"{_expected(candidates)}")
        missing = [c for c in _columns(matching[0]) if c not in names]
        if missing:
            raise UserError(f"{p}:{lineno}: {fmt} trace lacks column(s) {', '.join(missing)}; found "
                            f"{', '.join(sorted(names))}; expected {_expected(tuple(matching))}")
        return matching[0]
    for f in candidates:
        if all(c in names for c in _columns(f)):
            return f
    what = "JSON keys" if is_json else "header"
    raise UserError(f"{p}:{lineno}: {what} {', '.join(sorted(names)) or '(none)'} match(es) no known trace "
                    f"format; expected one of: {_expected(CSV_FORMATS + JSON_FORMATS)}")


def _as_lengths(col: pd.Series) -> np.ndarray | None:
    """A pandas column as int64 non-negative lengths, or None if it needs the slow path."""
    v = col.to_numpy()
    if v.dtype.kind not in "iuf" or len(v) == 0:
        return None
    if v.dtype.kind == "f" and not (np.all(np.isfinite(v)) and np.all(v == np.rint(v))):
        return None
    if v.min() < 0 or v.max() > MAX_TOKENS:
        return None
    return v.astype(np.int64)


def _csv_fast(text: str, fmt: TraceFormat) -> _Rows | None:
    if '"' in text:
        return None  # quoting: let the csv module read it
    lines = [ln for ln in text.split("\n") if ln.strip()]
    commas = lines[0].count(",")
    if any(ln.count(",") != commas for ln in lines):
        return None  # a ragged row: pandas would pad it or shift columns; the slow path names the line
    cols = _columns(fmt)
    header = [c.strip() for c in lines[0].split(",")]
    if any(header.count(c) > 1 for c in cols):
        return None  # pandas would rename the copy; the slow path refuses the ambiguity
    try:
        df = pd.read_csv(io.StringIO(text), usecols=lambda c: c.strip() in cols, skipinitialspace=True,
                         index_col=False)
    except (ValueError, pd.errors.ParserError):
        return None
    df.columns = [c.strip() for c in df.columns]
    if list(sorted(df.columns)) != sorted(cols):
        return None  # e.g. a duplicated column name: let the slow path say what is wrong
    inp, out = _as_lengths(df[fmt.input_col]), _as_lengths(df[fmt.output_col])
    if inp is None or out is None:
        return None
    times = None
    if fmt.time_col:
        col = df[fmt.time_col]
        if fmt.time_unit_s == 0.0:
            if col.dtype.kind in "iufb":
                return None  # numbers where timestamps belong: the slow path says which line
            try:
                ts = pd.to_datetime(col, format="ISO8601")
            except (ValueError, TypeError):
                return None
            if ts.isna().any():
                return None
            if ts.dt.tz is not None:
                ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
            times = ts.to_numpy().astype("datetime64[ns]").astype(np.int64)
        else:
            v = col.to_numpy()
            if v.dtype.kind not in "iuf" or not np.all(np.isfinite(v)):
                return None
            times = v.astype(np.float64) * fmt.time_unit_s
    return _Rows(times, inp, out, None)


def _csv_slow(p: Path, text: str, fmt: TraceFormat) -> _Rows:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    idx: dict[str, int] = {}
    times, inp, out, lines = [], [], [], []
    parse_time = _time_cell if fmt.time_unit_s == 0.0 else _num_cell
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip() for c in row]
            dup = sorted({c for c in header if header.count(c) > 1 and c in _columns(fmt)})
            if dup:
                raise UserError(f"{p}:{line}: column {dup[0]!r} appears more than once in the header")
            idx = {c: header.index(c) for c in _columns(fmt)}
            continue
        if len(row) != len(header):
            raise UserError(f"{p}:{line}: {len(row)} fields, the header has {len(header)} "
                            f"({','.join(header)})")
        for name, sink, parse in ((fmt.time_col, times, parse_time), (fmt.input_col, inp, _int_cell),
                                  (fmt.output_col, out, _int_cell)):
            if name is None:
                continue
            try:
                sink.append(parse(row[idx[name]]))
            except _BadCell as bad:
                raise UserError(f"{p}:{line}:{idx[name] + 1} (column {name}): {bad.what}") from None
        lines.append(line)
    if fmt.time_col is None:
        t = None
    elif fmt.time_unit_s == 0.0:
        t = np.array(times, dtype=np.int64)  # ns since the epoch
    else:
        t = np.array(times, dtype=np.float64) * fmt.time_unit_s
    return _Rows(t, np.array(inp, dtype=np.int64), np.array(out, dtype=np.int64), None, np.array(lines))


def _jsonl_fast(text: str, fmt: TraceFormat) -> _Rows | None:
    rows_text = [ln for ln in text.split("\n") if ln.strip()]
    try:
        rows = json.loads("[" + ",".join(rows_text) + "]")
        t = [r[fmt.time_col] for r in rows]
        i = [r[fmt.input_col] for r in rows]
        o = [r[fmt.output_col] for r in rows]
        h = [r.get(HASH_COL) for r in rows] if any(HASH_COL in r for r in rows) else None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    if len(rows) != len(rows_text):  # a line held two objects, e.g. `{..},{..}`
        return None
    # set(map(type, ...)) runs in C: ~10x faster than a Python loop over the 300k hash ids of a real trace
    if not (set(map(type, i)) == {int} and set(map(type, o)) == {int} and set(map(type, t)) <= {int, float}):
        return None
    try:
        times = np.array(t, dtype=np.float64)
        inp, out = np.array(i, dtype=np.int64), np.array(o, dtype=np.int64)
    except OverflowError:
        return None
    if len(rows) and (min(inp.min(), out.min()) < 0 or max(inp.max(), out.max()) > MAX_TOKENS
                      or not np.all(np.isfinite(times))):
        return None
    hashes = None
    if h is not None:
        if set(map(type, h)) != {list}:
            return None
        flat = list(itertools.chain.from_iterable(h))
        if flat and (set(map(type, flat)) != {int} or min(flat) < 0):
            return None
        hashes = list(map(tuple, h))
    return _Rows(times * fmt.time_unit_s, inp, out, hashes)


def _jsonl_slow(p: Path, text: str, fmt: TraceFormat) -> _Rows:
    times, inp, out, hashes, lines = [], [], [], [], []
    any_hash = False
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{p}:{lineno}:1: expected a JSON object, got {type(obj).__name__}")
        for name, sink, parse in ((fmt.time_col, times, _json_num_cell), (fmt.input_col, inp, _json_int_cell),
                                  (fmt.output_col, out, _json_int_cell), (HASH_COL, hashes, _hash_cell)):
            if name not in obj:
                if name == HASH_COL:
                    sink.append(())
                    continue
                raise UserError(f"{p}:{lineno}: missing field {name!r}; each {fmt.name} row needs "
                                f"{', '.join(_columns(fmt))}")
            any_hash |= name == HASH_COL
            try:
                sink.append(parse(obj[name]))
            except _BadCell as bad:
                col = line.find(f'"{name}"') + 1
                raise UserError(f"{p}:{lineno}:{col} (field {name}): {bad.what}") from None
        lines.append(lineno)
    return _Rows(np.array(times, dtype=np.float64) * fmt.time_unit_s, np.array(inp, dtype=np.int64),
                 np.array(out, dtype=np.int64), hashes if any_hash else None, np.array(lines))


def _parse(p: Path, text: str, fmt: TraceFormat) -> _Rows:
    if fmt.json:
        rows = _jsonl_fast(text, fmt) or _jsonl_slow(p, text, fmt)
    else:
        rows = _csv_fast(text, fmt) or _csv_slow(p, text, fmt)
    if len(rows.inp) == 0:
        raise UserError(f"trace file {p}: has a header but no requests")
    return rows


def _clamp_zero(x: np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    zeros = int(np.count_nonzero(x == 0))
    if zeros:
        notes.append(f"{zeros} request(s) with {what} = 0 set to 1 (a request holds at least one token)")
        x = np.maximum(x, 1)
    return x


def read_length_column(path: str | Path, column: str) -> tuple[np.ndarray, list[str]]:
    """One column of non-negative integers from a CSV (zeros set to 1, with a note), for EmpiricalLength."""
    p = Path(path)
    text = _read_text(p)
    lineno, first = _first_line(text)
    if not first:
        raise UserError(f"length file {p}: empty; expected a CSV with a header containing {column!r}")
    names = [c.strip() for c in next(csv.reader([first]))]
    if column not in names:
        raise UserError(f"{p}:{lineno}: no column {column!r}; columns: {', '.join(names)}")
    fmt = TraceFormat("lengths", None, column, column, 1.0, json=False)
    rows = _parse(p, text, fmt)
    notes: list[str] = []
    return _clamp_zero(rows.inp, f"{p.name}:{column}", notes), notes


def load_trace(path: str | Path, format: str = "auto", *, num_requests: int | None = None,
               rate_scale: float = 1.0, shift_to_zero: bool = True, arrival: ArrivalConfig | None = None,
               seed: int = 0, arrival_set: bool = False) -> Workload:
    """A trace file as a Workload: parse, clamp zero lengths (noted), sort stably by arrival (noted),
    take the first num_requests, shift the first arrival to 0, then scale the rate.

    Length-only traces get synthetic arrivals from `arrival` (all at t=0 when None) using `seed`.
    `arrival_set` says the user set `arrival` explicitly, so a note can say it was ignored.
    """
    p = Path(path)
    text = _read_text(p)
    fmt = detect_format(p, text, format)
    rows = _parse(p, text, fmt)
    notes: list[str] = []
    inp = _clamp_zero(rows.inp, fmt.input_col, notes)
    out = _clamp_zero(rows.out, fmt.output_col, notes)
    hashes = rows.hash_ids
    if fmt.time_col is None:
        arrival_cfg = arrival or ArrivalConfig(process="burst")
        if num_requests is not None:  # generate arrivals only for the rows kept
            inp, out = inp[:num_requests], out[:num_requests]
        times_s = synthetic_arrivals(arrival_cfg, len(inp), np.random.default_rng(seed))
        notes.append(f"arrivals are synthetic ({_describe_arrival(arrival_cfg)}, seed {seed}): the file has "
                     "lengths only")
        order = None
    else:
        times = rows.times
        order = None
        back = np.flatnonzero(np.diff(times) < 0)
        if len(back):
            order = np.argsort(times, kind="stable")
            where = (f"line {rows.lines[back[0] + 1]}" if rows.lines is not None
                     else f"data row {back[0] + 2}")
            notes.append(f"{len(back)} row(s) arrive earlier than the row before (first at {where}); "
                         "requests were sorted stably by arrival time")
        if fmt.time_unit_s == 0.0:  # int64 ns since the epoch: shift exactly in integers
            t0 = times.min()
            times_s = (times - t0) / 1e9 + (0.0 if shift_to_zero else t0 / 1e9)
        else:
            times_s = times.astype(np.float64)
        if arrival_set:
            notes.append(f"workload.arrival ignored: the {fmt.name} trace has its own timestamps")
    if order is not None:
        times_s, inp, out = times_s[order], inp[order], out[order]
        hashes = [hashes[i] for i in order] if hashes is not None else None
    wl = Workload(arrival_s=times_s, input_tokens=inp, output_tokens=out, hash_ids=hashes,
                  source=f"{fmt.name} trace {p}", notes=tuple(notes))
    if num_requests is not None:
        wl = wl.head(num_requests)
    if shift_to_zero:
        wl = wl.shifted_to_zero()
    return wl.scaled(rate_scale)
