"""What moves the executor's pass times on this CPU: the measurements behind `llmsim validate`'s profiling choices.

    python benchmarks/bench_executor_timing.py layout        # decode attention vs KV block run length
    python benchmarks/bench_executor_timing.py drift [SECS]  # one fixed pass in 10 s windows (machine drift)
    python benchmarks/bench_executor_timing.py predecessor   # a decode pass after itself / a prompt / Python work
    python benchmarks/bench_executor_timing.py prompt_pred   # a prompt pass after the profile's conditioning vs others
    python benchmarks/bench_executor_timing.py prompt_blocks # a prompt pass writing the same KV blocks vs fresh ones
    python benchmarks/bench_executor_timing.py models [SECS] # pass-time spread: examples/tiny-llama vs small-llama
    python benchmarks/bench_executor_timing.py mixed         # a mixed (chunk + decodes) pass after itself / a decode
    python benchmarks/bench_executor_timing.py fragmentation # KV run length over a served run (policy dry run only)
    python benchmarks/bench_executor_timing.py dryrun DIR    # dry run on roofline vs on DIR's calibrated profile
    python benchmarks/bench_executor_timing.py gemm          # in-pass GEMM time vs m (decode batch size) 1..9
    python benchmarks/bench_executor_timing.py gather        # KV page gather: indexing vs index_select, by layout
    python benchmarks/bench_executor_timing.py ragged        # decode passes: uniform vs ragged contexts, same total
    python benchmarks/bench_executor_timing.py served [SCHED] # validate --quick with every served kernel timed:
                                                             # cost model vs measured per pass kind and op kind
    python benchmarks/bench_executor_timing.py replay [SCHED] # validate --quick, then its served passes replayed
                                                             # without the loop: in order vs right after itself
    python benchmarks/bench_executor_timing.py streak        # k-th decode pass in a row after a prompt / B+1 passes
    python benchmarks/bench_executor_timing.py single        # one request served alone vs synthetic 1-seq passes
    python benchmarks/bench_executor_timing.py glue TABLE... # decode glue rows vs the fitted line(s)
    python benchmarks/bench_executor_timing.py loop [SCHED]  # a pass inside the serving loop vs re-run right after
    python benchmarks/bench_executor_timing.py neighbours    # decode GEMMs after itself / other KV / B+1 / B-1
    python benchmarks/bench_executor_timing.py skew          # mean vs median of repeated passes, per op
    python benchmarks/bench_executor_timing.py medmean       # mean untimed pass vs kernel medians + glue
    python benchmarks/bench_executor_timing.py compose [ROUNDS] # one-prompt passes vs the cost model, by part
    python benchmarks/bench_executor_timing.py jitter        # pass-to-pass variability, back to back / mixed
    python benchmarks/bench_executor_timing.py interp [old|new] # prompt passes 32..256 vs grid interpolation
    python benchmarks/bench_executor_timing.py faults [SCHED] # validate --quick: minor page faults per served pass
    python benchmarks/bench_executor_timing.py heap [ROUNDS] # pass times after a perturbed malloc heap vs not
    python benchmarks/bench_executor_timing.py state [SCHED] # validate --quick: page faults and gc objects of the
                                                             # served run (serve wrapped; gc.collect after each)

Every number is thread CPU time of one torch thread pinned to one core, on synthetic passes of the
executor (`profiler.executor`), with the allocator settings `llmsim validate` uses. Results as of
2026-11-25 on the 2-core VM (AMD EPYC, 1 MB L2 per core, 32 MB shared L3), small-llama (512 hidden):

- layout: 4 decodes x 128 context, attention of the pass: 1.30 ms with every block scattered, 1.07 / 0.96
  / 0.91 / 0.79 ms with runs of 2 / 3 / 6 / all consecutive blocks. 8 x 256: 4.06 ms scattered, 2.45 ms
  contiguous. With the index_select gather (2026-11-26): 0.78 / 0.67 / 0.64 / 0.61 / 0.58 ms, and 8 x 256
  2.36 ms scattered, 1.64 ms contiguous.
- ragged (2026-11-26): decodes around 200 tokens (uniform vs drawn from 40..360, same total), attention of
  the pass, two runs: 2 seqs 0.454-0.464 vs 0.454-0.456 ms and 0.480 vs 0.458-0.505; 8 seqs 1.51 vs 1.56-1.61
  and 1.54-1.60 vs 1.62-1.65 ms; 32 seqs 5.72-5.87 vs 6.05-6.09 and 6.09-6.15 vs 6.15-6.26 ms (ragged +0..+6 %
  of attention, up to ~1 % of the pass).
- served sarathi (2026-11-26, one run, instrumented serving; p50 errors TTFT -8.0 / TPOT -11.5 / e2e -9.1 %,
  drift +0.2 %), cost model vs measured summed over served passes: decode passes gemm -4.6 %, attention -1.7 %,
  elementwise -11.6 %, rest -6.7 %; mixed passes gemm -1.5 %, attention -6.3 %, elementwise -4.1 %, rest +2.7 %.
  served vllm (same day, p50 errors -3.2 / -7.1 / -6.2 %, drift +0.6 %): decode passes gemm -3.1 %, attention
  +2.1 %, elementwise -6.8 %, rest -0.8 %; prompt passes gemm -0.6 %, attention -5.5 %. Part of the decode GEMM
  gap is accounting (the decode-after-prompt term is predicted under "rest" but lands on the measured kernels,
  ~1-2 % of decode GEMM time); the remainder (~2 %) is a state effect of serving not yet identified.
- neighbours (2026-11-26): GEMM ms of a decode pass after itself / other KV / B+1 / B-1: 3 decodes 3.79 / 3.78 /
  3.31 / 3.82, 6 decodes 4.44 / 4.45 / 4.50 / 4.44, 12 decodes 5.42 / 5.47 / 5.52 / 5.43: the previous pass's
  size does not make served GEMMs slower (one faster cell, after B+1 at 3 decodes).
- skew (2026-11-26): pass mean/median -0.1..+0.1 %; per op rmsnorm +2.4..+4.0 %, rope +3.1..+5.0 %, swiglu
  +3.1..+5.2 %, attention +0.3..+3.5 %, gemm -0.6..+0.2 % (medians in the table under-state elementwise ops).
- medmean (2026-11-26, session "c"): kernel medians + median timed glue vs the mean untimed pass: 1 / 2 / 4 /
  8 / 16 / 32 decodes at 128 context -1.37 / -0.31 / -1.13 / -1.60 / -0.81 / -0.70 %, 64- / 160-token prompts
  -0.46 / +0.01 %; timed passes +3.9 / +2.7 / +1.6 / +1.3 / +0.8 / +1.1 / +0.4 / +0.3 % over untimed. (Measured
  with the equivalent /tmp script before this subcommand was committed.) The same subcommand ~1 h later:
  +1.60 / +0.67 / +0.91 / +0.56 / +0.47 / +0.51 %, prompts -0.27 / +0.32 %; timed passes +3.4 / +2.5 / +2.0 /
  +1.4 / +1.1 / +0.8 / +0.8 / +0.6 %: the sign of the gap changes between sittings. Tried and removed: glue rows taken per
  case as (mean untimed pass - kernel medians). With the profile's few passes per case those rows came out
  noisy and mostly *below* the timed glue (some prompt rows 0), and in 4 validate --quick runs the cost model
  fell to -3.1 / -1.5 / -1.0 / -3.0 % on served passes (2 of 4 runs within 10 %; bench_validate.results.jsonl).
- compose (2026-11-26, session "f", two sittings): one-prompt passes vs the cost model built from sweeps
  interleaved with them: mean -56 / +289 us (-0.15 / +0.8 %), single lengths within about +-0.5 ms except 40
  tokens (+0.75 ms both times: a multiple of 8, the fast side of the sawtooth); decodes x 128 of 1 / 2 / 4 / 8 /
  16 sequences -10.5 / +0.3 / -6.2 / -3.0 / -1.1 % and -0.3 / -2.2 / -1.4 / -0.9 / -0.2 %. An earlier sitting
  with all sweeps before the passes: prompts +829 us on average (+2-3 %), the machine's speed having moved.
- interp (2026-11-26, session "c"): prompt passes of every length 32..256 vs log-log interpolation between grid
  lengths. Old grid (multiples of 8): mean +2.15 % and +1.62 % in two sittings of the equivalent /tmp script,
  +1.22 % with this subcommand (`interp old`), by length mod 8 (first sitting) 0 +0.5, 1 +2.4, 2 +1.9, 3 +3.5,
  4 +1.0, 5 +2.3, 6 +1.7, 7 +3.4 %. A grid cycling through all residues (33, 50, 67, 100, 125, 158, 191, 224,
  249) -0.94 %; the grid now in InsituGrid (1, 2, 5, 6 mod 8) -0.05 %, mean |error| 1.03 % (`interp new`).
- jitter (2026-11-26, session "c", measured with the equivalent /tmp script before this subcommand was
  committed): back to back 8 x 128 log-sd 1.38 %, lag-1..30 autocorrelation 0.48 0.41
  0.54 0.33 0.30 0.28; 2 x 128 5.4 % (p99 +8.8 %), 0.32..-0.02; 24 x 200 1.55 %, 0.63..0.13; random mix of
  2/5/9/14 decodes 2.29 %, 0.63 0.51 0.41 0.24 0.11 0.09.
- heap (2026-11-26, session "d", 20 rounds alternating): round medians of 8 decodes x 128, control sd 4.05 %
  (range -4.9..+8.5 %) vs after a heap perturbation 2.34 %; 129-token prompt 1.44 % vs 1.45 %. Both moved
  together round by round (the machine), the perturbation added nothing.
- state sarathi (2026-11-26, two runs): 120-135 minor page faults over ~1,900 served passes, gc-tracked objects
  +2,900, none cyclic garbage. But with serve wrapped this way (gc.get_objects() and gc.collect() around every
  serve, the dry runs' included) the cost model over-predicted the served passes by +8.1 % and TPOT p50 came out
  +25.5 % / +16.4 % (plain runs: -2..-13 %): Python-level state around the run moves served pass times by ~8 %
  relative to the profile. Unexplained; the strongest lead for the remaining bias.
- replay vllm (2026-11-26, one run at commit 81e6ae5, whose speed probe ran between served passes and scaled
  the cost model by +0.2 %; p50 errors -1.6 / -3.7 / -0.5 %): against the served forward passes,
  the same passes replayed in order / right after themselves (interleaved): decode passes -0.97 / -1.34 %,
  passes with prompt tokens -0.92 / -1.42 %; their synthetic twins (same rows on the profile's layout) vs
  the replays after themselves: decode +0.89 %, prompt -0.10 %; cost model vs served passes: decode
  -0.45 %, prompt -0.73 %. Served passes ran ~1 % slower than the same passes right after the run without
  the loop; the predecessor (in order vs itself) is worth ~0.3-0.5 %; synthetic passes match replays.
  (A sarathi run the same day is left out: another process ran during its served phase.)
- replay sarathi (2026-11-26, session "c", final code 1418a6f; p50 errors TTFT -1.4 / TPOT -9.5 / e2e -7.3 %):
  served passes vs the same passes replayed right after the run, in order: +0.24 % overall (decode +0.04 %,
  prompt+decode +0.38 %); twins vs replays +0.61 %; cost model vs served -1.46 %, i.e. ~-2.3 % vs the twins of
  the served shapes. By quarter of the run, replayed in order vs served -1.30 / -1.40 / +1.32 / +1.69 % and
  cost model vs served -2.51 / -1.72 / -1.04 / -0.87 %: here the served run's first half ran slower than its
  own replay and the second half faster (machine speed moving during the run, not serving state), and the
  rest of the gap is between the profile's rows and synthetic passes of the served shapes timed minutes later.
- loop vllm (2026-11-26, 3 runs): decode passes in the loop vs re-run right after +0.44 / +0.55 / -0.11 %,
  passes with prompt tokens +1.06 / +0.03 / +0.42 %: the loop's own work costs the next pass <~0.5 %.
- glue (2026-11-26, three in-situ profile tables of small-llama): decode glue at one sequence 0.200 / 0.225 / 0.236 ms vs
  0.339 / 0.343 / 0.339 ms on the line through all decode rows, which fits 2..64 sequences within ~3 %.
- single (2026-11-26, 3 rounds): one request served alone, decode forward at ctx ~120/200/280 vs synthetic
  one-sequence passes: 2.166/2.211/2.405 vs 2.156/2.203/2.258, 2.144/2.180/2.384 vs 2.182/2.222/2.252,
  2.165/2.179/2.206 vs 2.145/2.162/2.241 ms (within ~2 % at 120 and 200; at 280 +6.5/+5.9/-1.6 %). Yet in
  validate --quick runs with the one-sequence glue as measured, the cost model's error on served
  one-sequence decode passes was -9.4 / -7.2 / -7.6 / -1.5 % (4 runs, `bench_validate.py --analyze`): the
  gap comes from the served run around them, not from the pass itself.
- streak (2026-11-26): k-th decode pass in a row (150 context) vs passes 9-12, after a 160-token prompt /
  after 12 passes of B+1 decodes on other blocks: 1 decode +29.2 +15.6 +8.3 +5.2 +3.8 +3.0 +0.9 +1.7 % /
  +28.7 +23.4 +19.4 +10.1 +5.2 +2.5 +2.9 +1.8 %; 4 decodes +5.9 +2.1 +0.6 +0.5 % / -0.0 +0.2 -0.6 -0.6 %;
  12 decodes +3.4 +0.5 +0.0 +0.3 % / +0.4 -0.1 +0.5 +0.8 %.
- gather (2026-11-26): 4 x 8 blocks, K and V, 4 layers, L3 flushed: indexing 0.47 ms contiguous / 0.70 ms
  scattered, index_select 0.23 / 0.32 ms.
- drift: 4 decodes x 128 in 10 s windows over 240 s: mean 5.65 ms, cv 1.5 %, range -3.4 %..+3.1 %, a 128-token
  prompt the same (cv 1.9 %), moving together.
- predecessor: one decode after itself 2.59 ms, after a 160-token prompt pass 3.50 ms, after 8 decodes
  2.94 ms, after ~2 ms of Python dict work 2.60 ms (4 decodes: 5.57 / 6.15 / 5.66 / 5.68 ms). Without the
  fixed malloc thresholds the Python work cost the next decode +18 % (3.02 ms).
- models: 3 s windows over 60 s, 4 decodes x 128: tiny-llama cv 2.7 % (range -4.5..+6.3 %), small-llama
  cv 1.0 % (-1.7..+2.2 %).
- mixed: a 256-token chunk + 10 decodes 78.7-80.0 ms after a small decode pass, 78.2-79.1 ms after itself;
  128 on 128 + 10 decodes 42.9-43.4 vs 43.0-43.5 ms; 64 + 4 decodes 20.8-21.0 vs 21.1-21.4 ms (within ~1 %).
- fragmentation (quick preset, vllm at 12 req/s, stand-in step times): mean run of consecutive KV blocks in
  2 s windows falls from 6.0 to ~1.5 over the 300-request run (the free list never settles).
- gemm: 1024x512 weight, m=1..9: 92 134 160 189 217 217 254 226 255 us (odd m above the even neighbours).
- dryrun /tmp/bv3/vllm-cpu-0 (a `validate --quick` output folder): mean run 2.56 vs 2.39 blocks, decode
  passes right after a prompt pass 4.0 % vs 8.5 % (roofline clock vs the calibrated one at the served rate).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from profiler.executor import LlamaDims, LlamaModel  # noqa: E402
from profiler.executor.attention import PagedKVCache  # noqa: E402
from profiler.executor.insitu import _pass_fn, _time_pass, clock_overhead  # noqa: E402
from profiler.executor.layout import block_order  # noqa: E402
from profiler.executor.server import steady_allocator  # noqa: E402

SMALL = LlamaDims(hidden_size=512, intermediate_size=1376, num_layers=4, num_heads=8, num_kv_heads=4)  # small-llama
TINY = LlamaDims()  # examples/tiny-llama
CLOCK = time.thread_time
NUM_BLOCKS = 2200


def _setup(dims: LlamaDims):
    model = LlamaModel(dims, seed=0, dtype=torch.float32)
    cache = PagedKVCache(dims.num_layers, NUM_BLOCKS, 16, dims.num_kv_heads, dims.head_dim, model.dtype, model.device)
    return model, cache


def layout() -> None:
    model, cache = _setup(SMALL)
    for seqs in ([(1, 128)] * 4, [(1, 256)] * 8):
        for run in (None, 2, 3, 4, 6, 8, 16, NUM_BLOCKS):
            perm = block_order(NUM_BLOCKS, [run] if run else None, seed=0)
            reps = _time_pass(model, cache, seqs, 16, perm, 0.3, 10, 200, CLOCK)
            att = np.median([sum(s for op, _, s in rec if op == "attention") for _, _, rec in reps])
            label = "scattered" if run is None else ("contiguous" if run == NUM_BLOCKS else f"runs of {run}")
            print(f"{len(seqs)} decodes x {seqs[0][1]}: {label:12s} attention {att * 1e3:.3f} ms", flush=True)


def drift(seconds: float = 240.0, window_s: float = 10.0, models=(("small-llama", SMALL),)) -> None:
    fns = {}
    for name, dims in models:
        model, cache = _setup(dims)
        perm = block_order(NUM_BLOCKS, [3], 0).tolist()
        fns[name] = (_pass_fn(model, cache, [(1, 128)] * 4, 16, perm, CLOCK),
                     _pass_fn(model, cache, [(128, 0)], 16, perm[600:], CLOCK))
    t0, w = time.perf_counter(), 0.0
    buf = {k: ([], []) for k in fns}
    series = {k: ([], []) for k in fns}
    while time.perf_counter() - t0 < seconds:
        for k, (dec, pre) in fns.items():
            for _ in range(3):
                buf[k][0].append(dec())
            buf[k][1].append(pre())
        if time.perf_counter() - t0 > w + window_s:
            w += window_s
            for k in fns:
                series[k][0].append(np.median(buf[k][0]))
                series[k][1].append(np.median(buf[k][1]))
                buf[k] = ([], [])
    for k in fns:
        for i, name in enumerate(("4 decodes x 128", "128-token prompt")):
            s = np.array(series[k][i])
            print(f"{k} {name}: mean {s.mean() * 1e3:.3f} ms, cv {s.std() / s.mean():.1%}, range "
                  f"{s.min() / s.mean() - 1:+.1%}..{s.max() / s.mean() - 1:+.1%} over {s.size} windows of "
                  f"{window_s:.0f} s")
            print("   " + " ".join(f"{x * 1e3:.2f}" for x in s))


def predecessor() -> None:
    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    dec1 = _pass_fn(model, cache, [(1, 128)], 16, perm, CLOCK)
    dec4 = _pass_fn(model, cache, [(1, 128)] * 4, 16, perm, CLOCK)
    prompt = _pass_fn(model, cache, [(160, 0)], 16, perm[1000:], CLOCK)
    dec8 = _pass_fn(model, cache, [(1, 200)] * 8, 16, perm[1200:], CLOCK)

    def python_work():
        x = {}
        for i in range(20000):
            x[i] = i * 2
        return len(x)

    for name, before in (("itself", None), ("a 160-token prompt", prompt), ("8 decodes", dec8),
                         ("Python work", python_work)):
        for target, fn in (("1 decode", dec1), ("4 decodes", dec4)):
            ts = []
            for _ in range(60):
                if before:
                    before()
                ts.append(fn())
            print(f"{target} after {name}: {np.median(ts[5:]) * 1e3:.3f} ms", flush=True)


def mixed() -> None:
    from profiler.executor.insitu import CONDITION

    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [2], 0).tolist()
    cond = _pass_fn(model, cache, CONDITION, 16, perm[-40:], CLOCK)
    for seqs in ([(256, 0)] + [(1, 128)] * 10, [(128, 128)] + [(1, 128)] * 10, [(64, 0)] + [(1, 128)] * 4):
        mx = _pass_fn(model, cache, seqs, 16, perm, CLOCK)
        for name, before in (("a small decode pass", cond), ("itself", None)) * 2:
            ts = []
            for _ in range(16):
                if before:
                    before()
                ts.append(mx())
            print(f"chunk {seqs[0]} + {len(seqs) - 1} decodes after {name}: {np.median(ts[2:]) * 1e3:.2f} ms",
                  flush=True)


def _quick(sched: str = "vllm"):
    from app.cmd_validate import quick_config
    from simulator.config import validate_config

    return validate_config(quick_config(sched))


def _validate_quick(sched: str, patches=(), **kwargs):
    """`validate --quick --scheduler SCHED` at 70 % load on the CPU clock, in a scratch folder, with `patches`
    ((object, attribute, replacement) ...) applied for the run and undone after it."""
    import tempfile

    from app.cmd_validate import run_validation

    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, fn in patches:
        setattr(obj, name, fn)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return run_validation(_quick(sched), work_dir=Path(tmp), load=0.7, quick=True, clock="cpu", **kwargs)
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)


def fragmentation(rate: float = 12.0) -> None:
    from app.cmd_validate import with_rate
    from simulator.workload import build_workload

    cfg = with_rate(_quick(), rate)
    model = LlamaModel(TINY)  # never run: the dry run's forward pass is a stub
    windows: dict[int, list[int]] = {}
    from profiler.executor.layout import run_lengths
    from profiler.executor.server import Executor, VirtualClock, make_core

    class _Windows(Executor):
        def _forward(self, ids, seqs, sample_rows):
            w = int(self.clock.now() // 2)
            for n, c, blocks in seqs:
                if n == 1 and c > 0:
                    windows.setdefault(w, []).extend(run_lengths(blocks[: -(-(c + 1) // 16)]))
            return [0] * len(sample_rows)

    class _Cache:
        num_blocks, block_size = 1024, 16

    core = make_core(cfg.scheduler, cfg.kv_cache, 1024, 2048)
    # stand-in step times of the quick preset's order (2.5 ms + 0.25 ms per token): only request overlap matters
    _Windows(model, core, clock=VirtualClock(lambda s: 2.5e-3 + 2.5e-4 * s.num_tokens), cache=_Cache()).serve(
        build_workload(cfg.workload, 0).to_requests())
    print("mean run per 2 s window: " + " ".join(f"{k * 2}s {np.mean(v):.2f}" for k, v in sorted(windows.items())))


def dryrun(folder: str) -> None:
    from app.cmd_validate import _calibrated, serving_dry_run, simulated_capacity, with_rate
    from profiler.executor.layout import policy_dry_run
    from simulator.config import validate_config
    from simulator.workload import build_workload

    d = Path(folder)
    cfg = _quick(json_sched(d))
    model = LlamaModel(TINY)
    roof = serving_dry_run(cfg, d / "cpu.yaml", model, 0.7)
    data = cfg.model_dump(mode="python")
    data["hardware"] = {"gpu_file": str(d / "cpu.yaml")}
    data["cost_model"] = {"kind": "profiled", "profile": str(d / "profile-insitu-cpu.parquet")}
    pcfg = validate_config(data, "dryrun")
    sc, cost = _calibrated(pcfg, roof.after_prompt_fraction)
    served = with_rate(pcfg, 0.7 * simulated_capacity(pcfg, cost))
    cal = policy_dry_run(served.scheduler, served.kv_cache, sc.num_kv_blocks, sc.max_model_len,
                         build_workload(served.workload, 0).to_requests(), cost.stage_seconds, model)
    for name, r in (("roofline clock", roof), ("calibrated clock", cal)):
        print(f"{name}: mean run {np.mean(r.runs):.2f} blocks, decode passes after a prompt pass "
              f"{r.after_prompt_fraction:.1%}")


def json_sched(folder: Path) -> str:
    import json

    res = folder / "result.json"
    return json.loads(res.read_text())["config"]["scheduler"]["kind"] if res.is_file() else "vllm"


def gemm() -> None:
    """Per-call GEMM time by m, timed inside decode passes of m sequences (the in-situ profiler's own timer)."""
    from collections import defaultdict

    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0)
    by: dict[tuple, list[float]] = defaultdict(list)
    for b in range(1, 10):
        for _, _, rec in _time_pass(model, cache, [(1, 128)] * b, 16, perm, 0.3, 10, 100, CLOCK):
            for op, key, sec in rec:
                if op == "gemm" and key[1:] in ((1024, 512), (2752, 512)):
                    by[key].append(sec)
    for n in (1024, 2752):
        print(f"{n}x512 weight: " + "  ".join(f"m={m} {np.median(by[(m, n, 512)]) * 1e6:.0f} us"
                                              for m in range(1, 10)))


