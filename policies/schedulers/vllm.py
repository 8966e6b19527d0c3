"""vLLM (Kwon et al., SOSP'23) scheduling, as in vLLM v0's scheduler.

Prefill-first: if requests wait and none are swapped, a pass admits as many waiting prompts (FCFS,
whole prompts) as fit the batch size, token budget and free blocks above the watermark, and runs
prefill only. Otherwise every running request decodes one token; when a decode needs a block and
none is free, the lowest-priority running request (the last one) is preempted — recomputed later
or swapped to host memory — until the decode fits. Swapped requests come back before new ones.
"""
from __future__ import annotations

from policies.plan import BatchPlan, PlanBuilder
from policies.request import Request
from policies.schedulers.base import SchedulerPolicy, SchedulerView


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
        return ""

    def plan(self, view: SchedulerView) -> BatchPlan | None:
        kv = view.kv
        b = PlanBuilder(view.window)
        free = kv.num_free_blocks
        running = view.running
        num_seqs = len(running)

        # Swapped requests resume first, in FCFS order, as blocks allow.
        if view.swapped:
            for r in view.swapped:
                need = r.num_swapped_blocks + kv.blocks_needed(r, r.prompt_len + r.num_generated) 
                if num_seqs >= self.max_batch_size or need > free:
                    break
                free -= need
                num_seqs += 1
                b.swapped_in.append(r)
        elif view.waiting:
            budget = self.max_tokens
            watermark = int(self.cfg.watermark * kv.num_blocks)
            for r in view.waiting:
                if num_seqs >= self.max_batch_size:
                    break
                n = r.prompt_len + r.num_generated - max(r.num_computed, kv.cached_prefix_tokens(r))
                need = kv.blocks_needed(r, r.prompt_len + r.num_generated)
                if n > budget or free - need < watermark:
                    break
                b.admitted.append(r)
                b.add(r, n)
                free -= need
                budget -= n
                num_seqs += 1
            if b.reqs:
                return b.build()

        # Decode: one token for every running (and resumed) request, preempting from the back.
        end = len(running)
        i = 0
        while i < end:
            r = running[i]
            need = kv.blocks_needed(r, r.num_computed + 1)
            while need > free:
                end -= 1
                victim = running[end]
                b.preempted.append(victim)
                free += len(victim.blocks)
                if end == i:
                    break
            if end == i:
                break
            free -= need
            b.add(r, r.prompt_len + r.num_generated - r.num_computed)
            i += 1
        for r in b.swapped_in:
            b.add(r, r.prompt_len + r.num_generated - r.num_computed)
        return b.build()
