"""Shape of one forward pass, as the aggregate sums that the cost of every operator depends on.

A batch is the per-sequence `(new_tokens, context_tokens)` of one forward pass. GEMMs, norms and
collectives depend only on the total number of new tokens; attention depends on the query-key
pairs (FLOPs) and the KV entries read (bytes); the LM head on the sequences that sample. Keeping
these sums lets the simulator build a shape in O(1) per sequence and price it in O(1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(slots=True)
class BatchShape:
    num_seqs: int = 0
    num_tokens: int = 0  # Σ new_i
    num_prefill_tokens: int = 0  # new tokens of sequences still in their prompt
    num_decode_tokens: int = 0  # new tokens of sequences generating (1 each)
    num_prefill_seqs: int = 0
    num_logits: int = 0  # sequences whose last new token is sampled (LM-head rows)
    attn_pairs: int = 0  # Σ new_i·ctx_i + new_i·(new_i+1)/2: causal query-key pairs
    kv_read_tokens: int = 0  # Σ (ctx_i + new_i): KV entries attention reads

    def add(self, new: int, ctx: int, decode: bool, samples: bool, window: int = 0) -> None:
        """Add one sequence with `new` tokens on top of `ctx` cached tokens (window > 0: sliding)."""
        self.num_seqs += 1
        self.num_tokens += new
        if decode:
            self.num_decode_tokens += new
        else:
            self.num_prefill_tokens += new
            self.num_prefill_seqs += 1
        if samples:
            self.num_logits += 1
        if window and ctx + new > window:
            # NOTE: each query sees at most `window` keys; approximate the ragged edge by capping.
            self.attn_pairs += new * window
            self.kv_read_tokens += window
        else:
            self.attn_pairs += new * ctx + new * (new + 1) // 2
            self.kv_read_tokens += ctx + new

    def key(self) -> tuple[int, ...]:
        return (self.num_seqs, self.num_tokens, self.num_prefill_tokens, self.num_decode_tokens,
                self.num_prefill_seqs, self.num_logits, self.attn_pairs, self.kv_read_tokens)

    @classmethod
    def from_seqs(cls, seqs: Iterable[tuple[int, int]], window: int = 0) -> "BatchShape":
        """Build from `(new_tokens, context_tokens)` pairs; a pair with new == 1 and ctx > 0 is a decode."""
        shape = cls()
        for new, ctx in seqs:
            shape.add(int(new), int(ctx), decode=(new == 1 and ctx > 0), samples=True, window=window)
        return shape
