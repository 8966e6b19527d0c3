"""What a scheduling policy sees and returns, and the steps policies share (decode, swap-in, admission).

Token accounting (vLLM v1's framing): a request has `prompt_len + num_generated` tokens and
`num_computed` of them in the KV cache; a pass computes some of the rest, and samples a token when it
reaches the end. A decode is the case of exactly one token left after the first sample.
"""
from __future__ import annotations

from collections import deque
from typing import Protocol, Sequence

from policies.kv.base import KVManager
from policies.plan import BatchPlan, PlanBuilder
from policies.request import Request

NO_WINDOW = 1 << 62


class SchedulerView(Protocol):
    """Read-only state of one replica (ReplicaCore). `schedulable` excludes requests inside an in-flight
    pipeline micro-batch; it is `running` itself when `num_in_flight == 0`."""

    waiting: deque[Request]  # FCFS order
    running: Sequence[Request]  # priority order: earlier = higher priority
    swapped: deque[Request]
    kv: KVManager
    window: int  # sliding-window size of the model (0 = none)
    max_model_len: int
    num_in_flight: int

    @property
    def schedulable(self) -> Sequence[Request]: ...


class SchedulerPolicy:
    """Decides one forward pass. Must not mutate requests, queues or the KV manager (it may keep state
    of its own, e.g. static batching's batch in progress); ReplicaCore applies the plan."""

    preemption: str = "recompute"  # "recompute" or "swap": how ReplicaCore applies `plan.preempted`

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def plan(self, view: SchedulerView) -> BatchPlan | None:
        raise NotImplementedError

    def reject_reason(self, req: Request, view: SchedulerView) -> str:
        """Why `req` can never be served by this policy ('' if it can)."""
        return ""


def schedulable(view: SchedulerView) -> Sequence[Request]:
    return view.running if not view.num_in_flight else view.schedulable


def fits_alone_reason(req: Request, kv: KVManager, watermark_blocks: int) -> str:
    """Reject a request whose full length cannot fit even alone above the watermark (vLLM's NEVER)."""
    need = kv.max_blocks_for(req.prompt_len + req.output_len)
    if need > kv.num_blocks - watermark_blocks:
        return (f"needs {need} KV blocks, more than the {kv.num_blocks} blocks less the watermark of "
                f"{watermark_blocks}")
    return ""


def decode_running(b: PlanBuilder, running: Sequence[Request], kv: KVManager, free: int, budget: int,
                   prefills: list[Request] | None = None, max_seqs: int = NO_WINDOW,
                   self_preempt: bool = True) -> tuple[int, int]:
    """Schedule one token for each running request with one token left, in priority order, while
    `budget` tokens and `max_seqs` sequences last (merged pipeline micro-batches can hold more); when
    a new block is needed and none is free, preempt from the back (the lowest priority, possibly the
    request itself unless `self_preempt` is False: with micro-batches in flight it waits for them
    instead, or two requests can evict each other forever). Requests with more tokens left are
    appended to `prefills` (chunked prefill in progress); whole-prompt policies pass None, as every
    running request of theirs has one token left. Must be the first step of a fresh builder.
    Returns the updated (free, budget)."""
    if b.window or len(running) > budget or len(running) > max_seqs or b.reqs:
        return _decode_running(b, running, kv, free, budget, prefills, max_seqs, self_preempt)
    # Fast path (the hot loop of a simulation): no window, every decode fits the budget; it gives up
    # and restarts on the general path only when a decode needs a block and none is free.
    bs = kv.block_size
    reqs = b.reqs
    append = reqs.append
    allocs = b.allocs
    kv_sum = 0
    if prefills is None:
        # Whole-prompt policies: every running request has exactly one token left (checked by the tests).
        for r in running:
            nc = r.num_computed
            # A block is full only at a multiple of bs (capacity is one, and >= nc): test that first.
            if nc % bs == 0 and nc >= len(r.blocks) * bs:
                if free < 1:
                    free += len(allocs)
                    reqs.clear()
                    allocs.clear()
                    return _decode_running(b, running, kv, free, budget, prefills, max_seqs, self_preempt)
                free -= 1
                allocs.append((r, nc + 1))
            append(r)
            kv_sum += nc
    else:
        for r in running:
            nc = r.num_computed
            g = r.num_generated
            if g == 0 or r.prompt_len + g - nc != 1:  # g == 0: the prompt's last token is still prefill
                prefills.append(r)
                continue
            if nc % bs == 0 and nc >= len(r.blocks) * bs:
                if free < 1:
                    free += len(allocs)
                    reqs.clear()
                    allocs.clear()
                    prefills.clear()
                    return _decode_running(b, running, kv, free, budget, prefills, max_seqs, self_preempt)
                free -= 1
                allocs.append((r, nc + 1))
            append(r)
            kv_sum += nc
    k = b.num_decodes = len(reqs)
    if k:
        b.num_tokens.extend([1] * k)
        b.add_decodes(k, kv_sum + k)
    return free, budget - k


