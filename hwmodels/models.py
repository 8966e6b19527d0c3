"""LLM architecture specs: a catalog of published models and an importer for Hugging Face `config.json`.

Parameter count, weight bytes and KV bytes per token are derived from the shapes (nanoGPT-style
formulas next to the code); tests check them against the published sizes within 1 %.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwmodels.config import ModelConfig
from hwmodels.dtypes import QUANT_SCALE_OVERHEAD_BYTES, dtype_bytes
from hwmodels.errors import UserError, format_validation_error


class ModelSpec(BaseModel):
    """Shapes of a decoder-only transformer (dense or MoE). Counts are per model, not per GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    family: str = "llama"
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1, description="= num_heads: MHA; 1: MQA; in between: GQA")
    head_dim: int = Field(ge=1)
    ffn_kind: Literal["gated", "mlp"] = "gated"  # gated: SwiGLU (gate, up, down); mlp: (up, down)
    intermediate_size: int = Field(ge=1, description="dense FFN size")
    vocab_size: int = Field(ge=1)
    tied_embeddings: bool = False
    num_experts: int = Field(default=0, ge=0, description="0 or 1: dense")
    top_k: int = Field(default=0, ge=0, description="experts per token (MoE)")
    moe_intermediate_size: int = Field(default=0, ge=0, description="FFN size of one expert (MoE)")
    sliding_window: int = Field(default=0, ge=0, description="0: full attention")
    max_position: int = Field(default=4096, ge=1)
    pos_encoding: Literal["rope", "learned", "alibi", "none"] = "rope"
    num_pos_embeddings: int = Field(default=0, ge=0, description="rows of a learned position table")
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    qkv_bias: bool = False
    linear_bias: bool = False  # every linear (qkv, o, ffn) has a bias (gpt2, gpt_neox, opt)
    activation: str = "silu"
    published_params: float | None = Field(default=None, description="parameter count the authors state")
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.is_moe:
            if not 1 <= self.top_k <= self.num_experts:
                raise ValueError(f"top_k = {self.top_k}: must be in 1..num_experts ({self.num_experts})")
            if self.moe_intermediate_size < 1:
                raise ValueError("moe_intermediate_size must be >= 1 for an MoE model")
        return self

    # ---- derived shapes ------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attn_kind(self) -> str:
        return "MHA" if self.num_kv_heads == self.num_heads else ("MQA" if self.num_kv_heads == 1 else "GQA")

    def ffn_params(self, size: int) -> int:
        """One FFN (or one expert): gated = gate+up+down = 3·h·I; mlp = 2·h·I (+ biases)."""
        h = self.hidden_size
        if self.ffn_kind == "gated":
            return 3 * h * size + (2 * size + h if self.linear_bias else 0)
        return 2 * h * size + (size + h if self.linear_bias else 0)

    def attn_params(self) -> int:
        """q, k, v, o projections: h·(q + 2kv) + q·h (+ biases)."""
        h = self.hidden_size
        p = h * (self.q_size + 2 * self.kv_size) + self.q_size * h
        if self.qkv_bias or self.linear_bias:
            p += self.q_size + 2 * self.kv_size
        if self.linear_bias:
            p += h
        return p

    def norm_params(self) -> int:
        return self.hidden_size * (2 if self.norm == "layernorm" else 1)

    def layer_linear_params(self, active: bool = False) -> int:
        """Linear-layer weights of one transformer layer (what weight quantization applies to)."""
        p = self.attn_params()
        if self.is_moe:
            n = self.top_k if active else self.num_experts
            p += n * self.ffn_params(self.moe_intermediate_size) + self.hidden_size * self.num_experts  # + router
        else:
            p += self.ffn_params(self.intermediate_size)
        return p

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size + self.num_pos_embeddings * self.hidden_size

    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    def num_params(self) -> int:
        """Total parameters: embeddings + L·(attention + FFN/experts + 2 norms) + final norm + LM head."""
        per_layer = self.layer_linear_params() + 2 * self.norm_params()
        return self.embedding_params() + self.num_layers * per_layer + self.norm_params() + self.lm_head_params()

    def num_active_params(self) -> int:
        """Parameters touched per token (MoE: top_k experts instead of all)."""
        per_layer = self.layer_linear_params(active=True) + 2 * self.norm_params()
        return self.embedding_params() + self.num_layers * per_layer + self.norm_params() + self.lm_head_params()

    def weight_bytes(self, dtype: str, other_dtype: str = "bf16") -> float:
        """Bytes of all weights when transformer linears are stored as `dtype`. Embeddings, LM head and norms
        stay at `other_dtype` if `dtype` is narrower (as GPTQ/AWQ/fp8 checkpoints in vLLM keep them)."""
        b = dtype_bytes(dtype)
        other = max(b, dtype_bytes(other_dtype))  # non-linear weights never narrower than other_dtype
        linear = self.num_layers * self.layer_linear_params()
        rest = self.num_params() - linear
        return linear * (b + (QUANT_SCALE_OVERHEAD_BYTES if dtype == "int4" else 0.0)) + rest * other

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """KV-cache bytes one token occupies over all layers: L · 2 (K and V) · kv_heads · head_dim · bytes."""
        return self.num_layers * 2 * self.num_kv_heads * self.head_dim * dtype_bytes(kv_dtype)


