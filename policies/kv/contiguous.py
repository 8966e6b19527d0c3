"""Contiguous KV reservation (Orca, FasterTransformer): each request reserves one contiguous run of slots
for its whole lifetime on its first allocation, sized by the reservation mode, as in the baselines of
the vLLM paper (SOSP'23, §6.1 and Fig. 2):

- `max_model_len`: every request reserves the model's maximum length ("Orca (Max)");
- `pow2`: the next power of two ≥ its true final length, capped at max_model_len ("Orca (Pow2)");
- `oracle`: exactly its final length, prompt + output ("Orca (Oracle)").

Slots are counted in blocks of `block_size` tokens (the allocation granularity; use 1 for tokens).
Runs are placed first-fit in address order and freed runs coalesce, so external fragmentation shows
(free slots that no request fits in), as do reservation (reserved for future tokens) and internal
fragmentation (reserved beyond the final length).
"""
from __future__ import annotations

from bisect import bisect_left

from policies.kv.base import KVManager
from policies.request import Request

RESERVE_MODES = ("max_model_len", "pow2", "oracle")


class ContiguousKVManager(KVManager):
    def __init__(self, num_blocks: int, block_size: int, max_model_len: int, reserve: str = "max_model_len") -> None:
        if num_blocks < 1 or block_size < 1 or max_model_len < 1:
            raise ValueError(f"num_blocks={num_blocks}, block_size={block_size} and max_model_len={max_model_len} "
                             "must be >= 1")
        if reserve not in RESERVE_MODES:
            raise ValueError(f"reserve={reserve!r}: expected one of {RESERVE_MODES}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.reserve = reserve
        # Free runs in address order: starts[i] .. starts[i] + lengths[i] - 1.
        self.starts: list[int] = [0]
        self.lengths: list[int] = [num_blocks]
        self._num_free = num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self._num_free

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self._num_free

    @property
    def largest_free_run(self) -> int:
        """Blocks of the largest free run; num_free_blocks minus this is external fragmentation."""
        return max(self.lengths, default=0)

    def reservation_tokens(self, max_len: int) -> int:
        """Tokens reserved for a request whose final length is `max_len`."""
        if self.reserve == "max_model_len":
            return self.max_model_len
        if self.reserve == "pow2":
            return min(1 << (max_len - 1).bit_length(), self.max_model_len) if max_len > 1 else 1
        return max_len

    def max_blocks_for(self, num_tokens: int) -> int:
        return -(-max(self.reservation_tokens(num_tokens), num_tokens) // self.block_size)

    def blocks_needed(self, req: Request, num_total_tokens: int) -> int:
        if req.blocks:
            need = -(-num_total_tokens // self.block_size) - len(req.blocks)
            return need if need > 0 else 0
        return self.max_blocks_for(max(req.prompt_len + req.output_len, num_total_tokens))

    def admission(self, req: Request, num_total_tokens: int) -> tuple[int, int]:
        return 0, self.blocks_needed(req, num_total_tokens)

    def can_place(self, sizes: list[int]) -> bool:
        lengths = self.lengths.copy()
        for s in sizes:
            for i, n in enumerate(lengths):
                if n >= s:
                    lengths[i] = n - s
                    break
            else:
                return False
        return True

    def allocate(self, req: Request, num_total_tokens: int) -> None:
        size = self.blocks_needed(req, num_total_tokens)
        if size == 0:
            return
        if req.blocks:
            raise RuntimeError(f"request {req.id}: a contiguous reservation of {len(req.blocks)} blocks cannot "
                               f"grow to {num_total_tokens} tokens")
        starts, lengths = self.starts, self.lengths
        for i, n in enumerate(lengths):
            if n >= size:
                break
        else:
            raise RuntimeError(f"request {req.id}: no free run of {size} blocks (largest {self.largest_free_run}, "
                               f"{self._num_free} free)")
        start = starts[i]
        if n == size:
            del starts[i], lengths[i]
        else:
            starts[i] = start + size
            lengths[i] = n - size
        self._num_free -= size
        req.blocks.extend(range(start, start + size))

    def free(self, req: Request) -> None:
        blocks = req.blocks
        if not blocks:
            return
        start, size = blocks[0], len(blocks)
        end = start + size
        starts, lengths = self.starts, self.lengths
        i = bisect_left(starts, start)
        merge_prev = i > 0 and starts[i - 1] + lengths[i - 1] == start
        merge_next = i < len(starts) and starts[i] == end
        if merge_prev and merge_next:
            lengths[i - 1] += size + lengths[i]
            del starts[i], lengths[i]
        elif merge_prev:
            lengths[i - 1] += size
        elif merge_next:
            starts[i] = start
            lengths[i] += size
        else:
            starts.insert(i, start)
            lengths.insert(i, size)
        self._num_free += size
        blocks.clear()
