"""ReplicaCore: the state machine of one replica, shared by the simulator and the real executor.

It owns the queues and the KV manager, asks the scheduling policy for a plan, applies the plan's
admissions, preemptions and allocations, and — once the engine has run the pass — advances each
request's computed tokens, emits sampled tokens and frees finished requests. Neither engine
re-implements any of this: they only decide *when* a pass starts and how long it takes.
"""
from __future__ import annotations

from collections import deque

from policies.kv.base import KVManager
from policies.plan import BatchPlan
from policies.request import FINISHED, REJECTED, RUNNING, SWAPPED, WAITING, Request
from policies.schedulers.base import SchedulerPolicy


class ReplicaCore:
    """One replica: `add` → `next_plan(now)` → (engine runs the pass) → `complete(plan, now)`.

    Read by policies, routers and engines: `waiting` (FCFS deque), `running` (priority order),
    `swapped`, `kv`, `num_outstanding`, `num_in_flight`, `num_kv_tokens` (tokens whose KV is held: with
    `kv.num_used_blocks * kv.block_size` it shows reservation and fragmentation), `num_preemptions`,
    `num_swapped_blocks_in/out` (running totals). Engines set `pipelined` and `itl_s`.
    """

    def __init__(self, policy: SchedulerPolicy, kv: KVManager, max_model_len: int, window: int = 0,
                 replica_id: int = 0) -> None:
        self.policy = policy
        self.kv = kv
        self.max_model_len = max_model_len
        self.window = window
        self.replica_id = replica_id
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.swapped: deque[Request] = deque()
        self.num_in_flight = 0  # requests inside pipeline micro-batches (pp > 1)
        self.num_outstanding = 0  # admitted to this replica and not finished
        self.num_preemptions = 0
        self.num_swapped_blocks_out = 0  # totals, for the cost of swaps
        self.num_swapped_blocks_in = 0
        self.pipelined = False  # engines that keep several micro-batches in flight set this
        self.num_kv_tokens = 0  # Σ num_computed of requests whose KV is on the GPU (shared prefixes count per request)
        self.itl_s: list[float] | None = None  # engines that report inter-token latency set a list here

    # -- the view schedulers read ------------------------------------------------------------
    @property
    def schedulable(self) -> list[Request]:
        """Running requests not inside an in-flight micro-batch (all of them without pipelining)."""
        if self.num_in_flight == 0:
            return self.running
        return [r for r in self.running if not r.in_flight]

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.swapped)

    # -- mutations ----------------------------------------------------------------------------
    def add(self, req: Request) -> bool:
        """Queue `req`; returns False (state REJECTED, reason set) if it can never be served here."""
        req.replica = self.replica_id
        reason = ""
        if req.prompt_len < 1 or req.output_len < 1:
            reason = f"prompt_len={req.prompt_len} and output_len={req.output_len} must both be >= 1"
        elif req.max_len > self.max_model_len:
            reason = f"{req.max_len} tokens exceed max_model_len={self.max_model_len}"
        elif self.kv.max_blocks_for(req.max_len) > self.kv.num_blocks:
            reason = (f"needs {self.kv.max_blocks_for(req.max_len)} KV blocks, the replica has "
                      f"{self.kv.num_blocks}")
        else:
            reason = self.policy.reject_reason(req, self)
        if reason:
            req.state = REJECTED
            req.reject_reason = reason
            return False
        req.state = WAITING
        self.waiting.append(req)
        self.num_outstanding += 1
        return True

    def next_plan(self, now: float) -> BatchPlan | None:
        """Ask the policy for the next pass and apply its preemptions, admissions, swap-ins and allocations."""
        plan = self.policy.plan(self)
        if plan is None:
            return None
        kv = self.kv
        if plan.preempted:
            for r in plan.preempted:
                self._preempt(r)
        running = self.running
        if plan.swapped_in:
            swapped = self.swapped
            for r in plan.swapped_in:
                swapped.remove(r)
                r.state = RUNNING
                running.append(r)
        if plan.admitted:
            waiting = self.waiting
            cached = plan.cached or [0] * len(plan.admitted)
            for r, c in zip(plan.admitted, cached):
                if waiting[0] is r:
                    waiting.popleft()
                else:
                    waiting.remove(r)
                r.state = RUNNING
                first = r.scheduled_s != r.scheduled_s  # NaN: first time scheduled
                if first:
                    r.scheduled_s = now
                if c:
                    # Before any allocation below, which could evict the blocks the policy counted on.
                    got = kv.acquire_prefix(r, c)
                    if got != c:
                        raise RuntimeError(f"request {r.id}: planned {c} cached prefix tokens, found {got}")
                    r.num_computed = got
                    self.num_kv_tokens += got
                    if first:  # NOTE: hits on recompute re-admissions are not counted again
                        r.num_cached_tokens = got
                running.append(r)
        if plan.swapped_in:
            for r in plan.swapped_in:
                self.num_swapped_blocks_in += kv.swap_in(r)
                self.num_kv_tokens += r.num_computed
        if plan.allocs:
            allocate = kv.allocate
            for r, t in plan.allocs:
                allocate(r, t)
        if self.pipelined:
            for r in plan.reqs:
                r.in_flight = True
            self.num_in_flight += len(plan.reqs)
        return plan

    def complete(self, plan: BatchPlan, now: float) -> list[Request]:
        """The pass ran and ended at `now`: advance tokens, emit samples, free finished requests."""
        finished: list[Request] = []
        itl = self.itl_s
        reqs = plan.reqs
        k = plan.num_decodes if itl is not None else 0
        if k:
            # The leading one-token decodes, which all sample (the common case): no per-request tests.
            append = itl.append
            for r in (reqs if k == len(reqs) else reqs[:k]):
                r.num_computed += 1
                g = r.num_generated + 1
                r.num_generated = g
                append(now - r.last_token_s)
                r.last_token_s = now
                if g >= r.output_len:
                    finished.append(r)
            self.num_kv_tokens += k
            if k == len(reqs):
                return self._finish(plan, finished, now)
        rest, ntok = (reqs, plan.num_tokens) if not k else (reqs[k:], plan.num_tokens[k:])
        for r, n in zip(rest, ntok):
            nc = r.num_computed + n
            r.num_computed = nc
            if nc >= r.prompt_len + r.num_generated:  # the pass reached the end: one token sampled
                g = r.num_generated + 1
                r.num_generated = g
                if g == 1:  # num_generated never decreases (recompute keeps generated tokens)
                    r.first_token_s = now
                elif itl is not None:
                    itl.append(now - r.last_token_s)
                r.last_token_s = now
                if g >= r.output_len:
                    finished.append(r)
        self.num_kv_tokens += sum(ntok)
        kv = self.kv
        if kv.prefix_caching:  # register prompt blocks this pass filled (decodes fill none)
            for r, n in zip(rest, ntok):
                if r.hash_ids is not None and r.num_computed - n < r.prompt_len:
                    kv.cache_computed(r)
        return self._finish(plan, finished, now)

    def _finish(self, plan: BatchPlan, finished: list[Request], now: float) -> list[Request]:
        kv = self.kv
        if self.num_in_flight:
            for r in plan.reqs:
                r.in_flight = False
            self.num_in_flight -= len(plan.reqs)
        if finished:
            free = kv.free
            for r in finished:
                self.num_kv_tokens -= r.num_computed
                free(r)
                r.state = FINISHED
                r.finish_s = now
            if len(finished) < 8:
                remove = self.running.remove
                for r in finished:
                    remove(r)
            else:
                done = set(map(id, finished))
                self.running = [r for r in self.running if id(r) not in done]
            self.num_outstanding -= len(finished)
        return finished

    def _preempt(self, r: Request) -> None:
        self.running.remove(r)
        r.num_preemptions += 1
        self.num_preemptions += 1
        self.num_kv_tokens -= r.num_computed
        if self.policy.preemption == "swap" and self.kv.can_swap_out(r):
            self.num_swapped_blocks_out += self.kv.swap_out(r)
            r.state = SWAPPED
            self.swapped.append(r)
        else:  # recompute: drop the KV, the request re-enters the queue at the front
            self.kv.free(r)
            r.num_computed = 0
            r.state = WAITING
            self.waiting.appendleft(r)
