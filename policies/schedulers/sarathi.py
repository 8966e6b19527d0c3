"""Sarathi-Serve (Agrawal et al., OSDI'24): stall-free batching with chunked prefills.

Every iteration has a token budget (`chunk_size`, capped by max_num_batched_tokens). It is filled in
priority order: first one token for every running decode, then the next chunk of prefills already in
progress, then — if no request was preempted and none is swapped — new requests admitted FCFS with a
chunk of their prompt. Decodes never wait behind a long prompt (no generation stalls), and a prompt
is spread over as many iterations as the budget requires. As in Sarathi-Serve's vLLM-based code, an
admitted request gets KV blocks for its whole prompt at once (above the watermark), so its later
chunks never stall on memory; a decode that finds no free block preempts from the back, as vLLM.
"""
from __future__ import annotations

from policies.plan import BatchPlan, PlanBuilder
from policies.request import Request
from policies.schedulers.base import (SchedulerPolicy, SchedulerView, admit, decode_running, fits_alone_reason,
                                      prefill_running, schedulable, swap_in)


class SarathiScheduler(SchedulerPolicy):
    on_demand = False  # allocate KV per chunk (SplitFuse) instead of for the whole prompt at admission

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.preemption = cfg.preemption
        self.max_batch_size = cfg.max_batch_size
        self.budget = min(cfg.chunk_size, cfg.max_num_batched_tokens)

    def reject_reason(self, req: Request, view: SchedulerView) -> str:
        return fits_alone_reason(req, view.kv, int(self.cfg.watermark * view.kv.num_blocks))

    def plan(self, view: SchedulerView) -> BatchPlan | None:
        kv = view.kv
        b = PlanBuilder(view.window)
        running = schedulable(view)
        prefills: list[Request] = []
        free, budget = decode_running(b, running, kv, kv.num_free_blocks, self.budget, prefills, self.max_batch_size,
                                      not view.num_in_flight)
        if prefills:
            free, budget = prefill_running(b, prefills, kv, free, budget, self.max_batch_size)
        if not b.preempted and budget > 0:
            watermark = int(self.cfg.watermark * kv.num_blocks)
            if view.swapped:
                swap_in(b, view.swapped, kv, free, budget, max(len(running), len(b.reqs)), self.max_batch_size,
                        watermark)
            elif view.waiting:
                admit(b, view.waiting, kv, free, budget, len(running), self.max_batch_size, watermark,
                      chunked=True, on_demand=self.on_demand)
        if not b.reqs and not b.preempted and running and not view.running[-1].in_flight:
            # Every running request is stalled on memory (possible only with on-demand allocation):
            # free the lowest-priority one so that the others can go on (if it is in a micro-batch
            # still in flight, wait for it instead).
            b.preempted.append(view.running[-1])
        return b.build()
