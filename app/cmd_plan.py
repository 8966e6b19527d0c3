"""`llmsim plan serve`: search layouts and settings under SLOs and bounds; ranked table, Pareto, advice."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from hwmodels.errors import UserError

plan_app = typer.Typer(help="Search deployments (layouts, batching, accelerators) under latency SLOs and budgets.",
                       no_args_is_help=True)

LIST_FLAGS = {  # flag -> (SearchSpace field, element parser)
    "gpu": ("gpus", str), "tp": ("tp", int), "pp": ("pp", int), "replicas": ("replicas", int),
    "scheduler": ("schedulers", str), "max_batch_size": ("max_batch_size", int),
    "max_num_batched_tokens": ("max_num_batched_tokens", int), "chunk_size": ("chunk_size", int),
    "block_size": ("block_size", int), "weight_dtype": ("weight_dtype", str), "kv_dtype": ("kv_dtype", str),
}


def parse_list(flag: str, text: str, parse: Callable[[str], Any]) -> list[Any]:
    """'1,2,4' -> [1, 2, 4]; a UserError names the flag and the bad item."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"--{flag.replace('_', '-')} = {text!r}: give one value or a comma-separated list")
    out = []
    for t in items:
        try:
            out.append(parse(t))
        except ValueError:
            raise UserError(f"--{flag.replace('_', '-')} = {text!r}: {t!r} is not a valid "
                            f"{'integer' if parse is int else 'value'}") from None
    return out


def build_plan_config(config: Optional[Path], lists: dict[str, Optional[str]], base_flags: dict[str, Any],
                      plan_flags: dict[str, Any]):
    """PlanConfig from a scenario file (with optional `plan:` section) overlaid with the flags given."""
    from simulator.config import merge
    from simulator.planner.config import PlanConfig, load_plan_config, validate_plan_config

    pc = load_plan_config(config) if config else PlanConfig()
    base_data = base_with_flags(pc.base.model_dump(mode="python"), base_flags)
    data = pc.model_dump(mode="python", exclude={"base"})
    space: dict[str, Any] = {}
    for flag, text in lists.items():
        if text is not None:
            field, parse = LIST_FLAGS[flag]
            space[field] = parse_list(flag, text, parse)
    over: dict[str, Any] = {"space": space} if space else {}
    search = {k: v for k, v in (("max_requests_per_probe", plan_flags.pop("requests_per_probe", None)),
                                ("rel_tolerance", plan_flags.pop("tolerance", None))) if v is not None}
    if search:
        over["search"] = search
    over.update({k: v for k, v in plan_flags.items() if v is not None})
    data = merge(data, over)
    return validate_plan_config({**base_data, "plan": data}, str(config) + " + flags" if config else "flags")