# ---- catalog ------------------------------------------------------------------------------------

def _llama(name: str, layers: int, h: int, heads: int, kv: int, inter: int, vocab: int, max_pos: int,
           params: float, source: str, **kw: Any) -> ModelSpec:
    return ModelSpec(name=name, num_layers=layers, hidden_size=h, num_heads=heads, num_kv_heads=kv,
                     head_dim=h // heads, intermediate_size=inter, vocab_size=vocab, max_position=max_pos,
                     published_params=params, source=source, **kw)


_HF = "Hugging Face config.json of "
_MODELS: list[ModelSpec] = [
    _llama("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, 6.74e9,
           _HF + "meta-llama/Llama-2-7b-hf; params: Touvron et al. 2023 (Llama 2), safetensors total 6,738,415,616"),
    _llama("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, 13.016e9,
           _HF + "meta-llama/Llama-2-13b-hf; params: safetensors total 13,015,864,320"),
    _llama("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, 68.977e9,
           _HF + "meta-llama/Llama-2-70b-hf; params: safetensors total 68,976,648,192"),
    _llama("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, 8.03e9,
           _HF + "meta-llama/Meta-Llama-3-8B; params: model card (8.03B)"),
    _llama("llama-3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, 70.55e9,
           _HF + "meta-llama/Meta-Llama-3-70B; params: model card (70.6B)"),
    _llama("llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072, 8.03e9,
           _HF + "meta-llama/Llama-3.1-8B; params: model card (8.03B)"),
    _llama("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256, 131072, 70.55e9,
           _HF + "meta-llama/Llama-3.1-70B; params: model card (70.6B)"),
    _llama("llama-3.1-405b", 126, 16384, 128, 8, 53248, 128256, 131072, 405.85e9,
           _HF + "meta-llama/Llama-3.1-405B; params: model card (405B; safetensors 405.85B)"),
    _llama("mistral-7b", 32, 4096, 32, 8, 14336, 32000, 32768, 7.24e9,
           _HF + "mistralai/Mistral-7B-v0.1 (sliding_window 4096); params: Jiang et al. 2023 (7.3B), "
           "safetensors 7,241,732,096", family="mistral", sliding_window=4096),
    ModelSpec(name="mixtral-8x7b", family="mixtral", num_layers=32, hidden_size=4096, num_heads=32, num_kv_heads=8,
              head_dim=128, intermediate_size=14336, vocab_size=32000, num_experts=8, top_k=2,
              moe_intermediate_size=14336, max_position=32768, published_params=46.70e9,
              source=_HF + "mistralai/Mixtral-8x7B-v0.1; params: Jiang et al. 2024 (47B total, 13B active), "
              "safetensors 46,702,792,704"),
    _llama("qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064, 32768, 7.61e9,
           _HF + "Qwen/Qwen2.5-7B; params: model card (7.61B)", family="qwen2", qkv_bias=True),
    _llama("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064, 32768, 72.7e9,
           _HF + "Qwen/Qwen2.5-72B; params: model card (72.7B)", family="qwen2", qkv_bias=True),
]
MODELS: dict[str, ModelSpec] = {m.name: m for m in _MODELS}


def get_model(name: str) -> ModelSpec:
    m = MODELS.get(name.lower())
    if m is None:
        raise UserError(f"model.name = {name!r}: unknown model; allowed: {', '.join(MODELS)} "
                        "(or point model.hf_config at a Hugging Face config.json / model directory)")
    return m


def list_models() -> list[ModelSpec]:
    return list(MODELS.values())


# ---- Hugging Face import ------------------------------------------------------------------------

HF_FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "gpt2", "gpt_neox", "opt")


