"""Trace loaders: every shared trace loads with its README row count; bad files give file:line:col errors."""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import pytest

from hwmodels.errors import UserError
from simulator import traces
from simulator.config import ArrivalConfig
from simulator.traces import load_trace

# (file, rows, format, mean input, mean output) from /work/shared/traces/README.md
SHARED = [
    ("azure_2023/AzureLLMInferenceTrace_code.csv", 8819, "azure", 2048, 28),
    ("azure_2023/AzureLLMInferenceTrace_conv.csv", 19366, "azure", 1155, 211),
    ("mooncake/conversation_trace.jsonl", 12031, "mooncake", None, None),
    ("mooncake/synthetic_trace.jsonl", 3993, "mooncake", None, None),
    ("etalon/sharegpt_8k_filtered_stats_llama2_tokenizer.csv", 30731, "lengths", None, None),
    ("etalon/bwb_stats_llama2_tokenizer_filtered_v2.csv", 33768, "lengths", None, None),
    ("vidur/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", 28257, "lengths", None, None),
    ("sharegpt_val/sharegpt_val_10k_llama2.csv", 10000, "lengths", None, None),
]


@pytest.mark.parametrize("name,rows,fmt,mean_in,mean_out", SHARED, ids=[s[0].split("/")[1] for s in SHARED])
def test_shared_trace_loads(traces_dir, name, rows, fmt, mean_in, mean_out):
    wl = load_trace(traces_dir / name)
    assert len(wl) == rows
    assert wl.source.startswith(fmt)
    assert wl.arrival_s[0] == 0.0 and np.all(np.diff(wl.arrival_s) >= 0)
    assert wl.input_tokens.min() >= 1 and wl.output_tokens.min() >= 1
    if mean_in is not None:  # README rounds the means to integers
        assert abs(wl.input_tokens.mean() - mean_in) < 0.5 and abs(wl.output_tokens.mean() - mean_out) < 0.5
    if fmt == "mooncake":  # hash_ids are 512-token prefix blocks: one per started block of the prompt
        assert [len(h) for h in wl.hash_ids] == (-(-wl.input_tokens // 512)).tolist()
    else:
        assert wl.hash_ids is None
    if fmt == "lengths":
        assert any("synthetic" in n for n in wl.notes)


def test_azure_rates_and_times(traces_dir):
    wl = load_trace(traces_dir / "azure_2023/AzureLLMInferenceTrace_conv.csv")
    # rows 1-2: 18:15:46.6805900 and 18:15:50.9951690
    assert wl.arrival_s[1] == pytest.approx(4.314579, abs=1e-9)
    assert wl.stats()["rate_per_s"] == pytest.approx(5.53, abs=0.01)  # README: 5.53 req/s
    absolute = load_trace(traces_dir / "azure_2023/AzureLLMInferenceTrace_conv.csv", shift_to_zero=False)
    assert absolute.arrival_s[0] == pytest.approx(1700158546.68059, abs=1e-6)  # 2023-11-16 18:15:46.68059 UTC


def test_mooncake_rate_and_hashes(traces_dir):
    wl = load_trace(traces_dir / "mooncake/conversation_trace.jsonl")
    assert wl.stats()["rate_per_s"] == pytest.approx(3.4, abs=0.01)  # README: 3.4 req/s
    assert wl.hash_ids[0] == tuple(range(14))
    reqs = wl.to_requests()
    assert reqs[1].hash_ids == (0, *range(14, 28)) and reqs[1].prompt_len == 7322


@pytest.mark.parametrize("name", ["azure_2023/AzureLLMInferenceTrace_conv.csv", "mooncake/conversation_trace.jsonl"])
def test_load_is_fast(traces_dir, name):
    best = min(_timed(lambda: load_trace(traces_dir / name)) for _ in range(3))
    assert best < 0.5, f"{name} took {best:.3f} s"


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


@pytest.mark.parametrize("name", ["azure_2023/AzureLLMInferenceTrace_code.csv", "mooncake/synthetic_trace.jsonl"])
def test_fast_and_slow_paths_agree(traces_dir, name):
    p = traces_dir / name
    text = traces._read_text(p)
    fmt = traces.detect_format(p, text)
    fast = (traces._jsonl_fast if fmt.json else traces._csv_fast)(text, fmt)
    slow = (traces._jsonl_slow if fmt.json else traces._csv_slow)(p, text, fmt)
    assert fast is not None
    np.testing.assert_array_equal(fast.times, slow.times)
    np.testing.assert_array_equal(fast.inp, slow.inp)
    np.testing.assert_array_equal(fast.out, slow.out)
    assert fast.hash_ids == slow.hash_ids


# ---- small files written here ---------------------------------------------------------------------

AZ_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def error_of(path: Path, **kw) -> str:
    with pytest.raises(UserError) as exc:
        load_trace(path, **kw)
    return str(exc.value)


@pytest.mark.parametrize("body,expected", [
    ("2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0,396,abc\n",
     r"t\.csv:3:3 \(column GeneratedTokens\): 'abc' is not a non-negative integer"),
    ("2023-11-16 18:15:46.6805900,-5,44\n",
     r"t\.csv:2:2 \(column ContextTokens\): '-5' is not a non-negative integer"),
    ("2023-11-16 18:15:46.6805900,374,44\nyesterday,396,1\n",
     r"t\.csv:3:1 \(column TIMESTAMP\): 'yesterday' is not a timestamp"),
    ("2023-11-16 18:15:46.6805900,374,44\n2023-13-16 18:15:46.0,396,1\n",
     r"t\.csv:3:1 \(column TIMESTAMP\): '2023-13-16 18:15:46.0' is not a valid timestamp"),
    ("2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0,396\n",
     r"t\.csv:3: 2 fields, the header has 3"),
    ("2023-11-16 18:15:46.6805900,374,44,9\n", r"t\.csv:2: 4 fields, the header has 3"),
    ("2023-11-16 18:15:46.6805900,374,1.5\n",
     r"t\.csv:2:3 \(column GeneratedTokens\): '1\.5' is not a non-negative integer"),
    ("2023-11-16 18:15:46.6805900,374,\n", r"t\.csv:2:3 \(column GeneratedTokens\): '' is not"),
])
def test_bad_azure_cells(tmp_path, body, expected):
    msg = error_of(write(tmp_path, "t.csv", AZ_HEADER + body))
    assert re.search(expected, msg), msg


def test_bad_line_reported_after_blank_lines(tmp_path):
    p = write(tmp_path, "t.csv", AZ_HEADER + "\n2023-11-16 18:15:46.0,1,2\n\n2023-11-16 18:15:47.0,x,2\n")
    assert "t.csv:5:2 (column ContextTokens): 'x'" in error_of(p)


@pytest.mark.parametrize("line2,expected", [
    ('{"timestamp": 5, "input_length": 3, "output_length": "7"}',
     r"t\.jsonl:2:37 \(field output_length\): '7' is not a non-negative integer"),
    ('{"timestamp": 5, "input_length": 3}', r"t\.jsonl:2: missing field 'output_length'"),
    ('{"timestamp": 5, "input_length": 3, "output_length": 2, "hash_ids": [1, -2]}',
     r"t\.jsonl:2:57 \(field hash_ids\): element 1 = -2 is not a non-negative integer"),
    ('{"timestamp": 5, "input_length": 3, "output_length": 2', r"t\.jsonl:2:\d+: not valid JSON"),
    ('[1, 2, 3]', r"t\.jsonl:2:1: expected a JSON object, got list"),
    ('{"timestamp": "noon", "input_length": 3, "output_length": 2}',
     r"t\.jsonl:2:2 \(field timestamp\): 'noon' is not a number \(a JSON string"),
    ('{"timestamp": 5, "input_length": true, "output_length": 2}',
     r"t\.jsonl:2:18 \(field input_length\): True is not a non-negative integer"),
])
def test_bad_mooncake_lines(tmp_path, line2, expected):
    first = '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0]}\n'
    msg = error_of(write(tmp_path, "t.jsonl", first + line2 + "\n"))
    assert re.search(expected, msg), msg


def test_missing_empty_and_header_only(tmp_path):
    assert "not found" in error_of(tmp_path / "nope.csv")
    assert "not a regular file" in error_of(tmp_path)
    msg = error_of(write(tmp_path, "e.csv", ""))
    assert "empty" in msg and "TIMESTAMP, ContextTokens, GeneratedTokens" in msg
    assert "empty" in error_of(write(tmp_path, "w.csv", "\n  \n"))
    assert "no requests" in error_of(write(tmp_path, "h.csv", AZ_HEADER))
    assert "not UTF-8" in error_of(write(tmp_path, "b.csv", b"\xff\xfe\x00garbage"))


def test_unknown_columns_list_the_formats(tmp_path):
    msg = error_of(write(tmp_path, "u.csv", "time,prompt,completion\n1,2,3\n"))
    assert msg.startswith(f"{tmp_path / 'u.csv'}:1: header completion, prompt, time")
    for fmt in ("azure (TIMESTAMP", "lengths (num_prefill_tokens", "plain (arrival_s"):
        assert fmt in msg
    msg = error_of(write(tmp_path, "u.jsonl", '{"t": 1}\n'))
    assert "JSON keys t" in msg and "mooncake (timestamp, input_length, output_length, [hash_ids])" in msg


def test_forced_format_checks_columns(tmp_path):
    p = write(tmp_path, "p.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n")
    assert "azure trace lacks column(s) TIMESTAMP, ContextTokens, GeneratedTokens" in error_of(p, format="azure")
    assert "'mooncake' is not a CSV format" in error_of(p, format="mooncake")
    assert len(load_trace(p, format="plain")) == 1


def test_zero_lengths_clamped_with_note(tmp_path):
    p = write(tmp_path, "z.csv", AZ_HEADER + "2023-11-16 18:00:00.0,0,5\n2023-11-16 18:00:01.0,7,0\n"
              "2023-11-16 18:00:02.0,8,0\n")
    wl = load_trace(p)
    assert wl.input_tokens.tolist() == [1, 7, 8] and wl.output_tokens.tolist() == [5, 1, 1]
    assert "2 request(s) with GeneratedTokens = 0 set to 1" in " ".join(wl.notes)
    assert "1 request(s) with ContextTokens = 0 set to 1" in " ".join(wl.notes)


def test_unsorted_rows_sorted_stably_with_note(tmp_path):
    lines = ['{"timestamp": 1000, "input_length": 1, "output_length": 1, "hash_ids": [1]}',
             '{"timestamp": 3000, "input_length": 2, "output_length": 1, "hash_ids": [2]}',
             '{"timestamp": 2000, "input_length": 3, "output_length": 1, "hash_ids": [3]}',
             '{"timestamp": 2000, "input_length": 4, "output_length": 1, "hash_ids": [4]}']
    wl = load_trace(write(tmp_path, "s.jsonl", "\n".join(lines) + "\n"))
    assert wl.arrival_s.tolist() == [0.0, 1.0, 1.0, 2.0]
    assert wl.input_tokens.tolist() == [1, 3, 4, 2]  # stable: 3 before 4
    assert wl.hash_ids == [(1,), (3,), (4,), (2,)]
    assert [r.id for r in wl.to_requests()] == [0, 1, 2, 3]
    assert any("1 row(s) arrive earlier" in n and "data row 3" in n for n in wl.notes)


def test_unsorted_note_names_line_on_slow_path(tmp_path):
    # a quoted field sends the file through the csv-module path, which knows file lines
    p = write(tmp_path, "s.csv", "arrival_s,input_tokens,output_tokens\n\n2,1,1\n1,2,\"3\"\n")
    wl = load_trace(p, shift_to_zero=False)
    assert wl.arrival_s.tolist() == [1.0, 2.0] and wl.input_tokens.tolist() == [2, 1]
    assert any("arrive earlier than the row before (first at line 4)" in n for n in wl.notes), wl.notes


def test_plain_csv_and_jsonl_with_bom_crlf_and_extra_columns(tmp_path):
    csv_p = write(tmp_path, "p.csv", b"\xef\xbb\xbfarrival_s,input_tokens,output_tokens,note\r\n"
                                     b"0.5,10,2,a\r\n1.25,20,3,b\r\n")
    wl = load_trace(csv_p, shift_to_zero=False)
    assert wl.arrival_s.tolist() == [0.5, 1.25] and wl.input_tokens.tolist() == [10, 20]
    assert wl.notes == ()
    js = write(tmp_path, "p.jsonl", '{"arrival_s": 0.5, "input_tokens": 10, "output_tokens": 2, "x": 1}\n'
                                    '{"arrival_s": 1.5, "input_tokens": 20, "output_tokens": 3, "hash_ids": [7]}\n')
    wl = load_trace(js)
    assert wl.arrival_s.tolist() == [0.0, 1.0] and wl.hash_ids == [(), (7,)]


def test_integral_floats_accepted(tmp_path):
    p = write(tmp_path, "f.csv", "arrival_s,input_tokens,output_tokens\n0,10.0,2\n1,20,3.0\n")
    assert load_trace(p).output_tokens.tolist() == [2, 3]
    p = write(tmp_path, "f.jsonl", '{"timestamp": 0, "input_length": 10.0, "output_length": 2}\n')
    assert load_trace(p).input_tokens.tolist() == [10]


def test_absurd_lengths_and_duplicate_columns(tmp_path):
    p = write(tmp_path, "big.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 2}\n'
                                     '{"timestamp": 1, "input_length": 100000000000000000000000, "output_length": 2}\n')
    assert "big.jsonl:2:18 (field input_length): 100000000000000000000000 is more than 1,000,000,000" in error_of(p)
    p = write(tmp_path, "big.csv", "arrival_s,input_tokens,output_tokens\n0,5,1\n1,5,99999999999\n")
    assert "big.csv:3:3 (column output_tokens): '99999999999' is more than" in error_of(p)
    p = write(tmp_path, "dup.csv", "arrival_s,input_tokens,output_tokens,input_tokens\n0,5,1,6\n")
    assert "dup.csv:1: column 'input_tokens' appears more than once" in error_of(p)


def test_header_after_many_blank_lines(tmp_path):
    p = write(tmp_path, "b.csv", "\n" * 60 + "arrival_s,input_tokens,output_tokens\n0,1,1\n")
    assert len(load_trace(p)) == 1


def test_head_shift_and_scale(tmp_path):
    p = write(tmp_path, "p.csv", "arrival_s,input_tokens,output_tokens\n" +
              "".join(f"{10 + 2 * i},{i + 1},1\n" for i in range(10)))
    wl = load_trace(p, num_requests=4, rate_scale=2.0)
    assert wl.arrival_s.tolist() == [0.0, 1.0, 2.0, 3.0] and wl.input_tokens.tolist() == [1, 2, 3, 4]
    wl = load_trace(p, num_requests=3, rate_scale=4.0, shift_to_zero=False)
    assert wl.arrival_s.tolist() == [10.0, 10.5, 11.0]


def test_lengths_trace_gets_seeded_synthetic_arrivals(tmp_path):
    p = write(tmp_path, "l.csv", "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n" +
              "".join(f"{i + 1},{2 * i + 1},0,0\n" for i in range(200)))
    cfg = ArrivalConfig(process="poisson", rate_per_s=4.0)
    a, b = load_trace(p, arrival=cfg, seed=3), load_trace(p, arrival=cfg, seed=3)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.arrival_s, load_trace(p, arrival=cfg, seed=4).arrival_s)
    assert a.output_tokens.tolist() == [2 * i + 1 for i in range(200)]
    assert 0 < a.arrival_s[-1] < math.inf and "poisson 4/s" in " ".join(a.notes)
    head = load_trace(p, arrival=ArrivalConfig(process="constant", rate_per_s=2.0), num_requests=5)
    assert head.arrival_s.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0] and len(head) == 5
    assert load_trace(p).arrival_s.max() == 0.0  # no arrival config: an offline batch at t=0
