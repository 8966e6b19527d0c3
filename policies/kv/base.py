"""The KV-manager interface schedulers read and the replica core mutates."""
from __future__ import annotations

from policies.request import Request


class KVManager:
    """Block-granular KV memory of one replica. Schedulers only read it; ReplicaCore mutates it.

    Invariants: `len(req.blocks) * block_size` is the token capacity of `req`'s allocation (schedulers
    rely on it to decide inline whether a decode needs a block); num_free_blocks + distinct blocks held
    by requests == num_blocks (cached-but-unreferenced prefix blocks count as free: they are evictable).
    """

    block_size: int
    num_blocks: int
    prefix_caching: bool = False  # ReplicaCore registers computed prompt blocks when True

    @property
    def num_free_blocks(self) -> int:
        """Blocks an allocation can take now (free, or cached-and-evictable)."""
        raise NotImplementedError

    @property
    def num_used_blocks(self) -> int:
        """Blocks held (allocated or reserved) by requests."""
        return self.num_blocks - self.num_free_blocks

    def blocks_needed(self, req: Request, num_total_tokens: int) -> int:
        """Extra blocks `req` needs so its KV can hold `num_total_tokens` tokens (0 if it already can)."""
        need = -(-num_total_tokens // self.block_size) - len(req.blocks)
        return need if need > 0 else 0

    def admission(self, req: Request, num_total_tokens: int) -> tuple[int, int]:
        """Read-only, for a waiting request (no blocks): `(cached_tokens, blocks)` — leading prompt tokens
        it would get from the prefix cache, and blocks taken from the free pool to hold `num_total_tokens`."""
        return 0, -(-num_total_tokens // self.block_size)

    def cached_prefix_tokens(self, req: Request) -> int:
        """Read-only: leading prompt tokens of `req` whose KV is already cached (0 without prefix caching)."""
        return self.admission(req, req.prompt_len + req.num_generated)[0]

    def can_place(self, sizes: list[int]) -> bool:
        """Could new allocations of these block counts all be placed now? (Contiguous: extents.)"""
        return True

    def acquire_prefix(self, req: Request, max_tokens: int) -> int:
        """Share `req`'s cached prefix (at most `max_tokens`): append its blocks, return the tokens."""
        return 0

    def allocate(self, req: Request, num_total_tokens: int) -> None:
        """Grow `req`'s allocation to hold `num_total_tokens` tokens. Raises if blocks run out."""
        raise NotImplementedError

    def free(self, req: Request) -> None:
        """Release every block `req` holds."""
        raise NotImplementedError

    def blocks_freed_by(self, req: Request) -> int:
        """Blocks that would return to the free pool if `req` were freed (shared blocks stay held)."""
        return len(req.blocks)

    def cache_computed(self, req: Request) -> None:
        """Register `req`'s fully computed prompt blocks in the prefix cache (no-op without one)."""

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
