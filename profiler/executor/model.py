"""A Llama-architecture decoder (RMSNorm, RoPE, GQA attention, SwiGLU MLP) with random weights.

Two forwards over the same weights: `forward_dense` (one sequence, no cache — the reference) and
`forward_packed` (one packed varlen batch of prefill chunks and decode tokens over a paged KV cache —
what the executor serves). Shapes are in comments: T = tokens in the pass, S = sequences,
H / Hkv = query / KV heads, D = head dim, E = hidden size, I = MLP size, V = vocab.

FLOPs of one pass (nanoGPT-style, per token, one layer): 2·E·(H+2·Hkv)·D (QKV) + 2·H·D·E (O)
+ 2·E·2I (gate+up) + 2·I·E (down); attention 4·H·D per query-key pair; LM head 2·E·V per sampled row.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from hwmodels.errors import UserError
from hwmodels.models import read_hf_config
from profiler.executor.attention import AttentionBatch, paged_attention, paged_attention_triton


@dataclass(frozen=True)
class LlamaDims:
    """Model dimensions (Hugging Face LlamaConfig names, trimmed)."""

    hidden_size: int = 256
    intermediate_size: int = 688
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 2048
    max_position: int = 2048
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_params(self) -> int:
        e, d, i = self.hidden_size, self.head_dim, self.intermediate_size
        layer = e * (self.num_heads + 2 * self.num_kv_heads) * d + self.num_heads * d * e + 3 * e * i + 2 * e
        return self.num_layers * layer + 2 * self.vocab_size * e + e

    @classmethod
    def from_spec(cls, spec, rope_theta: float = 10000.0, rms_norm_eps: float = 1e-5) -> "LlamaDims":
        """From an hwmodels ModelSpec; UserError naming what a Llama decoder cannot run (MoE, biases, ...)."""
        bad = []
        if spec.is_moe:
            bad.append(f"num_experts={spec.num_experts} (MoE)")
        if spec.ffn_kind != "gated":
            bad.append(f"ffn_kind={spec.ffn_kind!r} (needs 'gated', SwiGLU)")
        if spec.pos_encoding != "rope":
            bad.append(f"pos_encoding={spec.pos_encoding!r} (needs 'rope')")
        if spec.norm != "rmsnorm":
            bad.append(f"norm={spec.norm!r} (needs 'rmsnorm')")
        if spec.sliding_window:
            bad.append(f"sliding_window={spec.sliding_window} (needs 0)")
        if spec.qkv_bias or spec.linear_bias:
            bad.append("linear biases (needs none)")
        if spec.head_dim * spec.num_heads != spec.hidden_size:
            bad.append(f"head_dim={spec.head_dim} x num_heads={spec.num_heads} != hidden_size={spec.hidden_size}")
        if bad:
            raise UserError(f"model {spec.name!r}: the executor runs Llama-architecture decoders only; this one has "
                            + "; ".join(bad))
        return cls(hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size, num_layers=spec.num_layers,
                   num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads, vocab_size=spec.vocab_size,
                   max_position=spec.max_position, rms_norm_eps=rms_norm_eps, rope_theta=rope_theta)

    @classmethod
    def from_hf_config(cls, path: str | Path) -> "LlamaDims":
        """Read a Hugging Face Llama `config.json` (a file, or a directory holding one)."""
        raw, p, _ = read_hf_config(path)
        need = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]
        missing = [k for k in need if k not in raw]
        if missing:
            raise UserError(f"{p}: missing {', '.join(missing)} (a Llama config.json needs {', '.join(need)})")
        dims = cls(
            hidden_size=int(raw["hidden_size"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            num_kv_heads=int(raw.get("num_key_value_heads", raw["num_attention_heads"])),
            vocab_size=int(raw["vocab_size"]),
            max_position=int(raw.get("max_position_embeddings", 2048)),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            rope_theta=float(raw.get("rope_theta", 10000.0)),
        )
        if dims.hidden_size % dims.num_heads or dims.num_heads % dims.num_kv_heads:
            raise UserError(f"{p}: hidden_size={dims.hidden_size}, num_attention_heads={dims.num_heads}, "
                            f"num_key_value_heads={dims.num_kv_heads}: heads must divide hidden_size and "
                            "KV heads must divide heads")
        return dims


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x²) + eps) · w."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(dims: LlamaDims, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [max_position, D] of rotary embeddings (Su et al. 2021), HF `rotate_half` layout."""
    d = dims.head_dim
    inv_freq = 1.0 / (dims.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(dims.max_position, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype=dtype, device=device), emb.sin().to(dtype=dtype, device=device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [T, heads, D]; cos/sin [T, D] already gathered at the tokens' positions."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class LlamaModel:
    """Random-weight Llama decoder. Weights are plain tensors (no autograd, no nn.Module overhead).

    backend "torch": torch ops (MKL/oneDNN on CPU); "triton": the profiler's Triton kernels (GEMM,
    RMSNorm, SwiGLU, RoPE, varlen flash-attention, paged decode attention) — the default on CUDA; on
    CPU it needs TRITON_INTERPRET=1 and is only for tests. `forward_dense` always uses torch.
    """

    def __init__(self, dims: LlamaDims, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", backend: str = "auto") -> None:
        self.dims = dims
        self.dtype = dtype
        self.device = torch.device(device)
        if backend == "auto":
            backend = "triton" if self.device.type == "cuda" else "torch"
        if backend not in ("torch", "triton"):
            raise ValueError(f"backend={backend!r}: allowed 'auto', 'torch', 'triton'")
        self.backend = backend
        g = torch.Generator().manual_seed(seed)
        e, d, i = dims.hidden_size, dims.head_dim, dims.intermediate_size
        qkv_out = (dims.num_heads + 2 * dims.num_kv_heads) * d

        def w(out_f: int, in_f: int) -> torch.Tensor:
            # std 1/sqrt(fan_in) keeps activations O(1) through the random stack, so greedy argmax is
            # decided by clear margins rather than float noise.
            t = torch.randn(out_f, in_f, generator=g, dtype=torch.float32) / math.sqrt(in_f)
            return t.to(dtype=dtype, device=self.device)

        def norm_w() -> torch.Tensor:
            return (1.0 + 0.1 * torch.randn(e, generator=g)).to(dtype=dtype, device=self.device)

        self.embed = (torch.randn(dims.vocab_size, e, generator=g)).to(dtype=dtype, device=self.device)
        self.layers = []
        for _ in range(dims.num_layers):
            self.layers.append({
                "attn_norm": norm_w(),
                "qkv": w(qkv_out, e),  # fused [Wq; Wk; Wv]
                "o": w(e, dims.num_heads * d),
                "mlp_norm": norm_w(),
                "gate_up": w(2 * i, e),  # fused [W_gate; W_up]
                "down": w(e, i),
            })
        self.final_norm = norm_w()
        self.lm_head = w(dims.vocab_size, e)
        self.cos, self.sin = rope_tables(dims, dtype, self.device)
        # Served GEMMs are x[T, K] @ W_t[K, N] (what the profiler times): keep transposed weights.
        for layer in self.layers:
            for name in ("qkv", "o", "gate_up", "down"):
                layer[name + "_t"] = layer[name].t().contiguous()
        self.lm_head_t = self.lm_head.t().contiguous()

    # -- pieces shared by both forwards -----------------------------------------------------------
    def _qkv(self, layer: dict, x: torch.Tensor, positions: torch.Tensor):
        """x [T, E] -> q [T, H, D], k/v [T, Hkv, D] with RoPE applied to q and k."""
        dims = self.dims
        d, h, hkv = dims.head_dim, dims.num_heads, dims.num_kv_heads
        qkv = F.linear(rms_norm(x, layer["attn_norm"], dims.rms_norm_eps), layer["qkv"])
        q = qkv[:, : h * d].view(-1, h, d)
        k = qkv[:, h * d: (h + hkv) * d].view(-1, hkv, d)
        v = qkv[:, (h + hkv) * d:].view(-1, hkv, d)
        cos, sin = self.cos[positions], self.sin[positions]
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _mlp(self, layer: dict, x: torch.Tensor) -> torch.Tensor:
        """SwiGLU (Shazeer 2020): down(silu(gate·x) ⊙ up·x)."""
        gu = F.linear(rms_norm(x, layer["mlp_norm"], self.dims.rms_norm_eps), layer["gate_up"])
        gate, up = gu.chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, layer["down"])

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """h [R, E] -> logits [R, V] (float32)."""
        return F.linear(rms_norm(h, self.final_norm, self.dims.rms_norm_eps), self.lm_head).float()

    # -- reference: one sequence, dense causal attention, no cache ------------------------------
    @torch.inference_mode()
    def forward_dense(self, token_ids: torch.Tensor) -> torch.Tensor:
        """token_ids [L] -> logits [L, V] for every position (the textbook forward)."""
        dims = self.dims
        ids = token_ids.to(self.device)
        positions = torch.arange(ids.numel(), device=self.device)
        h = self.embed[ids]
        for layer in self.layers:
            q, k, v = self._qkv(layer, h, positions)
            # [1, H, L, D]; repeat KV heads for GQA explicitly (no enable_gqa) to stay a plain reference.
            rep = dims.num_heads // dims.num_kv_heads
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            o = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                               v.transpose(0, 1)[None], is_causal=True)
            h = h + F.linear(o[0].transpose(0, 1).reshape(ids.numel(), -1), layer["o"])
            h = h + self._mlp(layer, h)
        return self.logits(h)

    # -- served: packed varlen batch over the paged KV cache ------------------------------------
    @torch.inference_mode()
    def forward_packed(self, token_ids: torch.Tensor, batch: AttentionBatch, kv_cache,
                       sample_rows: torch.Tensor, kernels: str | None = None,
                       record: list | None = None, clock=time.perf_counter) -> torch.Tensor:
        """token_ids [T] of all sequences back to back -> logits [len(sample_rows), V] (float32).

        Writes each token's K/V into the paged cache at `batch.slot_mapping`, then attends every
        query to its sequence's cached context plus the causal part of its own chunk. Every operator
        is a function `llmsim profile` times: GEMM x @ W_t, rmsnorm, rope (q and k heads in one call),
        varlen prefill / paged decode attention, swiglu. kernels="null" swaps those for stand-ins that
        only allocate their outputs, leaving the glue around them (embedding, residual adds, KV writes,
        views) — to measure that glue as its own operator. `record`, if a list, receives one
        (op, shape key, seconds) per kernel call, timed in place with `clock` (in-situ op profiling).
        """
        matmul, rmsnorm, swiglu, rope_qk, attention = self._kernels(kernels or self.backend, batch.positions)
        if record is not None:
            matmul, rmsnorm, swiglu, rope_qk, attention = _timed(record, clock, matmul, rmsnorm, swiglu, rope_qk,
                                                                 attention)
        dims = self.dims
        d, nh, hkv, eps, inter = dims.head_dim, dims.num_heads, dims.num_kv_heads, dims.rms_norm_eps, \
            dims.intermediate_size
        h = self.embed[token_ids]
        for li, layer in enumerate(self.layers):
            qkv = matmul(rmsnorm(h, layer["attn_norm"], eps), layer["qkv_t"])  # [T, (H+2Hkv)·D]
            qk = rope_qk(qkv[:, : (nh + hkv) * d].reshape(-1, nh + hkv, d))
            q, k = qk[:, :nh], qk[:, nh:]
            v = qkv[:, (nh + hkv) * d:].reshape(-1, hkv, d)
            kv_cache.write(li, batch.slot_mapping, k, v)
            o = attention(q, k, v, kv_cache.k[li], kv_cache.v[li], batch)  # [T, H, D]
            h = h + matmul(o.reshape(o.shape[0], -1), layer["o_t"])
            gu = matmul(rmsnorm(h, layer["mlp_norm"], eps), layer["gate_up_t"])  # [T, 2I]
            h = h + matmul(swiglu(gu[:, :inter], gu[:, inter:]), layer["down_t"])
        # The final norm runs over every token and the LM head over the sampled rows, as vLLM's Llama does
        # (model.norm on all hidden states, then the logits processor selects the rows) and as the cost model
        # prices it (`hwmodels.ops.token_ops` final_norm at num_tokens, `logit_ops` at num_logits).
        x = rmsnorm(h, self.final_norm, eps)[sample_rows]
        return matmul(x, self.lm_head_t).float()

    def _kernels(self, which: str, positions: torch.Tensor):
        """(matmul, rmsnorm, swiglu, rope over [T, heads, D], attention) of one kernel set."""
        if which == "triton":
            from profiler.kernels.elementwise import rmsnorm, rope, swiglu
            from profiler.kernels.gemm import matmul

            theta = self.dims.rope_theta
            return matmul, rmsnorm, swiglu, (lambda x: rope(x, positions, theta)), paged_attention_triton
        if which == "null":
            self.cos[positions], self.sin[positions]  # the per-pass gather the torch set does
            return (lambda a, b: a.new_empty(a.shape[0], b.shape[1]), lambda x, w, eps: x,
                    lambda g, u: g, lambda x: x, lambda q, k, v, kc, vc, b: q)
        if which != "torch":
            raise ValueError(f"kernels={which!r}: allowed 'torch', 'triton', 'null'")
        from profiler.kernels.elementwise import rmsnorm_ref, swiglu_ref
        from profiler.kernels.gemm import matmul_ref

        half = self.dims.head_dim // 2
        c, s = self.cos[positions, :half][:, None, :], self.sin[positions, :half][:, None, :]

        def rope_qk(x: torch.Tensor) -> torch.Tensor:  # cos/sin gathered once per pass: the sweep's torch rope
            x1, x2 = x[..., :half], x[..., half:]
            return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)

        return matmul_ref, rmsnorm_ref, swiglu_ref, rope_qk, paged_attention


def _timed(record: list, clock, matmul, rmsnorm, swiglu, rope_qk, attention):
    """Wrap a kernel set so each call appends (op, key, seconds) to `record` (`clock` around the call;
    on CUDA the caller must synchronise, so this is for CPU)."""

    def mm(a, b):
        t = clock()
        out = matmul(a, b)
        record.append(("gemm", (a.shape[0], b.shape[1], b.shape[0]), clock() - t))  # (m, n, k)
        return out

    def norm(x, w, eps):
        t = clock()
        out = rmsnorm(x, w, eps)
        record.append(("rmsnorm", (x.shape[0], x.shape[1]), clock() - t))
        return out

    def act(g, u):
        t = clock()
        out = swiglu(g, u)
        record.append(("swiglu", (g.shape[0], g.shape[1]), clock() - t))
        return out

    def rope(x):
        t = clock()
        out = rope_qk(x)
        record.append(("rope", (x.shape[0], x.shape[1], x.shape[2]), clock() - t))
        return out

    def attn(q, k, v, kc, vc, batch):
        t = clock()
        out = attention(q, k, v, kc, vc, batch)
        record.append(("attention", None, clock() - t))
        return out

    return mm, norm, act, rope, attn