def gather() -> None:
    """The decode path's page gather alone, last-level cache flushed before each repeat (as in serving, where a
    pass's other work evicts the KV): `cache[pages]` vs `cache.index_select(0, pages)`, contiguous vs scattered
    blocks; 4 sequences x 8 blocks, K and V, 4 layers of small-llama's cache shape."""
    dims = SMALL
    k = torch.randn(dims.num_layers, 1024, 16, dims.num_kv_heads, dims.head_dim)
    v = torch.randn_like(k)
    flush = torch.empty(48 * 2 ** 20 // 4)  # 48 MB > the 32 MB L3
    rng = np.random.default_rng(0)
    layouts = {"contiguous": [torch.arange(100 + 24 * i, 108 + 24 * i) for i in range(4)],
               "scattered": [torch.from_numpy(p) for p in rng.permutation(1024)[:32].reshape(4, 8)]}
    ways = {"indexing": lambda c, p: c[p], "index_select": lambda c, p: c.index_select(0, p)}
    for _ in range(2):
        for way, fn in ways.items():
            res = {}
            for name, tabs in layouts.items():
                ts = []
                for _ in range(80):
                    flush.fill_(1.0)
                    t0 = CLOCK()
                    for layer in range(dims.num_layers):
                        for p in tabs:
                            fn(k[layer], p)
                            fn(v[layer], p)
                    ts.append(CLOCK() - t0)
                res[name] = np.median(ts) * 1e3
            print(f"{way:12s} " + "  ".join(f"{n} {t:.3f} ms" for n, t in res.items()), flush=True)


def ragged() -> None:
    """Decode passes of B sequences at one context vs at ragged contexts with the same total (served batches
    are ragged); runs of 3 consecutive blocks; each twice, alternating."""
    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0)
    rng = np.random.default_rng(0)
    for b in (2, 8, 32):
        for _ in range(2):
            c = rng.integers(40, 361, b)
            c = np.rint(c - c.mean() + 200).astype(int)
            c[0] += 200 * b - int(c.sum())
            for kind, seqs in (("uniform", [(1, 200)] * b), ("ragged", [(1, int(x)) for x in c])):
                reps = _time_pass(model, cache, seqs, 16, perm, 0.5, 10, 200, CLOCK)
                att = np.median([sum(s for op, _, s in rec if op == "attention") for _, _, rec in reps])
                print(f"{b} decodes, {kind:8s}: attention {att * 1e3:.3f} ms, pass {np.median([r[0] for r in reps]) * 1e3:.3f} ms",
                      flush=True)


