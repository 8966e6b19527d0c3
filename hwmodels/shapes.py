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
    decode_attn_pairs: int = 0  # the part of attn_pairs from decode sequences
    decode_kv_read_tokens: int = 0  # the part of kv_read_tokens from decode sequences

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
            pairs, kv = new * window, window
        else:
            pairs, kv = new * ctx + new * (new + 1) // 2, ctx + new
        self.attn_pairs += pairs
        self.kv_read_tokens += kv
        if decode:
            self.decode_attn_pairs += pairs
            self.decode_kv_read_tokens += kv

    def key(self) -> tuple[int, ...]:
        return (self.num_seqs, self.num_tokens, self.num_prefill_tokens, self.num_decode_tokens,
                self.num_prefill_seqs, self.num_logits, self.attn_pairs, self.kv_read_tokens,
                self.decode_attn_pairs, self.decode_kv_read_tokens)

    @classmethod
    def from_seqs(cls, seqs: Iterable[tuple[int, int]], window: int = 0) -> "BatchShape":
        """Build from `(new_tokens, context_tokens)` pairs; a pair with new == 1 and ctx > 0 is a decode."""
        shape = cls()
        for new, ctx in seqs:
            shape.add(int(new), int(ctx), decode=(new == 1 and ctx > 0), samples=True, window=window)
        return shape