def base_with_flags(base: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """The base scenario's data with the scalar flags that were given applied (same meaning as in simulate)."""
    f = {k: v for k, v in flags.items() if v is not None}
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    if "model" in f:
        out["model"] = {"name": f["model"], "hf_config": f.get("hf_config")}
    elif "hf_config" in f:
        out["model"] = {**out["model"], "hf_config": f["hf_config"]}
    for flag, key in (("slo_ttft", "ttft_s"), ("slo_tpot", "tpot_s"), ("slo_e2e", "e2e_s"),
                      ("slo_percentile", "percentile"), ("slo_attainment", "attainment")):
        if flag in f:
            out["slo"][key] = f[flag]
    if "seed" in f:
        out["simulation"]["seed"] = f["seed"]
    if "trace" in f:  # a new workload section, not merged into a synthetic one
        out["workload"] = {"kind": "trace", "path": str(f["trace"]), "format": f.get("trace_format") or "auto"}
    elif "input_len" in f or "output_len" in f:
        wl = out["workload"] if out["workload"].get("kind") == "synthetic" else {"kind": "synthetic"}
        for flag, key in (("input_len", "input_len"), ("output_len", "output_len")):
            if flag in f:
                wl[key] = {"kind": "fixed", "value": f[flag]}
        out["workload"] = wl
    return out


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def print_result(res, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from simulator.planner.prune import REASONS
    from simulator.planner.report import table_rows

    console = Console() if sys.stdout.isatty() else Console(width=160)
    rows = table_rows(res, top)
    if rows:
        t = Table(title=f"deployments meeting the SLOs (best first, {len(res.deployments)} in all)",
                  header_style="bold")
        for col in rows[0]:
            t.add_column(col, justify="left" if col == "layout" else "right")
        for r in rows:
            t.add_row(*[(f"{v:.1%}" if k == "KV headroom" else f"{v:.2f}" if k == "$/h" else _fmt(v))
                        if isinstance(v, float) else str(v) for k, v in r.items()])
        console.print(t)
    sim = len(res.outcomes)
    console.print(f"searched {res.num_candidates} layouts: {res.num_candidates - sim} pruned before simulation, "
                  f"{sim} simulated ({sum(len(o.capacity.probes) for o in res.outcomes)} probes of "
                  f"{res.num_requests_per_probe} requests) in {res.wall_s:.1f} s")
    for reason, n in res.pruned.items():
        console.print(f"  pruned {n:>3} x {reason}: {REASONS.get(reason, _POST.get(reason, reason))}")
    for note in res.notes:
        console.print(f"[dim]note: {note}[/]")
    style = "bold green" if res.best else "bold red"
    console.print(f"[{style}]{'recommendation' if res.best else 'no recommendation'}:[/] {res.answer}")
    from simulator.planner.search import explain
    why = explain(res)
    if why:
        console.print(f"why: {why}")


_POST = {"slo_unmet_simulated": "simulated: SLOs missed even at the lowest rate",
         "target_over_max_gpus": "target QPS needs more replicas than --max-gpus / the budget allow",
         "replicas_over_bounds": "no replica count of --replicas fits --max-gpus / the budget"}


@plan_app.command("serve")
def serve(
    config: Optional[Path] = typer.Option(None, "--config", help="scenario YAML/JSON with an optional plan: section"),
    model: Optional[str] = typer.Option(None, help="catalog model name"),
    hf_config: Optional[str] = typer.Option(None, "--hf-config", help="HF config.json or model dir"),
    gpu: Optional[str] = typer.Option(None, help="accelerator(s), comma-separated (llmsim catalog gpus)"),
    tp: Optional[str] = typer.Option(None, help="TP degrees, e.g. 1,2,4,8 (default: powers of 2 in a node)"),
    pp: Optional[str] = typer.Option(None, help="PP degrees (default 1)"),
    replicas: Optional[str] = typer.Option(None, help="replica counts (default: sized by --target-qps/bounds)"),
    scheduler: Optional[str] = typer.Option(None, help="scheduler kinds (default: vllm,sarathi)"),
    max_batch_size: Optional[str] = typer.Option(None, "--max-batch-size"),
    max_num_batched_tokens: Optional[str] = typer.Option(None, "--max-num-batched-tokens"),
    chunk_size: Optional[str] = typer.Option(None, "--chunk-size", help="for sarathi/splitfuse"),
    block_size: Optional[str] = typer.Option(None, "--block-size"),
    weight_dtype: Optional[str] = typer.Option(None, "--weight-dtype"),
    kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype"),
    trace: Optional[Path] = typer.Option(None, help="trace file; probes replay its first N requests, rate-scaled"),
    trace_format: Optional[str] = typer.Option(None, "--trace-format", help="auto|azure|mooncake|lengths|plain"),
    input_len: Optional[int] = typer.Option(None, "--input-len", help="synthetic prompt tokens (fixed)"),
    output_len: Optional[int] = typer.Option(None, "--output-len", help="synthetic output tokens (fixed)"),
    slo_ttft: Optional[float] = typer.Option(None, "--slo-ttft-p90", "--slo-ttft", help="TTFT target (s)"),
    slo_tpot: Optional[float] = typer.Option(None, "--slo-tpot-p90", "--slo-tpot", help="TPOT target (s)"),
    slo_e2e: Optional[float] = typer.Option(None, "--slo-e2e", help="end-to-end latency target (s)"),
    slo_percentile: Optional[float] = typer.Option(None, "--slo-percentile", help="percentile checked (default 90)"),
    slo_attainment: Optional[float] = typer.Option(None, "--slo-attainment",
                                                   help="instead: fraction of requests meeting every SLO"),
    target_qps: Optional[float] = typer.Option(None, "--target-qps", help="size the deployment for this rate"),
    max_gpus: Optional[int] = typer.Option(None, "--max-gpus", help="GPUs the deployment may use"),
    budget: Optional[float] = typer.Option(None, "--budget-usd-per-hour", help="bound on the deployment's $/h"),
    rank_by: Optional[str] = typer.Option(None, "--rank-by", help="cost | qps_per_gpu | ttft"),
    requests_per_probe: Optional[int] = typer.Option(None, "--requests-per-probe",
                                                     help="requests simulated per probe (default 1000)"),
    tolerance: Optional[float] = typer.Option(None, "--tolerance", help="relative rate resolution (default 0.05)"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    workers: Optional[int] = typer.Option(None, help="local worker processes (default: all cores)"),
    serial: bool = typer.Option(False, "--serial", help="run in this process (no pool)"),
    ray: Optional[str] = typer.Option(None, "--ray", help="Ray cluster address, or 'local' to start one"),
    pareto: str = typer.Option("plan-pareto.html", "--pareto", help="write the Pareto plot (HTML) here; '' = don't"),
    emit_config: Optional[Path] = typer.Option(None, "--emit-config",
                                               help="write the recommended scenario (llmsim simulate --config)"),
    top: int = typer.Option(15, help="rows of the table to print"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """For this model, traffic and latency targets: what to deploy, and what it will cost."""
    from simulator.planner.search import plan_serve

    lists = {k: v for k, v in locals().items() if k in LIST_FLAGS}
    base_flags = {"model": model, "hf_config": hf_config, "trace": trace, "trace_format": trace_format,
                  "input_len": input_len, "output_len": output_len, "slo_ttft": slo_ttft, "slo_tpot": slo_tpot,
                  "slo_e2e": slo_e2e, "seed": seed}
    extra = {"slo_percentile": slo_percentile, "slo_attainment": slo_attainment}
    plan_flags = {"target_qps": target_qps, "max_gpus": max_gpus, "budget_usd_per_hour": budget,
                  "rank_by": rank_by, "requests_per_probe": requests_per_probe, "tolerance": tolerance}
    if serial and ray:
        raise UserError("--serial and --ray: choose one backend")
    pc = build_plan_config(config, lists, {**base_flags, **extra}, plan_flags)
    backend = "serial" if serial else "ray" if ray else "local"
    res = _run(plan_serve, pc, backend, workers, ray, show=not as_json and sys.stderr.isatty())
    wrote_pareto = bool(pareto) and bool(res.outcomes)
    if wrote_pareto:
        from simulator.planner.report import pareto_figure
        _write("--pareto", pareto, lambda p: pareto_figure(res).write_html(p, include_plotlyjs=True))
    if emit_config is not None:
        cfg = res.recommended_config()
        if cfg is None:
            raise UserError(f"--emit-config {emit_config}: nothing to write, {res.answer}")
        import yaml
        text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        _write("--emit-config", str(emit_config), lambda p: Path(p).write_text(text))
    if as_json:
        out = res.to_json()
        out["pareto_html"] = pareto if wrote_pareto else None
        out["emitted_config"] = str(emit_config) if emit_config else None
        typer.echo(json.dumps(_finite(out), indent=2, default=str))
        return
    print_result(res, top)
    if wrote_pareto:
        typer.echo(f"Pareto plot: {pareto}")
    if emit_config is not None:
        typer.echo(f"config written to {emit_config}: llmsim simulate --config {emit_config}")


def _write(flag: str, path: str, write: Callable[[str], Any]) -> None:
    try:
        write(path)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None


def _finite(x: Any) -> Any:
    """JSON has no inf/NaN: they become null."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _run(plan_serve, pc, backend: str, workers: Optional[int], ray: Optional[str], show: bool):
    kw = {"backend": backend, "workers": workers, "ray_address": ray}
    if not show:
        return plan_serve(pc, **kw)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    with Progress(TextColumn("capacity search"), BarColumn(), MofNCompleteColumn(), TextColumn("layouts"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("plan", total=None)
        return plan_serve(pc, on_start=lambda n: bar.update(task, total=n),
                          on_progress=lambda done, total, _: bar.update(task, completed=done, total=total), **kw)


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
