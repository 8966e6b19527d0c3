"""`llmsim validate`: the real executor vs the simulator on the same config, device and request list.

    policy dry run (null forward) ─► KV layout, pass mix ─┐
    profile this CPU, op by op, in situ ──────────────────┴─────────────►  ProfiledCostModel + overheads
    build the workload once ──► serve it on the real executor (real time)   ─┐
                           └──► replay it in the simulator (calibrated cost) ─┴─► per-metric errors

Profile (default "insitu"): every kernel of the executor timed where it runs, inside synthetic forward
passes on the executor's own model and KV cache (profiler.executor.insitu), plus the pass glue around the
kernels, the serving loop, a decode pass right after a prompt pass, one-sequence decode passes right after
other passes (`executor_single_streak`) and prompt+decode attention as ops of their own; the synthetic
sequences lie on KV blocks laid out as the policies lay them out in serving (profiler.executor.layout). The
sweeps are spread over time: a pilot, one on the layout of a dry run at the served rate, one during the served
run (in slices between passes, off the executor's clock: `ProfileRun.pauses`), one after it, so the cost model
sees the machine at the speeds the served passes ran at. "sweep" uses the
`llmsim profile` kernel sweep instead. Either way the cost model is calibrated only from op-level
measurements of synthetic passes, never from the executor's serving timings. Errors are signed:
simulated / measured − 1. The executor and the simulator build their ReplicaCore from the same config
with the same factories.

Clock: "wall" times the executor in real time (arrivals at their workload timestamps). On a shared
machine other processes take the core away mid-pass (and load can rise mid-run), so the CLI default
"cpu" measures the executor thread's own CPU time — idle gaps jump to the next arrival, arrivals keep
their timestamps on that clock — and profiles with the same clock; on an idle machine the two agree.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import pandas as pd
import typer

from hwmodels.cost import CostModel, OpCost, StepCost
from hwmodels.errors import UserError
from hwmodels.shapes import BatchShape
from simulator.config import Config, load_config, merge, validate_config
from simulator.metrics import request_latencies, summarize
from simulator.results import json_ready
from simulator.simulate import jitter_seed, resolve, simulate
from simulator.workload import build_workload

if TYPE_CHECKING:
    from profiler.executor.overhead import OverheadFit, PassOverhead

REPO = Path(__file__).resolve().parents[1]
QUICK_MODEL = REPO / "examples" / "small-llama" / "config.json"
MAX_KV_CACHE_BYTES = 4e9  # the executor allocates its KV cache in host memory; refuse more than this
ERROR_KEYS = ("ttft_p50", "ttft_p90", "ttft_p99", "tpot_p50", "tpot_p90", "tpot_p99", "e2e_p50", "e2e_p90",
              "e2e_p99", "throughput", "step_time")
DEFAULT_CHECK = ("ttft_p50", "tpot_p50", "e2e_p50")
GLUE_OPS = ("embedding", "sampling")  # cost-model ops the executor's measured glue already holds
# kind of each kernel the executor times in place (`profiler.executor.model._timed`), as the cost model's OpCost.kind
OP_KINDS = {"gemm": "gemm", "attention": "attention", "rmsnorm": "elementwise", "swiglu": "elementwise",
            "rope": "elementwise"}
QUARTER_RANGE_NOTE = 0.05  # note when the pass error's range over the run's quarters exceeds this (see its use)


def quick_config(scheduler: str = "vllm") -> dict[str, Any]:
    """The --quick preset: small-llama (4 layers, hidden 512, 14 M parameters, fp32) on one core of this CPU,
    300 requests of 32-256 prompt and 8-64 output tokens.

    Passes take 2.5 ms (one decode) to ~17 ms (20 decodes) and 15-70 ms with a prompt; the whole run takes
    about 110 s on the 2-core VM (~85 s of profiling, ~24 s of serving at 70 % load). NOTE: the model is sized so that a pass is mostly GEMM work on weights
    that do not fit this VM's caches (55 MB): with the 256-hidden examples/tiny-llama (16 MB, L3-resident,
    decode passes under 1 ms of mostly per-op overhead) the same decode pass varied with cv 2.7 % (range
    -4.5..+6.3 %) between 3 s windows, vs cv 1.0 % (-1.7..+2.2 %) for this one
    (`benchmarks/bench_executor_timing.py models`, 2026-11-25).
    """
    sched: dict[str, Any] = {"kind": scheduler, "max_batch_size": 64}
    if scheduler in ("sarathi", "splitfuse"):
        sched["chunk_size"] = 256
    else:
        sched["max_num_batched_tokens"] = 2048
    return {
        "model": {"name": "small-llama", "hf_config": str(QUICK_MODEL)},
        "quant": {"dtype": "fp32"},
        "scheduler": sched,
        "kv_cache": {"kind": "paged", "block_size": 16, "num_blocks": 1024},
        "workload": {"kind": "synthetic", "num_requests": 300,
                     "arrival": {"process": "poisson", "rate_per_s": 10.0},
                     "input_len": {"kind": "uniform", "low": 32, "high": 256},
                     "output_len": {"kind": "uniform", "low": 8, "high": 64}},
        "simulation": {"seed": 0},
    }


# ---------------------------------------------------------------------------------------------- cost
@dataclass(frozen=True)
class WithExecutorOverhead:
    """A cost model plus the executor's measured per-pass overheads: the pass glue around the kernels (op
    "executor_overhead"), the serving loop with the policy around the pass (op "executor_loop") and, for a
    decode-only pass, the expected extra time of following a pass with prompt tokens (op
    "executor_after_prompt", weighted by how often that happens under the policy: `after_prompt_fraction`,
    from a policy dry run; the cost model is per pass and stateless, so this term is its expectation) and,
    for a pass with prompt and decode rows, the extra attention time of running them together (op
    "executor_mixed_attention")."""

    base: CostModel
    overhead: "PassOverhead"
    after_prompt: "OverheadFit | None" = None
    # a float, or one share per decode batch-size bin (b-1).bit_length() (`DryRun.after_prompt_fractions`)
    after_prompt_fraction: float | tuple[float, ...] = 0.0
    mixed: "OverheadFit | None" = None  # op "executor_mixed_attention": (decodes, prompt tokens) -> seconds
    # expected extra seconds of a one-sequence decode pass for following other kinds of passes: op
    # "executor_single_streak" (k-th pass in a row) weighted by `DryRun.single_streak_weights`
    single_extra_s: float = 0.0

    def _overhead(self, shape: BatchShape) -> float:
        if shape.num_tokens <= 0:
            return 0.0
        o = self.overhead.seconds(shape.num_seqs, shape.num_tokens, shape.num_prefill_tokens)
        if shape.num_prefill_tokens == 0:
            if self.after_prompt is not None:
                f = self.after_prompt_fraction
                if isinstance(f, tuple):
                    f = f[min(len(f) - 1, (shape.num_seqs - 1).bit_length())]
                o += f * self.after_prompt.seconds(shape.num_seqs, shape.num_tokens)
            if shape.num_seqs == 1:
                o += self.single_extra_s
        elif shape.num_decode_tokens and self.mixed is not None:
            o += self.mixed.seconds(shape.num_decode_tokens, shape.num_prefill_tokens)
        return o

    def stage_seconds(self, shape: BatchShape) -> float:
        return self.base.stage_seconds(shape) + self._overhead(shape)

    def p2p_seconds(self, shape: BatchShape) -> float:
        return self.base.p2p_seconds(shape)

    def step_cost(self, shape: BatchShape) -> StepCost:
        c = self.base.step_cost(shape)
        o = self._overhead(shape)
        return StepCost(c.total_s + o, c.stage_s + o,
                        (*c.ops, OpCost("executor_overhead", "overhead", o, source="measured")))


def overhead_rows(profile: Path, op: str | None = None, impl: str | None = None) -> list[tuple[int, int, float]]:
    """(num_seqs, num_tokens, seconds) rows of one overhead op (default: the pass glue) of the table."""
    from hwmodels.profiled import read_profile
    from profiler.executor.overhead import OP

    df, _ = read_profile(profile)
    sub = df[df["op"] == (op or OP)]
    if impl is not None:
        sub = sub[sub["impl"] == impl]
    return [(int(r.num_seqs), int(r.num_tokens), float(r.median_s)) for r in sub.itertuples()]


# ---------------------------------------------------------------------------------------------- profile
# In-situ grid sweeps: a pilot (for the capacity and a dry run on calibrated step times), then before, during and
# after the served run (see ProfileRun.relayout, ProfileRun.pauses and ProfileRun.finish).
INSITU_ROUNDS = (1, 1, 1, 1)
# The sweep during the served run is cut into this many slices, run off the executor's clock at evenly spaced
# served times. NOTE: this VM's speed moves by ~1-1.5 % (sd) over seconds to tens of seconds during a run
# (the cost model's error on served passes in quarters of a 23 s quick run: sd 1.26 % within runs, lag
# correlation of eighths 0.72 at ~3 s, 0.34 at ~12 s, 0.2 at ~20 s; 106 run folders, `benchmarks/
# bench_validate.py --windows`): sweeps only before and after the run cannot see it, slices inside it do.
SERVED_PAUSES = 3
AFTER_PROMPT_REPS = 8  # decode-after-prompt pairs per batch size, split between before and after the run


@dataclass
class ProfileRun:
    """The profile table and CPU spec `ensure_profile` produced, and what is left to measure after serving."""

    path: Path
    device_spec: Path
    session: Any = None  # profiler.executor.insitu.InsituSession with rounds still to run
    rounds_during: int = 0
    rounds_after: int = 0
    sweeps: dict = field(default_factory=dict)  # "before" / "during" / "after" -> index in session.sweep_totals
    min_time_s: float = 0.0
    loop_rows: list = field(default_factory=list)
    loop_note: str = ""
    prompt_len: int = 0

    def finish(self, say: Callable[[str], None] = lambda s: None) -> bool:
        """Run the in-situ rounds left for after the served run and rewrite the table from all samples.

        NOTE: this VM's speed drifts by +-3 % over minutes (common to every kernel; measured 2026-11-25 with a
        fixed 512-hidden pass in 10 s windows over 4 min, `benchmarks/bench_executor_timing.py drift`); samples
        taken before, during (`pauses`) and after the served run put the cost model at the speed the served
        passes ran at instead of the speed of the minute before them. Still op-level measurements of
        synthetic passes only.
        """
        rounds = self.rounds_during + self.rounds_after  # a sweep due during the run that did not run: now
        if self.session is None or rounds <= 0:
            return False

        say(f"profiling again after the served run ({rounds} more sweep{'s' if rounds > 1 else ''} of the in-situ "
            "grid)")
        self._measure(rounds, self.prompt_len, AFTER_PROMPT_REPS // 2, "after")
        self.rounds_during = self.rounds_after = 0
        return True

    def pauses(self, span_s: float, kv_blocks: int) -> list[tuple[float, Callable[[], None]]]:
        """The sweeps due during the served run (`rounds_during`), as `Executor.serve` pauses: SERVED_PAUSES
        slices of the grid (`InsituSession.spread`) at evenly spaced served times over `span_s` (e.g. the last
        arrival). Each slice leaves KV blocks 0..kv_blocks-1 (the served ones) as it found them. Empty when
        nothing is due."""
        if self.session is None or self.rounds_during <= 0 or span_s <= 0:
            return []
        session, total = self.session, sum(INSITU_ROUNDS)
        slices = [x for x in session.spread(self.rounds_during, SERVED_PAUSES) if x]
        totals = session.new_sweep()
        self.sweeps["during"] = len(session.sweep_totals) - 1
        self.rounds_during = 0

        def pause(cases: list[int]) -> Callable[[], None]:
            def run() -> None:
                saved = session.cache.snapshot(min(kv_blocks, session.cache.num_blocks))
                try:
                    session.measure_cases(cases, self.min_time_s / total, 3, 50, total, totals)
                finally:
                    session.cache.restore(saved)
            return run

        return [(span_s * (k + 1) / (len(slices) + 1), pause(c)) for k, c in enumerate(slices)]

    def speed_change(self, first: str, last: str) -> float | None:
        """The machine's speed change between two named sweeps (`InsituSession.speed_change`); None if either
        was not run."""
        if self.session is None or first not in self.sweeps or last not in self.sweeps:
            return None
        return self.session.speed_change(self.sweeps[first], self.sweeps[last])

    def relayout(self, block_runs, prompt_len: int, say: Callable[[str], None] = lambda s: None,
                 ctx_ratios=None) -> bool:
        """After the pilot sweep: lay synthetic sequences as `block_runs` says (a dry run on the calibrated
        step times), drop the samples that read the cache through the pilot's layout, and run the sweeps
        due before the served run plus the decode-after-prompt pairs (prompts of `prompt_len` tokens)."""
        if self.session is None:
            return False
        self.session.set_layout(block_runs, ctx_ratios=ctx_ratios)
        self.prompt_len = prompt_len
        say(f"profiling {INSITU_ROUNDS[1]} more sweep(s) on the served KV layout")
        self._measure(INSITU_ROUNDS[1], prompt_len, AFTER_PROMPT_REPS // 2, "before")
        return True

    def _measure(self, rounds: int, prompt_len: int, pairs: int, name: str) -> None:
        from profiler.devices import run_metadata
        from profiler.table import append_rows

        self.session.measure(rounds, self.min_time_s / sum(INSITU_ROUNDS), 3, 50, sum(INSITU_ROUNDS))
        self.sweeps[name] = len(self.session.sweep_totals) - 1
        if prompt_len > 0:
            self.session.measure_after_prompt(prompt_len, reps=pairs)
        self.session.measure_single_streak(reps=max(1, pairs // 2))
        if not self.session.jitter:  # once, before the served run (relayout); kept through finish
            self.session.measure_jitter()
        self.path.unlink()
        self.session.write(self.path)
        if self.loop_rows:
            append_rows(self.path, self.loop_rows, run_metadata("cpu", note=self.loop_note))


def ensure_profile(cfg: Config, work_dir: Path, profile: Optional[Path], device_spec: Optional[Path], quick: bool,
                   say: Callable[[str], None], threads: int = 1, mode: str = "insitu",
                   clock: str = "wall", insitu_grid=None, model=None, cache=None,
                   block_runs=None, split: bool = False, prompt_len: int = 0, ctx_ratios=None) -> ProfileRun:
    """Profile table and device spec YAML: measured now on this CPU for what is not given.

    mode "insitu": every executor kernel timed inside synthetic executor passes (profiler.executor.insitu),
    with the executor's clock (wall: perf_counter; cpu: thread CPU time);
    "sweep": the kernel sweep of `llmsim profile` (tight loops) plus the executor glue measured with null
    kernels. Both are op-level measurements; neither looks at a serving run. model/cache: profile on these
    (the executor's own weights and KV cache, so the kernels are timed on the memory they will serve from).
    block_runs: run lengths of consecutive KV blocks for the synthetic sequences (see `serving_dry_run`).
    ctx_ratios: how decode contexts of one served pass spread around their mean (`DryRun.ctx_ratios`).
    split (insitu): measure the pilot sweep (INSITU_ROUNDS[0]) now and leave the rest to `ProfileRun.relayout`,
    `ProfileRun.pauses` (during the served run) and `ProfileRun.finish`. prompt_len (insitu, > 0): also measure
    decode passes right after a pass of that many prompt tokens.
    """
    from hwmodels.models import resolve_model
    from profiler.devices import cpu_device_spec, device_name, run_metadata, write_device_spec
    from profiler.executor import LlamaModel
    from profiler.executor.insitu import InsituGrid, InsituSession
    from profiler.executor.overhead import DEFAULT_GRID, LOOP_OP, LOOP_SEQS, OP, time_glue, time_loop
    from profiler.sweep import SweepConfig, run_sweep
    from profiler.table import append_rows, row

    if mode not in ("insitu", "sweep"):
        raise UserError(f"--profile-mode = {mode!r}: allowed 'insitu' (kernels timed inside executor passes) or "
                        "'sweep' (the `llmsim profile` kernel sweep)")
    work_dir.mkdir(parents=True, exist_ok=True)
    if device_spec is None:
        say("measuring this CPU (peak matmul FLOP/s, copy bandwidth)")
        device_spec = write_device_spec(work_dir / "cpu.yaml", cpu_device_spec(quick=quick))
    spec = resolve_model(cfg.model)
    out = ProfileRun(Path(profile) if profile is not None else Path(), Path(device_spec))
    if profile is not None and not overhead_rows(profile, LOOP_OP, cfg.scheduler.kind):
        # Rows are added below: work on a copy in work_dir, never on the user's file.
        import shutil

        if not Path(profile).is_file():
            raise UserError(f"--profile = {str(profile)!r}: file not found")
        copy = work_dir / f"profile-{Path(profile).stem}+executor.parquet"
        if copy.resolve() != Path(profile).resolve():
            shutil.copyfile(profile, copy)
        profile = copy
    if profile is None:
        profile = work_dir / (f"profile-insitu-{clock}.parquet" if mode == "insitu" else "profile-sweep.parquet")
        if profile.exists():
            profile.unlink()
        if mode == "insitu":
            say(f"profiling {spec.name}: every kernel timed inside executor passes -> {profile}")
            model = model or LlamaModel(_dims(cfg, spec), seed=cfg.simulation.seed, dtype=_torch_dtype(cfg.quant.dtype))
            total = sum(INSITU_ROUNDS)
            before, during, after = (INSITU_ROUNDS[0], INSITU_ROUNDS[2], INSITU_ROUNDS[3]) if split else (total, 0, 0)
            min_time_s = 0.09 if quick else 0.3
            session = InsituSession(model, block_size=cfg.kv_cache.block_size, dtype=cfg.quant.dtype,
                                    grid=insitu_grid or InsituGrid(), seed=cfg.simulation.seed, clock=clock,
                                    num_blocks=cfg.kv_cache.num_blocks or 0, cache=cache, block_runs=block_runs,
                                    ctx_ratios=ctx_ratios)
            session.measure(before, min_time_s / total, 3, 50, total)
            if prompt_len > 0 and not split:  # split: measured in relayout, on the served layout
                session.measure_after_prompt(prompt_len, reps=AFTER_PROMPT_REPS)
            if not split:
                session.measure_single_streak(reps=AFTER_PROMPT_REPS // 2)
                session.measure_jitter()
            session.write(profile)
            out.session, out.rounds_during, out.rounds_after, out.min_time_s = session, during, after, min_time_s
            out.prompt_len = prompt_len
        else:
            say(f"profiling {spec.name} kernels on this CPU (llmsim profile sweep) -> {profile}")
            run_sweep(SweepConfig(model=spec, device="cpu", dtype=cfg.quant.dtype,
                                  ops=("gemm", "attention", "decode", "elementwise"), quick=quick,
                                  min_time_s=0.02 if quick else 0.05, threads=threads), profile, progress=False)
    out.path = Path(profile)
    if not overhead_rows(profile):
        say("profiling the executor's per-pass glue (op executor_overhead, null-kernel passes)")
        model = model or LlamaModel(_dims(cfg, spec), seed=cfg.simulation.seed, dtype=_torch_dtype(cfg.quant.dtype))
        label = device_name("cpu")
        rows = []
        for s, t in DEFAULT_GRID:
            sec = time_glue(model, s, t, cfg.kv_cache.block_size, min_time_s=0.02 if quick else 0.05)
            rows.append(row(label, OP, "torch", cfg.quant.dtype, sec, sec, sec, 1, name="glue",
                            num_seqs=s, num_tokens=t, block_size=cfg.kv_cache.block_size))
        append_rows(profile, rows, run_metadata("cpu", note="executor overhead (null-kernel passes)"))
    if not overhead_rows(profile, LOOP_OP, cfg.scheduler.kind):
        say(f"profiling the serving loop around the forward pass ({cfg.scheduler.kind} policy, op {LOOP_OP})")
        model = model or LlamaModel(_dims(cfg, spec), seed=cfg.simulation.seed, dtype=_torch_dtype(cfg.quant.dtype))
        tick = time.thread_time if clock == "cpu" else time.perf_counter
        rows = []
        for b in LOOP_SEQS:
            sec = time_loop(model, cfg.scheduler, cfg.kv_cache, max(1024, 2 * b), spec.max_position, b, clock=tick)
            rows.append(row(device_name("cpu"), LOOP_OP, cfg.scheduler.kind, cfg.quant.dtype, sec, sec, sec, 1,
                            name=f"loop-{cfg.scheduler.kind}", num_seqs=b, num_tokens=b,
                            block_size=cfg.kv_cache.block_size))
        out.loop_rows, out.loop_note = rows, f"executor serving loop, {cfg.scheduler.kind} policy, forward pass stubbed"
        append_rows(profile, rows, run_metadata("cpu", note=out.loop_note))
    return out


def _torch_dtype(dtype: str):
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype not in table:
        raise UserError(f"quant.dtype = {dtype!r}: the executor runs fp32, bf16 or fp16")
    return table[dtype]


def _dims(cfg: Config, spec):
    from profiler.executor import LlamaDims

    theta, eps = 10000.0, 1e-5
    if cfg.model.hf_config:
        p = Path(cfg.model.hf_config)
        p = p / "config.json" if p.is_dir() else p
        raw = json.loads(p.read_text())
        theta, eps = float(raw.get("rope_theta", theta)), float(raw.get("rms_norm_eps", eps))
    return LlamaDims.from_spec(spec, rope_theta=theta, rms_norm_eps=eps)


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class ValidationResult:
    config: Config
    measured: dict
    simulated: dict
    errors: dict[str, float | None]
    measured_requests: pd.DataFrame
    measured_steps: pd.DataFrame
    simulated_requests: pd.DataFrame
    simulated_steps: pd.DataFrame
    predicted_step_s: np.ndarray  # the cost model on each measured pass's shape
    capacity_per_s: float | None
    rate_per_s: float | None
    profile: str
    device_spec: str
    threads: int
    clock: str = "wall"
    load_avg: dict[str, list[float]] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # in-situ grid passes after the served run over before it, − 1 (machine speed drift; None: not measured)
    profile_drift: float | None = None
    op_breakdown: pd.DataFrame | None = None  # run_validation(op_breakdown=True): see _op_breakdown
    # in-situ grid passes in the slices during the served run over before it, − 1 (None: none ran)
    profile_drift_during: float | None = None

    def write_frames(self, out: Path) -> None:
        """measured_/simulated_ requests and steps as parquet; measured steps carry the cost model's
        prediction for each pass (`predicted_s`)."""
        out.mkdir(parents=True, exist_ok=True)
        self.measured_requests.to_parquet(out / "measured_requests.parquet", index=False)
        self.measured_steps.assign(predicted_s=self.predicted_step_s).to_parquet(out / "measured_steps.parquet",
                                                                                  index=False)
        self.simulated_requests.to_parquet(out / "simulated_requests.parquet", index=False)
        self.simulated_steps.to_parquet(out / "simulated_steps.parquet", index=False)

    def as_json(self) -> dict:
        return json_ready({
            "errors": self.errors, "measured": self.measured, "simulated": self.simulated,
            "step_time": _step_stats(self.measured_steps, self.predicted_step_s, self.simulated_steps),
            "capacity_per_s": self.capacity_per_s, "rate_per_s": self.rate_per_s,
            "load": (self.rate_per_s / self.capacity_per_s if self.rate_per_s and self.capacity_per_s else None),
            "profile": self.profile, "device_spec": self.device_spec, "torch_threads": self.threads,
            "clock": self.clock,
            "load_avg": self.load_avg, "wall_s": self.wall_s, "notes": self.notes,
            "profile_drift": self.profile_drift, "profile_drift_during": self.profile_drift_during,
            "pass_error_by_quarter": pass_error_by_part(self.measured_steps, self.predicted_step_s),
            "config": self.config.model_dump(mode="json"),
        })


def check_executable(cfg: Config) -> None:
    """UserError naming the field if the executor (one dense Llama replica on this CPU) cannot run cfg."""
    p = cfg.parallel
    if (p.tp, p.pp, p.ep, p.replicas) != (1, 1, 1, 1):
        raise UserError(f"parallel = tp {p.tp}, pp {p.pp}, ep {p.ep}, replicas {p.replicas}: validate runs one "
                        "replica on one device; set all four to 1")
    if cfg.kv_cache.kind != "paged":
        raise UserError(f"kv_cache.kind = {cfg.kv_cache.kind!r}: the executor's attention reads a paged cache; "
                        "use 'paged'")
    q = cfg.quant
    if q.weights != q.dtype or q.kv != q.dtype or q.weight_method != "none":
        raise UserError(f"quant = weights {q.weights}, kv {q.kv}, method {q.weight_method}: the executor runs "
                        f"weights and KV in quant.dtype ({q.dtype}); unset weight_dtype/kv_dtype/weight_method")
    _torch_dtype(q.dtype)


BUSY_LOAD = 0.5  # 1-min load average above which another process holds a good part of a core


def resolve_clock(clock: str, say: Callable[[str], None] = lambda s: None) -> str:
    """'auto' -> 'wall' on a quiet machine, 'cpu' when the 1-min load average exceeds BUSY_LOAD (other
    processes would take the core away mid-pass and stretch wall-clock passes the profile never saw)."""
    if clock not in ("auto", "wall", "cpu"):
        raise UserError(f"--clock = {clock!r}: allowed 'auto', 'wall' (real time) or 'cpu' (the executor's own "
                        "thread CPU time)")
    if clock != "auto":
        return clock
    load1 = os.getloadavg()[0]
    chosen = "cpu" if load1 > BUSY_LOAD else "wall"
    say(f"--clock auto: 1-min load average {load1:.2f} -> {chosen} clock")
    return chosen


def with_rate(cfg: Config, rate_per_s: float) -> Config:
    if cfg.workload.kind != "synthetic":
        raise UserError("--load: sets the arrival rate of a synthetic workload; this config replays a trace "
                        "(use workload.rate_scale instead)")
    data = cfg.model_dump(mode="python")
    data["workload"]["arrival"] = {**data["workload"]["arrival"], "process": "poisson", "rate_per_s": rate_per_s}
    return validate_config(data, "validate --load")


def simulated_capacity(cfg: Config, cost_model: CostModel) -> float:
    """Requests/s the simulator sustains when every request of the workload arrives at t=0."""
    if cfg.workload.kind != "synthetic":
        raise UserError("--load needs a synthetic workload")
    data = cfg.model_dump(mode="python")
    data["workload"]["arrival"] = {"process": "burst", "rate_per_s": 1.0}
    res = simulate(validate_config(data, "validate capacity"), cost_model=cost_model)
    thr = res.summary["request_throughput_per_s"]
    if not thr:
        raise UserError("capacity estimate: no request finished in the offline simulation; check the workload")
    return float(thr)


@contextlib.contextmanager
def pinned(enabled: bool):
    """Run a block on one core (the last this process may use), then restore the affinity.

    NOTE: on a 2-core machine shared with other processes the scheduler otherwise moves the executor
    between cores, each with its own L2, and a pass after a move starts cold (measured: per-pass
    prediction error spread over four runs -6..+5 % unpinned vs -1..+1.5 % pinned, 17:50 UTC).
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(old)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def serving_dry_run(cfg: Config, device_spec: Path, model, load: Optional[float]):
    """`profiler.executor.layout.DryRun` of the configured policies over the workload: KV block runs of served
    decode sequences, how often a decode pass follows a pass with prompt tokens, prompt tokens per pass.

    The dry run's clock is the roofline cost model of the measured CPU spec: the churn of the free list
    and the mix of passes depend on how many requests overlap, i.e. on utilisation, not on absolute
    speed; with --load the dry run's rate is the same fraction of the roofline model's capacity, so its
    utilisation matches the served run's to first order. Nothing here is measured or fitted.
    """
    from profiler.executor.layout import policy_dry_run

    data = cfg.model_dump(mode="python")
    data["hardware"] = {**data["hardware"], "gpu_file": str(device_spec)}
    data["cost_model"] = {"kind": "roofline"}
    dry = validate_config(data, "validate dry run")
    sc = resolve(dry)
    if load is not None:
        dry = with_rate(dry, load * simulated_capacity(dry, sc.cost_model))
    reqs = build_workload(dry.workload, dry.simulation.seed).to_requests()
    return policy_dry_run(dry.scheduler, dry.kv_cache, sc.num_kv_blocks, sc.max_model_len, reqs,
                          sc.cost_model.stage_seconds, model)


def _check_kv_bytes(num_blocks: int, block_size: int, bytes_per_token: float) -> None:
    kv_bytes = num_blocks * block_size * bytes_per_token
    if kv_bytes > MAX_KV_CACHE_BYTES:
        raise UserError(f"kv_cache.num_blocks: {num_blocks} blocks would take {kv_bytes / 1e9:.1f} GB of "
                        f"host memory for the executor's KV cache (limit {MAX_KV_CACHE_BYTES / 1e9:.0f} GB); "
                        "set kv_cache.num_blocks")


def _calibrated(cfg: Config, after_prompt_fraction: float | tuple[float, ...] = 0.0,
                single_streak_weights: tuple[float, ...] = ()):
    """(scenario, cost model) of a config whose cost model is the profiled one: the profile's kernels plus the
    executor's measured glue, serving-loop, decode-after-prompt and one-sequence-run overheads."""
    from hwmodels.profiled import ProfiledCostModel
    from profiler.executor.insitu import AFTER_PROMPT_OP, MIXED_OP, SINGLE_STREAK_OP
    from profiler.executor.overhead import LOOP_OP, PassOverhead, fit_overhead, fit_pass_overhead

    sc = resolve(cfg)
    if not isinstance(sc.cost_model, ProfiledCostModel):
        raise UserError("validate needs the profiled cost model")
    profile = cfg.cost_model.profile
    glue = fit_pass_overhead(overhead_rows(profile))  # a + b·seqs + c·tokens, decode / prompt passes
    lp = fit_overhead(overhead_rows(profile, LOOP_OP, cfg.scheduler.kind))  # serving loop + policy
    ap = overhead_rows(profile, AFTER_PROMPT_OP)
    after = fit_overhead(ap, relative=False) if ap else None
    mx = overhead_rows(profile, MIXED_OP)
    mixed = fit_overhead(mx, relative=False) if mx else None
    streak = {t: sec for _, t, sec in overhead_rows(profile, SINGLE_STREAK_OP)}
    single = sum(w * streak.get(k, 0.0) for k, w in enumerate(single_streak_weights, start=1))
    # The glue (a pass minus its timed kernels) holds the embedding lookup and the greedy sampling, which the
    # profiled model would otherwise price again by roofline (~14-28 us for a 64-160-token prompt here).
    base = sc.cost_model.without(GLUE_OPS)
    return sc, WithExecutorOverhead(base, glue.plus(PassOverhead(lp, lp)), after, after_prompt_fraction, mixed, single)


def step_jitter(profile: str | Path) -> dict | None:
    """`simulation.step_jitter` from the profile's pass-time series (op executor_jitter, in-situ profiles):
    {"sd": log-sd, "autocorrelation": lag-1}; None when the table has no such series (e.g. a GPU profile)."""
    from hwmodels.profiled import read_profile
    from profiler.executor.insitu import JITTER_OP, jitter_stats

    df, _ = read_profile(profile)
    sub = df[df["op"] == JITTER_OP].sort_values("num_tokens")
    st = jitter_stats(list(zip(sub["num_seqs"].astype(int), sub["median_s"].astype(float))))
    return None if st is None else {"sd": round(st[0], 5), "autocorrelation": round(st[1], 4)}


# NOTE: one draw of the measured jitter moves the simulated p50s by ~1.1 % (sd over 12 draws, 10 quick runs,
# `benchmarks/bench_validate.py --jitter`); the measured run is one draw, the prediction is the expectation
JITTER_DRAWS = 8


def mean_summary(summaries: list[dict]) -> dict:
    """Summaries of runs of the same requests, averaged leaf by leaf where every run has a number (counts,
    percentiles, throughputs); other leaves from the first. Percentiles become means over the runs."""
    first = summaries[0]
    out: dict = {}
    for k, v in first.items():
        vals = [s.get(k) for s in summaries]
        if isinstance(v, dict) and all(isinstance(x, dict) for x in vals):
            out[k] = mean_summary(vals)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            m = float(np.mean(vals))
            out[k] = int(round(m)) if isinstance(v, int) and all(isinstance(x, int) for x in vals) else m
        else:
            out[k] = v
    return out


def _with_jitter(cfg: Config, jitter: dict | None) -> Config:
    if jitter is None:
        return cfg
    data = cfg.model_dump(mode="python")
    data["simulation"] = {**data["simulation"], "step_jitter": jitter}
    return validate_config(data, "validate")


def _dry_terms(dry) -> tuple:
    """`_calibrated`'s policy-frequency arguments from a dry run (none: no such terms)."""
    from profiler.executor.insitu import SINGLE_STREAK_PASSES

    if dry is None:
        return 0.0, ()
    return dry.after_prompt_fractions(), dry.single_streak_weights(SINGLE_STREAK_PASSES)


def run_validation(cfg: Config, *, work_dir: Path, profile: Optional[Path] = None,
                   device_spec: Optional[Path] = None, load: Optional[float] = None, threads: int = 1,
                   quick: bool = False, clock: str = "wall", profile_mode: str = "insitu",
                   say: Callable[[str], None] = lambda s: None, insitu_grid=None,
                   pin: bool = True, op_breakdown: bool = False) -> ValidationResult:
    """Profile (if needed), serve the workload on the executor, simulate it, and compare.

    op_breakdown (a diagnostic, `benchmarks/bench_executor_timing.py served`): time every kernel call of the
    served passes too, and compare gemm / attention / elementwise / the rest with the cost model's parts per
    pass kind (`ValidationResult.op_breakdown`); the clock reads perturb the served passes slightly."""
    import torch

    from profiler.executor import CPUClock, Executor, LlamaModel, WallClock, torch_threads
    from profiler.executor.layout import policy_dry_run
    from profiler.executor.server import make_core

    check_executable(cfg)
    loads = {"start": list(os.getloadavg())}
    clock = resolve_clock(clock, say)
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    with torch_threads(threads), pinned(pin and threads == 1):
        # NOTE: one model and one KV cache, allocated before profiling, serve the run: the kernels are timed on
        # the memory they serve from. Measured 2026-11-25 (this 2-core VM): the same decode pass on two model
        # instances in one process differs by up to ~10 % (placement of weights and cache pages), which a
        # profile taken on a separate instance carries into every predicted pass.
        from hwmodels.models import resolve_model
        from profiler.executor.attention import PagedKVCache
        from profiler.executor.insitu import InsituGrid, need_blocks

        from profiler.executor.server import steady_allocator

        if not steady_allocator():
            say("note: could not fix the C allocator's thresholds (not glibc); large passes may time unevenly")
        mspec = resolve_model(cfg.model)
        dims = _dims(cfg, mspec)
        _check_kv_bytes(cfg.kv_cache.num_blocks or 0, cfg.kv_cache.block_size, mspec.kv_bytes_per_token(cfg.quant.kv))
        model = LlamaModel(dims, seed=cfg.simulation.seed, dtype=_torch_dtype(cfg.quant.dtype))
        nb = need_blocks(model, insitu_grid or InsituGrid(), cfg.kv_cache.block_size, cfg.kv_cache.num_blocks or 0)
        cache = PagedKVCache(dims.num_layers, nb, cfg.kv_cache.block_size, dims.num_kv_heads, dims.head_dim,
                             model.dtype, model.device)
        dry = None
        if profile is None and profile_mode == "insitu":
            if device_spec is None:
                from profiler.devices import cpu_device_spec, write_device_spec

                say("measuring this CPU (peak matmul FLOP/s, copy bandwidth)")
                work_dir.mkdir(parents=True, exist_ok=True)
                device_spec = write_device_spec(work_dir / "cpu.yaml", cpu_device_spec(quick=quick))
            dry = serving_dry_run(cfg, device_spec, model, load)  # on roofline step times: for the pilot sweep
        prof = ensure_profile(cfg, work_dir, profile, device_spec, quick, say, threads, profile_mode, clock,
                              insitu_grid, model=model, cache=cache, block_runs=dry.runs if dry else None, split=True,
                              ctx_ratios=dry.ctx_ratios if dry else None)
        profile, device_spec = prof.path, prof.device_spec
        data = cfg.model_dump(mode="python")
        data["hardware"] = {**data["hardware"], "gpu_file": str(device_spec)}
        data["cost_model"] = {"kind": "profiled", "profile": str(profile)}
        cfg = validate_config(data, "validate")
        sc, cost = _calibrated(cfg, *_dry_terms(dry))
        _check_kv_bytes(sc.num_kv_blocks, cfg.kv_cache.block_size, sc.model.kv_bytes_per_token(cfg.quant.kv))

        def at_load(cost) -> tuple[Config, float | None, float | None]:
            if load is not None:
                capacity = simulated_capacity(cfg, cost)
                return with_rate(cfg, load * capacity), capacity, load * capacity
            return cfg, None, (cfg.workload.arrival.rate_per_s if cfg.workload.kind == "synthetic" else None)

        # NOTE: the pilot's step times drive a second dry run at the served rate: the KV layout and the mix of
        # passes depend on utilisation, which the roofline clock of the first dry run only approximates
        # (quick preset, `benchmarks/bench_executor_timing.py dryrun`: mean run of 2.56 vs 2.39 consecutive
        # blocks, decode passes right after a prompt pass 4.0 % vs 8.5 %).
        served, capacity, rate = at_load(cost)
        dry = policy_dry_run(served.scheduler, served.kv_cache, sc.num_kv_blocks, sc.max_model_len,
                             build_workload(served.workload, served.simulation.seed).to_requests(), cost.stage_seconds,
                             model)
        say(f"policy dry run: KV blocks in runs of {np.mean(dry.runs or [1]):.2f} consecutive ids; "
            f"{dry.after_prompt_fraction:.0%} of decode passes follow a pass with prompt tokens")
        if prof.relayout(dry.runs, int(np.median(dry.prompt_tokens)) if dry.prompt_tokens else 0, say,
                         ctx_ratios=dry.ctx_ratios):
            sc, cost = _calibrated(cfg, *_dry_terms(dry))
            served, capacity, rate = at_load(cost)
        else:
            sc, cost = _calibrated(cfg, *_dry_terms(dry))
        cfg = served
        wall["profile_s"] = time.perf_counter() - t0
        if capacity is not None:
            say(f"simulated capacity {capacity:.2f} req/s; serving at {load:.0%} of it = {rate:.2f} req/s")
        wl = build_workload(cfg.workload, cfg.simulation.seed)

        say(f"serving {len(wl)} requests on the executor ({dims.num_layers} layers, hidden {dims.hidden_size}, "
            f"{threads} thread{'s' if threads > 1 else ''}); arrivals in real time")
        core = make_core(cfg.scheduler, cfg.kv_cache, sc.num_kv_blocks, sc.max_model_len)
        from profiler.executor.insitu import CLOCKS

        ex = Executor(model, core, clock=WallClock() if clock == "wall" else CPUClock(), seed=cfg.simulation.seed,
                      cache=cache if cache.num_blocks >= sc.num_kv_blocks else None,
                      op_clock=CLOCKS[clock] if op_breakdown else None)
        ex.warmup(((256, 0), (64, 0), (1, 128), (1, 16)))
        gc.collect()
        gc.disable()  # NOTE: a collection pause would land inside some pass; serving runs without one
        reqs = wl.to_requests()
        pauses = prof.pauses(max((r.arrival_s for r in reqs), default=0.0), sc.num_kv_blocks)
        if pauses:
            say(f"the in-situ sweep due during the run runs in {len(pauses)} slices between served passes, off the "
                "executor's clock")
        t1 = time.perf_counter()
        try:
            measured = ex.serve(reqs, pauses)
        finally:
            gc.enable()
        wall["executor_s"] = time.perf_counter() - t1
        loads["after_executor"] = list(os.getloadavg())
        t3 = time.perf_counter()
        drift = during = None
        if prof.finish(say):  # the in-situ rounds left for after the run; the table is rewritten from all samples
            sc, cost = _calibrated(cfg, *_dry_terms(dry))
            drift = prof.speed_change("before", "after")
            during = prof.speed_change("before", "during")
            if drift is not None:
                say(f"machine speed: the grid's passes took {drift:+.1%} after the served run vs before it"
                    + (f", {during:+.1%} in the slices during it" if during is not None else "")
                    + " (the cost model pools all sweeps)")
        wall["profile_s"] += time.perf_counter() - t3
        del torch

    jitter = cfg.simulation.step_jitter.model_dump() if cfg.simulation.step_jitter else step_jitter(profile)
    draws = 1
    if jitter is not None and jitter["sd"] > 0:
        cfg = _with_jitter(cfg, jitter)
        draws = JITTER_DRAWS
        say(f"pass-time variability measured on this device: log-sd {jitter['sd']:.1%}, lag-1 autocorrelation "
            f"{jitter['autocorrelation']:.2f} (simulation.step_jitter); simulated percentiles are means over "
            f"{draws} draws of it")
    say("simulating the same requests with the calibrated cost model")
    t2 = time.perf_counter()
    sim = simulate(cfg, requests=wl.to_requests(), cost_model=cost)
    if draws > 1:  # the same requests under other draws of the jitter: the summary is their mean
        base = jitter_seed(cfg)
        others = [simulate(_with_jitter(cfg, {**jitter, "seed": base + 7919 * k}), requests=wl.to_requests(),
                           cost_model=cost).summary for k in range(1, draws)]
        sim = dataclasses.replace(sim, summary=mean_summary([sim.summary, *others]))
    wall["simulate_s"] = time.perf_counter() - t2
    kw = dict(slo=cfg.slo, num_gpus=1, usd_per_gpu_hour=0.0, kv_blocks_total=sc.num_kv_blocks,
              block_size=cfg.kv_cache.block_size)
    if len(measured.cycle_end_s) == len(measured.steps):
        measured.steps["cycle_end_s"] = measured.cycle_end_s
    meas_summary = summarize(measured.requests, measured.steps, measured.itl_s, **kw)
    predicted = np.array([cost.stage_seconds(s) for s in measured.shapes])
    errors = compute_errors(meas_summary, sim.summary, measured.steps, sim.steps)
    breakdown = _op_breakdown(cost, measured, ex.op_records) if op_breakdown else None
    notes = list(sim.summary.get("notes", []))
    if draws > 1:
        notes.append(f"simulated with the pass-time jitter measured on this device (log-sd {jitter['sd']:.1%}, "
                     f"lag-1 autocorrelation {jitter['autocorrelation']:.2f}); simulated latency percentiles and "
                     f"throughput are means over {draws} draws of it, the CDFs and pass times show the first")
    moved = {name: x for name, x in (("after", drift), ("during", during)) if x is not None and abs(x) > 0.02}
    if moved:
        notes.append("this machine's speed moved between the profile sweeps: the grid's passes took "
                     + ", ".join(f"{x:+.1%} {name} the served run" for name, x in moved.items())
                     + " vs before it (the cost model pools all sweeps); latency errors at high load amplify a "
                     "pass-time error several-fold")
    # NOTE: over 48 quick runs on this VM (2026-11-26, `benchmarks/bench_validate.py --windows` on them) the
    # range of the cost model's error over the quarters of one run had median 3.3 % and exceeded 5 % in 8: the
    # machine's speed stepping while it served (one run: +2.7 / +3.1 / -3.6 / -4.1 %, e2e p50 error -13 %).
    quarters = [x for x in pass_error_by_part(measured.steps, predicted) if x is not None]
    if quarters and max(quarters) - min(quarters) > QUARTER_RANGE_NOTE:
        notes.append("the cost model's error on the served passes moved during the run (by quarter: "
                     + " / ".join(f"{x:+.1%}" for x in quarters) + "): the machine's speed changed while it "
                     "served, which no profile taken around the run predicts; latency errors at high load "
                     "amplify it several-fold")
    return ValidationResult(cfg, meas_summary, sim.summary, errors, measured.requests, measured.steps, sim.requests,
                            sim.steps, predicted, capacity, rate, str(profile), str(device_spec), threads, clock, loads,
                            wall, notes, drift, breakdown, during)


def _op_breakdown(cost, measured, records) -> pd.DataFrame:
    """Per pass kind (decode / prompt only / mixed) and op kind: measured seconds summed over the served
    passes (each kernel call timed inside them) vs the cost model's parts on the same pass shapes; "rest" is
    the pass minus its timed calls (glue, loop) vs the overhead terms."""
    kinds = OP_KINDS
    rows = []
    dur = pass_seconds(measured.steps)
    for shape, rec, d in zip(measured.shapes, records, dur):
        pk = ("decode" if shape.num_prefill_tokens == 0 else
              "prompt" if shape.num_decode_tokens == 0 else "mixed")
        meas = {"gemm": 0.0, "attention": 0.0, "elementwise": 0.0}
        for op, _, sec in rec:
            meas[kinds[op]] += sec
        pred = {"gemm": 0.0, "attention": 0.0, "elementwise": 0.0}
        sc = cost.step_cost(shape)
        for o in sc.ops:
            if o.kind in pred:
                pred[o.kind] += o.seconds
        for k in pred:
            rows.append((pk, k, meas[k], pred[k]))
        rows.append((pk, "rest", d - sum(meas.values()), sc.total_s - sum(pred.values())))
    df = pd.DataFrame(rows, columns=["pass", "op", "measured_s", "predicted_s"])
    out = df.groupby(["pass", "op"], as_index=False)[["measured_s", "predicted_s"]].sum()
    out["error"] = out["predicted_s"] / out["measured_s"] - 1.0
    return out


def _rel(sim: float | None, meas: float | None) -> float | None:
    if sim is None or meas is None or not meas or not math.isfinite(sim) or not math.isfinite(meas):
        return None
    return sim / meas - 1.0


def pass_seconds(steps: pd.DataFrame) -> np.ndarray:
    """Seconds per pass of a steps frame as the simulator's step time stands for them: for the executor's
    frame (column cycle_end_s), from the pass's start to the end of the serving loop's work after it
    (completion, admissions, its row), which the cost model's loop term includes; otherwise end − start.

    NOTE: end − start of an executor pass leaves that work out (~25 µs a pass here, ~0.2 % of a quick run's
    pass time), so comparing the cost model with it read ~0.5 % high before prompts were tokenized ahead of
    the loop (`benchmarks/bench_validate.py --gaps`)."""
    end = steps["cycle_end_s"] if "cycle_end_s" in steps else steps["end_s"]
    return (end - steps["start_s"]).to_numpy(dtype=np.float64)


def pass_error_by_part(steps: pd.DataFrame, predicted: np.ndarray, parts: int = 4) -> list[float | None]:
    """The cost model's error on the served passes (Σ predicted / Σ pass seconds − 1, `pass_seconds`) in
    `parts` equal spans of the run's time, by pass start (None for a span without passes). A diagnostic of the
    served run, never a calibration: how far the machine's speed moved while it served."""
    if steps.empty:
        return [None] * parts
    d = pass_seconds(steps)
    t = steps["start_s"].to_numpy(dtype=np.float64)
    span = float(steps["end_s"].max())
    part = np.minimum((t * parts // span).astype(int) if span > 0 else np.zeros(len(t), int), parts - 1)
    out: list[float | None] = []
    for k in range(parts):
        m = part == k
        out.append(float(predicted[m].sum() / d[m].sum() - 1.0) if m.any() and d[m].sum() > 0 else None)
    return out


def compute_errors(meas: dict, sim: dict, meas_steps: pd.DataFrame, sim_steps: pd.DataFrame) -> dict[str, float | None]:
    """Signed relative errors simulated / measured − 1 per metric (None where undefined)."""
    out: dict[str, float | None] = {}
    for metric in ("ttft", "tpot", "e2e"):
        for q in ("p50", "p90", "p99"):
            out[f"{metric}_{q}"] = _rel(sim[f"{metric}_s"][q], meas[f"{metric}_s"][q])
    out["throughput"] = _rel(sim["output_throughput_tokens_per_s"], meas["output_throughput_tokens_per_s"])
    ms = float(pass_seconds(meas_steps).mean()) if len(meas_steps) else None
    ss = float(pass_seconds(sim_steps).mean()) if len(sim_steps) else None
    out["step_time"] = _rel(ss, ms)
    return out


def _step_stats(meas_steps: pd.DataFrame, predicted: np.ndarray, sim_steps: pd.DataFrame) -> dict:
    d = pass_seconds(meas_steps)
    s = pass_seconds(sim_steps)
    out = {"num_measured": int(d.size), "num_simulated": int(s.size),
           "measured_mean_s": float(d.mean()) if d.size else None,
           "simulated_mean_s": float(s.mean()) if s.size else None}
    if d.size and predicted.size == d.size:
        ratio = predicted / np.maximum(d, 1e-12)
        out.update(predicted_on_measured_shapes_mean_s=float(predicted.mean()),
                   predicted_over_measured_sum=float(predicted.sum() / d.sum()) - 1.0,
                   predicted_over_measured_median=float(np.median(ratio)) - 1.0,
                   predicted_over_measured_p10=float(np.percentile(ratio, 10)) - 1.0,
                   predicted_over_measured_p90=float(np.percentile(ratio, 90)) - 1.0)
        dec = (meas_steps["prefill_tokens"] == 0).to_numpy()
        for name, m in (("decode_only", dec), ("with_prefill", ~dec)):
            if m.any():
                out[f"{name}_predicted_over_measured_sum"] = float(predicted[m].sum() / d[m].sum()) - 1.0
    return out


# ---------------------------------------------------------------------------------------------- output
def error_table(res: ValidationResult):
    from rich.table import Table

    t = Table(title="llmsim validate: simulator vs real executor", header_style="bold")
    for col, j in (("metric", "left"), ("measured", "right"), ("simulated", "right"), ("error", "right")):
        t.add_column(col, justify=j)
    m, s = res.measured, res.simulated

    def ms(x):
        return "–" if x is None else f"{x * 1e3:,.2f} ms"

    def err(k):
        e = res.errors.get(k)
        return "–" if e is None else f"{e:+.1%}"

    for metric, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E")):
        for q in ("p50", "p90", "p99"):
            t.add_row(f"{label} {q}", ms(m[f"{metric}_s"][q]), ms(s[f"{metric}_s"][q]), err(f"{metric}_{q}"))
    thr = "output_throughput_tokens_per_s"
    t.add_row("throughput (tok/s)", f"{m[thr]:,.1f}" if m[thr] else "–", f"{s[thr]:,.1f}" if s[thr] else "–",
              err("throughput"))
    st = _step_stats(res.measured_steps, res.predicted_step_s, res.simulated_steps)
    t.add_row("per-step time (mean)", ms(st["measured_mean_s"]), ms(st["simulated_mean_s"]), err("step_time"))
    if "predicted_over_measured_sum" in st:
        t.add_row("cost model on measured passes", ms(st["measured_mean_s"]),
                  ms(st["predicted_on_measured_shapes_mean_s"]), f"{st['predicted_over_measured_sum']:+.1%}")
    t.add_row("requests finished", str(m["num_finished"]), str(s["num_finished"]), "")
    t.add_row("passes", str(m["num_steps"]), str(s["num_steps"]), "")
    t.add_row("preemptions", str(m["num_preemptions"]), str(s["num_preemptions"]), "")
    return t


def report_figure(res: ValidationResult):
    """Plotly figure: simulated vs measured CDFs of TTFT, TPOT, e2e; per-pass times."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=3, subplot_titles=(
        "TTFT CDF", "TPOT CDF", "E2E latency CDF", "pass time: cost model vs measured (same passes)",
        "pass time over the run", "pass time by tokens in the pass"))
    lat_m, lat_s = request_latencies(res.measured_requests), request_latencies(res.simulated_requests)
    colors = {"measured": "#1f77b4", "simulated": "#ff7f0e"}
    for col, key in enumerate(("ttft_s", "tpot_s", "e2e_s"), start=1):
        for name, lat in (("measured", lat_m), ("simulated", lat_s)):
            x = np.sort(lat[key]) * 1e3
            y = np.arange(1, x.size + 1) / max(1, x.size)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line={"color": colors[name]},
                                     legendgroup=name, showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="ms", row=1, col=col)
    d_m = pass_seconds(res.measured_steps) * 1e3
    p = res.predicted_step_s * 1e3
    if d_m.size:
        fig.add_trace(go.Scatter(x=d_m, y=p, mode="markers", marker={"size": 3, "color": "#2ca02c"},
                                 name="pass (measured, predicted)"), row=2, col=1)
        hi = float(max(d_m.max(), p.max() if p.size else 0))
        fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", line={"dash": "dot", "color": "gray"},
                                 name="y = x"), row=2, col=1)
    fig.update_xaxes(title_text="measured ms", row=2, col=1)
    fig.update_yaxes(title_text="predicted ms", row=2, col=1)
    for name, steps in (("measured", res.measured_steps), ("simulated", res.simulated_steps)):
        dur = pass_seconds(steps) * 1e3
        fig.add_trace(go.Scatter(x=steps["start_s"], y=dur, mode="markers", marker={"size": 3, "color": colors[name]},
                                 name=name, legendgroup=name, showlegend=False), row=2, col=2)
        fig.add_trace(go.Scatter(x=steps["num_tokens"], y=dur, mode="markers",
                                 marker={"size": 3, "color": colors[name]}, name=name, legendgroup=name,
                                 showlegend=False), row=2, col=3)
    fig.update_xaxes(title_text="s since start", row=2, col=2)
    fig.update_xaxes(title_text="tokens", type="log", row=2, col=3)
    fig.update_yaxes(title_text="ms", row=2, col=2)
    fig.update_yaxes(title_text="ms", row=2, col=3)
    fig.update_layout(height=800, title=f"llmsim validate — {res.config.scheduler.kind}, "
                                        f"{res.config.model.name}, rate {res.rate_per_s or 0:.2f} req/s")
    return fig


def write_report(res: ValidationResult, path: Path) -> Path:
    """The figure as a standalone HTML page (plotly.js inlined: works offline), headed by the error table."""
    fig = report_figure(res)
    m, s = res.measured, res.simulated

    def cell(summary, key):
        metric, q = key.rsplit("_", 1) if key[-3:] in ("p50", "p90", "p99") else (key, "")
        if q:
            v = summary[f"{metric}_s"][q]
            return "–" if v is None else f"{v * 1e3:,.2f} ms"
        if key == "throughput":
            v = summary["output_throughput_tokens_per_s"]
            return "–" if v is None else f"{v:,.1f} tok/s"
        return ""

    rows = "".join(f"<tr><td>{k}</td><td>{cell(m, k)}</td><td>{cell(s, k)}</td>"
                   f"<td>{'–' if v is None else f'{v:+.1%}'}</td></tr>" for k, v in res.errors.items())
    la = res.load_avg
    head = (f"<h2>llmsim validate: {res.config.scheduler.kind} scheduler, {res.config.model.name}</h2>"
            f"<p>errors = simulated / measured − 1. Clock: {res.clock}; torch threads {res.threads}; "
            f"rate {res.rate_per_s or 0:.2f} req/s (capacity {res.capacity_per_s or 0:.2f} req/s simulated); "
            f"1-min load average {la['start'][0]:.2f} at start, {la['after_executor'][0]:.2f} after the executor; "
            f"profile {res.profile}</p><table border=1 cellpadding=4><tr><th>metric</th><th>measured</th>"
            f"<th>simulated</th><th>error</th></tr>{rows}</table>")
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.replace("<body>", "<body>" + head, 1))
    return path


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON config (model, scheduler, KV, workload)"),
        quick: bool = typer.Option(False, "--quick", help="quick preset: small-llama, 300 requests, quick profile"),
        scheduler: Optional[str] = typer.Option(None, help="override scheduler.kind (vllm | sarathi | ...)"),
        num_requests: Optional[int] = typer.Option(None, "--num-requests", help="override the request count"),
        load: Optional[float] = typer.Option(None, help="arrival rate as a fraction of simulated capacity "
                                                        "(synthetic workloads; --quick default 0.7)"),
        profile: Optional[Path] = typer.Option(None, help="existing profile table of this CPU (else measured now)"),
        device_spec: Optional[Path] = typer.Option(None, "--device-spec", help="CPU spec YAML (else measured now)"),
        threads: int = typer.Option(1, help="torch CPU threads for profiling and serving (1: stable on shared "
                                            "machines)"),
        out: Path = typer.Option(Path("validate-out"), help="folder for profile, report.html, result.json"),
        max_error: float = typer.Option(0.10, "--max-error", help="exit 1 if |error| of a checked metric exceeds this"),
        check: str = typer.Option(",".join(DEFAULT_CHECK), help="comma-separated metrics --max-error applies to"),
        profile_mode: str = typer.Option("insitu", "--profile-mode",
                                         help="insitu: kernels timed inside executor passes | sweep: `llmsim "
                                              "profile` kernel sweep (when no --profile is given)"),
        clock: str = typer.Option("cpu", help="executor and profile clock: cpu (the executor thread's CPU time: "
                                              "a core of its own even on a shared machine; equals real time on an "
                                              "idle one) | wall (real time: use on a dedicated machine) | auto (wall "
                                              "if the 1-min load average is <= 0.5, else cpu)"),
        pin: bool = typer.Option(True, "--pin/--no-pin", help="run profile and executor on one core (1 thread)"),
        as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    ) -> None:
        """Real executor vs simulator on the same config: per-metric errors, JSON, and an HTML report."""
        try:
            import torch  # noqa: F401  (the executor is a torch model)
        except ModuleNotFoundError:
            raise UserError("llmsim validate runs a real torch model: pip install 'llmsim[profile]'") from None
        if not (0 < max_error):
            raise UserError(f"--max-error = {max_error}: must be > 0")
        checked = [c.strip() for c in check.split(",") if c.strip()]
        bad = [c for c in checked if c not in ERROR_KEYS]
        if bad:
            raise UserError(f"--check = {check!r}: unknown metric(s) {bad}; allowed: {', '.join(ERROR_KEYS)}")
        if load is not None and not 0 < load:
            raise UserError(f"--load = {load}: must be > 0 (a fraction of capacity, e.g. 0.7)")
        if threads < 1:
            raise UserError(f"--threads = {threads}: must be >= 1")
        if config is not None:
            data = load_config(config).model_dump(mode="python")
            source = str(config)
        elif quick:
            data, source = quick_config(scheduler or "vllm"), "--quick preset"
            if load is None:
                load = 0.7
        else:
            raise UserError("validate: give --config FILE (see examples/validate-*.yaml) or --quick")
        over: dict[str, Any] = {}
        if scheduler is not None and data["scheduler"].get("kind") != scheduler:
            base = quick_config(scheduler)["scheduler"] if quick else {"kind": scheduler}
            over["scheduler"] = base
        if num_requests is not None:
            if data["workload"].get("kind") == "synthetic":
                over["workload"] = {"num_requests": num_requests}
            else:
                over["workload"] = {"num_requests": num_requests}
        cfg = validate_config(merge(data, over), f"{source} + flags")

        console_err = None
        if not as_json:
            from rich.console import Console

            console_err = Console(stderr=True)
        say = (lambda s: console_err.print(f"[dim]{s}[/dim]")) if console_err else (lambda s: None)
        res = run_validation(cfg, work_dir=out, profile=profile, device_spec=device_spec, load=load,
                             threads=threads, quick=quick, clock=clock, profile_mode=profile_mode, say=say, pin=pin)
        out.mkdir(parents=True, exist_ok=True)
        res.write_frames(out)
        payload = res.as_json()
        (out / "result.json").write_text(json.dumps(payload, indent=2) + "\n")
        report = write_report(res, out / "report.html")
        failed = [k for k in checked if res.errors.get(k) is None or abs(res.errors[k]) > max_error]
        payload["checked"] = {"metrics": checked, "max_error": max_error, "failed": failed}
        if as_json:
            typer.echo(json.dumps(payload, indent=2))
        else:
            from rich.console import Console

            c = Console()
            c.print(error_table(res))
            la = res.load_avg
            c.print(f"clock: {res.clock}; load average (1 min) at start {la['start'][0]:.2f}, after the executor "
                    f"{la['after_executor'][0]:.2f}; report: {report}; json: {out / 'result.json'}")
            for n in res.notes:
                c.print(f"note: {n}", markup=False, highlight=False)
            if failed:
                c.print(f"[red]errors above --max-error {max_error:.0%}: {', '.join(failed)}[/red]")
        if failed:
            raise typer.Exit(1)
