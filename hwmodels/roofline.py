"""Roofline cost model: each operator takes launch + max(FLOPs / (eff_c·peak), bytes / (eff_m·HBM B/s));
collectives take the alpha-beta time over the link they cross (hwmodels.collectives).

Efficiency factors are the fraction of datasheet peak a real kernel reaches. GEMM and elementwise
factors and the per-kernel launch term were fitted on Vidur's op-level A100/H100 timings
(/work/shared/profiles/vidur/compute/*/mlp.csv) by benchmarks/fit_roofline_efficiency.py; other
accelerators use the mean of the two fits. Attention's compute factor comes from FlashAttention-2.
"""
from __future__ import annotations

from dataclasses import dataclass

from hwmodels.collectives import allgather_seconds, allreduce_seconds, alltoall_seconds, p2p_seconds
from hwmodels.config import HardwareConfig, ParallelConfig, QuantConfig
from hwmodels.cost import OpCost, StepCost
from hwmodels.hardware import GPUSpec, LinkSpec, inter_link, intra_link
from hwmodels.layout import check_layout
from hwmodels.models import ModelSpec
from hwmodels.ops import Op, attention_coeffs, attention_op, logit_ops, ops_for, token_ops
from hwmodels.shapes import BatchShape


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Fractions of peak reached, and fixed per-kernel GPU time (launch latency + tail), per accelerator class."""

    gemm_flops: float
    gemm_mem: float
    gemm_fixed_s: float
    elem_mem: float
    elem_fixed_s: float
    attn_flops: float = 0.5  # FlashAttention-2 fwd: 50-73 % of A100 peak (Dao 2023, Fig. 5); causal, varlen -> 0.5
    source: str = ""


# Fitted by `python benchmarks/fit_roofline_efficiency.py` on Vidur's op-level timings
# /work/shared/profiles/vidur/compute/{a100,h100}/*/*/mlp.csv (fp16; GEMMs: attn_pre_proj, attn_post_proj,
# mlp_up_proj, mlp_down_proj; elementwise: layernorms, mlp_act, add), objective mean |log(pred/measured)| with
# each power-of-two token bucket weighted equally. Resulting GEMM error (median / p90 over rows):
# A100 5.9 % / 18.0 % (tokens <= 32: 3.3 % / 9.7 %), H100 9.0 % / 25.9 % (tokens <= 32: 3.9 % / 21.7 %);
# elementwise ops are poorly described by a roofline (median error ~26 %) but are < 5 % of a layer's time.
_FIT = "fitted: benchmarks/fit_roofline_efficiency.py on vidur compute/{gpu}/*/mlp.csv"
EFFICIENCY: dict[str, Efficiency] = {
    "a100": Efficiency(gemm_flops=0.705, gemm_mem=0.788, gemm_fixed_s=5.75e-6, elem_mem=0.493, elem_fixed_s=3.93e-6,
                       source=_FIT.format(gpu="a100")),
    "h100": Efficiency(gemm_flops=0.681, gemm_mem=0.895, gemm_fixed_s=5.36e-6, elem_mem=0.598, elem_fixed_s=3.75e-6,
                       source=_FIT.format(gpu="h100")),
}
_A, _H = EFFICIENCY["a100"], EFFICIENCY["h100"]
_DEFAULT_EFF = Efficiency(
    gemm_flops=(_A.gemm_flops + _H.gemm_flops) / 2, gemm_mem=(_A.gemm_mem + _H.gemm_mem) / 2,
    gemm_fixed_s=(_A.gemm_fixed_s + _H.gemm_fixed_s) / 2, elem_mem=(_A.elem_mem + _H.elem_mem) / 2,
    elem_fixed_s=(_A.elem_fixed_s + _H.elem_fixed_s) / 2,
    source="mean of the A100 and H100 fits (no op-level data for this accelerator)")


def efficiency_for(gpu: GPUSpec) -> Efficiency:
    for key, eff in EFFICIENCY.items():
        if gpu.name.startswith(key):
            return eff
    if gpu.name.startswith("h200"):
        return EFFICIENCY["h100"]  # same GH100 die and clocks as H100 SXM; only HBM differs
    return _DEFAULT_EFF


class RooflineCostModel:
    """Prices a forward pass of one replica from datasheet peaks and fitted efficiencies. Pure and cached."""

    def __init__(self, model: ModelSpec, gpu: GPUSpec, parallel: ParallelConfig, quant: QuantConfig,
                 hardware: HardwareConfig = HardwareConfig()):
        check_layout(model, parallel)
        self.model, self.gpu, self.parallel, self.quant, self.hardware = model, gpu, parallel, quant, hardware
        self.eff = efficiency_for(gpu)
        self.native_dtypes = frozenset(gpu.peak_flops_per_s)
        self.tp_link: LinkSpec = (intra_link(gpu, hardware) if parallel.tp <= hardware.gpus_per_node
                                  else inter_link(hardware))
        self.pp_link: LinkSpec = (intra_link(gpu, hardware) if parallel.tp * parallel.pp <= hardware.gpus_per_node
                                  else inter_link(hardware))
        self.layers_per_stage = model.num_layers // parallel.pp
        # Attention: FlashAttention-2's compute fraction; its K/V streaming is priced at the GEMM bandwidth fraction
        # (the Vidur files hold no attention timings). NOTE: short-context decode attention likely reaches less.
        fp, bkv, bt = attention_coeffs(model, parallel, quant)
        peak_attn = gpu.peak_flops(quant.dtype) * self.eff.attn_flops
        bw_attn = gpu.hbm_bytes_per_s * self.eff.gemm_mem
        self._attn_pair_s = fp / peak_attn
        self._attn_kv_s = bkv / bw_attn
        self._attn_tok_s = bt / bw_attn
        self._attn_fixed_s = self.eff.gemm_fixed_s
        self._attn_layers = self.layers_per_stage
        self._pp1 = parallel.pp == 1
        self._tok_cache: dict[int, tuple[float, float, float, float]] = {}
        self._logit_cache: dict[int, float] = {}

    # ---- pricing one op -----------------------------------------------------------------------
    def op_seconds(self, op: Op) -> float:
        """Seconds of one call of `op` on this GPU (collectives: over the link of their group)."""
        if op.comm is not None:
            kind, nbytes, n, scope = op.comm
            link = self.tp_link if scope == "tp" else self.pp_link
            if kind == "allreduce":
                return allreduce_seconds(nbytes, n, link)
            if kind == "allgather":
                return allgather_seconds(nbytes, n, link)
            if kind == "alltoall":
                return alltoall_seconds(nbytes, n, link)
            return p2p_seconds(nbytes, link)
        eff = self.eff
        if op.kind in ("gemm", "moe"):
            ec, em, fixed = eff.gemm_flops, eff.gemm_mem, eff.gemm_fixed_s
        elif op.kind == "attention":
            ec, em, fixed = eff.attn_flops, eff.gemm_mem, eff.gemm_fixed_s
        else:  # elementwise, sampling: CUDA-core math, bandwidth-bound
            ec, em, fixed = eff.gemm_flops, eff.elem_mem, eff.elem_fixed_s
        if op.flops <= 0 and op.bytes <= 0:
            return 0.0
        t_c = op.flops / (self.gpu.peak_flops(op.compute_dtype) * ec)
        if op.dequant_ops:
            t_c += op.dequant_ops / (self.gpu.peak_flops("fp32") * ec)
        t_m = op.bytes / (self.gpu.hbm_bytes_per_s * em)
        return fixed + (t_c if t_c > t_m else t_m)

    # ---- token- and logit-dependent parts, cached separately ------------------------------------
    def _token_part(self, num_tokens: int) -> tuple[float, float, float, float]:
        """(every-layer seconds of one stage, first-stage extras, last-stage extras, p2p) for num_tokens."""
        parts = {"layer": 0.0, "first": 0.0, "last": 0.0, "p2p": 0.0}
        for op in token_ops(self.model, self.parallel, self.quant, num_tokens, 0, self.native_dtypes):
            parts[op.placement] += self.op_seconds(op) * op.count
        return parts["layer"], parts["first"], parts["last"], parts["p2p"]

    def _logit_part(self, num_logits: int) -> float:
        return sum(self.op_seconds(op) * op.count
                   for op in logit_ops(self.model, self.parallel, self.quant, num_logits, self.native_dtypes))

    # ---- CostModel protocol ---------------------------------------------------------------------
    def stage_seconds(self, shape: BatchShape) -> float:
        """Seconds the slowest pipeline stage is busy with this micro-batch (whole model when pp=1).

        NOTE: with pp > 1 the slowest stage is the first (embedding) or the last (LM head, sampling).
        """
        T = shape.num_tokens
        if T <= 0:
            return 0.0
        v = self._tok_cache.get(T)
        if v is None:
            v = self._tok_cache[T] = self._token_part(T)
        S = shape.num_logits
        lg = self._logit_cache.get(S)
        if lg is None:
            lg = self._logit_cache[S] = self._logit_part(S)
        a = self._attn_pair_s * shape.attn_pairs
        b = self._attn_kv_s * shape.kv_read_tokens + self._attn_tok_s * T
        last = v[2] + lg
        extra = v[1] + last if self._pp1 else (v[1] if v[1] > last else last)
        return v[0] + extra + self._attn_layers * (self._attn_fixed_s + (a if a > b else b))

    def p2p_seconds(self, shape: BatchShape) -> float:
        if self._pp1 or shape.num_tokens <= 0:
            return 0.0
        v = self._tok_cache.get(shape.num_tokens)
        if v is None:
            v = self._tok_cache[shape.num_tokens] = self._token_part(shape.num_tokens)
        return v[3]

    def step_cost(self, shape: BatchShape) -> StepCost:
        """Per-operator breakdown; total_s is one pass through all pp stages including the p2p hops."""
        if shape.num_tokens <= 0:
            return StepCost(total_s=0.0, stage_s=0.0, ops=())
        pp = self.parallel.pp
        ops: list[OpCost] = []
        total = 0.0
        ops_list = ops_for(self.model, self.parallel, self.quant, shape, self.native_dtypes)
        # Attention parts share one fused kernel: its time, split in proportion to each part's standalone time.
        fused = self.op_seconds(attention_op(self.model, self.parallel, self.quant, shape))
        parts = {op.name: self.op_seconds(op) for op in ops_list if op.kind == "attention"}
        norm = sum(parts.values()) or 1.0
        fitted = self.eff.source.startswith("fit")
        for op in ops_list:
            # count over the whole pass: layer ops run on every stage, p2p on pp-1 hops.
            n = op.count * (pp if op.placement == "layer" else (pp - 1 if op.placement == "p2p" else 1))
            if op.kind == "attention":
                s = fused * parts[op.name] / norm * n
                src = "roofline (fused attention kernel, split by part)"
            else:
                s = self.op_seconds(op) * n
                src = "alpha-beta" if op.comm else ("roofline (fitted efficiency)" if fitted
                                                    else "roofline (mean efficiency)")
            total += s
            ops.append(OpCost(op.name, op.kind, s, flops=op.flops * n, bytes=op.bytes * n, count=n, source=src))
        return StepCost(total_s=total, stage_s=self.stage_seconds(shape), ops=tuple(ops))
