"""The root config tree: one pydantic model built identically by the CLI, YAML files, the dashboard and tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from hwmodels.config import (CostModelConfig, Frozen, HardwareConfig, ModelConfig, ParallelConfig,
                             QuantConfig, RooflineCostConfig)
from hwmodels.errors import UserError, format_validation_error
from policies.config import KVCacheConfig, PagedKVConfig, RouterConfig, SchedulerConfig, VLLMSchedulerConfig

# ---- workload -------------------------------------------------------------------------------


class FixedLength(Frozen):
    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1)


class UniformLength(Frozen):
    """Integers uniform on [low, high], both inclusive."""

    kind: Literal["uniform"] = "uniform"
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "UniformLength":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class LognormalLength(Frozen):
    """Lognormal with the given mean (of the lengths, before rounding and clipping) and sigma (of the
    underlying normal: mu = ln(mean) - sigma^2/2), rounded and clipped to [min, max]."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    sigma: float = Field(default=1.0, gt=0)
    min: int = Field(default=1, ge=1)
    max: int = Field(default=32768, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "LognormalLength":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class EmpiricalLength(Frozen):
    """Resample (with replacement) a column of positive integers in a CSV file, e.g. `num_prefill_tokens`
    of a length-only trace. A relative path is relative to the working directory."""

    kind: Literal["empirical"] = "empirical"
    path: str
    column: str


LengthDist = Annotated[Union[FixedLength, UniformLength, LognormalLength, EmpiricalLength],
                       Field(discriminator="kind")]


class ArrivalConfig(Frozen):
    """Arrival process; the first request arrives at t=0. rate_per_s = inf (or process='burst') puts every
    request at t=0 (offline run). gamma: inter-arrival times with mean 1/rate and the given cv (cv=1 is
    Poisson, cv>1 burstier)."""

    process: Literal["poisson", "gamma", "constant", "burst"] = "poisson"
    rate_per_s: float = Field(default=1.0, gt=0, description="mean requests per second; inf = all at once")
    cv: float = Field(default=2.0, gt=0, description="gamma: coefficient of variation of inter-arrival times")


class SyntheticWorkload(Frozen):
    """Generated requests. The default is a moderately loaded chat-like service: 1,000 requests,
    Poisson at 10 req/s, 512 prompt and 128 output tokens."""

    kind: Literal["synthetic"] = "synthetic"
    num_requests: int = Field(default=1000, ge=1)
    arrival: ArrivalConfig = ArrivalConfig(rate_per_s=10.0)
    input_len: LengthDist = FixedLength(value=512)
    output_len: LengthDist = FixedLength(value=128)


class TraceWorkload(Frozen):
    """Replay a trace file. Formats: azure, mooncake, lengths (length-only CSV + synthetic arrivals), plain
    (arrival_s,input_tokens,output_tokens as CSV or JSONL). Order of operations: load, sort by arrival
    (stable; noted if it changed the order), take the first N, shift to zero, scale the rate."""

    kind: Literal["trace"] = "trace"
    path: str
    format: Literal["auto", "azure", "mooncake", "lengths", "plain"] = "auto"
    num_requests: int | None = Field(default=None, ge=1, description="take the first N requests")
    rate_scale: float = Field(default=1.0, gt=0, description="multiply the arrival rate (divide times)")
    shift_to_zero: bool = True
    arrival: ArrivalConfig = Field(default=ArrivalConfig(), description="arrivals for length-only traces")


WorkloadConfig = Annotated[Union[SyntheticWorkload, TraceWorkload], Field(discriminator="kind")]

# ---- SLOs and simulation --------------------------------------------------------------------


class SLOConfig(Frozen):
    """Per-request latency targets (goodput counts requests meeting all that are set) and the percentile
    the planner checks them at."""

    ttft_s: float | None = Field(default=None, gt=0)
    tpot_s: float | None = Field(default=None, gt=0)
    e2e_s: float | None = Field(default=None, gt=0)
    percentile: float = Field(default=90.0, gt=0, le=100)
    attainment: float | None = Field(default=None, gt=0, le=1,
                                     description="fraction of requests that must meet every SLO")


class StepJitterConfig(Frozen):
    """Run-to-run variability of pass times: each pass's seconds times exp(x), x a stationary AR(1) series with
    this standard deviation and lag-1 autocorrelation, centred so that the mean pass time is unchanged
    (E[exp(x)] = 1). Queues feel the variance of service times (Kingman: waiting grows with the squared
    coefficient of variation of service), which a deterministic cost model leaves out; the series is drawn
    from `seed` (default `simulation.seed`), one per replica, so a run is still deterministic."""

    sd: float = Field(ge=0.0, le=0.5, description="standard deviation of log(pass time / its model time)")
    autocorrelation: float = Field(default=0.0, ge=0.0, lt=1.0, description="lag-1 autocorrelation, pass to pass")
    seed: int | None = Field(default=None, description="the draw of the series; default: simulation.seed (the "
                             "workload stays the same when only this changes)")


class SimulationConfig(Frozen):
    seed: int = 0
    max_model_len: int | None = Field(default=None, ge=1, description="defaults to the model's max positions")
    max_sim_time_s: float | None = Field(default=None, gt=0, description="stop the clock here")
    record_steps: bool = True
    step_jitter: StepJitterConfig | None = Field(
        default=None, description="random pass-time variability (llmsim validate measures it); none: deterministic")


class Config(Frozen):
    """Everything one scenario needs. Round-trips through model_dump / model_validate."""

    model: ModelConfig = ModelConfig()
    hardware: HardwareConfig = HardwareConfig()
    parallel: ParallelConfig = ParallelConfig()
    quant: QuantConfig = QuantConfig()
    scheduler: SchedulerConfig = VLLMSchedulerConfig()
    kv_cache: KVCacheConfig = PagedKVConfig()
    router: RouterConfig = RouterConfig()
    workload: WorkloadConfig = SyntheticWorkload()
    slo: SLOConfig = SLOConfig()
    cost_model: CostModelConfig = RooflineCostConfig()
    simulation: SimulationConfig = SimulationConfig()


def validate_config(data: dict[str, Any], source: str | None = None) -> Config:
    """Build a Config from plain data; a UserError names each bad field, its value and what is allowed."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None


def read_mapping_file(path: str | Path, sections: str = "") -> dict[str, Any]:
    """Read a YAML or JSON file whose top level is a mapping; syntax errors as `file:line:col`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p}: not found")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else (
            f"{p}:{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(p))
        raise UserError(f"{where}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                        f"{getattr(exc, 'problem', None) or getattr(exc, 'msg', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: top level must be a mapping of sections{sections}, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> Config:
    """Load a Config from a YAML or JSON file."""
    data = read_mapping_file(path, f" ({', '.join(Config.model_fields)})")
    return validate_config(data, str(path))


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into a copy of `base` (CLI flags over a config file). A mapping whose
    `kind` differs (another member of a discriminated union) replaces the old one instead of merging."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and v.get("kind", out[k].get("kind")) == out[k].get(
                "kind"):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out
