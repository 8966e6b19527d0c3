"""`llmsim simulate`: replay a workload through a cluster; rich summary or --json; parquet results."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from hwmodels.errors import UserError
from simulator.config import Config, load_config, merge, validate_config

SCHEDULER_KNOBS = {"chunk_size": ("sarathi", "splitfuse"), "preemption": ("vllm",)}


def parse_rate(text: str | None) -> float | None:
    """'12.5' -> 12.5 req/s; 'inf' -> all requests at t=0."""
    if text is None:
        return None
    try:
        rate = float(text)
    except ValueError:
        raise UserError(f"--rate = {text!r}: expected requests per second (a positive number) or 'inf'") from None
    if not rate > 0:
        raise UserError(f"--rate = {text!r}: must be > 0 (or 'inf' for all requests at t=0)")
    return rate


def build_config(config: Optional[Path] = None, **flags: Any) -> Config:
    """Config file (if any) overlaid with the flags that were given; flags map 1:1 onto config fields."""
    base = load_config(config).model_dump(mode="python") if config else Config().model_dump(mode="python")
    f = {k: v for k, v in flags.items() if v is not None}
    over: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        over.setdefault(section, {})[key] = value

    for flag, (section, key) in {"model": ("model", "name"), "hf_config": ("model", "hf_config"),
                                 "gpu": ("hardware", "gpu"), "gpu_file": ("hardware", "gpu_file"),
                                 "tp": ("parallel", "tp"), "pp": ("parallel", "pp"), "ep": ("parallel", "ep"),
                                 "replicas": ("parallel", "replicas"), "dtype": ("quant", "dtype"),
                                 "weight_dtype": ("quant", "weight_dtype"), "kv_dtype": ("quant", "kv_dtype"),
                                 "router": ("router", "kind"), "seed": ("simulation", "seed"),
                                 "max_model_len": ("simulation", "max_model_len"),
                                 "slo_ttft": ("slo", "ttft_s"), "slo_tpot": ("slo", "tpot_s"),
                                 "slo_e2e": ("slo", "e2e_s")}.items():
        if flag in f:
            put(section, key, f[flag])
    if "model" in f and "hf_config" not in f:
        put("model", "hf_config", None)

    # Scheduler: a new kind starts from that kind's defaults; knobs apply on top.
    sched = dict(base["scheduler"])
    if "scheduler" in f and f["scheduler"] != sched.get("kind"):
        sched = {"kind": f["scheduler"]}
    for flag, key in (("max_batch_size", "max_batch_size"), ("max_num_batched_tokens", "max_num_batched_tokens"),
                      ("chunk_size", "chunk_size"), ("preemption", "preemption")):
        if flag in f:
            kinds = SCHEDULER_KNOBS.get(key)
            if kinds and sched.get("kind") not in kinds:
                raise UserError(f"--{flag.replace('_', '-')} = {f[flag]!r}: applies to the "
                                f"{'/'.join(kinds)} scheduler(s), not {sched.get('kind')!r}")
            sched[key] = f[flag]
    over["scheduler"] = sched

    kv = dict(base["kv_cache"])
    if "kv_cache" in f and f["kv_cache"] != kv.get("kind"):
        kv = {"kind": f["kv_cache"], "block_size": kv.get("block_size", 16),
              "gpu_memory_utilization": kv.get("gpu_memory_utilization", 0.9)}
    for flag in ("block_size", "gpu_memory_utilization"):
        if flag in f:
            kv[flag] = f[flag]
    if f.get("prefix_caching"):
        if kv.get("kind") != "paged":
            raise UserError("--prefix-caching: needs the paged KV cache (--kv-cache paged)")
        kv["prefix_caching"] = True
    over["kv_cache"] = kv

    rate = parse_rate(f.get("rate"))
    arrival = None
    if rate is not None:
        arrival = {"process": "burst", "rate_per_s": 1.0} if math.isinf(rate) else {"process": "poisson",
                                                                                    "rate_per_s": rate}
    if "trace" in f:
        wl: dict[str, Any] = {"kind": "trace", "path": str(f["trace"]), "format": f.get("trace_format", "auto")}
        if "num_requests" in f:
            wl["num_requests"] = f["num_requests"]
        if "rate_scale" in f:
            wl["rate_scale"] = f["rate_scale"]
        if arrival:
            wl["arrival"] = arrival  # used by length-only traces (no timestamps)
        over["workload"] = wl
    elif any(k in f for k in ("num_requests", "input_len", "output_len", "rate")):
        wl = dict(base["workload"]) if base["workload"].get("kind") == "synthetic" else {"kind": "synthetic"}
        if "num_requests" in f:
            wl["num_requests"] = f["num_requests"]
        if "input_len" in f:
            wl["input_len"] = {"kind": "fixed", "value": f["input_len"]}
        if "output_len" in f:
            wl["output_len"] = {"kind": "fixed", "value": f["output_len"]}
        if arrival:
            wl["arrival"] = arrival
        over["workload"] = wl
    if "profile" in f:
        over["cost_model"] = {"kind": "profiled", "profile": str(f["profile"])}
    return validate_config(merge(base, over), "flags" if not config else f"{config} + flags")


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON config file (flags override it)"),
        model: Optional[str] = typer.Option(None, help="catalog model name (llmsim catalog models)"),
        hf_config: Optional[str] = typer.Option(None, "--hf-config", help="HF config.json or model dir"),
        gpu: Optional[str] = typer.Option(None, help="accelerator (llmsim catalog gpus)"),
        gpu_file: Optional[str] = typer.Option(None, "--gpu-file", help="YAML spec of your own accelerator"),
        tp: Optional[int] = typer.Option(None, help="tensor-parallel degree per replica"),
        pp: Optional[int] = typer.Option(None, help="pipeline-parallel stages per replica"),
        ep: Optional[int] = typer.Option(None, help="expert-parallel degree (MoE)"),
        replicas: Optional[int] = typer.Option(None, help="data-parallel replicas behind the router"),
        dtype: Optional[str] = typer.Option(None, help="compute/activation dtype"),
        weight_dtype: Optional[str] = typer.Option(None, "--weight-dtype", help="weights (int4/int8 = weight-only)"),
        kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype", help="KV-cache dtype"),
        scheduler: Optional[str] = typer.Option(None, help="static | orca | vllm | sarathi | splitfuse"),
        max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size"),
        max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens"),
        chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="sarathi/splitfuse token budget"),
        preemption: Optional[str] = typer.Option(None, help="vllm: recompute | swap"),
        kv_cache: Optional[str] = typer.Option(None, "--kv-cache", help="paged | contiguous"),
        block_size: Optional[int] = typer.Option(None, "--block-size", help="tokens per KV block"),
        gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization"),
        prefix_caching: Optional[bool] = typer.Option(None, "--prefix-caching/--no-prefix-caching"),
        router: Optional[str] = typer.Option(None, help="round_robin | least_outstanding | least_kv | power_of_two"),
        trace: Optional[Path] = typer.Option(None, help="trace file (azure csv, mooncake jsonl, lengths csv, plain)"),
        trace_format: Optional[str] = typer.Option(None, "--trace-format", help="auto|azure|mooncake|lengths|plain"),
        num_requests: Optional[int] = typer.Option(None, "--num-requests", help="synthetic count / first N of trace"),
        input_len: Optional[int] = typer.Option(None, "--input-len", help="synthetic prompt tokens (fixed)"),
        output_len: Optional[int] = typer.Option(None, "--output-len", help="synthetic output tokens (fixed)"),
        rate: Optional[str] = typer.Option(None, help="arrival rate in req/s, or 'inf' (all at t=0)"),
        rate_scale: Optional[float] = typer.Option(None, "--rate-scale", help="speed up a timed trace"),
        max_model_len: Optional[int] = typer.Option(None, "--max-model-len"),
        slo_ttft: Optional[float] = typer.Option(None, "--slo-ttft", help="TTFT SLO (s) for goodput"),
        slo_tpot: Optional[float] = typer.Option(None, "--slo-tpot", help="TPOT SLO (s) for goodput"),
        slo_e2e: Optional[float] = typer.Option(None, "--slo-e2e", help="e2e SLO (s) for goodput"),
        profile: Optional[Path] = typer.Option(None, help="profile table: use the calibrated cost model"),
        seed: Optional[int] = typer.Option(None, help="random seed"),
        out: Optional[Path] = typer.Option(None, help="write requests/steps parquet + summary.json here"),
        as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    ) -> None:
        """Replay a workload through a cluster of replicas and report latency, throughput, goodput and cost."""
        from simulator.simulate import simulate as run

        flags = {k: v for k, v in locals().items() if k not in ("config", "as_json", "out", "run")}
        cfg = build_config(config, **flags)
        result = _run_with_progress(run, cfg, show=not as_json and sys.stderr.isatty())
        if out is not None:
            result.write(out)
        if as_json:
            typer.echo(json.dumps(result.summary, indent=2))
        else:
            from rich.console import Console

            from simulator.metrics import format_summary_table

            console = Console()
            console.print(format_summary_table(result.summary))
            for note in result.summary.get("notes", []):
                console.print(f"[yellow]note:[/] {note}")
            if out is not None:
                console.print(f"results written to {out}")


def _run_with_progress(run, cfg: Config, show: bool):
    if not show:
        return run(cfg)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("t={task.completed:.0f}s simulated"),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("sim", total=None)
        return run(cfg, progress=lambda now: bar.update(task, completed=now))
