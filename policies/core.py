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
        self.itl_s: list[float] | None = None  # engines that report inter-token latency set a list here

    # -- the view schedulers read ------------------------------------------------------------
    @property
    def schedulable(self) -> list[Request]:
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
        """Ask the policy for the next pass and apply its admissions, preemptions and allocations."""
        plan = self.policy.plan(self)
        if plan is None:
            return None
        kv = self.kv
        for r in plan.preempted:
            self._preempt(r)
        for r in plan.swapped_in:
            self.swapped.remove(r)
            self.num_swapped_blocks_in += kv.swap_in(r)
            r.state = RUNNING
            self.running.append(r)
        waiting = self.waiting
        for r in plan.admitted:
            if waiting[0] is r:
                waiting.popleft()
            else:
                waiting.remove(r)
            r.state = RUNNING
            if r.scheduled_s != r.scheduled_s:  # NaN: first time scheduled
                r.scheduled_s = now
            self.running.append(r)
        allocate = kv.allocate
        for r, n in zip(plan.reqs, plan.num_tokens):
            allocate(r, r.num_computed + n)
        if self.pipelined:
            for r in plan.reqs:
                r.in_flight = True
            self.num_in_flight += len(plan.reqs)
        return plan

    def complete(self, plan: BatchPlan, now: float) -> list[Request]:
        """The pass ran and ended at `now`: advance tokens, emit samples, free finished requests."""
        finished: list[Request] = []
        itl = self.itl_s
        for r, n in zip(plan.reqs, plan.num_tokens):
            r.num_computed += n
            if r.num_computed >= r.prompt_len + r.num_generated:
                r.num_generated += 1
                if r.num_generated == 1 or r.first_token_s != r.first_token_s:
                    r.first_token_s = now
                elif itl is not None:
                    itl.append(now - r.last_token_s)
                r.last_token_s = now
                if r.num_generated >= r.output_len:
                    finished.append(r)
        if self.num_in_flight:
            for r in plan.reqs:
                r.in_flight = False
            self.num_in_flight -= len(plan.reqs)
        if finished:
            free = self.kv.free
            for r in finished:
                free(r)
                r.state = FINISHED
                r.finish_s = now
            done = set(map(id, finished))
            self.running = [r for r in self.running if id(r) not in done]
            self.num_outstanding -= len(finished)
        return finished

    def _preempt(self, r: Request) -> None:
        self.running.remove(r)
        r.num_preemptions += 1
        self.num_preemptions += 1
        if self.policy.preemption == "swap" and self.kv.can_swap_out(r):
            self.num_swapped_blocks_out += self.kv.swap_out(r)
            r.state = SWAPPED
            self.swapped.append(r)
        else:  # recompute: drop the KV, the request re-enters the queue at the front
            self.kv.free(r)
            r.num_computed = 0
            r.state = WAITING
            self.waiting.appendleft(r)