def served(sched: str = "sarathi") -> None:
    """`llmsim validate --quick --scheduler SCHED` with every kernel call of the served passes timed
    (run_validation(op_breakdown=True)): where the cost model's per-pass error sits."""
    res = _validate_quick(sched, op_breakdown=True)
    print({k: f"{v:+.1%}" for k, v in res.errors.items() if v is not None and k.endswith("p50")},
          f"drift {res.profile_drift:+.1%}" if res.profile_drift is not None else "")
    df = res.op_breakdown.copy()
    df["measured_s"] = df["measured_s"].round(3)
    df["predicted_s"] = df["predicted_s"].round(3)
    df["error"] = (df["error"] * 100).round(1)
    print(df.to_string(index=False))


def replay(sched: str = "sarathi") -> None:
    """`validate --quick` with every served forward pass logged (token ids, rows, blocks); then the logged
    passes replayed without the serving loop, in served order, interleaved (3 rounds, so slow machine drift
    hits all alike): each pass timed in order, right after itself, and its synthetic twin — the same
    (new tokens, context) rows on the in-situ profile's block layout, as the profiler would run that shape —
    right after itself. Served vs replayed: the serving loop's effect; replayed vs twin: what the synthetic
    passes miss of served ones at equal shapes; the twin vs the cost model: interpolation."""
    import gc

    from app import cmd_validate
    from app.cmd_validate import pinned
    from profiler.executor import server, torch_threads

    log: list = []
    fwd_s: list[float] = []
    holder: dict = {}
    orig, orig_finish = server.Executor._forward, cmd_validate.ProfileRun.finish

    def logged(self, ids, seqs, rows):
        if type(self.clock).__name__ != "CPUClock":  # the policy dry runs use a virtual clock
            return orig(self, ids, seqs, rows)
        log.append((list(ids), [(n, c, list(b)) for n, c, b in seqs], list(rows)))
        holder["ex"] = self
        t = CLOCK()
        out = orig(self, ids, seqs, rows)
        fwd_s.append(CLOCK() - t)
        return out

    def finish(self, say=lambda s: None):
        holder["session"] = self.session
        return orig_finish(self, say)

    res = _validate_quick(sched, ((server.Executor, "_forward", logged),
                                  (cmd_validate.ProfileRun, "finish", finish)))
    ex, sess, n = holder["ex"], holder["session"], len(log)
    perm = sess.perm.tolist()
    twins = [_pass_fn(ex.model, ex.cache, [(k, c) for k, c, _ in seqs], 16, perm, CLOCK) for _, seqs, _ in log]
    in_order, after_self, twin = np.zeros(n), np.zeros(n), np.zeros(n)
    with torch_threads(1), pinned(True):
        gc.collect()
        gc.disable()
        for _ in range(3):
            for i, (ids, seqs, rows) in enumerate(log):
                t0 = CLOCK()
                ex._forward(ids, seqs, rows)
                t1 = CLOCK()
                ex._forward(ids, seqs, rows)
                t2 = CLOCK()
                twins[i]()
                in_order[i] += (t1 - t0) / 3
                after_self[i] += (t2 - t1) / 3
                twin[i] += twins[i]() / 3
        gc.enable()
    fw = np.asarray(fwd_s)
    st = res.measured_steps
    pre = st["prefill_tokens"].to_numpy() > 0
    b = st["batch_size"].to_numpy()
    dur = (st["end_s"] - st["start_s"]).to_numpy()
    pred = res.predicted_step_s
    print({k: f"{v:+.1%}" for k, v in res.errors.items() if v is not None and k.endswith("p50")})
    one = pre & (b == 1) & (st["decode_tokens"].to_numpy() == 0)
    groups = [("decode passes", ~pre), *((f"  decode, {lo + 1}-{hi} seqs", ~pre & (b > lo) & (b <= hi))
                                        for lo, hi in ((0, 1), (1, 4), (4, 16), (16, 64))),
              ("passes with prompt tokens", pre), ("  one prompt alone", one),
              ("all passes", pre | ~pre)]
    for name, m in groups:
        if not m.any():
            continue
        print(f"{name} ({m.sum()}): served forward {fw[m].sum():.3f} s; replayed in order "
              f"{in_order[m].sum() / fw[m].sum() - 1:+.2%}, right after itself {after_self[m].sum() / fw[m].sum() - 1:+.2%}"
              f"; synthetic twin vs replayed after itself {twin[m].sum() / after_self[m].sum() - 1:+.2%}"
              f"; cost model vs served pass (loop included) {pred[m].sum() / dur[m].sum() - 1:+.2%}"
              f", vs twin {pred[m].sum() / twin[m].sum() - 1:+.2%}")
    # One-prompt passes by length: a gap that is constant in µs (not in %) points at a per-pass term
    toks = st["num_tokens"].to_numpy()
    for lo, hi in ((0, 64), (64, 128), (128, 192), (192, 256), (256, 4096)):
        m = one & (toks > lo) & (toks <= hi)
        if m.any():
            print(f"one prompt of {lo + 1}-{hi} tokens ({m.sum()}): cost model - served "
                  f"{np.mean(pred[m] - dur[m]) * 1e6:+.0f} us, - twin {np.mean(pred[m] - twin[m]) * 1e6:+.0f} us; "
                  f"twin - served forward {np.mean(twin[m] - fw[m]) * 1e6:+.0f} us")
    # The same by quarter of the run: a slowdown late in the served run that the replays (same KV state, right
    # after the run) share is the state's; one they do not share is the serving's.
    q = np.minimum(4 * np.arange(n) // max(n, 1), 3)
    for k in range(4):
        m = q == k
        print(f"quarter {k + 1} ({m.sum()} passes): replayed in order {in_order[m].sum() / fw[m].sum() - 1:+.2%}, "
              f"right after itself {after_self[m].sum() / fw[m].sum() - 1:+.2%}, twin vs replayed after itself "
              f"{twin[m].sum() / after_self[m].sum() - 1:+.2%}, cost model vs served {pred[m].sum() / dur[m].sum() - 1:+.2%}")


def loop(sched: str = "vllm") -> None:
    """The serving loop's effect on the next pass: the executor serves 200 synthetic requests (32-256 prompt,
    8-64 output tokens, Poisson at ~33/s on a virtual clock) with the quick preset's model and policy, and
    every pass is run again right after itself; in-loop over re-run time, per pass kind, 3 runs."""
    import gc

    from app.cmd_validate import _dims, quick_config
    from hwmodels.models import resolve_model
    from policies.request import Request
    from profiler.executor import Executor, LlamaModel, VirtualClock
    from profiler.executor.server import make_core
    from simulator.config import validate_config

    cfg = validate_config(quick_config(sched))
    model = LlamaModel(_dims(cfg, resolve_model(cfg.model)), seed=0)

    class Twice(Executor):
        pairs: list = []

        def _forward(self, ids, seqs, rows):
            t0 = CLOCK()
            out = Executor._forward(self, ids, seqs, rows)
            t1 = CLOCK()
            Executor._forward(self, ids, seqs, rows)
            t2 = CLOCK()
            self.pairs.append((t1 - t0, t2 - t1, any(n > 1 for n, _, _ in seqs)))
            return out

    rng = np.random.default_rng(1)
    for rep in range(3):
        core = make_core(cfg.scheduler, cfg.kv_cache, 1024, 2048)
        ex = Twice(model, core, clock=VirtualClock(lambda s: 0.004 + 0.0002 * s.num_tokens), seed=0)
        ex.pairs = []
        t = np.cumsum(rng.exponential(0.03, 200))
        reqs = [Request(i, float(t[i]), int(rng.integers(32, 256)), int(rng.integers(8, 64))) for i in range(200)]
        gc.collect()
        gc.disable()
        try:
            ex.serve(reqs)
        finally:
            gc.enable()
        p = np.array(ex.pairs)
        dec, pro = p[:, 2] == 0, p[:, 2] == 1
        print(f"{sched} run {rep}: decode passes ({dec.sum()}) in loop vs re-run {p[dec, 0].sum() / p[dec, 1].sum() - 1:+.2%}"
              f"; passes with prompt tokens ({pro.sum()}) {p[pro, 0].sum() / p[pro, 1].sum() - 1:+.2%}", flush=True)


def glue(paths: list[str]) -> None:
    """Decode-pass glue rows (op executor_overhead, tokens == sequences) of in-situ profile tables against
    one line through all of them and against the fit validate uses (a line through 2+ sequences, one
    sequence as measured)."""
    from app.cmd_validate import overhead_rows
    from profiler.executor.overhead import fit_overhead_robust, fit_pass_overhead

    if not paths:
        sys.exit("glue: give one or more profile tables (e.g. a validate output folder's profile-insitu-cpu.parquet)")
    for p in paths:
        if not Path(p).is_file():
            sys.exit(f"glue: {p!r}: file not found")
        rows = overhead_rows(Path(p))
        dec = sorted(r for r in rows if r[0] == r[1])
        line, used = fit_overhead_robust(dec), fit_pass_overhead(rows)
        print(p)
        print("  seqs: measured / one line / validate's fit (ms)")
        for b, _, sec in dec:
            print(f"  {b:3d}: {sec * 1e3:.3f} / {line.seconds(b, b) * 1e3:.3f} / {used.seconds(b, b, 0) * 1e3:.3f}")


def single() -> None:
    """One request (100-token prompt, 200 outputs) served alone by the executor with the quick preset's
    model and policy, its decode passes' forward timed, vs synthetic one-sequence decode passes (after
    themselves, as the in-situ profile times them) at contexts 120 / 200 / 280; 3 rounds."""
    import gc

    from app.cmd_validate import _dims, quick_config
    from hwmodels.models import resolve_model
    from policies.request import Request
    from profiler.executor import Executor, LlamaModel, VirtualClock
    from profiler.executor.server import make_core
    from simulator.config import validate_config

    cfg = validate_config(quick_config("vllm"))
    dims = _dims(cfg, resolve_model(cfg.model))
    model = LlamaModel(dims, seed=0)
    cache = PagedKVCache(dims.num_layers, 1100, 16, dims.num_kv_heads, dims.head_dim, model.dtype, model.device)
    perm = block_order(1100, [3], 0).tolist()

    class Timed(Executor):
        times: list = []

        def _forward(self, ids, seqs, rows):
            t = CLOCK()
            out = Executor._forward(self, ids, seqs, rows)
            if seqs[0][0] == 1:
                self.times.append((CLOCK() - t, seqs[0][1]))
            return out

    gc.disable()
    try:
        for _ in range(3):
            ex = Timed(model, make_core(cfg.scheduler, cfg.kv_cache, 1024, 2048), clock=VirtualClock(lambda s: 3e-3),
                       cache=cache)
            ex.times = []
            ex.serve([Request(0, 0.0, 100, 200)])
            a = np.array(ex.times)
            served = [np.median(a[np.abs(a[:, 1] - c) < 20, 0]) for c in (120, 200, 280)]
            syn = []
            for c in (120, 200, 280):
                f = _pass_fn(model, cache, [(1, c)], 16, perm, CLOCK)
                f()
                syn.append(np.median([f() for _ in range(40)]))
            print("one sequence, ctx ~120/200/280: served forward " + " / ".join(f"{x * 1e3:.3f}" for x in served)
                  + " ms; synthetic " + " / ".join(f"{x * 1e3:.3f}" for x in syn) + " ms", flush=True)
    finally:
        gc.enable()


def streak() -> None:
    """A decode pass of B sequences (150 context) timed 12 times in a row right after a 160-token prompt pass,
    or after 12 passes of B+1 sequences on other blocks; medians of 20 repetitions, relative to the 9th-12th."""
    import gc

    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    k_max = 12
    gc.disable()
    try:
        for b in (1, 4, 12):
            dec = _pass_fn(model, cache, [(1, 150)] * b, 16, perm, CLOCK)
            other = _pass_fn(model, cache, [(1, 150)] * (b + 1), 16, perm[800:], CLOCK)
            prompt = _pass_fn(model, cache, [(160, 0)], 16, perm[1500:], CLOCK)
            for name, dis, n in (("after a prompt", prompt, 1), (f"after 12 x {b + 1} decodes", other, 12)):
                t = np.zeros((20, k_max))
                for r in range(20):
                    for _ in range(n):
                        dis()
                    for k in range(k_max):
                        t[r, k] = dec()
                med = np.median(t, 0)
                base = np.median(med[-4:])
                print(f"{b} decodes {name}: pass 1..{k_max} vs 9-12 (%) "
                      + " ".join(f"{100 * (x / base - 1):+.1f}" for x in med), flush=True)
    finally:
        gc.enable()


def neighbours() -> None:
    """GEMM time inside a decode pass of B sequences when the pass before it was itself, the same shape on other
    KV blocks, B+1 or B-1 sequences (served batches change size as requests join and leave)."""
    from profiler.executor.insitu import _pass_fn

    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    for b in (3, 6, 12):
        main = _pass_fn(model, cache, [(1, 150)] * b, 16, perm, CLOCK)
        prevs = {"self": main, "other KV": _pass_fn(model, cache, [(1, 150)] * b, 16, perm[1000:], CLOCK),
                 "B+1": _pass_fn(model, cache, [(1, 150)] * (b + 1), 16, perm[1000:], CLOCK),
                 "B-1": _pass_fn(model, cache, [(1, 150)] * (b - 1), 16, perm[1000:], CLOCK)}
        gem: dict[str, list[float]] = {k: [] for k in prevs}
        tot: dict[str, list[float]] = {k: [] for k in prevs}
        for _ in range(4):
            for k, prev in prevs.items():
                for _ in range(15):
                    prev()
                    rec: list = []
                    tot[k].append(main(rec))
                    gem[k].append(sum(sec for op, _, sec in rec if op == "gemm"))
        print(f"{b} decodes: " + " | ".join(f"after {k}: gemm {np.median(gem[k]) * 1e3:.3f} ms, pass "
                                            f"{np.median(tot[k]) * 1e3:.3f} ms" for k in prevs), flush=True)


def skew() -> None:
    """Mean over median of repeated synthetic passes, whole pass and per op kind (latencies sum pass times, so
    a right-skewed op whose median the profile keeps would be under-predicted by the difference)."""
    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0)
    for seqs in ([(1, 128)] * 4, [(1, 200)] * 16, [(64, 128)] + [(1, 128)] * 8):
        reps = _time_pass(model, cache, seqs, 16, perm, 2.0, 100, 300, CLOCK)
        tot = np.array([r[0] for r in reps])
        by: dict[str, list[float]] = {}
        for _, _, rec in reps:
            acc: dict[str, float] = {}
            for op, _, sec in rec:
                acc[op] = acc.get(op, 0.0) + sec
            for k, v in acc.items():
                by.setdefault(k, []).append(v)
        print(f"{len(seqs)} rows: pass mean/median {tot.mean() / np.median(tot) - 1:+.1%}; " + ", ".join(
            f"{k} {np.mean(v) / np.median(v) - 1:+.1%}" for k, v in by.items()), flush=True)


