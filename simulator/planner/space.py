"""The search space: one `Candidate` per replica layout and setting, enumerated from a PlanConfig.

A candidate is everything about ONE replica; the number of replicas is decided after the capacity
search (max rate scales with replicas under round-robin routing, as in Vidur's config search).
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from simulator.config import Config
from simulator.planner.config import CHUNKED_SCHEDULERS, PlanConfig


@dataclass(frozen=True, slots=True)
class Candidate:
    gpu: str
    tp: int
    pp: int
    scheduler: str
    max_batch_size: int
    max_num_batched_tokens: int
    chunk_size: int | None  # None for schedulers without chunked prefill
    block_size: int
    weight_dtype: str
    kv_dtype: str

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    def label(self, extra: tuple[str, ...] | None = None) -> str:
        """'h100-sxm TP2 PP1 sarathi/c512 B256 T8192 blk16 bf16'; with `extra`, only those of the last four
        parts (max_batch_size, max_num_batched_tokens, block_size, dtype) are shown."""
        sched = self.scheduler + (f"/c{self.chunk_size}" if self.chunk_size else "")
        dt = self.weight_dtype if self.weight_dtype == self.kv_dtype else f"w{self.weight_dtype}/kv{self.kv_dtype}"
        parts = {"max_batch_size": f"B{self.max_batch_size}", "max_num_batched_tokens": f"T{self.max_num_batched_tokens}",
                 "block_size": f"blk{self.block_size}", "dtype": dt}
        shown = [v for k, v in parts.items() if extra is None or k in extra]
        return " ".join([f"{self.gpu} TP{self.tp} PP{self.pp} {sched}"] + shown)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_config(self, base: Config, replicas: int = 1) -> Config:
        """The base scenario with this candidate's layout and settings (and `replicas` replicas)."""
        data = base.model_dump(mode="python")
        data["hardware"] = {**data["hardware"], "gpu": self.gpu}
        data["parallel"] = {**data["parallel"], "tp": self.tp, "pp": self.pp, "replicas": replicas}
        data["quant"] = {**data["quant"], "weight_dtype": self.weight_dtype, "kv_dtype": self.kv_dtype}
        sched: dict[str, Any] = {"kind": self.scheduler, "max_batch_size": self.max_batch_size,
                                 "max_num_batched_tokens": self.max_num_batched_tokens}
        old = data["scheduler"]
        if old.get("kind") == self.scheduler:  # keep the base's other settings of the same policy
            sched = {**old, **sched}
        if self.chunk_size is not None:
            sched["chunk_size"] = self.chunk_size
        data["scheduler"] = sched
        data["kv_cache"] = {**data["kv_cache"], "block_size": self.block_size}
        return Config.model_validate(data)


def varying_fields(cands: list[Candidate]) -> tuple[str, ...]:
    """Which of the optional label parts differ between the candidates (the rest go without saying)."""
    out = []
    for name, get in (("max_batch_size", lambda c: c.max_batch_size),
                      ("max_num_batched_tokens", lambda c: c.max_num_batched_tokens),
                      ("block_size", lambda c: c.block_size), ("dtype", lambda c: (c.weight_dtype, c.kv_dtype))):
        if len({get(c) for c in cands}) > 1:
            out.append(name)
    return tuple(out)


def _pow2_upto(n: int) -> tuple[int, ...]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return tuple(out)


def defaults(plan: PlanConfig, available_schedulers: tuple[str, ...] | None = None) -> dict[str, tuple]:
    """Each dimension's values: the user's list, else a default sensible for the base scenario."""
    base, space = plan.base, plan.space
    sch = base.scheduler
    max_tp = base.hardware.gpus_per_node  # NOTE: TP stays inside a node (NVLink); PP may span nodes
    if plan.max_gpus is not None:
        max_tp = min(max_tp, plan.max_gpus)
    default_scheds = [sch.kind] + [k for k in ("sarathi",) if k != sch.kind]
    if available_schedulers is not None:
        default_scheds = [k for k in default_scheds if k in available_schedulers] or [sch.kind]
    return {
        "gpus": space.gpus or (base.hardware.gpu,),
        "tp": space.tp or _pow2_upto(max_tp),
        "pp": space.pp or (base.parallel.pp,),
        "schedulers": space.schedulers or tuple(default_scheds),
        "max_batch_size": space.max_batch_size or (sch.max_batch_size,),
        "max_num_batched_tokens": space.max_num_batched_tokens or (sch.max_num_batched_tokens,),
        "chunk_size": space.chunk_size or (getattr(sch, "chunk_size", None) or 512,),
        "block_size": space.block_size or (base.kv_cache.block_size,),
        "weight_dtype": space.weight_dtype or (base.quant.weights,),
        "kv_dtype": space.kv_dtype or (base.quant.kv,),
    }


def enumerate_candidates(plan: PlanConfig, available_schedulers: tuple[str, ...] | None = None) -> list[Candidate]:
    """Cartesian product of the dimensions, in a fixed order, without duplicates."""
    d = defaults(plan, available_schedulers)
    out: dict[Candidate, None] = {}
    for gpu, tp, pp, sched, mbs, mbt, chunk, blk, wdt, kdt in itertools.product(
            d["gpus"], d["tp"], d["pp"], d["schedulers"], d["max_batch_size"], d["max_num_batched_tokens"],
            d["chunk_size"], d["block_size"], d["weight_dtype"], d["kv_dtype"]):
        chunked = sched in CHUNKED_SCHEDULERS
        out[Candidate(gpu, tp, pp, sched, mbs, mbt, chunk if chunked else None, blk, wdt, kdt)] = None
    return list(out)
