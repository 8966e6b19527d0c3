"""The real executor: serves a LlamaModel with the same ReplicaCore (scheduler + KV manager) as the simulator.

Its loop is the simulator's replica loop with a real forward pass where the simulator asks the cost
model: admit arrivals → `core.next_plan(now)` → run exactly that packed pass (prefill chunks and
decode tokens) → greedy-sample → `core.complete(plan, now)` → record. Requests that arrive while a
pass runs wait for the next pass, as in a real server. Time comes from a clock: `WallClock` (real
seconds since the run began; arrivals follow the workload's timestamps in real time), `CPUClock`
(the executor thread's own CPU time, for shared machines) or `VirtualClock` (each pass takes a given
function of its shape — to check the decisions against the simulator's with identical step times).

NOTE (threads): torch's CPU thread count is process-global; callers set it (`torch_threads`) and
profile with the same count. `llmsim validate` uses 1: on a 2-core machine shared with other
processes, 2 threads make every op wait at the OpenMP barrier whenever the other core is taken
(measured 16:52 UTC: p90 of a 16x256x1376 matmul 16 ms with 2 threads vs 0.14 ms with 1).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from hwmodels.shapes import BatchShape
from policies.core import ReplicaCore
from policies.kv import make_kv_manager
from policies.plan import BatchPlan
from policies.request import FINISHED, REJECTED, Request
from policies.schedulers import make_scheduler
from profiler.executor.attention import PagedKVCache, build_batch
from profiler.executor.model import LlamaModel

REQUEST_COLUMNS = ["id", "replica", "arrival_s", "scheduled_s", "first_token_s", "finish_s", "input_tokens",
                   "output_tokens", "num_generated", "num_preemptions", "num_cached_tokens", "state",
                   "reject_reason"]
STEP_COLUMNS = ["replica", "start_s", "end_s", "batch_size", "num_tokens", "prefill_tokens", "decode_tokens",
                "kv_used_blocks", "kv_free_blocks", "kv_tokens", "num_waiting", "num_running", "num_preempted"]
STATE_NAMES = {FINISHED: "finished", REJECTED: "rejected"}  # anything else: "unfinished" (as the simulator)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h> mallopt parameters
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX / 2)
TRIM_THRESHOLD_BYTES = 1 << 30


def steady_allocator() -> bool:
    """Keep freed activation buffers in the heap for the next pass, as a serving engine's caching allocator
    does: fixed glibc thresholds (mmap only above 32 MB, trim the heap only above 1 GB free) instead of the
    dynamic ones. True if applied (glibc), False elsewhere (nothing changed).

    NOTE: with glibc's dynamic thresholds a pass's large temporaries (a 512-token prompt's attention
    scores are 8 MB) are mmapped and page-faulted anew on some passes and reused on others, depending on
    heap history: measured 2026-11-25 on this VM with a one-off script (tiny-llama, not a committed benchmark),
    the attention of one 512-token prompt took 25-29 ms (dynamic) vs 16.8-16.9 ms (fixed); the committed
    `benchmarks/bench_executor_timing.py predecessor` notes the effect on a decode after Python work. The
    setting is process-wide; `llmsim validate` applies it before it allocates the model.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                  TRIM_THRESHOLD_BYTES))


class WallClock:
    """Real seconds since `start()`; idle waits sleep."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def sleep_until(self, t: float) -> None:
        dt = t - self.now()
        if dt > 0:
            time.sleep(dt)

    def pass_done(self, shape: BatchShape) -> None:
        """The pass really took its time; nothing to add."""

    def excluding(self, fn: Callable[[], None]) -> None:
        """Run `fn` off the clock: the served timeline resumes where it stopped (arrivals move with it)."""
        t = time.perf_counter()
        fn()
        self.t0 += time.perf_counter() - t


class CPUClock:
    """This thread's CPU seconds since `start()`, plus idle gaps: the executor's time on a core of its own.

    On a shared machine other processes take the core away mid-pass and wall-clock passes stretch;
    thread CPU time counts only the time the executor ran (with one torch thread all of its work is
    on this thread). Idle waits do not sleep: the clock jumps to the next arrival, as it would have
    had the executor slept. Arrival order semantics are unchanged: requests that arrive while a pass
    runs wait for the next pass. NOTE: cache and memory-bandwidth interference from other processes
    is still counted.
    """

    def __init__(self) -> None:
        self.t0 = time.thread_time()
        self.idle_s = 0.0

    def start(self) -> None:
        self.t0 = time.thread_time()
        self.idle_s = 0.0

    def now(self) -> float:
        return time.thread_time() - self.t0 + self.idle_s

    def sleep_until(self, t: float) -> None:
        dt = t - self.now()
        if dt > 0:
            self.idle_s += dt

    def pass_done(self, shape: BatchShape) -> None:
        """The pass's CPU time is already on the clock."""

    def excluding(self, fn: Callable[[], None]) -> None:
        """Run `fn` off the clock: its CPU seconds are not the executor's."""
        t = time.thread_time()
        fn()
        self.t0 += time.thread_time() - t


