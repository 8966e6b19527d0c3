"""`simulate(cfg)`: resolve a Config into a model, GPU, memory plan and cost model, run the engine,
and return DataFrames plus a summary. The CLI, dashboard, planner and validate all call this."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from hwmodels.build import build_cost_model
from hwmodels.cost import CostModel
from hwmodels.errors import UserError
from hwmodels.hardware import GPUSpec, get_link, resolve_gpu
from hwmodels.layout import check_layout
from hwmodels.memory import MemoryPlan, plan_memory
from hwmodels.models import ModelSpec, resolve_model
from policies.request import FINISHED, REJECTED, Request
from simulator.config import Config
from simulator.engine import STEP_COLUMNS, EngineSpec, RawResult, run_engine
from simulator.metrics import summarize
from simulator.results import SimulationResult
from simulator.workload import build_workload

STATE_NAMES = {FINISHED: "finished", REJECTED: "rejected"}


@dataclass(frozen=True)
class Scenario:
    """A Config resolved against the catalogs: what runs where, and what it costs."""

    model: ModelSpec
    gpu: GPUSpec
    memory: MemoryPlan
    cost_model: CostModel
    num_kv_blocks: int
    max_model_len: int
    usd_per_gpu_hour: float
    swap_s_per_block: float
    num_host_blocks: int


def resolve(cfg: Config, cost_model: CostModel | None = None) -> Scenario:
    """Resolve catalogs, check the layout and memory; raises UserError naming what does not fit."""
    model = resolve_model(cfg.model)
    gpu = resolve_gpu(cfg.hardware)
    check_layout(model, cfg.parallel)
    kv = cfg.kv_cache
    mem = plan_memory(model, gpu, cfg.parallel, cfg.quant, gpu_memory_utilization=kv.gpu_memory_utilization,
                      block_size=kv.block_size, max_num_batched_tokens=cfg.scheduler.max_num_batched_tokens)
    num_blocks = kv.num_blocks or mem.num_kv_blocks
    if num_blocks < 1:
        raise UserError(f"{model.name} on {cfg.parallel.tp}x{cfg.parallel.pp} {gpu.name}: no memory left for "
                        "the KV cache after weights and activations; use more TP/PP or a smaller weight dtype")
    if cost_model is None:
        cost_model = build_cost_model(model, gpu, cfg.parallel, cfg.quant, cfg.hardware, cfg.cost_model)
    max_model_len = cfg.simulation.max_model_len or model.max_position
    # Swap preemption moves each GPU's shard of a block over its PCIe link (datasheet bandwidth).
    pcie = get_link(gpu.pcie_link)
    swap_s = mem.kv_bytes_per_block_per_gpu / pcie.bandwidth_bytes_per_s if mem.kv_bytes_per_block_per_gpu else 0.0
    host_blocks = int(kv.swap_space_bytes // mem.kv_bytes_per_block_per_gpu) if mem.kv_bytes_per_block_per_gpu else 0
    usd = gpu.usd_per_hour
    return Scenario(model, gpu, mem, cost_model, num_blocks, max_model_len, usd, swap_s, host_blocks)


def cost_model_notes(cfg: Config, sc: Scenario) -> list[str]:
    """Say where a profiled cost model's timings come from, and warn when that device does not look like
    the simulated accelerator (the table's timings are then applied as if measured on it)."""
    fit = getattr(sc.cost_model, "fit", None)
    device = str(getattr(fit, "device", "") or "")
    if cfg.cost_model.kind != "profiled" or not device:
        return []
    notes = [f"cost model: profile {cfg.cost_model.profile} measured on {device!r}, applied to {sc.gpu.name}"]
    family = "cpu" if sc.gpu.vendor.lower() == "cpu" else sc.gpu.name.lower().split("-")[0]
    if family not in device.lower():
        notes.append(f"warning: the profile's device {device!r} does not look like the simulated accelerator "
                     f"{sc.gpu.name!r}; profile the target device, or pick the matching --gpu/--gpu-file")
    return notes


def jitter_seed(cfg: Config) -> int:
    """The seed of the pass-time jitter series (`simulation.step_jitter.seed`, else `simulation.seed`)."""
    j = cfg.simulation.step_jitter
    return cfg.simulation.seed if j is None or j.seed is None else j.seed


def engine_spec(cfg: Config, sc: Scenario) -> EngineSpec:
    return EngineSpec(cost_model=sc.cost_model, scheduler_cfg=cfg.scheduler, kv_cfg=cfg.kv_cache,
                      router_cfg=cfg.router, num_replicas=cfg.parallel.replicas, num_kv_blocks=sc.num_kv_blocks,
                      max_model_len=sc.max_model_len, window=sc.model.sliding_window or 0, pp=cfg.parallel.pp,
                      seed=cfg.simulation.seed, max_sim_time_s=cfg.simulation.max_sim_time_s,
                      record_steps=cfg.simulation.record_steps,
                      swap_s_per_block=sc.swap_s_per_block if getattr(cfg.scheduler, "preemption", "") == "swap"
                      else 0.0,
                      num_host_blocks=sc.num_host_blocks,
                      jitter_sd=cfg.simulation.step_jitter.sd if cfg.simulation.step_jitter else 0.0,
                      jitter_rho=cfg.simulation.step_jitter.autocorrelation if cfg.simulation.step_jitter else 0.0,
                      jitter_seed=jitter_seed(cfg))


def requests_frame(requests: Sequence[Request]) -> pd.DataFrame:
    """One row per request (the `requests` schema of DESIGN.md)."""
    cols = {
        "id": np.fromiter((r.id for r in requests), np.int64, len(requests)),
        "replica": np.fromiter((r.replica for r in requests), np.int64, len(requests)),
        "arrival_s": np.fromiter((r.arrival_s for r in requests), np.float64, len(requests)),
        "scheduled_s": np.fromiter((r.scheduled_s for r in requests), np.float64, len(requests)),
        "first_token_s": np.fromiter((r.first_token_s for r in requests), np.float64, len(requests)),
        "finish_s": np.fromiter((r.finish_s for r in requests), np.float64, len(requests)),
        "input_tokens": np.fromiter((r.prompt_len for r in requests), np.int64, len(requests)),
        "output_tokens": np.fromiter((r.output_len for r in requests), np.int64, len(requests)),
        "num_generated": np.fromiter((r.num_generated for r in requests), np.int64, len(requests)),
        "num_preemptions": np.fromiter((r.num_preemptions for r in requests), np.int64, len(requests)),
        "num_cached_tokens": np.fromiter((r.num_cached_tokens for r in requests), np.int64, len(requests)),
        "state": [STATE_NAMES.get(r.state, "unfinished") for r in requests],
        "reject_reason": [r.reject_reason for r in requests],
    }
    return pd.DataFrame(cols)


FLOAT_STEP_COLUMNS = {"start_s", "end_s"}


def steps_frame(flat) -> pd.DataFrame:
    """One row per forward pass from the engine's flat float64 record (STEP_COLUMNS per step)."""
    a = np.frombuffer(flat, dtype=np.float64).reshape(-1, len(STEP_COLUMNS)) if len(flat) else np.zeros(
        (0, len(STEP_COLUMNS)))
    return pd.DataFrame({c: (a[:, j].copy() if c in FLOAT_STEP_COLUMNS else a[:, j].astype(np.int64))
                         for j, c in enumerate(STEP_COLUMNS)})


def simulate(cfg: Config, *, requests: Sequence[Request] | None = None, cost_model: CostModel | None = None,
             progress: Callable[[float], None] | None = None) -> SimulationResult:
    """Run one scenario. `requests` (sorted by arrival) overrides the config's workload."""
    sc = resolve(cfg, cost_model)
    notes: list[str] = []
    if requests is None:
        wl = build_workload(cfg.workload, cfg.simulation.seed)
        notes += list(getattr(wl, "notes", ()) or ())
        requests = wl.to_requests()
    notes += cost_model_notes(cfg, sc)
    raw: RawResult = run_engine(engine_spec(cfg, sc), requests, progress)
    req_df = requests_frame(raw.requests)
    steps_df = steps_frame(raw.steps)
    itl = np.frombuffer(raw.itl_s, dtype=np.float32) if len(raw.itl_s) else np.zeros(0, dtype=np.float32)
    summary = summarize(req_df, steps_df, itl, slo=cfg.slo, num_gpus=cfg.parallel.num_gpus,
                        usd_per_gpu_hour=sc.usd_per_gpu_hour, kv_blocks_total=sc.num_kv_blocks * cfg.parallel.replicas,
                        block_size=cfg.kv_cache.block_size)
    memory = {k: (float(v) if isinstance(v, (int, float)) and not math.isnan(v) else v)
              for k, v in asdict(sc.memory).items()}
    memory["num_kv_blocks_per_replica"] = sc.num_kv_blocks
    notes += raw.notes
    summary["notes"] = notes
    return SimulationResult(config=cfg, requests=req_df, steps=steps_df, itl_s=itl, summary=summary, memory=memory)
