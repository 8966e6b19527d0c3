"""Routers: which replica a new request goes to. `route(req, replicas) -> index`, pure given the seed.

Replicas are read through the same view schedulers get (ReplicaCore): queue lengths and the KV
manager's counters. Ties go to the lowest index, so routing is deterministic.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from policies.config import RouterConfig
from policies.request import Request


class Router:
    def route(self, req: Request, replicas: Sequence) -> int:
        raise NotImplementedError


class RoundRobinRouter(Router):
    def __init__(self) -> None:
        self.next = 0

    def route(self, req: Request, replicas: Sequence) -> int:
        i = self.next % len(replicas)
        self.next = i + 1
        return i


def _argmin(values) -> int:
    best, best_i = None, 0
    for i, v in enumerate(values):
        if best is None or v < best:
            best, best_i = v, i
    return best_i


class LeastOutstandingRouter(Router):
    """Fewest requests admitted and not finished (queued + running + swapped)."""

    def route(self, req: Request, replicas: Sequence) -> int:
        return _argmin(c.num_outstanding for c in replicas)


class LeastKVRouter(Router):
    """Lowest fraction of KV blocks held; ties by fewer outstanding requests (queued demand)."""

    def route(self, req: Request, replicas: Sequence) -> int:
        return _argmin((c.kv.num_used_blocks / c.kv.num_blocks, c.num_outstanding) for c in replicas)


class PowerOfTwoRouter(Router):
    """Power of two choices (Mitzenmacher 2001): sample two distinct replicas, take the one with fewer
    outstanding requests."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def route(self, req: Request, replicas: Sequence) -> int:
        n = len(replicas)
        if n == 1:
            return 0
        i = int(self.rng.integers(n))
        j = int(self.rng.integers(n - 1))
        if j >= i:
            j += 1
        a, b = replicas[i].num_outstanding, replicas[j].num_outstanding
        return i if a < b or (a == b and i < j) else j


def make_router(cfg: RouterConfig, seed: int) -> Router:
    """The router for `cfg`; `seed` drives the random ones."""
    if cfg.kind == "round_robin":
        return RoundRobinRouter()
    if cfg.kind == "least_outstanding":
        return LeastOutstandingRouter()
    if cfg.kind == "least_kv":
        return LeastKVRouter()
    if cfg.kind == "power_of_two":
        return PowerOfTwoRouter(seed)
    raise ValueError(f"router kind={cfg.kind!r}: expected round_robin, least_outstanding, least_kv or power_of_two")
