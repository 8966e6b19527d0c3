"""`llmsim catalog` and `llmsim cost` through typer's CliRunner."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.cli import app
from hwmodels.hardware import get_gpu
from hwmodels.models import get_model

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def user_error(r) -> str:
    """A user mistake: exit code 2 and `error: ...` (no traceback); returns the message."""
    assert r.exit_code == 2, r.output
    try:
        text = r.stderr
    except ValueError:  # older click: stderr mixed into output
        text = r.output
    assert text.startswith("error: ") and "Traceback" not in text, text
    return text


def test_catalog_gpus_and_models_json():
    r = run("catalog", "gpus", "--json")
    assert r.exit_code == 0, r.output
    gpus = json.loads(r.output)
    assert {"a100-80gb", "h100-sxm", "mi300x"} <= {g["name"] for g in gpus}
    assert all("hbm_bytes_per_s" in g and "source" in g for g in gpus)
    r = run("catalog", "models", "--json")
    models = {m["name"]: m for m in json.loads(r.output)}
    assert models["llama-2-7b"]["num_params"] == 6_738_415_616
    assert models["mixtral-8x7b"]["num_active_params"] < models["mixtral-8x7b"]["num_params"]
    assert json.loads(run("catalog", "links", "--json").output)[0]["bandwidth_bytes_per_s"] > 0


def test_catalog_tables():
    r = run("catalog", "gpus")
    assert r.exit_code == 0 and "h100-sxm" in r.output and "989" in r.output
    r = run("catalog", "models")
    assert r.exit_code == 0 and "llama-3.1-405b" in r.output and "GQA" in r.output
    assert "gpus, models, links" in user_error(run("catalog", "tpus"))


def test_issue_acceptance_cost_json():
    """`llmsim cost --model llama-2-7b --gpu a100-80gb --batch decode:1x128 --json`: 1.0x-1.5x of weight read time."""
    r = run("cost", "--model", "llama-2-7b", "--gpu", "a100-80gb", "--batch", "decode:1x128", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    bound = get_model("llama-2-7b").weight_bytes("bf16") / get_gpu("a100-80gb").hbm_bytes_per_s
    assert 1.0 <= d["total_s"] / bound <= 1.5
    assert d["total_s"] == pytest.approx(sum(o["seconds"] for o in d["ops"]))
    for o in d["ops"]:
        assert set(o) >= {"name", "seconds", "flops", "bytes"}
    names = [o["name"] for o in d["ops"]]
    assert {"qkv_proj", "attention_decode", "mlp_up", "lm_head", "sampling"} <= set(names)
    assert d["memory"]["num_kv_blocks"] > 0


def test_cost_table_and_mixed_batch():
    r = run("cost", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "4", "--pp", "2", "--kv-dtype", "fp8",
            "--batch", "decode:8x1024, prefill:2048,prefill:512@1024")
    assert r.exit_code == 0, r.output
    for part in ("attn_allreduce", "pp_send_recv", "total step time", "KV cache"):
        assert part in r.output
    j = json.loads(run("cost", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "4", "--batch",
                       "decode:8x1024,prefill:2048", "--json").output)
    assert j["batch"]["num_seqs"] == 9 and j["batch"]["num_tokens"] == 8 + 2048


def test_cost_moe_ep_and_quant():
    r = run("cost", "--model", "mixtral-8x7b", "--gpu", "h100-sxm", "--tp", "2", "--ep", "2", "--weight-dtype", "int4",
            "--quant-method", "awq", "--batch", "decode:16x512", "--json")
    d = json.loads(r.output)
    assert any(o["name"] == "moe_dispatch_alltoall" for o in d["ops"])
    assert d["quant"]["weight_dtype"] == "int4"


def test_cost_from_config_file_and_hf_dir(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: qwen2.5-7b}\nhardware: {gpu: l40s}\nquant: {dtype: fp16}\n")
    d = json.loads(run("cost", "--config", str(cfg), "--batch", "prefill:1024", "--json").output)
    assert (d["model"], d["gpu"], d["quant"]["dtype"]) == ("qwen2.5-7b", "l40s", "fp16")
    d = json.loads(run("cost", "--config", str(cfg), "--gpu", "a10g", "--batch", "prefill:1024", "--json").output)
    assert d["gpu"] == "a10g"  # flags override the file
    mdir = tmp_path / "tiny-llama"
    mdir.mkdir()
    (mdir / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 512, "intermediate_size": 1536, "num_attention_heads": 8,
        "num_key_value_heads": 2, "num_hidden_layers": 4, "vocab_size": 32000, "max_position_embeddings": 2048}))
    d = json.loads(run("cost", "--model", str(mdir), "--gpu", "l4", "--batch", "decode:4x100", "--json").output)
    assert d["model"] == "tiny-llama" and d["total_s"] > 0


@pytest.mark.parametrize("args,match", [
    (("--batch", "decode:8y1024"), "--batch item 'decode:8y1024'"),
    (("--batch", "prefill:0"), ">= 1"),
    (("--batch", "decode:1x999999"), "max positions"),
    (("--batch", "decode:1x10", "--tp", "3"), "parallel.tp = 3"),
    (("--batch", "decode:1x10", "--dtype", "int4"), "quant.dtype"),
    (("--batch", "decode:1x10", "--gpu", "h300"), "unknown accelerator"),
])
def test_cost_user_errors(args, match):
    assert match in user_error(run("cost", "--model", "llama-2-7b", *args))


def test_cost_with_user_gpu_yaml(tmp_path):
    f = tmp_path / "acme.yaml"
    f.write_text("name: acme-1\npeak_flops_per_s: {bf16: 500.0e12}\nhbm_bytes: 64.0e9\nhbm_bytes_per_s: 2.0e12\n")
    for args in (("--gpu", str(f)), ("--gpu-file", str(f))):
        d = json.loads(run("cost", "--model", "llama-3-8b", *args, "--batch", "decode:1x64", "--json").output)
        assert d["gpu"] == "acme-1" and d["total_s"] > 16e9 / 2.0e12


def test_missing_profile_is_a_clear_error():
    r = run("cost", "--model", "llama-2-7b", "--gpu", "a100-80gb", "--batch", "decode:1x10",
            "--profile", "missing.parquet")
    msg = user_error(r)
    assert "missing.parquet" in msg and "llmsim profile" in msg


def test_memory_error_is_reported_not_fatal():
    d = json.loads(run("cost", "--model", "llama-3.1-70b", "--gpu", "a100-80gb", "--batch", "decode:1x10",
                       "--json").output)
    assert d["memory"] is None and "does not fit" in d["memory_error"]