def medmean() -> None:
    """Per synthetic pass: the mean of untimed passes vs what the profile's rows add up to — the sum over
    kernels of their median seconds per pass plus the median glue of the timed passes — and the timed
    passes' mean over the untimed one (the instrumentation's cost)."""
    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0)
    ov = clock_overhead(CLOCK)
    for seqs in [[(1, 128)] * b for b in (1, 2, 4, 8, 16, 32)] + [[(64, 0)], [(160, 0)]]:
        reps = _time_pass(model, cache, seqs, 16, perm, 1.5, 40, 400, CLOCK)
        untimed = np.array([u for u, _, _ in reps])
        per_key: dict[tuple, list[float]] = {}
        glue_s, timed = [], []
        for _, inst, rec in reps:
            acc: dict[tuple, float] = {}
            for op, key, sec in rec:
                acc[(op, str(key))] = acc.get((op, str(key)), 0.0) + sec - ov
            for k, v in acc.items():
                per_key.setdefault(k, []).append(v)
            glue_s.append(inst - sum(sec for _, _, sec in rec) - len(rec) * ov)
            timed.append(inst - 2 * len(rec) * ov)
        rows = sum(np.median(v) for v in per_key.values()) + np.median(glue_s)
        print(f"{len(seqs)} x {seqs[0]}: {len(reps)} passes, untimed mean {untimed.mean() * 1e3:.3f} ms (median "
              f"{np.median(untimed) * 1e3:.3f}); kernel medians + median glue {rows * 1e3:.3f} ms "
              f"({rows / untimed.mean() - 1:+.2%}); timed passes {np.mean(timed) / untimed.mean() - 1:+.2%}",
              flush=True)


