"""Static, request-level batching (FasterTransformer): a batch is formed from the queue, runs until
every member has finished, and only then does the next batch start.

The first pass prefills every member's prompt (unpadded: FasterTransformer removes input padding);
each later pass decodes one token for every member still generating, and the members that already
finished still occupy their batch rows: they cost a decode each (padding) until the batch ends. KV is
reserved for each member's final length at admission. NOTE: a finished member's KV is released at
once rather than at the batch end; nothing can use it before the batch ends anyway. With pipeline
parallelism one batch is in flight at a time.
"""
from __future__ import annotations

from policies.plan import BatchPlan, PlanBuilder
from policies.request import FINISHED, Request
from policies.schedulers.base import NO_WINDOW, SchedulerPolicy, SchedulerView, admit, decode_running


class StaticScheduler(SchedulerPolicy):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.max_batch_size = cfg.max_batch_size
        self.max_tokens = cfg.max_num_batched_tokens
        self.batch: list[Request] = []  # members of the batch in progress (finished ones included)

    def reject_reason(self, req: Request, view: SchedulerView) -> str:
        if req.prompt_len > self.max_tokens:
            return (f"prompt of {req.prompt_len} tokens exceeds max_num_batched_tokens={self.max_tokens} "
                    "(static batching prefills whole prompts)")
        return ""

    def plan(self, view: SchedulerView) -> BatchPlan | None:
        kv = view.kv
        b = PlanBuilder(view.window)
        running = view.running
        if running:
            if view.num_in_flight:
                return None
            decode_running(b, running, kv, kv.num_free_blocks, NO_WINDOW)
            n_pad = len(self.batch) - len(running)
            if n_pad > 0:
                # Padding rows sit at the same position as the live members: prompt + decode passes so far.
                d = running[0].num_computed - running[0].prompt_len
                w = view.window or NO_WINDOW
                pad_sum = 0
                for m in self.batch:
                    if m.state == FINISHED:
                        s = m.prompt_len + d + 1
                        pad_sum += s if s < w else w
                b.add_decodes(n_pad, pad_sum)
            return b.build()
        if not view.waiting:
            return None
        admit(b, view.waiting, kv, kv.num_free_blocks, self.max_tokens, 0, self.max_batch_size, 0,
              chunked=False, reserve_final=True)
        self.batch = list(b.admitted)
        return b.build()
