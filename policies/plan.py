"""The frozen plan a scheduler returns for one forward pass, and the builder schedulers share."""
from __future__ import annotations

from typing import NamedTuple

from hwmodels.shapes import BatchShape
from policies.request import Request


class BatchPlan(NamedTuple):
    """One forward pass: `reqs[i]` computes `num_tokens[i]` new tokens.

    `admitted` are the waiting requests this plan starts (a subset of reqs), `cached[i]` the prompt
    tokens of `admitted[i]` served from the prefix cache; `preempted` lose their KV (recompute) or
    move it to host memory (swap); `swapped_in` get their KV back before the pass; `allocs` are the
    `(request, total_tokens)` KV allocations the pass needs (applied after admissions and swap-ins).
    `shape` is what the pass costs; it equals the sum over `reqs` except for static batching, whose
    finished members still decode as padding. The first `num_decodes` entries are one-token decodes
    that sample (the fast path of ReplicaCore.complete).
    """

    reqs: list[Request]
    num_tokens: list[int]
    shape: BatchShape
    admitted: list[Request]
    preempted: list[Request]
    swapped_in: list[Request]
    cached: list[int] = []
    allocs: list[tuple[Request, int]] = []
    num_decodes: int = 0

    def as_dict(self) -> dict[int, int]:
        return {r.id: n for r, n in zip(self.reqs, self.num_tokens)}


class PlanBuilder:
    """Accumulates a plan; computes the BatchShape as sequences are added (one pass, no re-scan).

    Hot loops append to `reqs`/`num_tokens` directly and add their decodes' sums with `add_decodes`.
    """

    __slots__ = ("reqs", "num_tokens", "shape", "admitted", "preempted", "swapped_in", "cached", "allocs",
                 "num_decodes", "window")

    def __init__(self, window: int = 0) -> None:
        self.reqs: list[Request] = []
        self.num_tokens: list[int] = []
        self.shape = BatchShape()
        self.admitted: list[Request] = []
        self.preempted: list[Request] = []
        self.swapped_in: list[Request] = []
        self.cached: list[int] = []
        self.allocs: list[tuple[Request, int]] = []
        self.num_decodes = 0  # leading entries that are sampling one-token decodes
        self.window = window

    def add(self, req: Request, n: int, ctx: int | None = None) -> None:
        """`req` computes `n` tokens on top of `ctx` cached ones (default: its computed tokens)."""
        if ctx is None:
            ctx = req.num_computed
        self.reqs.append(req)
        self.num_tokens.append(n)
        # A decode is one token past the prompt (a recompute chunk of generated tokens is prefill work);
        # the pass samples a token iff it reaches the end of the sequence's current tokens.
        self.shape.add(n, ctx, n == 1 and ctx >= req.prompt_len, ctx + n >= req.prompt_len + req.num_generated,
                       self.window)

    def add_decodes(self, num_seqs: int, kv_sum: int) -> None:
        """Account `num_seqs` one-token decodes whose (window-capped) `ctx + 1` sum to `kv_sum`.

        For a decode, attention pairs = ctx·1 + 1·2/2 = ctx + 1 = KV entries read (BatchShape.add).
        """
        s = self.shape
        s.num_seqs += num_seqs
        s.num_tokens += num_seqs
        s.num_decode_tokens += num_seqs
        s.num_logits += num_seqs
        s.attn_pairs += kv_sum
        s.kv_read_tokens += kv_sum
        s.decode_attn_pairs += kv_sum
        s.decode_kv_read_tokens += kv_sum

    def build(self) -> BatchPlan | None:
        if not self.reqs and not self.preempted:
            return None
        return BatchPlan(self.reqs, self.num_tokens, self.shape, self.admitted, self.preempted, self.swapped_in,
                         self.cached, self.allocs, self.num_decodes)
