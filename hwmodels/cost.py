"""The cost-model interface every implementation (roofline, profiled, test models) satisfies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol, runtime_checkable

from hwmodels.shapes import BatchShape


@dataclass(frozen=True, slots=True)
class OpCost:
    """One operator (or collective) of one forward pass on one GPU, summed over the layers it repeats in."""

    name: str
    kind: str  # "gemm" | "attention" | "elementwise" | "collective" | "overhead" | "moe" | "sampling"
    seconds: float
    flops: float = 0.0
    bytes: float = 0.0
    count: int = 1  # how many times it runs per pass (e.g. num_layers / pp)
    source: str = "roofline"  # where the number came from: "roofline", "measured", "fitted", ...


@dataclass(frozen=True, slots=True)
class StepCost:
    """Seconds of one forward pass, broken down by operator. `stage_s` is one pipeline stage's time."""

    total_s: float
    stage_s: float
    ops: tuple[OpCost, ...] = field(default_factory=tuple)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for op in self.ops:
            out[op.kind] = out.get(op.kind, 0.0) + op.seconds
        return out


@runtime_checkable
class CostModel(Protocol):
    """Prices one forward pass of one replica. Pure: same shape, same seconds."""

    def stage_seconds(self, shape: BatchShape) -> float:
        """Hot path: seconds one micro-batch of this shape occupies one pipeline stage (whole model if pp=1)."""
        ...

    def p2p_seconds(self, shape: BatchShape) -> float:
        """Seconds to send this micro-batch's activations to the next pipeline stage (0 if pp=1)."""
        ...

    def step_cost(self, shape: BatchShape) -> StepCost:
        """Per-operator breakdown of the same pass (not on the hot path)."""
        ...


def step_time(model: CostModel, seqs: Iterable[tuple[int, int]], window: int = 0) -> StepCost:
    """DESIGN's `step_time(batch)`: price per-sequence `(new_tokens, context_tokens)` pairs."""
    return model.step_cost(BatchShape.from_seqs(seqs, window=window))


@dataclass(frozen=True)
class LinearCostModel:
    """Analytic test model: `base_s + per_token_s·tokens + per_kv_token_s·kv_read`, for exact timelines."""

    base_s: float = 0.01
    per_token_s: float = 0.0
    per_kv_token_s: float = 0.0
    pp: int = 1

    def stage_seconds(self, shape: BatchShape) -> float:
        return self.base_s + self.per_token_s * shape.num_tokens + self.per_kv_token_s * shape.kv_read_tokens

    def p2p_seconds(self, shape: BatchShape) -> float:
        return 0.0

    def step_cost(self, shape: BatchShape) -> StepCost:
        s = self.stage_seconds(shape)
        return StepCost(total_s=s * self.pp, stage_s=s, ops=(OpCost("linear", "overhead", s * self.pp, source="test"),))
