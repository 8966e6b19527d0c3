"""Per-operator FLOPs and bytes of one forward pass on one GPU of a replica (TP/PP/EP-sharded).

Formulas follow the code they describe (vLLM's Llama/Mixtral layers): a GEMM of m tokens by a
k x n weight costs 2·m·k·n FLOPs and moves k·n weight bytes + m·(k+n) activation bytes; attention
costs 4·head_dim per query-key pair and head (QKᵀ and PV), and reads every cached K and V entry.
Counts are per GPU: heads, FFN columns and vocab are divided by TP, experts by EP.

NOTE (placement): the embedding runs on the first pipeline stage, the final norm, LM head and
sampling on the last; layers are split evenly. The LM head only runs on the sampled (last) token of
each sequence. Norms, RoPE and residual adds are replicated on every TP rank.
NOTE (attention): prefill and decode tokens of one batch run as one fused varlen kernel (vLLM v1
FlashAttention), priced as one roofline op over all query-key pairs and KV reads (`attention_op`);
the breakdown lists its prefill and decode parts (`attention_ops`) with their own FLOPs and bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hwmodels.config import ParallelConfig, QuantConfig
from hwmodels.dtypes import QUANT_SCALE_OVERHEAD_BYTES, dtype_bytes
from hwmodels.layout import kv_heads_per_gpu
from hwmodels.models import ModelSpec
from hwmodels.shapes import BatchShape

# Weight-only kernels (GPTQ/AWQ via Marlin, Frantar et al. 2024) dequantise each weight in registers once
# per M-tile of tokens: ~4 integer/FP ops per element (unpack, subtract zero, scale, convert).
DEQUANT_OPS_PER_WEIGHT = 4
DEQUANT_TILE_TOKENS = 64  # Marlin's M-tile (thread block covers 16..64 rows)
# Sampling (softmax, top-p/top-k sort, multinomial) touches each fp32 logit ~4 times (vLLM sampler):
SAMPLING_PASSES = 4
SAMPLING_FLOPS_PER_LOGIT = 10


@dataclass(frozen=True, slots=True)
class Op:
    """One operator per GPU and call; `count` calls per pass of the stage it belongs to.

    placement: "layer" (every layer of every stage), "first" (first stage), "last" (last stage).
    comm: for collectives, (kind, message bytes per GPU, group size, scope) with scope "tp" or "pp".
    """

    name: str
    kind: str
    flops: float = 0.0
    bytes: float = 0.0
    count: int = 1
    compute_dtype: str = "bf16"
    placement: str = "layer"
    dequant_ops: float = 0.0
    comm: tuple[str, float, int, str] | None = None


@dataclass(frozen=True, slots=True)
class Formats:
    """How a QuantConfig executes: element sizes and the tensor-core format GEMMs run at."""

    act_bytes: float
    weight_bytes: float  # per element of a transformer linear weight, incl. group scales
    other_weight_bytes: float  # embeddings, LM head, norms, router
    kv_bytes: float
    gemm_dtype: str  # peak-FLOP/s entry GEMMs use
    attn_dtype: str
    weight_only: bool  # weights dequantised to the activation dtype inside the GEMM

    @classmethod
    def of(cls, quant: QuantConfig, native_dtypes: frozenset[str] | None = None) -> "Formats":
        """`native_dtypes`: formats the GPU's tensor cores run (GPUSpec.peak_flops_per_s keys); None = all."""
        w = quant.weights
        act = dtype_bytes(quant.dtype)
        wb = dtype_bytes(w) + (QUANT_SCALE_OVERHEAD_BYTES if w == "int4" else 0.0)
        # int4 or GPTQ/AWQ: weight-only (W4A16 / W8A16); fp8/int8 with no method: W8A8 on tensor cores, unless the
        # GPU lacks that format (fp8 on Ampere): then weight-only, as vLLM's FP8 Marlin kernel does.
        weight_only = w == "int4" or quant.weight_method != "none" or (
            native_dtypes is not None and dtype_bytes(w) < act and w not in native_dtypes)
        gemm = quant.dtype if weight_only or dtype_bytes(w) >= act else w
        return cls(act_bytes=act, weight_bytes=wb, other_weight_bytes=max(act, dtype_bytes(w)),
                   kv_bytes=dtype_bytes(quant.kv), gemm_dtype=gemm, attn_dtype=quant.dtype,
                   weight_only=weight_only)


def gemm_op(name: str, m: float, k: float, n: float, f: Formats, count: int, kind: str = "gemm",
          weight_bytes: float | None = None, placement: str = "layer", weight_elems: float | None = None) -> Op:
    """m tokens x (k x n) weight: 2mkn FLOPs; weight + input + output bytes."""
    wb = f.weight_bytes if weight_bytes is None else weight_bytes
    welems = k * n if weight_elems is None else weight_elems
    deq = welems * DEQUANT_OPS_PER_WEIGHT * math.ceil(m / DEQUANT_TILE_TOKENS) if f.weight_only and m > 0 else 0.0
    return Op(name, kind, flops=2.0 * m * k * n, bytes=welems * wb + m * (k + n) * f.act_bytes, count=count,
              compute_dtype=f.gemm_dtype, placement=placement, dequant_ops=deq)


