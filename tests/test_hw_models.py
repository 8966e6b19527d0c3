"""Model specs: parameter counts vs published sizes, KV bytes vs hand formulas, HF config import, errors."""
from __future__ import annotations

import json

import pytest

from hwmodels.config import ModelConfig
from hwmodels.errors import UserError
from hwmodels.models import ModelSpec, from_hf_config, get_model, list_models, resolve_model

# ---- real config.json shapes (trimmed to the keys that matter; values as published on the HF hub) ----------
LLAMA2_7B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 11008, "max_position_embeddings": 4096, "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
             "vocab_size": 32000, "hidden_act": "silu", "torch_dtype": "float16"}
LLAMA32_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "head_dim": 64,
              "max_position_embeddings": 131072, "num_attention_heads": 32, "num_hidden_layers": 16,
              "num_key_value_heads": 8, "tie_word_embeddings": True, "vocab_size": 128256, "rope_theta": 500000.0}
MISTRAL_7B = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
              "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
              "num_key_value_heads": 8, "sliding_window": 4096, "tie_word_embeddings": False, "vocab_size": 32000}
MIXTRAL_8X7B = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
                "max_position_embeddings": 32768, "num_attention_heads": 32, "num_experts_per_tok": 2,
                "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "sliding_window": None,
                "tie_word_embeddings": False, "vocab_size": 32000, "router_aux_loss_coef": 0.02}
QWEN25_7B = {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
             "max_position_embeddings": 131072, "max_window_layers": 28, "num_attention_heads": 28,
             "num_hidden_layers": 28, "num_key_value_heads": 4, "sliding_window": 131072, "use_sliding_window": False,
             "tie_word_embeddings": False, "vocab_size": 152064, "rope_theta": 1000000.0}
QWEN25_05B = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768,
              "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
              "tie_word_embeddings": True, "use_sliding_window": False, "vocab_size": 151936}
GPT2 = {"model_type": "gpt2", "activation_function": "gelu_new", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
        "n_layer": 12, "n_positions": 1024, "vocab_size": 50257}
PYTHIA_160M = {"model_type": "gpt_neox", "hidden_size": 768, "intermediate_size": 3072,
               "max_position_embeddings": 2048, "num_attention_heads": 12, "num_hidden_layers": 12,
               "rotary_pct": 0.25, "tie_word_embeddings": False, "use_parallel_residual": True, "vocab_size": 50304}
OPT_125M = {"model_type": "opt", "hidden_size": 768, "ffn_dim": 3072, "max_position_embeddings": 2048,
            "num_attention_heads": 12, "num_hidden_layers": 12, "vocab_size": 50272, "word_embed_proj_dim": 768,
            "do_layer_norm_before": True, "activation_function": "relu", "enable_bias": True}

# Exact parameter counts of the published checkpoints (sum of tensor sizes in their safetensors/bin files).
HF_CASES = [
    ("llama-2-7b", LLAMA2_7B, 6_738_415_616),
    ("llama-3.2-1b", LLAMA32_1B, 1_235_814_400),
    ("mistral-7b", MISTRAL_7B, 7_241_732_096),
    ("mixtral-8x7b", MIXTRAL_8X7B, 46_702_792_704),
    ("qwen2.5-7b", QWEN25_7B, 7_615_616_512),
    ("qwen2.5-0.5b", QWEN25_05B, 494_032_768),
    ("gpt2", GPT2, 124_439_808),
    ("pythia-160m", PYTHIA_160M, 162_322_944),
    ("opt-125m", OPT_125M, 125_239_296),
]


@pytest.mark.parametrize("model", list_models(), ids=lambda m: m.name)
def test_catalog_params_match_published_within_1pct(model):
    assert model.published_params, f"{model.name} has no published size to check"
    assert model.num_params() == pytest.approx(model.published_params, rel=0.01)


def test_catalog_has_required_models():
    names = {m.name for m in list_models()}
    for n in ("llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3.1-8b",
              "llama-3.1-70b", "llama-3.1-405b", "mistral-7b", "mixtral-8x7b", "qwen2.5-7b", "qwen2.5-72b"):
        assert n in names


def test_mixtral_active_params_match_published():
    # Jiang et al. 2024: "12.9B active parameters" of 46.7B.
    m = get_model("mixtral-8x7b")
    assert m.num_active_params() == pytest.approx(12.9e9, rel=0.01)
    assert m.num_params() > 3 * m.num_active_params()


