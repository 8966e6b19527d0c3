"""Properties of the trace loaders on generated files: what is written is what is loaded (in arrival order),
and one corrupted cell is reported at its line and column whatever the rest of the file holds."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwmodels.errors import UserError
from simulator.traces import load_trace

row = st.tuples(st.floats(0, 1e6, allow_nan=False, allow_infinity=False), st.integers(1, 10**6),
                st.integers(1, 10**5))
rows_st = st.lists(row, min_size=1, max_size=40)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rows=rows_st, as_json=st.booleans())
def test_written_rows_load_back_sorted(tmp_path_factory, rows, as_json):
    p = tmp_path_factory.mktemp("t") / ("t.jsonl" if as_json else "t.csv")
    if as_json:
        p.write_text("".join(json.dumps({"arrival_s": t, "input_tokens": i, "output_tokens": o}) + "\n"
                             for t, i, o in rows))
    else:
        p.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{t!r},{i},{o}\n" for t, i, o in rows))
    wl = load_trace(p, shift_to_zero=False)
    expected = sorted(rows, key=lambda r: r[0])  # Python's sort is stable, like the loader's
    assert wl.arrival_s.tolist() == [r[0] for r in expected]
    assert wl.input_tokens.tolist() == [r[1] for r in expected]
    assert wl.output_tokens.tolist() == [r[2] for r in expected]
    assert any("sorted stably" in n for n in wl.notes) == any(a[0] > b[0] for a, b in zip(rows, rows[1:]))


@SETTINGS
@given(rows=rows_st, data=st.data())
def test_one_bad_cell_is_located(tmp_path_factory, rows, data):
    bad_row = data.draw(st.integers(0, len(rows) - 1))
    bad_col = data.draw(st.integers(1, 2))  # input_tokens or output_tokens
    bad_value = data.draw(st.sampled_from(["x", "-3", "1.5", "nan", ""]))
    cells = [[repr(t), str(i), str(o)] for t, i, o in rows]
    cells[bad_row][bad_col] = bad_value
    p = tmp_path_factory.mktemp("t") / "t.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(",".join(c) + "\n" for c in cells))
    name = ("input_tokens", "output_tokens")[bad_col - 1]
    try:
        load_trace(p)
    except UserError as exc:
        assert str(exc).startswith(f"{p}:{bad_row + 2}:{bad_col + 1} (column {name}): {bad_value!r} is not")
    else:
        raise AssertionError("a bad cell loaded without an error")


def test_rows_are_float64_and_int64(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n0.1,3,4\n")
    wl = load_trace(p, shift_to_zero=False)
    assert wl.arrival_s.dtype == np.float64 and wl.input_tokens.dtype == np.int64 and wl.arrival_s[0] == 0.1