def interp(grid: str = "old") -> None:
    """Prompt passes of every length 32..256 (median of 3, each after the profile's conditioning pass) vs
    log-log interpolation between the lengths of a prompt grid: "old" (multiples of 8: 32, 48, 64, 96, ...,
    256) or "new" (InsituGrid().prefill's lengths: 1, 2, 5, 6 mod 8 until session "f" of 2026-11-26, now odd
    ones alternating 1/5 and 3/7 for the cost model's per-alignment-class GEMM curves), one curve through all
    of them; mean deviation overall, by range and by length mod 8 (> 0: the interpolation is fast)."""
    from profiler.executor.insitu import CONDITION, InsituGrid

    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    cond = _pass_fn(model, cache, CONDITION, 16, perm[1800:], CLOCK)
    rows = ([32, 48, 64, 96, 128, 160, 192, 224, 256] if grid == "old" else
            [n for b, n in InsituGrid().prefill if b == 1 and 32 <= n <= 256])
    sizes = sorted(set(range(32, 257)) | set(rows))
    t: dict[int, list[float]] = {}
    for _ in range(3):
        for n in sizes:
            f = _pass_fn(model, cache, [(n, 0)], 16, perm, CLOCK)
            cond()
            f()
            cond()
            t.setdefault(n, []).append(f())
    med = {n: float(np.median(v)) for n, v in t.items()}
    g = np.log(np.array(rows, float))
    gy = np.log([med[n] for n in rows])
    dev = {n: med[n] / np.exp(np.interp(np.log(n), g, gy)) - 1 for n in range(rows[0] + 1, rows[-1]) if n not in rows}
    d = np.array(list(dev.values()))
    print(f"{grid} grid {rows}: {d.size} lengths off the grid, measured / interpolated mean {d.mean():+.2%}, "
          f"mean |.| {np.abs(d).mean():.2%}")
    print("  by length mod 8: " + " ".join(f"{r}: {np.mean([x for n, x in dev.items() if n % 8 == r]):+.2%}"
                                           for r in range(8)))


