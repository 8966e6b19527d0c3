"""Alpha-beta costs of collectives over one link type (Hockney; Thakur, Rabenseifner & Gropp 2005).

`nbytes` is the size of the buffer each GPU holds, as in nccl-tests (PERFORMANCE.md): all-reduce of
S bytes moves 2(n-1)/n·S per GPU per direction, all-gather/reduce-scatter (n-1)/n·S (S = full
output), so nccl-tests' "bus bandwidth" is the B these formulas use. Latency terms follow Thakur et
al.'s recursive-halving/doubling algorithms (log2 n steps; Rabenseifner's all-reduce = reduce-scatter
+ all-gather) and pairwise exchange for all-to-all (n-1 steps). B is the link's effective bandwidth
(datasheet x NCCL efficiency) and α its per-step latency, both fitted on measured NCCL timings where
available (see hwmodels.hardware).
"""
from __future__ import annotations

import math

from hwmodels.hardware import LinkSpec


def allreduce_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """2·⌈log2 n⌉·α + 2(n-1)/n·S/B (Rabenseifner); 0 when n == 1."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return 2 * math.ceil(math.log2(n)) * link.latency_s + 2 * (n - 1) / n * nbytes / link.effective_bytes_per_s


def allgather_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """All-gather of an S-byte output: ⌈log2 n⌉·α + (n-1)/n·S/B."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return math.ceil(math.log2(n)) * link.latency_s + (n - 1) / n * nbytes / link.effective_bytes_per_s


def reduce_scatter_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """Reduce-scatter of an S-byte input: ⌈log2 n⌉·α + (n-1)/n·S/B."""
    return allgather_seconds(nbytes, n, link)


def alltoall_seconds(nbytes: float, n: int, link: LinkSpec) -> float:
    """Pairwise all-to-all, S bytes sent per GPU in total: (n-1)·α + (n-1)/n·S/B."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return (n - 1) * link.latency_s + (n - 1) / n * nbytes / link.effective_bytes_per_s


def p2p_seconds(nbytes: float, link: LinkSpec) -> float:
    """One send/recv: α + S/B."""
    if nbytes <= 0:
        return 0.0
    return link.latency_s + nbytes / link.effective_bytes_per_s
