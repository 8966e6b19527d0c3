"""Automatic prefix caching on the paged KV cache (vLLM APC / SGLang RadixAttention, block-granular).

A full, computed prompt block is registered under a chained key (the key of the block before it
plus the trace's prefix ids it covers), so a key names the whole prefix up to that block. Requests
without `hash_ids` never share. A block whose ref-count drops to 0 keeps its key and becomes
*evictable*: it still counts as free, and is reclaimed — lowest eviction priority first — only when
the plain free list is empty. An eviction policy is one priority-key function (SGLang
`mem_cache/evict_policy.py`): smaller keys are evicted first.

NOTE: with the `lru` key the heap is replaced by a FIFO of releases (each pushed deepest block first):
releases come in tick order, so that is exactly the key's order, at O(1) per block instead of
O(log n) — a 12k-token prompt evicts ~750 blocks. Other keys use a heap. Both delete lazily: an
entry is live while its block is unreferenced, still keyed and last released at the entry's tick.
"""
from __future__ import annotations

import heapq
from collections import deque
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
    tuples are deterministic across runs). When bs divides the trace block, the chain runs per trace
    block and its sub-blocks get `base + index` (one hash per trace block, not per block).
    """
    n_full = min(prompt_len, len(hash_ids) * trace_block_tokens) // block_size
    if trace_block_tokens % block_size == 0:
        per = trace_block_tokens // block_size
        keys: list[int] = []
        prev = 0
        for hid in hash_ids[:-(-n_full // per)]:
            prev = hash((prev, hid))
            keys.extend(range(prev, prev + per))  # 64-bit bases: a clash needs two within `per`
        del keys[n_full:]
        return keys
    keys = []
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
    compact_slack = 64  # stale pool entries tolerated beyond 2 × num_blocks before compacting

    def __init__(self, num_blocks: int, block_size: int, num_host_blocks: int = 0,
                 eviction: str | EvictionKey = "lru") -> None:
        super().__init__(num_blocks, block_size, num_host_blocks)
        self.evict_key: EvictionKey = EVICTION_POLICIES[eviction] if isinstance(eviction, str) else eviction
        self.table: dict[int, int] = {}  # key -> block
        self.block_key: list[int | None] = [None] * num_blocks
        self.last_access = [0] * num_blocks  # tick of the block's latest release
        self.num_hits = [0] * num_blocks
        self.depth = [0] * num_blocks  # position in its prefix chain
        self._fifo: deque[list] | None = deque() if self.evict_key is lru else None  # [tick, blocks, next]
        self._heap: list[tuple] = []  # (*key, tick, block)
        self._num_entries = 0  # live and stale entries in the FIFO or heap
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
        while n and free_list:
            b = free_list.popleft()
            refs[b] = 1
            out.append(b)
            n -= 1
        if n:
            self._evict(n, out)

    def _evict(self, n: int, out: list[int]) -> None:
        """Reclaim the `n` evictable blocks of lowest priority onto `out` (ref-count 1, key dropped)."""
        refs, last, keys, table = self.ref_counts, self.last_access, self.block_key, self.table
        self.num_evictable -= n
        self.num_evictions += n
        fifo = self._fifo
        if fifo is not None:
            while n:
                g = fifo[0]
                tick, blocks, i = g
                end = len(blocks)
                while i < end and n:
                    b = blocks[i]
                    i += 1
                    if refs[b] == 0 and last[b] == tick and keys[b] is not None:
                        del table[keys[b]]
                        keys[b] = None
                        refs[b] = 1
                        out.append(b)
                        n -= 1
                if i == end:
                    fifo.popleft()
                    self._num_entries -= end
                else:
                    g[2] = i
            return
        heap = self._heap
        while n:
            e = heapq.heappop(heap)
            self._num_entries -= 1
            b = e[-1]
            if refs[b] == 0 and last[b] == e[-2] and keys[b] is not None:
                del table[keys[b]]
                keys[b] = None
                refs[b] = 1
                out.append(b)
                n -= 1

    def free(self, req: Request) -> None:
        refs, keys, push = self.ref_counts, self.block_key, self.free_list.append
        released = []
        for b in req.blocks:
            refs[b] -= 1
            if refs[b] == 0:
                if keys[b] is None:
                    push(b)
                else:
                    released.append(b)
        req.blocks.clear()
        req.num_hashed_blocks = 0
        if not released:
            return
        self._tick += 1
        tick = self._tick
        last = self.last_access
        for b in released:
            last[b] = tick
        self.num_evictable += len(released)
        self._num_entries += len(released)
        if self._fifo is not None:
            released.reverse()  # the prefix tail first: lru's -depth
            self._fifo.append([tick, released, 0])
        else:
            key, hits, depth, heap = self.evict_key, self.num_hits, self.depth, self._heap
            for b in released:
                heapq.heappush(heap, key(tick, hits[b], depth[b]) + (tick, b))
        if self._num_entries > 2 * self.num_blocks + self.compact_slack:
            self._compact()

    def _live(self, tick: int, b: int) -> bool:
        return self.ref_counts[b] == 0 and self.last_access[b] == tick and self.block_key[b] is not None

    def _compact(self) -> None:
        """Drop stale entries (blocks re-acquired or re-released since) so the pool stays O(blocks)."""
        live = self._live
        if self._fifo is not None:
            groups = deque()
            for tick, blocks, i in self._fifo:
                kept = [b for b in blocks[i:] if live(tick, b)]
                if kept:
                    groups.append([tick, kept, 0])
            self._fifo = groups
            self._num_entries = sum(len(g[1]) for g in groups)
        else:
            self._heap = [e for e in self._heap if live(e[-2], e[-1])]
            heapq.heapify(self._heap)
            self._num_entries = len(self._heap)

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
            if refs[b] == 0:  # leaves the evictable pool; its pool entry goes stale
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
        for d, b, k in zip(range(j, n), blocks[j:n], keys[j:n]):
            if block_key[b] is None and k not in table:
                table[k] = b
                block_key[b] = k
                depth[b] = d
        req.num_hashed_blocks = n