def jitter() -> None:
    """Pass-to-pass variability: one pass repeated back to back (8 x 128, 2 x 128, 24 x 200 decodes), and a
    random mix of 2/5/9/14 decodes; log-sd around each shape's median and autocorrelation at lags 1..30."""
    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()

    def stats(name, x):
        ac = [np.corrcoef(x[:-k], x[k:])[0, 1] for k in (1, 2, 3, 5, 10, 30)]
        print(f"{name}: {len(x)} passes, log-sd {x.std():.2%}, p99 {np.percentile(x, 99):+.1%}, autocorrelation at "
              "lags 1/2/3/5/10/30 " + " ".join(f"{a:.2f}" for a in ac), flush=True)

    for seqs in ([(1, 128)] * 8, [(1, 128)] * 2, [(1, 200)] * 24):
        f = _pass_fn(model, cache, seqs, 16, perm, CLOCK)
        f()
        t = np.array([f() for _ in range(1500)])
        stats(f"{len(seqs)} x {seqs[0][1]} back to back", np.log(t / np.median(t)))
    fs = [_pass_fn(model, cache, [(1, 128)] * b, 16, perm, CLOCK) for b in (2, 5, 9, 14)]
    order = np.random.default_rng(0).integers(0, len(fs), 3000)
    t = np.array([fs[i]() for i in order])
    med = {i: np.median(t[order == i]) for i in range(len(fs))}
    stats("random mix of 2/5/9/14", np.log(t / np.array([med[i] for i in order])))