def read_hf_config(path_or_dict: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The parsed `config.json` (a file, a model directory, or a dict), where it came from, a default name."""
    if isinstance(path_or_dict, dict):
        return path_or_dict, "<dict>", str(path_or_dict.get("_name_or_path", "") or "hf-model")
    p = Path(path_or_dict)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise UserError(f"model.hf_config = {str(path_or_dict)!r}: no config.json found there")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{p}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a JSON object")
    return data, str(p), p.parent.name or "hf-model"


def from_hf_config(path_or_dict: str | Path | dict[str, Any], name: str | None = None) -> ModelSpec:
    """A ModelSpec from a Hugging Face `config.json` (file, model directory, or the parsed dict)."""
    cfg, where, default_name = read_hf_config(path_or_dict)
    mt = cfg.get("model_type")
    if mt not in HF_FAMILIES:
        raise UserError(f"{where}: model_type = {mt!r}: not supported; allowed: {', '.join(HF_FAMILIES)}")

    def need(*keys: str) -> Any:
        for k in keys:
            if k in cfg and cfg[k] is not None:
                v = cfg[k]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise UserError(f"{where}: {k} = {v!r}: must be a positive integer")
                return v
        raise UserError(f"{where}: missing {' or '.join(keys)} (needed for model_type {mt!r})")

    kw: dict[str, Any] = {"name": name or default_name, "family": mt, "source": f"Hugging Face config {where}"}
    if mt in ("llama", "mistral", "mixtral", "qwen2"):
        h, heads = need("hidden_size"), need("num_attention_heads")
        kw.update(num_layers=need("num_hidden_layers"), hidden_size=h, num_heads=heads,
                  num_kv_heads=cfg.get("num_key_value_heads") or heads,
                  intermediate_size=need("intermediate_size"), vocab_size=need("vocab_size"),
                  tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                  max_position=cfg.get("max_position_embeddings") or 4096, pos_encoding="rope", norm="rmsnorm",
                  activation=cfg.get("hidden_act", "silu"), ffn_kind="gated",
                  qkv_bias=bool(cfg.get("attention_bias", mt == "qwen2")))
        hd = cfg.get("head_dim") or None
        if hd is None:
            if h % heads:
                raise UserError(f"{where}: hidden_size ({h}) is not a multiple of num_attention_heads ({heads}) "
                                "and no head_dim is given")
            hd = h // heads
        kw["head_dim"] = hd
        sw = cfg.get("sliding_window")
        if mt == "qwen2" and not cfg.get("use_sliding_window", False):
            sw = None
        kw["sliding_window"] = int(sw or 0)
        if mt == "mixtral":
            kw.update(num_experts=need("num_local_experts"), top_k=need("num_experts_per_tok"),
                      moe_intermediate_size=kw["intermediate_size"])
    elif mt == "gpt2":
        h, heads = need("n_embd", "hidden_size"), need("n_head", "num_attention_heads")
        if h % heads:
            raise UserError(f"{where}: n_embd ({h}) is not a multiple of n_head ({heads})")
        n_pos = need("n_positions", "max_position_embeddings")
        kw.update(num_layers=need("n_layer", "num_hidden_layers"), hidden_size=h, num_heads=heads, num_kv_heads=heads,
                  head_dim=h // heads, ffn_kind="mlp", intermediate_size=cfg.get("n_inner") or 4 * h,
                  vocab_size=need("vocab_size"), tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
                  max_position=n_pos, pos_encoding="learned", num_pos_embeddings=n_pos, norm="layernorm",
                  linear_bias=True, activation=cfg.get("activation_function", "gelu_new"))
    elif mt == "gpt_neox":
        h, heads = need("hidden_size"), need("num_attention_heads")
        if h % heads:
            raise UserError(f"{where}: hidden_size ({h}) is not a multiple of num_attention_heads ({heads})")
        kw.update(num_layers=need("num_hidden_layers"), hidden_size=h, num_heads=heads, num_kv_heads=heads,
                  head_dim=h // heads, ffn_kind="mlp", intermediate_size=need("intermediate_size"),
                  vocab_size=need("vocab_size"), tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                  max_position=cfg.get("max_position_embeddings") or 2048, pos_encoding="rope", norm="layernorm",
                  linear_bias=bool(cfg.get("attention_bias", True)), activation=cfg.get("hidden_act", "gelu"))
    else:  # opt
        h, heads = need("hidden_size"), need("num_attention_heads")
        if h % heads:
            raise UserError(f"{where}: hidden_size ({h}) is not a multiple of num_attention_heads ({heads})")
        proj = cfg.get("word_embed_proj_dim", h)
        if proj != h:
            raise UserError(f"{where}: word_embed_proj_dim = {proj!r} != hidden_size ({h}): OPT input/output "
                            "projections are not supported")
        max_pos = need("max_position_embeddings")
        kw.update(num_layers=need("num_hidden_layers"), hidden_size=h, num_heads=heads, num_kv_heads=heads,
                  head_dim=h // heads, ffn_kind="mlp", intermediate_size=need("ffn_dim"),
                  vocab_size=need("vocab_size"), tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
                  max_position=max_pos, pos_encoding="learned", num_pos_embeddings=max_pos + 2,  # OPT offset of 2
                  norm="layernorm", linear_bias=bool(cfg.get("enable_bias", True)),
                  activation=cfg.get("activation_function", "relu"))
    try:
        return ModelSpec(**kw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, where)) from None


def resolve_model(cfg: ModelConfig) -> ModelSpec:
    """The ModelSpec a ModelConfig names: its hf_config if set, else the catalog entry."""
    if cfg.hf_config:
        # model.name labels the import unless it is a catalog name (e.g. the default left in a dumped config):
        # then the model directory's name is used.
        return from_hf_config(cfg.hf_config, name=None if cfg.name.lower() in MODELS else cfg.name)
    return get_model(cfg.name)
