"""Which parallel layouts a model admits, and how it shards (Megatron-LM TP, even PP split, EP over TP ranks).

TP shards attention heads and FFN columns (Shoeybi et al. 2019). KV heads are split over TP ranks
when tp <= num_kv_heads, and replicated otherwise so that each rank holds >= 1 (as vLLM does for
GQA/MQA). PP splits the layers evenly. EP (MoE only) places num_experts/ep experts on each of ep
groups of TP ranks; inside a group each expert is TP-sharded over tp/ep ranks, so ep must divide tp.
"""
from __future__ import annotations

from hwmodels.config import ParallelConfig
from hwmodels.errors import UserError
from hwmodels.models import ModelSpec


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def check_layout(model: ModelSpec, parallel: ParallelConfig) -> None:
    """Raise UserError if `parallel` cannot shard `model`; the message names the field and what would work."""
    tp, pp, ep = parallel.tp, parallel.pp, parallel.ep
    if model.num_heads % tp:
        raise UserError(f"parallel.tp = {tp}: must divide the number of attention heads of {model.name} "
                        f"({model.num_heads}); allowed: {_divisors(model.num_heads)}")
    if tp > model.num_kv_heads and tp % model.num_kv_heads:
        raise UserError(f"parallel.tp = {tp}: exceeds num_kv_heads ({model.num_kv_heads}) of {model.name} and is "
                        "not a multiple of it, so KV heads cannot be replicated evenly")
    if tp < model.num_kv_heads and model.num_kv_heads % tp:
        raise UserError(f"parallel.tp = {tp}: must divide num_kv_heads ({model.num_kv_heads}) of {model.name}")
    if model.num_layers % pp:
        raise UserError(f"parallel.pp = {pp}: must divide the number of layers of {model.name} "
                        f"({model.num_layers}); allowed: {_divisors(model.num_layers)}")
    if ep > 1:
        if not model.is_moe:
            raise UserError(f"parallel.ep = {ep}: {model.name} is a dense model; expert parallelism needs MoE (ep=1)")
        if model.num_experts % ep:
            raise UserError(f"parallel.ep = {ep}: must divide num_experts ({model.num_experts}) of {model.name}; "
                            f"allowed: {_divisors(model.num_experts)}")
        if tp % ep:
            raise UserError(f"parallel.ep = {ep}: must divide parallel.tp ({tp}); experts are spread over the "
                            "TP ranks of a replica")
    if model.is_moe and (model.moe_intermediate_size * ep) % tp:
        raise UserError(f"parallel.tp = {tp}: the expert FFN size {model.moe_intermediate_size} of {model.name} "
                        f"does not split over tp/ep = {tp // ep} ranks")
    if not model.is_moe and model.intermediate_size % tp:
        raise UserError(f"parallel.tp = {tp}: must divide intermediate_size ({model.intermediate_size}) "
                        f"of {model.name}")


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each TP rank stores: split when tp <= kv heads, else one replicated head per rank."""
    return max(1, model.num_kv_heads // tp)
