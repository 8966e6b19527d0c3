"""KV-cache managers: which blocks a request holds, and how many are free."""
from __future__ import annotations

from policies.config import ContiguousKVConfig, PagedKVConfig
from policies.kv.base import KVManager
from policies.kv.contiguous import ContiguousKVManager
from policies.kv.paged import PagedKVManager
from policies.kv.prefix import EVICTION_POLICIES, PrefixCachingKVManager


def make_kv_manager(cfg: PagedKVConfig | ContiguousKVConfig, num_blocks: int, max_model_len: int, *,
                    num_host_blocks: int = 0) -> KVManager:
    """The KV manager for a `KVCacheConfig`. `num_blocks` is derived by the caller from GPU memory
    (cfg.num_blocks, when set, overrides it); `num_host_blocks` (swap_space_bytes / bytes per block, from
    the caller) holds swapped-out KV — with 0, swap preemption falls back to recompute."""
    n = cfg.num_blocks or num_blocks
    if cfg.kind == "contiguous":
        return ContiguousKVManager(n, cfg.block_size, max_model_len, cfg.reserve)
    host = num_host_blocks
    if cfg.prefix_caching:
        return PrefixCachingKVManager(n, cfg.block_size, host, cfg.eviction)
    return PagedKVManager(n, cfg.block_size, host)


__all__ = ["EVICTION_POLICIES", "ContiguousKVManager", "KVManager", "PagedKVManager", "PrefixCachingKVManager",
           "make_kv_manager"]
