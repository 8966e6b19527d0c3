"""Paged KV cache (vLLM PagedAttention, SOSP'23): fixed-size blocks, ref-counted, free-list order.

Blocks are handed out from the front of the free list and returned to its back, so block ids are
deterministic and tests can pin them. `PrefixCachingKVManager` adds automatic prefix caching.
"""
from __future__ import annotations

from collections import deque

from policies.kv.base import KVManager
from policies.request import Request


class PagedKVManager(KVManager):
    def __init__(self, num_blocks: int, block_size: int, num_host_blocks: int = 0) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks={num_blocks} and block_size={block_size} must be >= 1")
        if num_host_blocks < 0:
            raise ValueError(f"num_host_blocks={num_host_blocks} must be >= 0")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.free_list: deque[int] = deque(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.num_host_blocks = num_host_blocks
        self.num_free_host_blocks = num_host_blocks

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_list)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free_list)

    def _take(self, n: int, out: list[int]) -> None:
        """Move `n` free blocks (ref-count 1) onto `out`; the caller checked that they exist."""
        pop, refs = self.free_list.popleft, self.ref_counts
        for _ in range(n):
            b = pop()
            refs[b] = 1
            out.append(b)

    def allocate(self, req: Request, num_total_tokens: int) -> None:
        need = -(-num_total_tokens // self.block_size) - len(req.blocks)
        if need <= 0:
            return
        free_list = self.free_list
        if need > len(free_list):
            raise RuntimeError(f"request {req.id}: needs {need} KV blocks, {len(free_list)} free")
        refs, blocks = self.ref_counts, req.blocks
        for _ in range(need):  # inlined _take: this runs once per block boundary of every decode
            b = free_list.popleft()
            refs[b] = 1
            blocks.append(b)

    def free(self, req: Request) -> None:
        refs, push = self.ref_counts, self.free_list.append
        for b in req.blocks:
            refs[b] -= 1
            if refs[b] == 0:
                push(b)
        req.blocks.clear()

    def blocks_freed_by(self, req: Request) -> int:
        refs = self.ref_counts
        return sum(1 for b in req.blocks if refs[b] == 1)

    def can_swap_out(self, req: Request) -> bool:
        return len(req.blocks) <= self.num_free_host_blocks

    def swap_out(self, req: Request) -> int:
        """Copy every block (shared ones too: the host copy is private) to host, then free the GPU ones."""
        n = len(req.blocks)
        if n > self.num_free_host_blocks:
            raise RuntimeError(f"request {req.id}: swap-out needs {n} host blocks, {self.num_free_host_blocks} free")
        self.free(req)
        self.num_free_host_blocks -= n
        req.num_swapped_blocks = n
        return n

    def swap_in(self, req: Request) -> int:
        n = req.num_swapped_blocks
        if n > self.num_free_blocks:
            raise RuntimeError(f"request {req.id}: swap-in needs {n} blocks, {self.num_free_blocks} free")
        self._take(n, req.blocks)
        self.num_free_host_blocks += n
        req.num_swapped_blocks = 0
        return n
