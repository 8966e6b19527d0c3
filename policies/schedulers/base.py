"""What a scheduling policy sees and returns."""
from __future__ import annotations

from collections import deque
from typing import Protocol, Sequence

from policies.kv.base import KVManager
from policies.plan import BatchPlan
from policies.request import Request


class SchedulerView(Protocol):
    """Read-only state of one replica. `running` excludes requests still in a pipeline micro-batch."""

    waiting: deque[Request]  # FCFS order
    running: Sequence[Request]  # priority order: earlier = higher priority
    swapped: deque[Request]
    kv: KVManager
    window: int  # sliding-window size of the model (0 = none)
    max_model_len: int


class SchedulerPolicy:
    """Decides one forward pass. Must not mutate requests, queues or the KV manager."""

    preemption: str = "recompute"  # "recompute" or "swap": how ReplicaCore applies `plan.preempted`

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def plan(self, view: SchedulerView) -> BatchPlan | None:
        raise NotImplementedError

    def reject_reason(self, req: Request, view: SchedulerView) -> str:
        """Why `req` can never be served by this policy ('' if it can)."""
        return ""