class VirtualClock:
    """Simulated seconds: a pass takes `step_seconds(shape)`, idle waits jump to the next arrival."""

    def __init__(self, step_seconds: Callable[[BatchShape], float]) -> None:
        self.step_seconds = step_seconds
        self.t = 0.0

    def start(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def pass_done(self, shape: BatchShape) -> None:
        self.t += self.step_seconds(shape)

    def excluding(self, fn: Callable[[], None]) -> None:
        fn()


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run a block with `num_threads` intra-op CPU threads (None: leave torch's default), then restore."""
    old = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class ExecutorResult:
    """Frames in the simulator's schema, plus every request's tokens and the plans in order."""

    requests: pd.DataFrame
    steps: pd.DataFrame
    output_tokens: dict[int, list[int]]
    itl_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # inter-token gaps, as core.itl_s records
    token_times_s: dict[int, list[float]] = field(default_factory=dict)  # end of the pass that emitted each token
    plans: list[dict[int, int]] = field(default_factory=list)  # request id -> tokens, per pass
    shapes: list[BatchShape] = field(default_factory=list)  # each pass's shape, in `steps` order
    wall_s: float = 0.0
    # per pass (`steps` order): when the serving loop's work after the pass (completing it, admitting arrivals,
    # recording its row) ended. start_s .. cycle_end_s is the pass's share of the loop's time: what one step of
    # the simulator stands for (the cost model's step time includes the loop's per-pass work).
    cycle_end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))


TRACE_BLOCK_TOKENS = 512  # Mooncake: one prefix hash id per 512 prompt tokens (shared/traces/README.md)


def prompt_tokens(req: Request, vocab_size: int, seed: int) -> list[int]:
    """Deterministic prompt token ids: the part covered by trace prefix ids (`hash_ids`, 512 tokens
    each) comes from one RNG stream per id, so requests sharing a prefix share its tokens (and a prefix
    cache's KV is valid for them); the rest from the request's own stream."""
    out: list[int] = []
    for h in req.hash_ids or ():
        if len(out) >= req.prompt_len:
            break
        out.extend(np.random.default_rng([seed, 1, int(h)]).integers(0, vocab_size, TRACE_BLOCK_TOKENS).tolist())
    out = out[:req.prompt_len]
    rest = req.prompt_len - len(out)
    if rest:
        out.extend(np.random.default_rng([seed, 0, req.id]).integers(0, vocab_size, rest).tolist())
    return out


def make_core(scheduler_cfg, kv_cfg, num_blocks: int, max_model_len: int) -> ReplicaCore:
    """The ReplicaCore the simulator builds for one replica: the same policy factories, nothing else."""
    kv = make_kv_manager(kv_cfg, num_blocks, max_model_len)
    core = ReplicaCore(make_scheduler(scheduler_cfg), kv, max_model_len, 0, 0)
    core.itl_s = []
    return core


