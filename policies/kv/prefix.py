"""Automatic prefix caching on the paged KV cache (vLLM APC / SGLang RadixAttention, block-granular).

A full, computed prompt block is registered under a chained key (the key of the block before it
plus the trace's prefix ids it covers), so a key names the whole prefix up to that block. Requests
without `hash_ids` never share. A block whose ref-count drops to 0 keeps its key and becomes
*evictable*: it still counts as free, and is reclaimed — lowest eviction priority first — only when
the plain free list is empty. An eviction policy is one priority-key function (SGLang
`mem_cache/evict_policy.py`): smaller keys are evicted first.
"""
from __future__ import annotations

import heapq
from typing import Callable

from policies.kv.paged import PagedKVManager
from policies.request import Request

# Mooncake traces (FAST'25) give one hash id per 512-token prompt block (traces/README.md).
TRACE_BLOCK_TOKENS = 512

EvictionKey = Callable[[int, int, int], tuple]


def lru(last_access: int, num_hits: int, depth: int) -> tuple:
    """Least recently released first; within one release, the deepest block (the prefix tail) first."""
    return (last_access, -depth)


def lfu(last_access: int, num_hits: int, depth: int) -> tuple:
    """Fewest prefix hits first, then LRU (SGLang LFUStrategy)."""
    return (num_hits, last_access, -depth)


EVICTION_POLICIES: dict[str, EvictionKey] = {"lru": lru, "lfu": lfu}


def block_keys(hash_ids: tuple[int, ...] | list[int], prompt_len: int, block_size: int,
               trace_block_tokens: int = TRACE_BLOCK_TOKENS) -> list[int]:
    """Chained keys of the full `block_size` blocks of a prompt covered by `hash_ids`.

    Block j spans tokens [j·bs, (j+1)·bs); its key hashes (key_{j-1}, the ids it overlaps, its offset
    in the first one), so equal keys mean equal prefixes for any block size (Python hashes of int
    tuples are deterministic across runs).
    """
    n_full = min(prompt_len, len(hash_ids) * trace_block_tokens) // block_size
    keys: list[int] = []
    prev = 0
    for j in range(n_full):
        t0 = j * block_size
        k0, k1 = t0 // trace_block_tokens, (t0 + block_size - 1) // trace_block_tokens
        ids = hash_ids[k0] if k0 == k1 else tuple(hash_ids[k0:k1 + 1])
        prev = hash((prev, ids, t0 - k0 * trace_block_tokens))
        keys.append(prev)
    return keys


