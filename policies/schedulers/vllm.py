"""vLLM (Kwon et al., SOSP'23) scheduling, as in vLLM v0's default scheduler (`_schedule_default`).

Prefill-first: if requests wait and none are swapped, a pass admits as many waiting prompts (FCFS,
whole prompts, after their cached prefix) as fit the batch size, token budget and free blocks above
the watermark, and runs prefill only. Otherwise every running request decodes one token; when a
decode needs a block and none is free, the lowest-priority running request (the last one) is
preempted — recomputed later or swapped to host memory — until the decode fits. If nothing was
preempted, swapped requests come back (FCFS) before any new one is admitted.
"""
from __future__ import annotations

from policies.plan import BatchPlan, PlanBuilder
from policies.request import Request
from policies.schedulers.base import (NO_WINDOW, SchedulerPolicy, SchedulerView, admit, decode_running,
                                      fits_alone_reason, schedulable, swap_in)


class VLLMScheduler(SchedulerPolicy):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.preemption = cfg.preemption
        self.max_batch_size = cfg.max_batch_size
        self.max_tokens = cfg.max_num_batched_tokens

    def reject_reason(self, req: Request, view: SchedulerView) -> str:
        if req.prompt_len > self.max_tokens:
            return (f"prompt of {req.prompt_len} tokens exceeds max_num_batched_tokens={self.max_tokens} "
                    "(vllm does not chunk prompts)")
        return fits_alone_reason(req, view.kv, int(self.cfg.watermark * view.kv.num_blocks))

    def plan(self, view: SchedulerView) -> BatchPlan | None:
        kv = view.kv
        b = PlanBuilder(view.window)
        free = kv.num_free_blocks
        running = schedulable(view)  # with pipelining, max_batch_size bounds each micro-batch
        if view.waiting and not view.swapped:
            watermark = int(self.cfg.watermark * kv.num_blocks)
            admit(b, view.waiting, kv, free, self.max_tokens, len(running), self.max_batch_size, watermark,
                  chunked=False)
            if b.reqs:
                return b.build()
        free, _ = decode_running(b, running, kv, free, NO_WINDOW, None, self.max_batch_size,
                                      not view.num_in_flight)
        if view.swapped and not b.preempted:
            watermark = int(self.cfg.watermark * kv.num_blocks)
            swap_in(b, view.swapped, kv, free, NO_WINDOW, len(running), self.max_batch_size, watermark)
        return b.build()