class Executor:
    """One replica serving `model` with `core`'s decisions. `core.kv` hands out the cache's block ids."""

    def __init__(self, model: LlamaModel, core: ReplicaCore, *, clock=None, seed: int = 0,
                 record_plans: bool = False, cache: PagedKVCache | None = None, op_clock=None) -> None:
        """op_clock: if given (e.g. time.thread_time), every kernel call of every pass is timed with it and
        `op_records` gets one [(op, key, seconds), ...] list per pass — a diagnostic: the clock reads add
        ~0.5 us per call to the served passes."""
        kv = core.kv
        self.op_clock = op_clock
        self.op_records: list[list] = []
        self.model = model
        self.core = core
        self.clock = clock or WallClock()
        self.seed = seed
        self.record_plans = record_plans
        dims = model.dims
        if cache is None:
            cache = PagedKVCache(dims.num_layers, kv.num_blocks, kv.block_size, dims.num_kv_heads, dims.head_dim,
                                 dtype=model.dtype, device=model.device)
        elif cache.num_blocks < kv.num_blocks or cache.block_size != kv.block_size:
            raise ValueError(f"cache: {cache.num_blocks} blocks of {cache.block_size} tokens; the KV manager hands "
                             f"out {kv.num_blocks} of {kv.block_size}")
        self.cache = cache  # NOTE: a cache shared with the in-situ profiler: the same memory it was timed on
        if core.itl_s is None:
            core.itl_s = []
        self.tokens: dict[int, list[int]] = {}
        self.token_times_s: dict[int, list[float]] = {}

    # -- one pass ---------------------------------------------------------------------------------
    def run_pass(self, plan: BatchPlan) -> list[Request]:
        """Run the forward pass `plan` describes (before `core.complete`); append and return the samplers."""
        if not plan.reqs:
            return []
        ids, seqs, sample_rows, samplers = self._pack(plan)
        for r, t in zip(samplers, self._forward(ids, seqs, sample_rows)):  # greedy
            self.tokens[r.id].append(t)
        return samplers

    def _pack(self, plan: BatchPlan):
        """Token ids, (num_new, ctx, blocks) rows (prompt chunks first, then decodes), sampled rows and the
        requests they belong to."""
        prefill, decode = [], []
        for r, n in zip(plan.reqs, plan.num_tokens):
            (decode if n == 1 and r.num_computed > 0 else prefill).append((r, n))
        ids, seqs, sample_rows, samplers = [], [], [], []
        row = 0
        for r, n in prefill + decode:
            ctx = r.num_computed
            toks = self.tokens[r.id]
            ids.extend(toks[ctx:ctx + n])
            seqs.append((n, ctx, r.blocks))
            row += n
            if ctx + n >= len(toks):  # reaches the end of its tokens: this pass samples the next one
                sample_rows.append(row - 1)
                samplers.append(r)
        return ids, seqs, sample_rows, samplers

    def _forward(self, ids: list[int], seqs, sample_rows: list[int]) -> list[int]:
        """The packed forward pass and greedy sampling: the next token of each sampled row."""
        device = self.model.device
        batch = build_batch(seqs, self.core.kv.block_size, device)
        token_ids = torch.tensor(ids, dtype=torch.long, device=device)
        rows = torch.tensor(sample_rows, dtype=torch.long, device=device)
        if self.op_clock is None:
            logits = self.model.forward_packed(token_ids, batch, self.cache, rows)
        else:
            rec: list = []
            logits = self.model.forward_packed(token_ids, batch, self.cache, rows, record=rec, clock=self.op_clock)
            self.op_records.append(rec)
        return logits.argmax(dim=-1).tolist()

    def warmup(self, shapes: Iterable[tuple[int, int]] = ((64, 0), (1, 64)), repeats: int = 2) -> None:
        """Run throwaway passes (num_new, ctx) on scratch blocks so one-time allocator/oneDNN setup is not
        charged to the first requests. Writes only cache slots that the served requests overwrite."""
        bs, nb = self.core.kv.block_size, self.core.kv.num_blocks
        for _ in range(repeats):
            for n, ctx in shapes:
                need = -(-(n + ctx) // bs)
                if need > nb:
                    continue
                batch = build_batch([(n, ctx, list(range(need)))], bs, self.model.device)
                ids = torch.zeros(n, dtype=torch.long, device=self.model.device)
                self.model.forward_packed(ids, batch, self.cache, torch.tensor([n - 1], device=self.model.device))

    # -- the serving loop -------------------------------------------------------------------------
    def serve(self, requests: list[Request],
              pauses: Sequence[tuple[float, Callable[[], None]]] = ()) -> ExecutorResult:
        """Serve `requests` (arrival_s relative to the start) to completion; returns the frames.

        pauses: (t, fn) pairs: after the first pass that ends at or past served time t, `fn` runs off the
        executor's clock (`clock.excluding`) — `llmsim validate` spreads profile sweeps through the run this way.
        The served timeline is that of a run without the pause; only the pass right after it starts on caches
        that `fn` left. `fn` must leave the KV cache's served blocks as it found them."""
        core, clock = self.core, self.clock
        vocab = self.model.dims.vocab_size
        pending = sorted(requests, key=lambda r: (r.arrival_s, r.id))
        steps: list[tuple] = []
        plans: list[dict[int, int]] = []
        shapes: list[BatchShape] = []
        i, n = 0, len(pending)
        # NOTE: prompts are tokenized before the clock starts, as a server's frontend does before the engine
        # sees a request. Drawing them at admission cost ~0.25 ms per arrival inside the serving loop (numpy
        # RNG set-up; ~0.4 % of a validate --quick run's pass time, between passes), time the simulator does
        # not have (`benchmarks/bench_validate.py --gaps`).
        prompts = {r.id: prompt_tokens(r, vocab, self.seed) for r in pending}
        wall0 = time.perf_counter()
        clock.start()

        def admit(now: float) -> int:  # queue everything that has arrived by `now`
            j = i
            while j < n and pending[j].arrival_s <= now:
                r = pending[j]
                if core.add(r):
                    self.tokens[r.id] = prompts.pop(r.id)
                    self.token_times_s[r.id] = []
                j += 1
            return j

        todo = sorted(pauses, key=lambda p: p[0])
        cycle_end: list[float] = []  # per pass: when the loop's work after it (complete, admit, its row) ended
        while i < n or core.has_work():
            now = clock.now()
            if len(cycle_end) < len(steps):
                cycle_end.append(now)
            i = admit(now)
            plan = core.next_plan(now) if core.has_work() else None
            if plan is None:
                if i >= n:
                    break  # queued work that can never be scheduled; left unfinished in the frames
                clock.sleep_until(pending[i].arrival_s)
                continue
            samplers = self.run_pass(plan)
            clock.pass_done(plan.shape)
            end = clock.now()
            for r in samplers:
                self.token_times_s[r.id].append(end)
            if self.record_plans:
                plans.append(plan.as_dict())
            core.complete(plan, end)
            i = admit(end)  # arrivals during the pass were queued meanwhile; they wait for the next pass
            steps.append(self._step_row(plan, now, end))
            shapes.append(plan.shape)
            while todo and end >= todo[0][0]:
                clock.excluding(todo.pop(0)[1])
        if len(cycle_end) < len(steps):
            cycle_end.append(clock.now())
        for _, fn in todo:  # due after the last pass: run them still (off the clock), as promised
            clock.excluding(fn)
        wall_s = time.perf_counter() - wall0
        outputs = {r.id: self.tokens[r.id][r.prompt_len:] for r in pending if r.id in self.tokens}
        return ExecutorResult(requests_frame(pending), pd.DataFrame(steps, columns=STEP_COLUMNS), outputs,
                              np.asarray(core.itl_s, dtype=np.float64), dict(self.token_times_s), plans, shapes, wall_s,
                              np.asarray(cycle_end, dtype=np.float64))

    def _step_row(self, plan: BatchPlan, start: float, end: float) -> tuple:
        """One `steps` row, taken after `core.complete` (as the simulator records it)."""
        core, kv, s = self.core, self.core.kv, plan.shape
        return (core.replica_id, start, end, s.num_seqs, s.num_tokens, s.num_prefill_tokens, s.num_decode_tokens,
                kv.num_used_blocks, kv.num_free_blocks, core.num_kv_tokens, len(core.waiting), len(core.running),
                len(plan.preempted))


def requests_frame(reqs: list[Request]) -> pd.DataFrame:
    """One row per request, the simulator's `requests` schema."""
    rows = [(r.id, r.replica, r.arrival_s, r.scheduled_s, r.first_token_s, r.finish_s, r.prompt_len, r.output_len,
             r.num_generated, r.num_preemptions, r.num_cached_tokens, STATE_NAMES.get(r.state, "unfinished"),
             r.reject_reason) for r in reqs]
    return pd.DataFrame(rows, columns=REQUEST_COLUMNS)