def _decode_running(b: PlanBuilder, running: Sequence[Request], kv: KVManager, free: int, budget: int,
                    prefills: list[Request] | None, max_seqs: int, self_preempt: bool) -> tuple[int, int]:
    """The general path of decode_running."""
    bs = kv.block_size
    w = b.window or NO_WINDOW
    reqs_append, ntok_append, allocs = b.reqs.append, b.num_tokens.append, b.allocs
    kv_sum = k = 0
    end = len(running)
    i = 0
    while i < end:
        r = running[i]
        nc = r.num_computed
        g = r.num_generated
        if g == 0 or r.prompt_len + g - nc != 1:
            if prefills is not None:
                prefills.append(r)
            i += 1
            continue
        if k == budget or k == max_seqs:
            break
        if nc >= len(r.blocks) * bs:  # the token starts a new block
            while free < 1:
                end -= 1
                if end == i and not self_preempt:
                    break
                victim = running[end]
                b.preempted.append(victim)
                free += kv.blocks_freed_by(victim)
                if end == i:
                    break
            if end == i:
                break
            free -= 1
            allocs.append((r, nc + 1))
        reqs_append(r)
        ntok_append(1)
        s = nc + 1
        kv_sum += s if s < w else w
        k += 1
        i += 1
    b.num_decodes = k
    if k:
        b.add_decodes(k, kv_sum)
    return free, budget - k


def swap_in(b: PlanBuilder, swapped: deque[Request], kv: KVManager, free: int, budget: int, num_seqs: int,
            max_seqs: int, watermark_blocks: int) -> tuple[int, int, int]:
    """Resume swapped requests FCFS while blocks above the watermark, the token budget and the batch size
    allow; each computes the rest of its tokens (one for a decode) within the budget. Returns the updated
    (free, budget, num_seqs)."""
    bs = kv.block_size
    for r in swapped:
        if num_seqs >= max_seqs or budget < 1:
            break
        nc = r.num_computed
        n = r.prompt_len + r.num_generated - nc
        if n > budget:
            n = budget
        total = -(-(nc + n) // bs)
        need = total if total > r.num_swapped_blocks else r.num_swapped_blocks
        if free - need < watermark_blocks:
            break
        free -= need
        budget -= n
        num_seqs += 1
        b.swapped_in.append(r)
        if total > r.num_swapped_blocks:
            b.allocs.append((r, nc + n))
        b.add(r, n)
    return free, budget, num_seqs


def admit(b: PlanBuilder, waiting: deque[Request], kv: KVManager, free: int, budget: int, num_seqs: int,
          max_seqs: int, watermark_blocks: int, *, chunked: bool, on_demand: bool = False,
          reserve_final: bool = False) -> tuple[int, int, int]:
    """Admit waiting requests FCFS, stopping at the first that does not fit (no skipping ahead).

    A request starts after its cached prefix; `chunked` lets its first pass take only what is left of
    the token budget (else whole prompts only: one that exceeds the budget — a long re-admission after
    recompute — may run alone). KV is allocated for the tokens of this pass (`on_demand`), for the
    final length (`reserve_final`, Orca/FasterTransformer), or else for all its current tokens.
    Returns the updated (free, budget, num_seqs).
    """
    pending: list[int] = []  # block counts of this plan's new allocations (contiguous placement)
    for r in waiting:
        if num_seqs >= max_seqs or budget < 1:
            break
        total = r.prompt_len + r.num_generated
        target = r.prompt_len + r.output_len if reserve_final else total
        cached, need = kv.admission(r, target)
        n = total - cached
        if n > budget:
            if not chunked:
                if b.reqs:
                    break
            else:
                n = budget
                if on_demand:
                    target = cached + n
                    need = kv.admission(r, target)[1]
        if free - need < watermark_blocks:
            break
        pending.append(need)
        if not kv.can_place(pending):
            break
        free -= need
        budget -= n
        num_seqs += 1
        b.admitted.append(r)
        b.cached.append(cached)
        b.allocs.append((r, target))
        b.add(r, n, cached)
    return free, budget, num_seqs


def prefill_running(b: PlanBuilder, prefills: list[Request], kv: KVManager, free: int, budget: int,
                    max_seqs: int) -> tuple[int, int]:
    """Give running requests in (chunked) prefill their next chunk, FCFS, within the budget and batch
    size; a chunk that needs blocks beyond the free ones is cut to what fits. Returns (free, budget)."""
    bs = kv.block_size
    for r in prefills:
        if budget < 1 or len(b.reqs) >= max_seqs:
            break
        nc = r.num_computed
        n = r.prompt_len + r.num_generated - nc
        if n > budget:
            n = budget
        cap = len(r.blocks) * bs - nc  # tokens its blocks still hold
        if n > cap:
            need = -(-(nc + n) // bs) - len(r.blocks)
            if need > free:
                n, need = cap + free * bs, free
                if n <= 0:
                    continue
            free -= need
            b.allocs.append((r, nc + n))
        b.add(r, n)
        budget -= n
    return free, budget
