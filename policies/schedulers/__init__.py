"""Scheduling/batching policies: `plan(view) -> BatchPlan | None`. One config class + one class each."""
from __future__ import annotations

from policies.schedulers.base import SchedulerPolicy, SchedulerView
from policies.schedulers.orca import OrcaScheduler
from policies.schedulers.sarathi import SarathiScheduler
from policies.schedulers.splitfuse import SplitFuseScheduler
from policies.schedulers.static import StaticScheduler
from policies.schedulers.vllm import VLLMScheduler

# kind -> implementation; a test checks this against the SchedulerConfig union.
REGISTRY: dict[str, type[SchedulerPolicy]] = {
    "static": StaticScheduler,
    "orca": OrcaScheduler,
    "vllm": VLLMScheduler,
    "sarathi": SarathiScheduler,
    "splitfuse": SplitFuseScheduler,
}


def make_scheduler(cfg) -> SchedulerPolicy:
    """Instantiate the policy for a scheduler config (any member of the SchedulerConfig union)."""
    return REGISTRY[cfg.kind](cfg)


__all__ = ["REGISTRY", "OrcaScheduler", "SarathiScheduler", "SchedulerPolicy", "SchedulerView",
           "SplitFuseScheduler", "StaticScheduler", "VLLMScheduler", "make_scheduler"]
