"""`llmsim cost`: the per-operator breakdown of one forward pass of a batch on one replica."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from hwmodels.build import build_cost_model
from hwmodels.cost import StepCost
from hwmodels.errors import UserError
from hwmodels.hardware import resolve_gpu
from hwmodels.memory import plan_memory
from hwmodels.models import ModelSpec, resolve_model
from hwmodels.shapes import BatchShape
from simulator.config import Config, load_config, merge, validate_config

_ITEM = re.compile(r"^(prefill|decode):(?:(\d+)x)?(\d+)(?:@(\d+))?$")
BATCH_HELP = ("comma-separated sequences: prefill:TOKENS, prefill:NxTOKENS, prefill:TOKENS@CTX (a chunk on top of "
              "CTX cached tokens), decode:CTX, decode:NxCTX (N sequences, 1 new token each, CTX cached)")


def parse_batch(spec: str) -> list[tuple[str, int, int, int]]:
    """`decode:8x1024,prefill:2048` -> [(kind, num_seqs, new_tokens, context_tokens), ...]."""
    items = []
    for raw in spec.split(","):
        item = raw.strip()
        m = _ITEM.match(item)
        if not m:
            raise UserError(f"--batch item {item!r}: not understood; expected {BATCH_HELP}")
        kind, n, a, ctx = m.group(1), int(m.group(2) or 1), int(m.group(3)), m.group(4)
        if n < 1 or a < 1:
            raise UserError(f"--batch item {item!r}: counts must be >= 1")
        if kind == "decode":
            if ctx is not None:
                raise UserError(f"--batch item {item!r}: decode takes decode:[Nx]CTX (no @)")
            items.append((kind, n, 1, a))
        else:
            items.append((kind, n, a, int(ctx or 0)))
    return items


def build_shape(items: list[tuple[str, int, int, int]], model: ModelSpec) -> BatchShape:
    shape = BatchShape()
    for kind, n, new, ctx in items:
        if new + ctx > model.max_position:
            raise UserError(f"--batch: {new + ctx} tokens exceed {model.name}'s max positions ({model.max_position})")
        for _ in range(n):
            shape.add(new, ctx, decode=kind == "decode", samples=True, window=model.sliding_window)
    return shape


def build_config(config: Optional[Path], flags: dict[str, Any]) -> Config:
    """Config file (or defaults) overlaid with the flags that were given."""
    base = load_config(config).model_dump(mode="python") if config else Config().model_dump(mode="python")
    over: dict[str, Any] = {}
    model = flags.get("model")
    if model is not None:
        # A path to a config.json or a model directory imports it; anything else is a catalog name.
        if Path(model).exists():
            over["model"] = {"name": Path(model).resolve().name if Path(model).is_dir()
                             else Path(model).resolve().parent.name, "hf_config": str(model)}
        else:
            over["model"] = {"name": model, "hf_config": None}
    gpu = flags.get("gpu")
    if gpu is not None:
        # A path to a YAML file is a user accelerator; anything else a catalog name (which drops a file's gpu_file).
        hw = over.setdefault("hardware", {})
        if Path(gpu).suffix in (".yaml", ".yml") or Path(gpu).is_file():
            hw["gpu_file"] = str(gpu)
        else:
            hw.update(gpu=gpu, gpu_file=None)
    for flag, (section, key) in {"gpu_file": ("hardware", "gpu_file"),
                                 "tp": ("parallel", "tp"), "pp": ("parallel", "pp"), "ep": ("parallel", "ep"),
                                 "dtype": ("quant", "dtype"), "weight_dtype": ("quant", "weight_dtype"),
                                 "kv_dtype": ("quant", "kv_dtype"),
                                 "quant_method": ("quant", "weight_method")}.items():
        if flags.get(flag) is not None:
            v = flags[flag]
            over.setdefault(section, {})[key] = str(v) if isinstance(v, Path) else v
    if flags.get("profile") is not None:
        over["cost_model"] = {"kind": "profiled", "profile": str(flags["profile"])}
    return validate_config(merge(base, over), "command line")


def cost_report(cfg: Config, batch: str) -> dict[str, Any]:
    """Everything `llmsim cost` prints, as plain data."""
    model = resolve_model(cfg.model)
    gpu = resolve_gpu(cfg.hardware)
    shape = build_shape(parse_batch(batch), model)
    cm = build_cost_model(model, gpu, cfg.parallel, cfg.quant, cfg.hardware, cfg.cost_model)
    step: StepCost = cm.step_cost(shape)
    kv = cfg.kv_cache
    try:
        mem = plan_memory(model, gpu, cfg.parallel, cfg.quant,
                          gpu_memory_utilization=getattr(kv, "gpu_memory_utilization", 0.9),
                          block_size=getattr(kv, "block_size", 16),
                          max_num_batched_tokens=getattr(cfg.scheduler, "max_num_batched_tokens", None) or 8192)
        memory: dict[str, Any] | None = {k: getattr(mem, k) for k in mem.__dataclass_fields__}
        memory_error = None
    except UserError as exc:
        memory, memory_error = None, str(exc)
    weight_bytes = model.weight_bytes(cfg.quant.weights, cfg.quant.dtype)
    return {
        "model": model.name, "gpu": gpu.name,
        "parallel": {"tp": cfg.parallel.tp, "pp": cfg.parallel.pp, "ep": cfg.parallel.ep},
        "quant": cfg.quant.model_dump(), "cost_model": cfg.cost_model.kind,
        "batch": {"spec": batch, "num_seqs": shape.num_seqs, "num_tokens": shape.num_tokens,
                  "num_logits": shape.num_logits, "attn_pairs": shape.attn_pairs,
                  "kv_read_tokens": shape.kv_read_tokens},
        "total_s": step.total_s, "stage_s": step.stage_s,
        "weight_read_bound_s": weight_bytes / (cfg.parallel.tp * gpu.hbm_bytes_per_s),  # stages run in sequence
        "ops": [{"name": o.name, "kind": o.kind, "seconds": o.seconds, "flops": o.flops, "bytes": o.bytes,
                 "count": o.count, "source": o.source} for o in step.ops],
        "memory": memory, "memory_error": memory_error,
    }


def _print(report: dict[str, Any]) -> None:
    console = Console(width=160)
    p = report["parallel"]
    q = report["quant"]
    console.print(f"[bold]{report['model']}[/] on [bold]{report['gpu']}[/]  tp={p['tp']} pp={p['pp']} ep={p['ep']}  "
                  f"dtype={q['dtype']} weights={q['weight_dtype'] or q['dtype']} kv={q['kv_dtype'] or q['dtype']}  "
                  f"cost model: {report['cost_model']}")
    b = report["batch"]
    console.print(f"batch {b['spec']}: {b['num_seqs']} sequences, {b['num_tokens']} new tokens, "
                  f"{b['kv_read_tokens']} KV entries read")
    t = Table(title="Operator breakdown (one forward pass, all layers, per GPU)")
    for col in ("op", "kind", "calls", "time ms", "%", "GFLOP", "GB moved", "source"):
        t.add_column(col, justify="left" if col in ("op", "kind", "source") else "right")
    total = report["total_s"] or 1.0
    for o in report["ops"]:
        t.add_row(o["name"], o["kind"], str(o["count"]), f"{o['seconds'] * 1e3:.3f}",
                  f"{100 * o['seconds'] / total:.1f}", f"{o['flops'] / 1e9:.2f}", f"{o['bytes'] / 1e9:.3f}",
                  o["source"])
    console.print(t)
    console.print(f"total step time: [bold]{report['total_s'] * 1e3:.3f} ms[/]  (slowest stage "
                  f"{report['stage_s'] * 1e3:.3f} ms; weight-read bound {report['weight_read_bound_s'] * 1e3:.3f} ms)")
    m = report["memory"]
    if m:
        console.print(f"memory per GPU: weights {m['weights_bytes_per_gpu'] / 1e9:.1f} GB, activations "
                      f"{m['activation_bytes_per_gpu'] / 1e9:.2f} GB, KV cache {m['kv_bytes_per_gpu'] / 1e9:.1f} GB "
                      f"= {m['num_kv_blocks']} blocks per replica")
    else:
        console.print(f"[yellow]memory: {report['memory_error']}[/]")


def register(app: typer.Typer) -> None:
    @app.command()
    def cost(
        batch: str = typer.Option(..., "--batch", help=BATCH_HELP),
        model: Optional[str] = typer.Option(None, "--model", help="catalog name, HF config.json or model directory"),
        gpu: Optional[str] = typer.Option(None, "--gpu", help="catalog accelerator (`llmsim catalog gpus`) or a YAML file"),
        gpu_file: Optional[Path] = typer.Option(None, "--gpu-file", help="YAML file describing an accelerator"),
        tp: Optional[int] = typer.Option(None, "--tp", help="tensor-parallel GPUs"),
        pp: Optional[int] = typer.Option(None, "--pp", help="pipeline stages"),
        ep: Optional[int] = typer.Option(None, "--ep", help="expert-parallel groups (MoE)"),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="activation/compute dtype: fp32 fp16 bf16 fp8"),
        weight_dtype: Optional[str] = typer.Option(None, "--weight-dtype", help="fp16 bf16 fp8 int8 int4"),
        quant_method: Optional[str] = typer.Option(None, "--quant-method", help="none | gptq | awq (weight-only)"),
        kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype", help="KV-cache dtype: fp16 bf16 fp8 int8"),
        profile: Optional[Path] = typer.Option(None, "--profile", help="profile table: use the profiled cost model"),
        config: Optional[Path] = typer.Option(None, "--config", help="root Config YAML/JSON; flags override it"),
        as_json: bool = typer.Option(False, "--json", help="print JSON: total_s, stage_s, ops[...]"),
    ) -> None:
        """Operator breakdown and total time of one forward pass of a batch on one replica."""
        cfg = build_config(config, dict(model=model, gpu=gpu, gpu_file=gpu_file, tp=tp, pp=pp, ep=ep, dtype=dtype,
                                        weight_dtype=weight_dtype, quant_method=quant_method, kv_dtype=kv_dtype,
                                        profile=profile))
        report = cost_report(cfg, batch)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            _print(report)