def state(sched: str = "sarathi") -> None:
    """`validate --quick` with Executor.serve wrapped: minor page faults and gc-tracked objects over each serve
    (the policy dry runs and the real one), with gc.collect() after each; then the p50 errors."""
    import gc
    import resource

    from profiler.executor import server

    orig = server.Executor.serve

    def serve(self, reqs, *args, **kwargs):
        f0, n0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, len(gc.get_objects())
        res = orig(self, reqs, *args, **kwargs)
        f1, n1 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, len(gc.get_objects())
        print(f"{type(self).__name__}.serve: {len(res.steps)} passes, {f1 - f0} minor faults, gc objects {n0} -> "
              f"{n1}, gc.collect() found {gc.collect()}", flush=True)
        return res

    res = _validate_quick(sched, ((server.Executor, "serve", serve),))
    st = res.as_json()["step_time"]
    print({k: f"{v:+.1%}" for k, v in res.errors.items() if v is not None and k.endswith("p50")},
          f"drift {res.profile_drift:+.1%}" if res.profile_drift is not None else "",
          f"passes {st.get('predicted_over_measured_sum', float('nan')):+.1%}",
          f"rate {res.rate_per_s:.2f}/s of capacity {res.capacity_per_s:.2f}/s",
          f"TPOT p50 measured {res.measured['tpot_s']['p50'] * 1e3:.2f} ms, simulated "
          f"{res.simulated['tpot_s']['p50'] * 1e3:.2f} ms")


def faults(sched: str = "vllm") -> None:
    """`validate --quick` with the minor page faults of this thread counted over every served pass (run_pass,
    the forward and sampling): by pass kind, the share of passes with any and the mean per pass. A pass
    that faults in fresh heap pages (its temporaries outgrow what earlier passes left) pays the kernel's
    page zeroing, which the profile's repeated passes of one shape do not."""
    import resource

    from profiler.executor import server

    orig = server.Executor.run_pass
    per_pass: list[tuple[int, int, int]] = []  # (prompt tokens, decode tokens, faults) of CPU-clock passes

    def run_pass(self, plan):
        if type(self.clock).__name__ != "CPUClock":  # the policy dry runs use a virtual clock
            return orig(self, plan)
        f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        out = orig(self, plan)
        s = plan.shape
        per_pass.append((s.num_prefill_tokens, s.num_decode_tokens,
                         resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0))
        return out

    res = _validate_quick(sched, ((server.Executor, "run_pass", run_pass),))
    a = np.array(per_pass)
    print({k: f"{v:+.1%}" for k, v in res.errors.items() if v is not None and k.endswith("p50")})
    kinds = (("prompt only", (a[:, 0] > 0) & (a[:, 1] == 0)), ("prompt and decodes", (a[:, 0] > 0) & (a[:, 1] > 0)),
             ("decode only", a[:, 0] == 0))
    for name, m in kinds:
        if m.any():
            f = a[m, 2]
            print(f"{name}: {m.sum()} passes, {np.mean(f > 0):.1%} with minor faults, {f.mean():.1f} faults per pass "
                  f"(max {f.max()})")


def heap(rounds: int = 16, passes: int = 15) -> None:
    """Does the malloc heap's state move pass times? Rounds alternate a control (the same passes again) with
    a heap perturbation (Python lists of random sizes, ~40 % of them kept alive, as a served run's token lists
    and step rows leave behind), then time `passes` passes each of 8 decodes x 128 and a 129-token prompt
    (medians). Activations come from the glibc heap (mmap only above 32 MB, `steady_allocator`), so their
    addresses follow the heap's history. Prints the sd of the round medians for each condition."""
    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    fns = {"8 decodes x 128": _pass_fn(model, cache, [(1, 128)] * 8, 16, perm, CLOCK),
           "129-token prompt": _pass_fn(model, cache, [(129, 0)], 16, perm[1000:], CLOCK)}
    rng = np.random.default_rng(0)
    keep: list = []
    res = {(c, k): [] for c in ("control", "perturbed") for k in fns}
    for r in range(rounds):
        cond = "perturbed" if r % 2 else "control"
        if cond == "perturbed":
            junk = [list(range(int(n))) for n in rng.integers(50, 20000, 400)]
            keep.extend(j for j in junk if rng.random() < 0.4)
            del junk
        for k, f in fns.items():
            for _ in range(3):
                f()
            res[(cond, k)].append(np.median([f() for _ in range(passes)]))
    for k in fns:
        for c in ("control", "perturbed"):
            x = np.array(res[(c, k)])
            print(f"{k:18s} {c:9s}: round medians mean {x.mean() * 1e3:.3f} ms, sd {x.std(ddof=1) / x.mean():.2%}, "
                  f"range {x.min() / x.mean() - 1:+.1%}..{x.max() / x.mean() - 1:+.1%}  "
                  + " ".join(f"{v * 1e3:.2f}" for v in x), flush=True)


def prompt_pred(reps: int = 40) -> None:
    """A one-prompt pass (L tokens) after the profile's conditioning pass (CONDITION: 4 decodes at 128) vs after
    the passes that precede served ones (decode batches of 1..25 sequences, another prompt): median ms and the
    ratio to the conditioned one, interleaved round-robin so the machine's drift is common to all."""
    from profiler.executor.insitu import CONDITION

    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    before = {"condition (4x128)": _pass_fn(model, cache, CONDITION, 16, perm[1500:], CLOCK),
              "1 decode @160": _pass_fn(model, cache, [(1, 160)], 16, perm[1500:], CLOCK),
              "12 decodes @160": _pass_fn(model, cache, [(1, 160)] * 12, 16, perm[1500:], CLOCK),
              "25 decodes @160": _pass_fn(model, cache, [(1, 160)] * 25, 16, perm[1200:], CLOCK),
              "a 150-token prompt": _pass_fn(model, cache, [(150, 0)], 16, perm[1900:], CLOCK)}
    for length in (50, 100, 160, 230):
        prompt = _pass_fn(model, cache, [(length, 0)], 16, perm[:100], CLOCK)
        ts: dict[str, list[float]] = {k: [] for k in before}
        for _ in range(reps):
            for name, fn in before.items():
                fn()
                ts[name].append(prompt())
        ref = np.median(ts["condition (4x128)"])
        print(f"{length}-token prompt: " + "; ".join(
            f"after {k} {np.median(v) * 1e3:.3f} ms ({np.median(v) / ref - 1:+.1%})" for k, v in ts.items()), flush=True)


