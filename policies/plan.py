"""The frozen plan a scheduler returns for one forward pass, and the builder schedulers share."""
from __future__ import annotations

from typing import NamedTuple

from hwmodels.shapes import BatchShape
from policies.request import Request


class BatchPlan(NamedTuple):
    """One forward pass: `reqs[i]` computes `num_tokens[i]` new tokens.

    `admitted` are the waiting requests this plan starts (a subset of reqs); `preempted` lose their
    KV (recompute) or move it to host memory (swap); `swapped_in` get their KV back before the pass.
    """

    reqs: list[Request]
    num_tokens: list[int]
    shape: BatchShape
    admitted: list[Request]
    preempted: list[Request]
    swapped_in: list[Request]

    def as_dict(self) -> dict[int, int]:
        return {r.id: n for r, n in zip(self.reqs, self.num_tokens)}


class PlanBuilder:
    """Accumulates a plan; computes the BatchShape as sequences are added (one pass, no re-scan)."""

    __slots__ = ("reqs", "num_tokens", "shape", "admitted", "preempted", "swapped_in", "window")

    def __init__(self, window: int = 0) -> None:
        self.reqs: list[Request] = []
        self.num_tokens: list[int] = []
        self.shape = BatchShape()
        self.admitted: list[Request] = []
        self.preempted: list[Request] = []
        self.swapped_in: list[Request] = []
        self.window = window

    def add(self, req: Request, n: int) -> None:
        ctx = req.num_computed
        total = req.prompt_len + req.num_generated
        self.reqs.append(req)
        self.num_tokens.append(n)
        # The pass samples a token iff it reaches the end of the sequence's current tokens.
        self.shape.add(n, ctx, ctx >= req.prompt_len, ctx + n >= total, self.window)

    def build(self) -> BatchPlan | None:
        if not self.reqs and not self.preempted:
            return None
        return BatchPlan(self.reqs, self.num_tokens, self.shape, self.admitted, self.preempted, self.swapped_in)
