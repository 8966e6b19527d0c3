"""The request entity on the hot path (slotted), shared by the simulator and the real executor."""
from __future__ import annotations

from dataclasses import dataclass, field

WAITING, RUNNING, SWAPPED, FINISHED, REJECTED = 0, 1, 2, 3, 4
NAN = float("nan")


@dataclass(slots=True, eq=False)
class Request:
    """One request. Invariant: num_computed ≤ prompt_len + num_generated ≤ prompt_len + output_len.

    Each request has tokens (prompt plus generated) and computed tokens catching up with them;
    there is no separate prefill or decode phase (as in vLLM v1's scheduler).
    """

    id: int
    arrival_s: float
    prompt_len: int
    output_len: int
    hash_ids: tuple[int, ...] | None = None  # prefix-block ids (Mooncake), for prefix caching
    num_computed: int = 0  # tokens whose KV is in cache
    num_generated: int = 0  # output tokens emitted
    state: int = WAITING
    replica: int = -1
    scheduled_s: float = NAN  # first time scheduled
    first_token_s: float = NAN
    last_token_s: float = NAN
    finish_s: float = NAN
    num_preemptions: int = 0
    num_cached_tokens: int = 0  # prompt tokens served from the prefix cache
    blocks: list[int] = field(default_factory=list)  # KV block ids held (GPU)
    num_swapped_blocks: int = 0
    in_flight: bool = False  # part of a micro-batch still in the pipeline
    reject_reason: str = ""
    # Prefix-cache bookkeeping, owned by the KV manager: (block_size, chained keys of the full prompt
    # blocks), computed once, and how many leading blocks are registered.
    block_keys: tuple[int, list[int]] | None = None
    num_hashed_blocks: int = 0

    @property
    def total_len(self) -> int:
        """Tokens the sequence has now (prompt + generated)."""
        return self.prompt_len + self.num_generated

    @property
    def max_len(self) -> int:
        return self.prompt_len + self.output_len
