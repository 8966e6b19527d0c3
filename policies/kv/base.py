"""The KV-manager interface schedulers read and the replica core mutates."""
from __future__ import annotations

from policies.request import Request


class KVManager:
    """Block-granular KV memory of one replica. Schedulers only read it; ReplicaCore mutates it.

    Invariant: num_free_blocks + blocks held by requests (distinct, ref-counted) == num_blocks.
    """

    block_size: int
    num_blocks: int

    @property
    def num_free_blocks(self) -> int:
        """Blocks an allocation can take now (free, or cached-and-evictable)."""
        raise NotImplementedError

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    def blocks_needed(self, req: Request, num_total_tokens: int) -> int:
        """Extra blocks `req` needs so its KV can hold `num_total_tokens` tokens (0 if it already can)."""
        raise NotImplementedError

    def cached_prefix_tokens(self, req: Request) -> int:
        """Read-only: leading prompt tokens of `req` whose KV is already cached (0 without prefix caching)."""
        return 0

    def allocate(self, req: Request, num_total_tokens: int) -> None:
        """Grow `req`'s allocation to hold `num_total_tokens` tokens. Raises if blocks run out."""
        raise NotImplementedError

    def free(self, req: Request) -> None:
        """Release every block `req` holds."""
        raise NotImplementedError

    def can_swap_out(self, req: Request) -> bool:
        return False

    def swap_out(self, req: Request) -> int:
        """Move `req`'s blocks to host memory; returns blocks moved."""
        raise NotImplementedError

    def swap_in(self, req: Request) -> int:
        """Bring `req`'s swapped blocks back; returns blocks moved."""
        raise NotImplementedError

    def max_blocks_for(self, num_tokens: int) -> int:
        """Blocks a sequence of `num_tokens` occupies at most (used to reject requests that never fit)."""
        return -(-num_tokens // self.block_size)
