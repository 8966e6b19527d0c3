"""Alpha-beta costs of collectives over one link type (Hockney; Thakur, Rabenseifner & Gropp 2005).

`nbytes` is the size of the buffer each GPU holds, as in nccl-tests (PERFORMANCE.md): all-reduce of
S bytes moves 2(n-1)/n·S per GPU per direction, all-gather/reduce-scatter (n-1)/n·S (S = full
output), so nccl-tests' "bus bandwidth" equals the link bandwidth these formulas use. Ring
algorithms take n-1 (or 2(n-1)) latency steps. B is the link's effective bandwidth (datasheet x fitted
NCCL efficiency, see hwmodels.hardware), α its fitted per-step latency.
"""
from __future__ import annotations

from hwmodels.hardware import LinkSpec


def allreduce_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """Ring: 2(n-1)·α + 2(n-1)/n·S/B; 0 when n == 1.

    NOTE: NCCL switches to tree/LL protocols for small messages; here one ring formula covers all sizes,
    with α fitted over the whole size range (1 KB..64 MB)."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return 2 * (n - 1) * link.latency_s + 2 * (n - 1) / n * nbytes / link.effective_bytes_per_s


def allgather_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """Ring all-gather of an S-byte output: (n-1)·α + (n-1)/n·S/B."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return (n - 1) * link.latency_s + (n - 1) / n * nbytes / link.effective_bytes_per_s


def reduce_scatter_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """Ring reduce-scatter of an S-byte input: (n-1)·α + (n-1)/n·S/B."""
    return allgather_seconds(nbytes, n, link)


def alltoall_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """Pairwise all-to-all, S bytes sent per GPU in total: (n-1)·α + (n-1)/n·S/B."""
    return allgather_seconds(nbytes, n, link)


def p2p_seconds(nbytes: float, link: LinkSpec) -> float:
    """One send/recv: α + S/B."""
    if nbytes <= 0:
        return 0.0
    return link.latency_s + nbytes / link.effective_bytes_per_s
