"""The planner's config: a base scenario (the root `Config`) plus the space to search and the bounds.

In YAML it is the usual scenario file (the sections `llmsim simulate --config` takes) with one more
section, `plan:`, holding every field of `PlanConfig` except `base`. Every search dimension is
either left unset (a default derived from the base scenario and the model) or given as a list.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, ValidationError

from hwmodels.config import Frozen, KVDType, WeightDType
from hwmodels.errors import UserError, format_validation_error
from simulator.config import Config, read_mapping_file

SchedulerKind = Literal["static", "orca", "vllm", "sarathi", "splitfuse"]
CHUNKED_SCHEDULERS = ("sarathi", "splitfuse")  # the kinds that take `chunk_size`


class SearchSpace(Frozen):
    """Values to try per dimension; None = derive from the base scenario (see `defaults` in space.py)."""

    gpus: tuple[str, ...] | None = Field(default=None, min_length=1, description="accelerator catalog names")
    tp: tuple[PositiveInt, ...] | None = Field(default=None, description="tensor-parallel degrees")
    pp: tuple[PositiveInt, ...] | None = Field(default=None, description="pipeline-parallel degrees")
    replicas: tuple[PositiveInt, ...] | None = Field(
        default=None, description="replica counts; default: enough for --target-qps, else as many as the bounds allow")
    schedulers: tuple[SchedulerKind, ...] | None = None
    max_batch_size: tuple[PositiveInt, ...] | None = None
    max_num_batched_tokens: tuple[PositiveInt, ...] | None = None
    chunk_size: tuple[PositiveInt, ...] | None = Field(default=None, description="only for sarathi / splitfuse")
    block_size: tuple[PositiveInt, ...] | None = None
    weight_dtype: tuple[WeightDType, ...] | None = None
    kv_dtype: tuple[KVDType, ...] | None = None


class CapacitySearchConfig(Frozen):
    """Bisection of the request rate on the geometric grid rate_k = (1 + rel_tolerance)^k req/s."""

    max_requests_per_probe: int = Field(default=1000, ge=10,
                                        description="each probe simulates the first N requests of the workload")
    rel_tolerance: float = Field(default=0.05, gt=0, le=1, description="relative spacing of the rate grid")
    min_rate_per_s: float = Field(default=0.01, gt=0, description="below this a layout counts as infeasible")
    max_rate_per_s: float = Field(default=1e4, gt=0, description="stop doubling here")
    max_probes: int = Field(default=40, ge=2, description="probes per layout before giving up")


class PlanConfig(Frozen):
    """Search layouts and settings of `base` for the highest rate that meets `base.slo`."""

    base: Config = Config()
    space: SearchSpace = SearchSpace()
    search: CapacitySearchConfig = CapacitySearchConfig()
    target_qps: float | None = Field(default=None, gt=0, description="size the cluster for this request rate")
    max_gpus: int | None = Field(default=None, ge=1, description="GPUs the whole deployment may use")
    budget_usd_per_hour: float | None = Field(default=None, gt=0, description="bound on the deployment's $/h")
    rank_by: Literal["cost", "qps_per_gpu", "ttft"] = Field(
        default="cost", description="cost: $ per million output tokens (or $/h with target_qps)")


def validate_plan_config(data: dict[str, Any], source: str | None = None) -> PlanConfig:
    """PlanConfig from a scenario mapping with an optional `plan` section; UserError on bad fields."""
    data = dict(data or {})
    plan = data.pop("plan", None) or {}
    if not isinstance(plan, dict):
        raise UserError(f"{source or '<config>'}: section plan must be a mapping, got {type(plan).__name__}")
    if "base" in plan:
        raise UserError(f"{source or '<config>'}: plan.base is not allowed; the other sections are the base scenario")
    try:
        return PlanConfig.model_validate({**plan, "base": data})
    except ValidationError as exc:
        raise UserError(format_validation_error(_AsInFile(exc), source)) from None


class _AsInFile:
    """A ValidationError whose locations read as in the file: `base.x` -> `x`, `y` -> `plan.y`."""

    def __init__(self, exc: ValidationError) -> None:
        self._errors = exc.errors()

    def errors(self) -> list[dict[str, Any]]:
        out = []
        for e in self._errors:
            loc = tuple(e.get("loc", ()))
            loc = loc[1:] if loc[:1] == ("base",) else ("plan",) + loc
            out.append({**e, "loc": loc})
        return out


def load_plan_config(path: str | Path) -> PlanConfig:
    """Load a scenario YAML/JSON file with an optional `plan:` section."""
    data = read_mapping_file(path)
    p = Path(path)
    return validate_plan_config(data, str(p))
