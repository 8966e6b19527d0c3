"""GPU memory of one replica: weights, activation peak, and how many KV-cache blocks fit (vLLM-style).

vLLM sizes its KV cache as gpu_memory_utilization · HBM − weights − peak activations of a profile run
with max_num_batched_tokens tokens; every GPU of a replica holds its TP/PP shard of every block, so
the block count is per replica. The stage with the most weights (embedding or LM head) sets it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hwmodels.config import ParallelConfig, QuantConfig
from hwmodels.dtypes import dtype_bytes
from hwmodels.errors import UserError
from hwmodels.hardware import GPUSpec
from hwmodels.layout import check_layout, kv_heads_per_gpu
from hwmodels.models import ModelSpec
from hwmodels.ops import Formats

# vLLM's profile run samples at most max_num_seqs (default 256) sequences: fp32 logits of that many rows.
PROFILE_LOGIT_ROWS = 256


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU (of the fullest pipeline stage) and the KV blocks one replica can hold."""

    weights_bytes_per_gpu: float
    activation_bytes_per_gpu: float
    kv_bytes_per_block_per_gpu: float
    num_kv_blocks: int
    kv_bytes_per_gpu: float
    usable_bytes_per_gpu: float
    gpu_hbm_bytes: float

    @property
    def free_bytes_per_gpu(self) -> float:
        return self.usable_bytes_per_gpu - self.weights_bytes_per_gpu - self.activation_bytes_per_gpu


def weights_bytes_per_gpu(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig) -> float:
    """Weight bytes on one GPU of the fullest stage: its layers' TP shards + embedding and/or LM head shard."""
    f = Formats.of(quant)
    tp, pp = parallel.tp, parallel.pp
    h, hd = model.hidden_size, model.head_dim
    q_loc, kv_loc = model.num_heads // tp * hd, kv_heads_per_gpu(model, tp) * hd
    attn = h * (q_loc + 2 * kv_loc) + q_loc * h
    if model.qkv_bias or model.linear_bias:
        attn += q_loc + 2 * kv_loc
    if model.is_moe:
        ffn = model.num_experts * model.ffn_params(model.moe_intermediate_size) / tp
        other = h * model.num_experts  # router, replicated
    else:
        ffn = model.ffn_params(model.intermediate_size) / tp
        other = 0
    layer = (attn + ffn) * f.weight_bytes + (other + 2 * model.norm_params()) * f.other_weight_bytes
    vocab_shard = math.ceil(model.vocab_size / tp) * h * f.other_weight_bytes
    first = vocab_shard + model.num_pos_embeddings * h * f.other_weight_bytes
    # Last stage: LM head (a copy of the embedding when tied and pp > 1) + final norm.
    last = (vocab_shard if (not model.tied_embeddings or pp > 1) else 0.0) + model.norm_params() * f.other_weight_bytes
    layers = model.num_layers // pp * layer
    return layers + (first + last if pp == 1 else max(first, last))


