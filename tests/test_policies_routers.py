"""Routers: exact choices on hand-built replica states, and seeded determinism."""
from __future__ import annotations

import typing

from policies.config import RouterConfig, VLLMSchedulerConfig
from policies.core import ReplicaCore
from policies.kv import PagedKVManager
from policies.request import Request
from policies.routers import (LeastKVRouter, LeastOutstandingRouter, PowerOfTwoRouter, RoundRobinRouter,
                              make_router)
from policies.schedulers import make_scheduler


def replicas(outstanding: list[int], used_blocks: list[int], num_blocks: int = 10) -> list[ReplicaCore]:
    cores = []
    for i, (n, used) in enumerate(zip(outstanding, used_blocks)):
        core = ReplicaCore(make_scheduler(VLLMSchedulerConfig()), PagedKVManager(num_blocks, 4), 64, replica_id=i)
        for j in range(n):
            core.add(Request(100 * i + j, 0.0, 4, 4))
        if used:
            core.kv.allocate(Request(-1, 0.0, 4, 4), 4 * used)
        cores.append(core)
    return cores


def test_factory_covers_every_kind():
    kinds = typing.get_args(RouterConfig.model_fields["kind"].annotation)
    types = {k: type(make_router(RouterConfig(kind=k), 0)) for k in kinds}
    assert types == {"round_robin": RoundRobinRouter, "least_outstanding": LeastOutstandingRouter,
                     "least_kv": LeastKVRouter, "power_of_two": PowerOfTwoRouter}


def test_round_robin_cycles():
    rs = replicas([0, 0, 0], [0, 0, 0])
    router = make_router(RouterConfig(kind="round_robin"), 0)
    assert [router.route(Request(i, 0.0, 1, 1), rs) for i in range(5)] == [0, 1, 2, 0, 1]


def test_least_outstanding_ties_to_lowest_index():
    router = make_router(RouterConfig(kind="least_outstanding"), 0)
    assert router.route(Request(0, 0.0, 1, 1), replicas([3, 1, 1], [0, 0, 0])) == 1


def test_least_kv_uses_block_fraction_then_queue():
    router = make_router(RouterConfig(kind="least_kv"), 0)
    assert router.route(Request(0, 0.0, 1, 1), replicas([0, 5, 0], [6, 2, 3])) == 1
    assert router.route(Request(0, 0.0, 1, 1), replicas([4, 2, 3], [2, 2, 5])) == 1


def test_power_of_two_picks_the_lighter_of_two_distinct_samples_deterministically():
    rs = replicas([5, 0, 3, 7], [0, 0, 0, 0])
    picks = [make_router(RouterConfig(kind="power_of_two"), seed=7) for _ in range(2)]
    a = [picks[0].route(Request(i, 0.0, 1, 1), rs) for i in range(200)]
    assert a == [picks[1].route(Request(i, 0.0, 1, 1), rs) for i in range(200)]
    # The heaviest replica (3) can never win: whichever replica it is paired with has fewer requests.
    assert 3 not in a and set(a) == {0, 1, 2}
    assert a.count(1) > a.count(2) > a.count(0)  # wins 3/6, 2/6 and 1/6 of the distinct pairs
    assert make_router(RouterConfig(kind="power_of_two"), 0).route(Request(0, 0.0, 1, 1), rs[:1]) == 0