def test_kv_bytes_per_token_hand_formulas():
    # MHA: Llama-2-7B, 32 layers x (K,V) x 32 heads x 128 x 2 bytes.
    assert get_model("llama-2-7b").kv_bytes_per_token("fp16") == 32 * 2 * 32 * 128 * 2 == 524_288
    # GQA: Llama-3-8B, 8 KV heads.
    assert get_model("llama-3-8b").kv_bytes_per_token("bf16") == 32 * 2 * 8 * 128 * 2 == 131_072
    assert get_model("llama-3-8b").kv_bytes_per_token("fp8") == 65_536
    # GQA with 4 KV heads of 128: Qwen2.5-7B, 28 layers.
    assert get_model("qwen2.5-7b").kv_bytes_per_token("bf16") == 28 * 2 * 4 * 128 * 2
    # MQA: a Falcon-7B-like shape (71 heads of 64, one KV head).
    mqa = ModelSpec(name="mqa", num_layers=32, hidden_size=4544, num_heads=71, num_kv_heads=1, head_dim=64,
                    intermediate_size=18176, vocab_size=65024, ffn_kind="mlp")
    assert mqa.attn_kind == "MQA"
    assert mqa.kv_bytes_per_token("bf16") == 32 * 2 * 1 * 64 * 2 == 8192


def test_weight_bytes_by_dtype():
    m = get_model("llama-3.1-8b")
    p = m.num_params()
    assert m.weight_bytes("bf16") == 2 * p
    assert m.weight_bytes("fp32") == 4 * p
    # fp8/int4: transformer linears shrink, embeddings and LM head stay bf16.
    emb = m.embedding_params() + m.lm_head_params()
    assert m.weight_bytes("fp8") == pytest.approx((p - emb) * 1 + emb * 2, rel=1e-3)
    assert m.weight_bytes("int4") < m.weight_bytes("int8") < m.weight_bytes("bf16")
    assert m.weight_bytes("int4") > (p - emb) * 0.5  # group scales cost extra bytes


@pytest.mark.parametrize("name,cfg,params", HF_CASES, ids=[c[0] for c in HF_CASES])
def test_hf_import_param_counts(name, cfg, params):
    m = from_hf_config(cfg, name=name)
    assert m.num_params() == params
    assert m.name == name


def test_hf_import_details():
    mistral = from_hf_config(MISTRAL_7B)
    assert mistral.sliding_window == 4096 and mistral.attn_kind == "GQA"
    mixtral = from_hf_config(MIXTRAL_8X7B)
    assert (mixtral.num_experts, mixtral.top_k, mixtral.sliding_window) == (8, 2, 0)
    qwen = from_hf_config(QWEN25_7B)
    assert qwen.qkv_bias and qwen.sliding_window == 0  # use_sliding_window: false
    assert from_hf_config(QWEN25_05B).tied_embeddings
    gpt2 = from_hf_config(GPT2)
    assert (gpt2.pos_encoding, gpt2.norm, gpt2.ffn_kind, gpt2.tied_embeddings) == ("learned", "layernorm", "mlp", True)
    assert from_hf_config(LLAMA32_1B).head_dim == 64
    assert from_hf_config(PYTHIA_160M).pos_encoding == "rope"


def test_hf_import_from_directory_and_resolve(tmp_path):
    d = tmp_path / "my-llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(LLAMA2_7B))
    m = from_hf_config(d)
    assert m.name == "my-llama" and m.num_params() == 6_738_415_616
    assert from_hf_config(d / "config.json").num_params() == m.num_params()
    r = resolve_model(ModelConfig(hf_config=str(d)))
    assert r.num_params() == m.num_params() and r.name == "my-llama"
    assert resolve_model(ModelConfig(name="llama-3.1-8b", hf_config=str(d))).name == "my-llama"
    assert resolve_model(ModelConfig(name="ours", hf_config=str(d))).name == "ours"
    assert resolve_model(ModelConfig(name="llama-2-7b")) == get_model("llama-2-7b")


@pytest.mark.parametrize("patch,expect", [
    ({"hidden_size": None}, "hidden_size"),
    ({"hidden_size": -4096}, "-4096"),
    ({"num_attention_heads": "32"}, "num_attention_heads"),
    ({"num_attention_heads": 31}, "not a multiple"),
    ({"num_key_value_heads": 5}, "num_kv_heads"),
    ({"model_type": "bert"}, "allowed: llama"),
])
def test_hf_import_bad_values_give_clear_errors(patch, expect):
    cfg = {**LLAMA2_7B, **patch}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(UserError, match=expect):
        from_hf_config(cfg)


def test_hf_import_file_errors(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        from_hf_config(tmp_path / "missing")
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama",\n "hidden_size": }')
    with pytest.raises(UserError, match=r"config.json:2:\d+: not valid JSON"):
        from_hf_config(bad)
    opt350 = {**OPT_125M, "hidden_size": 1024, "word_embed_proj_dim": 512, "num_attention_heads": 16}
    with pytest.raises(UserError, match="word_embed_proj_dim"):
        from_hf_config(opt350)
    with pytest.raises(UserError, match="num_local_experts"):
        from_hf_config({k: v for k, v in MIXTRAL_8X7B.items() if k != "num_local_experts"})


def test_unknown_catalog_model_lists_names():
    with pytest.raises(UserError, match="llama-2-7b"):
        get_model("llama-9")
