"""KV-cache managers: which blocks a request holds, and how many are free."""
from policies.kv.base import KVManager
from policies.kv.paged import PagedKVManager

__all__ = ["KVManager", "PagedKVManager"]