def _coll(name: str, kind: str, nbytes: float, n: int, scope: str, count: int, placement: str = "layer") -> Op:
    """A collective; `bytes` is the message size per GPU (nccl-tests' size), priced by the alpha-beta model."""
    return Op(name, "collective", bytes=nbytes, count=count, placement=placement, comm=(kind, nbytes, n, scope))


def expected_distinct(num_experts: int, top_k: int, num_tokens: int) -> float:
    """Expected experts touched by `num_tokens` tokens each routed to top_k of num_experts uniformly."""
    if num_tokens <= 0:
        return 0.0
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** num_tokens)


def token_ops(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig, num_tokens: int,
              num_logits: int = 0, native_dtypes: frozenset[str] | None = None) -> list[Op]:
    """Every operator whose cost depends only on the token counts (all but attention): per-token ops,
    then `logit_ops` for the sampled rows (pass num_logits=0 to leave those out)."""
    f = Formats.of(quant, native_dtypes)
    tp, pp, ep = parallel.tp, parallel.pp, parallel.ep
    T = float(num_tokens)
    L = model.num_layers // pp
    h, hd = model.hidden_size, model.head_dim
    q_loc = model.num_heads // tp * hd
    kv_loc = kv_heads_per_gpu(model, tp) * hd
    ab = f.act_bytes
    norm_w = model.norm_params() * f.other_weight_bytes
    ops: list[Op] = []

    def norm(name: str, count: int, placement: str = "layer") -> Op:
        # RMSNorm/LayerNorm: read x (+ residual), write x and residual; ~5 FLOPs per element.
        return Op(name, "elementwise", flops=5 * T * h, bytes=4 * T * h * ab + norm_w, count=count,
                  compute_dtype="fp32", placement=placement)

    # ---- first stage: embedding (vocab-parallel over TP, then all-reduce) --------------------
    emb_bytes = 2 * T * h * ab * (2 if model.pos_encoding == "learned" else 1)
    ops.append(Op("embedding", "elementwise", bytes=emb_bytes, count=1, placement="first"))
    if tp > 1:
        ops.append(_coll("embedding_allreduce", "allreduce", T * h * ab, tp, "tp", 1, "first"))

    # ---- every layer ----------------------------------------------------------------------------
    ops.append(norm("input_norm", L))
    ops.append(gemm_op("qkv_proj", T, h, q_loc + 2 * kv_loc, f, L))
    if model.pos_encoding == "rope":
        ops.append(Op("rope", "elementwise", flops=3 * T * (q_loc + kv_loc),
                      bytes=2 * T * (q_loc + kv_loc) * ab, count=L, compute_dtype="fp32"))
    ops.append(gemm_op("o_proj", T, q_loc, h, f, L))
    if tp > 1:
        ops.append(_coll("attn_allreduce", "allreduce", T * h * ab, tp, "tp", L))
    ops.append(norm("post_attn_norm", L))
    if model.is_moe:
        E, k = model.num_experts, model.top_k
        ops.append(gemm_op("router", T, h, E, f, L, kind="moe", weight_bytes=f.other_weight_bytes))
        # Router softmax + top-k: a few passes over T·E fp32 scores (negligible; kept for completeness).
        ops.append(Op("router_topk", "elementwise", flops=4 * T * E, bytes=3 * T * E * 4, count=L,
                      compute_dtype="fp32"))
        if ep > 1:
            ops.append(_coll("moe_dispatch_alltoall", "alltoall", T * k * h * ab, ep, "tp", L))
        i_loc = model.moe_intermediate_size * ep // tp
        assigned = T * k / ep  # token-expert pairs each EP group computes (balanced routing)
        touched = expected_distinct(E, k, num_tokens) / ep  # experts whose weights this GPU reads
        n_up = (2 if model.ffn_kind == "gated" else 1) * i_loc
        ops.append(gemm_op("experts_up", assigned, h, n_up, f, L, kind="moe", weight_elems=touched * h * n_up))
        ops.append(Op("experts_act", "elementwise", flops=4 * assigned * i_loc,
                      bytes=(n_up + i_loc) * assigned * ab, count=L, compute_dtype="fp32"))
        ops.append(gemm_op("experts_down", assigned, i_loc, h, f, L, kind="moe", weight_elems=touched * i_loc * h))
        if ep > 1:
            ops.append(_coll("moe_combine_alltoall", "alltoall", T * k * h * ab, ep, "tp", L))
        if tp // ep > 1:
            ops.append(_coll("mlp_allreduce", "allreduce", T * h * ab, tp // ep, "tp", L))
    else:
        i_loc = model.intermediate_size // tp
        n_up = (2 if model.ffn_kind == "gated" else 1) * i_loc
        ops.append(gemm_op("mlp_up", T, h, n_up, f, L))
        ops.append(Op("mlp_act", "elementwise", flops=4 * T * i_loc, bytes=(n_up + i_loc) * T * ab, count=L,
                      compute_dtype="fp32"))
        ops.append(gemm_op("mlp_down", T, i_loc, h, f, L))
        if tp > 1:
            ops.append(_coll("mlp_allreduce", "allreduce", T * h * ab, tp, "tp", L))

    ops.append(norm("final_norm", 1, placement="last"))
    if pp > 1:
        # vLLM sends hidden states and the residual (IntermediateTensors) to the next stage.
        ops.append(_coll("pp_send_recv", "p2p", 2 * T * h * ab, 2, "pp", 1, "p2p"))
    ops += logit_ops(model, parallel, quant, num_logits, native_dtypes)
    return ops


def logit_ops(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig, num_logits: int,
              native_dtypes: frozenset[str] | None = None) -> list[Op]:
    """Last stage, per sampled row: LM head (vocab-parallel over TP), logits all-gather, sampling."""
    f = Formats.of(quant, native_dtypes)
    tp, S, h = parallel.tp, float(num_logits), model.hidden_size
    ops: list[Op] = []
    v_loc = math.ceil(model.vocab_size / tp)
    if S > 0:
        lm = gemm_op("lm_head", S, h, v_loc, f, 1, weight_bytes=f.other_weight_bytes, placement="last")
        # fp32 logits written instead of activation-dtype ones.
        ops.append(Op(lm.name, lm.kind, lm.flops, lm.bytes + S * v_loc * (4 - f.act_bytes), 1, quant.dtype, "last"))
        if tp > 1:
            ops.append(_coll("logits_gather", "allgather", S * model.vocab_size * 4, tp, "tp", 1, "last"))
        ops.append(Op("sampling", "sampling", flops=SAMPLING_FLOPS_PER_LOGIT * S * model.vocab_size,
                      bytes=SAMPLING_PASSES * S * model.vocab_size * 4, count=1, compute_dtype="fp32",
                      placement="last"))
    return ops


def attention_coeffs(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig) -> tuple[float, float, float]:
    """Per layer per GPU: (FLOPs per query-key pair, bytes per KV entry read, bytes per new token).

    FLOPs: QKᵀ and PV each 2·head_dim per pair and head. Bytes: K and V of every entry read; per new token
    q read, output written, and its K, V written into the cache.
    """
    f = Formats.of(quant)
    heads = model.num_heads // parallel.tp
    kvh = kv_heads_per_gpu(model, parallel.tp)
    hd = model.head_dim
    flops_per_pair = 4.0 * hd * heads
    bytes_per_kv = 2.0 * kvh * hd * f.kv_bytes
    bytes_per_token = 2.0 * heads * hd * f.act_bytes + 2.0 * kvh * hd * f.kv_bytes
    return flops_per_pair, bytes_per_kv, bytes_per_token


def attention_op(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig, shape: BatchShape) -> Op:
    fp, bkv, bt = attention_coeffs(model, parallel, quant)
    return Op("attention", "attention", flops=fp * shape.attn_pairs,
              bytes=bkv * shape.kv_read_tokens + bt * shape.num_tokens,
              count=model.num_layers // parallel.pp, compute_dtype=quant.dtype)


def attention_ops(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig, shape: BatchShape) -> list[Op]:
    """The prefill and decode parts of `attention_op` (those present), for the breakdown."""
    fp, bkv, bt = attention_coeffs(model, parallel, quant)
    L = model.num_layers // parallel.pp
    dec_pairs, dec_kv = shape.decode_attn_pairs, shape.decode_kv_read_tokens
    parts = (("attention_prefill", shape.attn_pairs - dec_pairs, shape.kv_read_tokens - dec_kv,
              shape.num_prefill_tokens),
             ("attention_decode", dec_pairs, dec_kv, shape.num_decode_tokens))
    return [Op(name, "attention", flops=fp * pairs, bytes=bkv * kv + bt * tokens, count=L, compute_dtype=quant.dtype)
            for name, pairs, kv, tokens in parts if tokens > 0]


def ops_for(model: ModelSpec, parallel: ParallelConfig, quant: QuantConfig, shape: BatchShape,
            native_dtypes: frozenset[str] | None = None) -> list[Op]:
    """All operators of one forward pass of `shape` on one GPU (per call; multiply by `count`); attention is
    listed as its prefill and decode parts (priced together as one fused kernel, see `attention_op`)."""
    ops = token_ops(model, parallel, quant, shape.num_tokens, shape.num_logits, native_dtypes)
    i = next(j for j, op in enumerate(ops) if op.name == "o_proj")
    ops[i:i] = attention_ops(model, parallel, quant, shape)
    return ops