def prompt_blocks(reps: int = 30) -> None:
    """A one-prompt pass (L tokens, after the profile's conditioning pass) whose KV goes to the same blocks every
    time, as the in-situ grid times it, vs to fresh blocks each time (rotating through the cache, as a served
    prompt gets blocks off the free list): median ms, interleaved so the machine's drift is common to both."""
    from profiler.executor.insitu import CONDITION

    model, cache = _setup(SMALL)
    perm = block_order(NUM_BLOCKS, [3], 0).tolist()
    cond = _pass_fn(model, cache, CONDITION, 16, perm[-40:], CLOCK)
    for length in (50, 100, 160, 230):
        nb = -(-length // 16)
        same = _pass_fn(model, cache, [(length, 0)], 16, perm[:nb], CLOCK)
        fresh = [_pass_fn(model, cache, [(length, 0)], 16, perm[nb * (k + 1):nb * (k + 2)], CLOCK)
                 for k in range(min(reps, (NUM_BLOCKS - 40) // nb - 2))]
        a, b = [], []
        same()
        for fn in fresh:
            cond()
            a.append(same())
            cond()
            b.append(fn())
        print(f"{length}-token prompt: same blocks {np.median(a) * 1e3:.3f} ms, "
              f"fresh blocks {np.median(b) * 1e3:.3f} ms "
              f"({np.median(b) / np.median(a) - 1:+.1%}, {(np.median(b) - np.median(a)) * 1e6:+.0f} us)", flush=True)


def compose(rounds: int = 4) -> None:
    """One-prompt passes, untimed after the profile's conditioning pass (as the grid times them), vs the cost
    model `validate` builds from an in-situ profile taken in this process (`rounds` sweeps of the quick grid as
    validate --quick takes them), by part: kernels (ProfiledCostModel, per op kind) and glue (the fitted prompt
    line), against instrumented passes of the same shapes timed now (per op kind, median over passes of the
    per-pass sums) and the glue rows of the profile. Lengths on and off the grid."""
    import tempfile

    from app.cmd_validate import OP_KINDS, overhead_rows
    from hwmodels.shapes import BatchShape
    from profiler.devices import cpu_device_spec, write_device_spec
    from profiler.executor.insitu import CONDITION, InsituGrid, InsituSession, _num_blocks, need_blocks
    from profiler.executor.overhead import fit_pass_overhead
    from simulator.config import validate_config
    from simulator.simulate import resolve

    kinds = OP_KINDS
    model = LlamaModel(SMALL, seed=0, dtype=torch.float32)
    cache = PagedKVCache(SMALL.num_layers, need_blocks(model, InsituGrid(), 16, 1024), 16, SMALL.num_kv_heads,
                         SMALL.head_dim, model.dtype, model.device)  # as validate --quick sizes it
    sess = InsituSession(model, clock="cpu", cache=cache, block_runs=[3])
    ov = sess.overhead
    perm = sess.perm.tolist()
    cond = _pass_fn(model, cache, CONDITION, 16, perm[-_num_blocks(CONDITION, 16):], CLOCK)
    # one prompt of n tokens (timed after the conditioning pass, as the grid times it) or n decodes at 128
    # context (after itself, as the grid times decode passes)
    cases = [(n, [(n, 0)]) for n in (33, 40, 50, 64, 69, 90, 102, 120, 129, 150, 162, 175, 189, 200, 222, 240,
                                     249)]
    cases += [(-b, [(1, 128)] * b) for b in (1, 2, 4, 8, 16)]
    fns = {n: _pass_fn(model, cache, seqs, 16, perm, CLOCK) for n, seqs in cases}
    untimed: dict[int, list[float]] = {n: [] for n, _ in cases}
    inst: dict[int, list[dict]] = {n: [] for n, _ in cases}
    for _ in range(rounds):  # profile sweeps and these passes interleaved: the machine's drift hits both alike
        sess.measure(1, 0.09 / rounds, 3, 50, rounds)
        for _ in range(3):
            for n, _ in cases:
                pre = cond if n > 0 else fns[n]
                pre()
                untimed[n].append(fns[n]())
                rec: list = []
                pre()
                total = fns[n](rec)
                acc = {"gemm": 0.0, "attention": 0.0, "elementwise": 0.0}
                for op, _, sec in rec:
                    acc[kinds[op]] += sec - ov
                acc["glue"] = total - sum(sec for _, _, sec in rec) - len(rec) * ov
                inst[n].append(acc)
    tmp = Path(tempfile.mkdtemp())
    table = tmp / "profile.parquet"
    sess.write(table)
    data = _quick("vllm").model_dump(mode="python")
    data["hardware"] = {"gpu_file": str(write_device_spec(tmp / "cpu.yaml", cpu_device_spec(quick=True)))}
    data["cost_model"] = {"kind": "profiled", "profile": str(table)}
    base = resolve(validate_config(data, "compose")).cost_model
    rows = overhead_rows(table)
    glue = fit_pass_overhead(rows)
    glue_row = {(b, t): sec for b, t, sec in rows}
    print("us per pass; cost model part - measured now (instrumented passes, median of per-pass sums)")
    tot_gap = []
    for n, seqs in cases:
        shape = BatchShape()
        for new, ctx in seqs:
            shape.add(new, ctx, decode=n < 0, samples=True)
        pred = {"gemm": 0.0, "attention": 0.0, "elementwise": 0.0, "other": 0.0}
        for o in base.step_cost(shape).ops:  # "other": roofline terms (sampling) the executor's glue holds
            pred[o.kind if o.kind in pred else "other"] += o.seconds
        pred["glue"] = glue.seconds(shape.num_seqs, shape.num_tokens, shape.num_prefill_tokens)
        meas = {k: float(np.median([a.get(k, 0.0) for a in inst[n]])) for k in pred}
        u = float(np.median(untimed[n]))
        p = sum(pred.values())
        if n > 0:
            tot_gap.append(p - u)
        row = glue_row.get((shape.num_seqs, shape.num_tokens))
        name = f"{n:4d}-token prompt" if n > 0 else f"{-n:2d} decodes x 128"
        print(f"{name}{'*' if row is not None else ' '} untimed {u * 1e3:7.3f} ms, cost model {p * 1e3:7.3f} ms "
              f"({(p - u) * 1e6:+5.0f} us); " + ", ".join(f"{k} {(pred[k] - meas[k]) * 1e6:+5.0f}" for k in pred)
              + f"; instrumented parts - untimed {(sum(meas.values()) - u) * 1e6:+5.0f}"
              + (f"; glue row - line {(row - pred['glue']) * 1e6:+4.0f}" if row is not None else ""), flush=True)
    print(f"prompts: mean cost model - untimed {np.mean(tot_gap) * 1e6:+.0f} us (* = a shape of the grid)")


def main() -> None:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    steady_allocator()
    what = sys.argv[1] if len(sys.argv) > 1 else "layout"
    arg = sys.argv[2] if len(sys.argv) > 2 else None
    commands = {  # name -> (run with the optional argument, usage)
        "layout": (lambda a: layout(), "layout"),
        "drift": (lambda a: drift(float(a) if a else 240.0), "drift [SECS]"),
        "models": (lambda a: drift(float(a) if a else 60.0, 3.0, (("tiny-llama", TINY), ("small-llama", SMALL))),
                   "models [SECS]"),
        "predecessor": (lambda a: predecessor(), "predecessor"),
        "prompt_pred": (lambda a: prompt_pred(int(a) if a else 40), "prompt_pred [REPS]"),
        "prompt_blocks": (lambda a: prompt_blocks(int(a) if a else 30), "prompt_blocks [REPS]"),
        "mixed": (lambda a: mixed(), "mixed"),
        "gemm": (lambda a: gemm(), "gemm"),
        "gather": (lambda a: gather(), "gather"),
        "ragged": (lambda a: ragged(), "ragged"),
        "neighbours": (lambda a: neighbours(), "neighbours"),
        "skew": (lambda a: skew(), "skew"),
        "medmean": (lambda a: medmean(), "medmean"),
        "compose": (lambda a: compose(int(a) if a else 4), "compose [ROUNDS]"),
        "jitter": (lambda a: jitter(), "jitter"),
        "heap": (lambda a: heap(int(a) if a else 16), "heap [ROUNDS]"),
        "interp": (lambda a: interp(a or "old"), "interp [old|new]"),
        "streak": (lambda a: streak(), "streak"),
        "single": (lambda a: single(), "single"),
        "glue": (lambda a: glue(sys.argv[2:]), "glue TABLE..."),
        "state": (lambda a: state(a or "sarathi"), "state [SCHED]"),
        "faults": (lambda a: faults(a or "vllm"), "faults [SCHED]"),
        "loop": (lambda a: loop(a or "vllm"), "loop [SCHED]"),
        "replay": (lambda a: replay(a or "sarathi"), "replay [SCHED]"),
        "served": (lambda a: served(a or "sarathi"), "served [SCHED]"),
        "fragmentation": (lambda a: fragmentation(), "fragmentation"),
        "dryrun": (lambda a: dryrun(a) if a else sys.exit("dryrun needs DIR"), "dryrun DIR"),
    }
    if what not in commands:
        sys.exit(f"unknown measurement {what!r}: " + " | ".join(u for _, u in commands.values()))
    commands[what][0](arg)

if __name__ == "__main__":
    main()
