"""The SimPy engine: arrivals → router → one process per replica running DESIGN.md's loop.

    wait for work → ask the core for a plan → ask the cost model how long it takes →
    `yield env.timeout(t)` → apply (tokens, finishes, frees) → record

Policy logic lives in `policies.core.ReplicaCore` and the scheduler/KV/router policies; this module
only decides *when* things happen. Pipeline parallelism (pp > 1) runs each micro-batch as its own
process through `pp` stage resources, so several micro-batches are in flight and bubbles emerge.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import simpy

from hwmodels.cost import CostModel
from policies.core import ReplicaCore
from policies.kv import make_kv_manager
from policies.request import FINISHED, REJECTED, Request
from policies.routers import make_router
from policies.schedulers import make_scheduler

STEP_COLUMNS = ("replica", "start_s", "end_s", "batch_size", "num_tokens", "prefill_tokens", "decode_tokens",
                "kv_used_blocks", "kv_free_blocks", "kv_tokens", "num_waiting", "num_running", "num_preempted")


@dataclass
class EngineSpec:
    """Everything the engine needs, already resolved (no config parsing, no catalogs)."""

    cost_model: CostModel
    scheduler_cfg: object
    kv_cfg: object
    router_cfg: object
    num_replicas: int
    num_kv_blocks: int
    max_model_len: int
    window: int = 0
    pp: int = 1
    seed: int = 0
    max_sim_time_s: float | None = None
    record_steps: bool = True
    swap_s_per_block: float = 0.0  # host<->GPU transfer time of one KV block (PCIe), for swap preemption
    num_host_blocks: int = 0
    jitter_sd: float = 0.0  # log-sd of a per-pass speed factor (SimulationConfig.step_jitter); 0: deterministic
    jitter_rho: float = 0.0  # its lag-1 autocorrelation
    jitter_seed: int | None = None  # its draw (None: `seed`)


class StepJitter:
    """Per-pass factors exp(x_t), x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t, e_t ~ N(0, sd): a stationary AR(1)
    series with standard deviation sd, shifted by -sd^2/2 so that E[exp(x)] = 1 (lognormal mean)."""

    def __init__(self, sd: float, rho: float, seed: int, replica: int) -> None:
        self.rng = np.random.default_rng((seed, 0x6A17, replica))
        self.rho, self.scale, self.shift = rho, sd * math.sqrt(1.0 - rho * rho), -0.5 * sd * sd
        self.buf: np.ndarray = np.empty(0)
        self.i = 0
        self.x = float(self.rng.normal(0.0, sd))  # the series starts in its stationary distribution

    def __call__(self) -> float:
        if self.i == len(self.buf):  # draw innovations in blocks: one numpy call per 4096 passes
            self.buf, self.i = self.rng.normal(0.0, self.scale, 4096), 0
        self.x = self.rho * self.x + float(self.buf[self.i])
        self.i += 1
        return math.exp(self.x + self.shift)


@dataclass
class RawResult:
    requests: list[Request]
    steps: array  # float64, flat: len(STEP_COLUMNS) values per step, in STEP_COLUMNS order
    itl_s: array  # float32: every inter-token gap (s)
    cores: list[ReplicaCore]
    end_s: float
    notes: list[str] = field(default_factory=list)

    def step_rows(self) -> list[tuple[float, ...]]:
        """Steps as tuples in STEP_COLUMNS order (for small runs and tests)."""
        k = len(STEP_COLUMNS)
        return [tuple(self.steps[j:j + k]) for j in range(0, len(self.steps), k)]


class Engine:
    def __init__(self, spec: EngineSpec, requests: Sequence[Request]) -> None:
        self.spec = spec
        self.requests = list(requests)
        self.env = simpy.Environment()
        # NOTE: flat arrays, not lists of tuples/floats, keep memory bounded (a million-request run emits
        # ~150 M gaps and ~8 M steps). Gaps are float32 (4 B, ~1e-7 relative: ample for seconds-scale
        # gaps); step times need float64 (µs resolution at hours of simulated time).
        self.itl_s = array("f")
        self.steps = array("d")
        self.cores = []
        for i in range(spec.num_replicas):
            kv = make_kv_manager(spec.kv_cfg, spec.num_kv_blocks, spec.max_model_len,
                                 num_host_blocks=spec.num_host_blocks)
            core = ReplicaCore(make_scheduler(spec.scheduler_cfg), kv, spec.max_model_len, spec.window, i)
            core.itl_s = self.itl_s
            core.pipelined = spec.pp > 1
            self.cores.append(core)
        self.router = make_router(spec.router_cfg, spec.seed)
        self.wake: list[simpy.Event | None] = [None] * spec.num_replicas
        self.batches_in_flight = [0] * spec.num_replicas  # pp > 1: micro-batches inside the pipeline
        self.arrivals_done = False
        self.notes: list[str] = []
        jseed = spec.seed if spec.jitter_seed is None else spec.jitter_seed
        self.jitters = [StepJitter(spec.jitter_sd, spec.jitter_rho, jseed, i) if spec.jitter_sd else None
                        for i in range(spec.num_replicas)]

    # -- processes ------------------------------------------------------------------------------
    def _arrivals(self):
        env, cores, route, poke = self.env, self.cores, self.router.route, self._poke
        for req in self.requests:
            if req.arrival_s > env.now:
                yield env.timeout(req.arrival_s - env.now)
            i = route(req, cores)
            if cores[i].add(req):
                poke(i)
        self.arrivals_done = True
        for i in range(len(cores)):
            poke(i)

    def _poke(self, i: int) -> None:
        ev = self.wake[i]
        if ev is not None:
            self.wake[i] = None
            ev.succeed()

    def _idle(self, i: int):
        """Event that fires when replica i gets new work; None if it never will."""
        if self.arrivals_done and not self.cores[i].num_in_flight:
            return None
        ev = self.wake[i] = self.env.event()
        return ev

    def _replica(self, i: int):
        env, core, cost, record = self.env, self.cores[i], self.spec.cost_model.stage_seconds, self._record
        swap_s, swapped = self.spec.swap_s_per_block, 0
        jitter = self.jitters[i]
        while True:
            plan = core.next_plan(env.now)
            if plan is None:
                ev = self._idle(i)
                if ev is None:
                    return
                yield ev
                continue
            start = env.now
            t = cost(plan.shape) if plan.reqs else 0.0
            if jitter is not None and t:
                t *= jitter()
            if swap_s:  # blocks moved over PCIe by this plan's swaps delay the pass
                moved = core.num_swapped_blocks_in + core.num_swapped_blocks_out
                t += swap_s * (moved - swapped)
                swapped = moved
            yield env.timeout(t)
            core.complete(plan, env.now)
            record(i, core, plan, start)

    def _replica_pipelined(self, i: int):
        """pp > 1: keep up to pp micro-batches in flight; each flows through the stage resources."""
        env, core, pp = self.env, self.cores[i], self.spec.pp
        stages = [simpy.Resource(env, capacity=1) for _ in range(pp)]
        while True:
            while self.batches_in_flight[i] < pp:
                plan = core.next_plan(env.now)
                if plan is None or not plan.reqs:
                    break
                self.batches_in_flight[i] += 1
                env.process(self._microbatch(i, plan, stages))
            if self.batches_in_flight[i] == 0 and not core.has_work() and self.arrivals_done:
                return
            ev = self.wake[i] = env.event()
            yield ev

    def _microbatch(self, i: int, plan, stages):
        env, core, cost = self.env, self.cores[i], self.spec.cost_model
        start, stage_s, p2p_s = env.now, cost.stage_seconds(plan.shape), cost.p2p_seconds(plan.shape)
        if self.jitters[i] is not None:  # one factor per micro-batch, on every stage it passes
            stage_s *= self.jitters[i]()
        last = len(stages) - 1
        for k, stage in enumerate(stages):
            with stage.request() as slot:
                yield slot
                yield env.timeout(stage_s)
            if k < last and p2p_s:
                yield env.timeout(p2p_s)
        core.complete(plan, env.now)
        self.batches_in_flight[i] -= 1
        self._record(i, core, plan, start)
        self._poke(i)

    def _record(self, i: int, core: ReplicaCore, plan, start: float) -> None:
        if not self.spec.record_steps:
            return
        s = plan.shape
        kv = core.kv
        self.steps.extend((i, start, self.env.now, s.num_seqs, s.num_tokens, s.num_prefill_tokens,
                           s.num_decode_tokens, kv.num_used_blocks, kv.num_free_blocks, core.num_kv_tokens,
                           len(core.waiting), len(core.running), len(plan.preempted)))

    # -- driver ---------------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> RawResult:
        env = self.env
        env.process(self._arrivals())
        for i in range(len(self.cores)):
            if self.spec.pp > 1:
                self.cores[i].num_in_flight_batches = 0
                env.process(self._replica_pipelined(i))
            else:
                env.process(self._replica(i))
        limit = self.spec.max_sim_time_s
        if progress is None:
            env.run(until=limit)
        else:  # step by hand and report every ~1/50 of the arrival horizon
            # NOTE: not run(until=t) slices: SimPy 4.1 leaves that stop event queued, so peek() never
            # reaches inf and the loop would not end once the work is done.
            every = max(self.requests[-1].arrival_s if self.requests else 0.0, 1.0) / 50
            end = float("inf") if limit is None else limit
            next_at, peek, step = every, env.peek, env.step
            while peek() < end:
                step()
                if env.now >= next_at:
                    progress(env.now)
                    next_at = env.now + every
            if limit is not None and env.now < limit and peek() != float("inf"):
                env.run(until=limit)
            progress(env.now)
        for core in self.cores:  # anything still queued could not be served
            if core.has_work() and limit is None:
                self.notes.append(f"replica {core.replica_id}: {len(core.waiting)} waiting and "
                                  f"{len(core.running)} running requests could not make progress")
        return RawResult(self.requests, self.steps, self.itl_s, self.cores, env.now, self.notes)


def run_engine(spec: EngineSpec, requests: Sequence[Request],
               progress: Callable[[float], None] | None = None) -> RawResult:
    """Run requests (sorted by arrival) through the cluster described by `spec`."""
    return Engine(spec, requests).run(progress)


def is_finished(r: Request) -> bool:
    return r.state == FINISHED


def is_rejected(r: Request) -> bool:
    return r.state == REJECTED
