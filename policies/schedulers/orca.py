"""Orca (Yu et al., OSDI'22): iteration-level scheduling with selective batching.

Every iteration runs all running requests (one decode token each) together with whole prompts of
newly admitted ones — selective batching batches the token-wise operators of prefill and decode and
splits only attention per request, so both fit in one pass. A request is admitted (FCFS, up to the
batch size and the token budget) only if KV for its final length can be reserved up front, as Orca
does; requests therefore never run out of memory and are never preempted. Pair it with the
contiguous KV manager (reserve: max_model_len / pow2 / oracle = the vLLM paper's Orca baselines).
"""
from __future__ import annotations

from policies.plan import BatchPlan, PlanBuilder
from policies.request import Request
from policies.schedulers.base import SchedulerPolicy, SchedulerView, admit, decode_running, schedulable


class OrcaScheduler(SchedulerPolicy):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.max_batch_size = cfg.max_batch_size
        self.max_tokens = cfg.max_num_batched_tokens

    def reject_reason(self, req: Request, view: SchedulerView) -> str:
        if req.prompt_len > self.max_tokens:
            return (f"prompt of {req.prompt_len} tokens exceeds max_num_batched_tokens={self.max_tokens} "
                    "(orca does not chunk prompts)")
        return ""

    def plan(self, view: SchedulerView) -> BatchPlan | None:
        kv = view.kv
        b = PlanBuilder(view.window)
        # With the final length reserved, decodes need no new blocks; decode_running would preempt only
        # if a request came in without a reservation.
        running = schedulable(view)
        free, budget = decode_running(b, running, kv, kv.num_free_blocks, self.max_tokens, None, self.max_batch_size,
                                      not view.num_in_flight)
        if view.waiting and not b.preempted and budget > 0:
            admit(b, view.waiting, kv, free, budget, len(running), self.max_batch_size, 0,
                  chunked=False, reserve_final=True)
        return b.build()