def activation_bytes_per_gpu(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig,
                             max_num_batched_tokens: int) -> float:
    """Peak transient bytes of one layer at max_num_batched_tokens (hidden, residual, qkv, FFN in/out) + logits."""
    f = Formats.of(quant)
    tp = parallel.tp
    T = max_num_batched_tokens
    h, hd = model.hidden_size, model.head_dim
    qkv = (model.num_heads // tp + 2 * kv_heads_per_gpu(model, tp)) * hd
    gate = 2 if model.ffn_kind == "gated" else 1
    if model.is_moe:
        i_loc = model.moe_intermediate_size * parallel.ep // tp
        ffn = T * model.top_k / parallel.ep * (gate + 1) * i_loc + T * model.num_experts * 4 / f.act_bytes
    else:
        i_loc = model.intermediate_size // tp
        ffn = T * (gate + 1) * i_loc
    per_layer = (3 * T * h + T * qkv + ffn) * f.act_bytes
    logits = min(T, PROFILE_LOGIT_ROWS) * model.vocab_size * 4.0
    return per_layer + logits


def kv_bytes_per_block_per_gpu(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig,
                               block_size: int) -> float:
    """block_size tokens · (layers / pp) · K and V · (kv heads per GPU) · head_dim · kv bytes."""
    return (block_size * (model.num_layers // parallel.pp) * 2 * kv_heads_per_gpu(model, parallel.tp)
            * model.head_dim * dtype_bytes(quant.kv))


def plan_memory(model: ModelSpec, gpu: GPUSpec, parallel: ParallelConfig, quant: QuantConfig, *,
                gpu_memory_utilization: float = 0.9, block_size: int = 16,
                max_num_batched_tokens: int = 8192) -> MemoryPlan:
    """Weights, activations and KV blocks per replica; UserError (with the numbers) if nothing fits."""
    if not 0 < gpu_memory_utilization <= 1:
        raise UserError(f"gpu_memory_utilization = {gpu_memory_utilization}: must be in (0, 1]")
    if block_size < 1:
        raise UserError(f"block_size = {block_size}: must be >= 1")
    check_layout(model, parallel)
    usable = gpu.hbm_bytes * gpu_memory_utilization
    w = weights_bytes_per_gpu(model, parallel, quant)
    act = activation_bytes_per_gpu(model, parallel, quant, max_num_batched_tokens)
    per_block = kv_bytes_per_block_per_gpu(model, parallel, quant, block_size)
    kv = usable - w - act
    if kv < per_block:
        need = w + act + per_block
        hint = _hint(model, gpu, parallel, quant, usable, max_num_batched_tokens)
        raise UserError(
            f"{model.name} does not fit on {gpu.name} with tp={parallel.tp}, pp={parallel.pp}: per GPU it needs "
            f"{w / 1e9:.1f} GB weights ({quant.weights}) + {act / 1e9:.1f} GB activations + "
            f"{per_block / 1e6:.1f} MB for one KV block = {need / 1e9:.1f} GB, but only {usable / 1e9:.1f} GB "
            "is usable "
            f"({gpu.hbm_bytes / 1e9:.0f} GB x gpu_memory_utilization {gpu_memory_utilization}). {hint}")
    n = int(kv // per_block)
    return MemoryPlan(weights_bytes_per_gpu=w, activation_bytes_per_gpu=act, kv_bytes_per_block_per_gpu=per_block,
                      num_kv_blocks=n, kv_bytes_per_gpu=n * per_block, usable_bytes_per_gpu=usable,
                      gpu_hbm_bytes=gpu.hbm_bytes)


def _hint(model: ModelSpec, gpu: GPUSpec, parallel: ParallelConfig, quant: QuantConfig, usable: float,
          max_num_batched_tokens: int) -> str:
    """Suggest the smallest tp·pp (powers of two that divide the model) that would fit, and smaller dtypes."""
    layouts = sorted(((tp, pp) for tp in (1, 2, 4, 8, 16, 32, 64) for pp in (1, 2, 4, 8, 16)),
                     key=lambda x: (x[0] * x[1], x[1]))
    for tp, pp in layouts:
        if tp * pp <= parallel.tp * parallel.pp:
            continue
        cand = ParallelConfig(tp=tp, pp=pp, ep=parallel.ep if tp % parallel.ep == 0 else 1)
        try:
            check_layout(model, cand)
        except UserError:
            continue
        need = (weights_bytes_per_gpu(model, cand, quant)
                + activation_bytes_per_gpu(model, cand, quant, max_num_batched_tokens)
                + kv_bytes_per_block_per_gpu(model, cand, quant, 16))
        if need < usable:
            return (f"Try more GPUs per replica (e.g. tp={tp}, pp={pp}) or a smaller weight dtype "
                    "(quant.weight_dtype: fp8, int8 or int4).")
    return "Try a smaller weight dtype (quant.weight_dtype: fp8, int8 or int4) or an accelerator with more memory."