class PrefixCachingKVManager(PagedKVManager):
    prefix_caching = True

    def __init__(self, num_blocks: int, block_size: int, num_host_blocks: int = 0,
                 eviction: str | EvictionKey = "lru") -> None:
        super().__init__(num_blocks, block_size, num_host_blocks)
        self.evict_key: EvictionKey = EVICTION_POLICIES[eviction] if isinstance(eviction, str) else eviction
        self.table: dict[int, int] = {}  # key -> block
        self.block_key: list[int | None] = [None] * num_blocks
        self.last_access = [0] * num_blocks
        self.num_hits = [0] * num_blocks
        self.depth = [0] * num_blocks
        self._stamp = [0] * num_blocks  # bumped when a block leaves the evictable set (lazy heap deletion)
        self._heap: list[tuple] = []
        self.num_evictable = 0
        self.num_evictions = 0
        self._tick = 0

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_list) + self.num_evictable

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free_list) - self.num_evictable

    @property
    def num_cached_blocks(self) -> int:
        return len(self.table)

    def keys_of(self, req: Request) -> list[int]:
        memo = req.block_keys
        if memo is None or memo[0] != self.block_size:  # computed once per request and block size
            memo = req.block_keys = (self.block_size, block_keys(req.hash_ids, req.prompt_len, self.block_size))
        return memo[1]

    def allocate(self, req: Request, num_total_tokens: int) -> None:
        need = -(-num_total_tokens // self.block_size) - len(req.blocks)
        if need <= 0:
            return
        if need > self.num_free_blocks:
            raise RuntimeError(f"request {req.id}: needs {need} KV blocks, {self.num_free_blocks} free")
        self._take(need, req.blocks)

    def _take(self, n: int, out: list[int]) -> None:
        free_list, refs = self.free_list, self.ref_counts
        for _ in range(n):
            b = free_list.popleft() if free_list else self._evict()
            refs[b] = 1
            out.append(b)

    def _evict(self) -> int:
        heap, stamp, refs = self._heap, self._stamp, self.ref_counts
        while True:
            _, s, b = heapq.heappop(heap)
            if s == stamp[b] and refs[b] == 0:
                break
        stamp[b] += 1
        del self.table[self.block_key[b]]
        self.block_key[b] = None
        self.num_evictable -= 1
        self.num_evictions += 1
        return b

    def free(self, req: Request) -> None:
        refs, keys, push = self.ref_counts, self.block_key, self.free_list.append
        self._tick += 1
        tick = self._tick
        for b in req.blocks:
            refs[b] -= 1
            if refs[b] == 0:
                if keys[b] is None:
                    push(b)
                else:
                    self.last_access[b] = tick
                    self._stamp[b] += 1
                    heapq.heappush(self._heap, (self.evict_key(tick, self.num_hits[b], self.depth[b]),
                                                self._stamp[b], b))
                    self.num_evictable += 1
        req.blocks.clear()
        req.num_hashed_blocks = 0
        if len(self._heap) > 2 * self.num_blocks + 64:
            self._compact()

    def _compact(self) -> None:
        """Drop stale heap entries (blocks re-acquired since they were pushed) so the heap stays O(blocks)."""
        stamp, refs = self._stamp, self.ref_counts
        self._heap = [e for e in self._heap if e[1] == stamp[e[2]] and refs[e[2]] == 0]
        heapq.heapify(self._heap)

    def _walk(self, req: Request, max_blocks: int) -> tuple[int, int]:
        """Leading cached blocks of `req` (at most `max_blocks`) and how many of them are evictable."""
        keys = self.keys_of(req)
        if max_blocks > len(keys):
            max_blocks = len(keys)
        table, refs = self.table, self.ref_counts
        j = ev = 0
        while j < max_blocks:
            b = table.get(keys[j])
            if b is None:
                break
            if refs[b] == 0:
                ev += 1
            j += 1
        return j, ev

    def admission(self, req: Request, num_total_tokens: int) -> tuple[int, int]:
        bs = self.block_size
        total_blocks = -(-num_total_tokens // bs)
        if req.hash_ids is None:
            return 0, total_blocks
        # At least one token is computed, so the pass has logits to sample (as vLLM does).
        hit, ev = self._walk(req, (req.prompt_len + req.num_generated - 1) // bs)
        return hit * bs, total_blocks - hit + ev

    def acquire_prefix(self, req: Request, max_tokens: int) -> int:
        if req.hash_ids is None or max_tokens < self.block_size:
            return 0
        bs = self.block_size
        hit, _ = self._walk(req, min(max_tokens, req.prompt_len + req.num_generated - 1) // bs)
        keys, table, refs, blocks = self.keys_of(req), self.table, self.ref_counts, req.blocks
        for j in range(hit):
            b = table[keys[j]]
            if refs[b] == 0:
                self._stamp[b] += 1
                self.num_evictable -= 1
            refs[b] += 1
            self.num_hits[b] += 1
            blocks.append(b)
        req.num_hashed_blocks = hit
        return hit * bs

    def cache_computed(self, req: Request) -> None:
        if req.hash_ids is None:
            return
        keys = self.keys_of(req)
        blocks = req.blocks
        n = min(len(keys), req.num_computed // self.block_size, len(blocks))
        j = req.num_hashed_blocks
        if j >= n:
            return
        table, block_key, depth = self.table, self.block_key, self.depth
        while j < n:
            b, k = blocks[j], keys[j]
            if block_key[b] is None and k not in table:
                table[k] = b
                block_key[b] = k
                depth[b] = j
            j += 1
        req.num_hashed_blocks = n
