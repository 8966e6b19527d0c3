"""`llmsim profile`: time kernels and collectives on this device into a profile table; `fit-report` scores it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hwmodels.errors import UserError

profile_app = typer.Typer(help="Measure kernels and collectives on this device; write a profile table (parquet).",
                          invoke_without_command=True)

OPS = ("gemm", "attention", "decode", "elementwise", "collectives")
DTYPES = ("fp32", "fp16", "bf16")
REPO = Path(__file__).resolve().parents[1]
TINY_LLAMA = REPO / "examples" / "tiny-llama" / "config.json"


def resolve_model_arg(model: Optional[str], device: str):
    """A catalog name, or a path to a Hugging Face config.json / model dir; default per device."""
    from hwmodels.models import from_hf_config, get_model

    if model is None:
        if device == "cpu":
            if not TINY_LLAMA.is_file():
                raise UserError("--model: required on CPU when examples/tiny-llama is not present "
                                "(give a catalog name or a Hugging Face config.json)")
            return from_hf_config(TINY_LLAMA, name="tiny-llama")
        return get_model("llama-3.1-8b")
    p = Path(model)
    if p.exists():
        return from_hf_config(p, name=p.stem if p.is_file() and p.name != "config.json" else None)
    return get_model(model)


def parse_ops(text: str) -> tuple[str, ...]:
    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise UserError(f"--ops = {text!r}: unknown op family {bad[0] if bad else '(none)'!r}; "
                        f"allowed: {', '.join(OPS)} (comma-separated)")
    return ops


def run_profile(device: str, ops: tuple[str, ...], model_arg: Optional[str], tp: int, dtype: Optional[str],
                quick: bool, out: Path, device_spec_out: Optional[Path], threads: Optional[int],
                progress: bool) -> dict:
    """Validate the flags, run the sweep, write the CPU device spec; returns a summary dict."""
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device = {device!r}: allowed: cpu, cuda")
    try:
        import torch
    except ImportError:
        raise UserError("llmsim profile needs torch and triton: pip install 'llmsim[profile]'") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device = 'cuda': no CUDA device is visible to torch; use --device cpu")
    dtype = dtype or ("fp32" if device == "cpu" else "bf16")
    if dtype not in DTYPES:
        raise UserError(f"--dtype = {dtype!r}: allowed: {', '.join(DTYPES)}")
    if tp < 1:
        raise UserError(f"--tp = {tp}: must be >= 1")
    if threads is not None and threads < 1:
        raise UserError(f"--threads = {threads}: must be >= 1")
    if out.suffix != ".parquet":
        raise UserError(f"--out = {str(out)!r}: the profile table is parquet; name it FILE.parquet")
    from hwmodels.config import ParallelConfig
    from hwmodels.layout import check_layout
    from profiler.sweep import SweepConfig, run_sweep

    model = resolve_model_arg(model_arg, device)
    check_layout(model, ParallelConfig(tp=tp))
    cfg = SweepConfig(model=model, device=device, tp=tp, dtype=dtype, ops=ops, quick=quick,
                      min_time_s=0.02 if quick else 0.05, threads=threads)
    res = run_sweep(cfg, out, progress=progress)
    summary = {"out": str(out), "device": device, "model": model.name, "tp": tp, "dtype": dtype,
               "rows_added": res.rows_added, "rows_skipped": res.rows_skipped, "seconds": round(res.seconds, 2),
               "per_family": res.per_family}
    import os

    if os.environ.get("RANK", "0") != "0":  # a torchrun rank other than 0: rank 0 reports
        return summary
    if device == "cpu" or device_spec_out is not None:
        from profiler.devices import cpu_device_spec, write_device_spec

        if device == "cpu":
            spec_path = device_spec_out or out.with_name(out.stem + ".device.yaml")
            import torch as _t

            before = _t.get_num_threads()
            _t.set_num_threads(threads or 1)  # the spec describes the same thread count the table used
            try:
                write_device_spec(spec_path, cpu_device_spec(quick=quick))
            finally:
                _t.set_num_threads(before)
            summary["device_spec"] = str(spec_path)
        else:
            raise UserError("--device-spec-out: only CPU hosts get a measured spec (GPUs are in the catalog)")
    return summary


@profile_app.callback()
def profile(
    ctx: typer.Context,
    device: str = typer.Option("cpu", help="cpu | cuda"),
    ops: str = typer.Option(",".join(OPS), help="comma-separated: " + ", ".join(OPS)),
    model: Optional[str] = typer.Option(None, help="catalog name or HF config.json/dir (cpu default: "
                                                   "examples/tiny-llama; cuda: llama-3.1-8b)"),
    tp: int = typer.Option(1, help="tensor-parallel degree whose per-GPU shapes are swept"),
    dtype: Optional[str] = typer.Option(None, help="fp32 | fp16 | bf16 (default: fp32 on cpu, bf16 on cuda)"),
    quick: bool = typer.Option(False, help="a small grid (minutes on a laptop)"),
    out: Optional[Path] = typer.Option(None, help="profile table to write or extend (FILE.parquet)"),
    device_spec_out: Optional[Path] = typer.Option(None, help="CPU: where to write the measured device "
                                                              "spec YAML (default: next to --out)"),
    threads: Optional[int] = typer.Option(None, help="CPU threads torch uses while timing (default 1)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
) -> None:
    """Sweep the shapes a model and TP degree produce; append to (or resume) the table at --out."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise UserError("--out: required (the profile table to write, FILE.parquet)")
    summary = run_profile(device, parse_ops(ops), model, tp, dtype, quick, out, device_spec_out, threads,
                          progress=not as_json)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{summary['rows_added']} rows added, {summary['rows_skipped']} already measured "
               f"-> {summary['out']} ({summary['seconds']} s)")
    if "device_spec" in summary:
        typer.echo(f"device spec -> {summary['device_spec']} (use as hardware.gpu_file / --gpu-file)")
    typer.echo(f"next: llmsim profile fit-report {summary['out']}")

@profile_app.command("fit-report")
def fit_report_cmd(
    profile: Path = typer.Argument(..., help="profile table (parquet)"),
    holdout: float = typer.Option(0.2, help="fraction of rows held out per op family"),
    seed: int = typer.Option(0, help="seed of the split"),
    device: Optional[str] = typer.Option(None, help="which device of the table (default: most rows)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Held-out error of the calibrated model: fit on (1-holdout) of the rows, predict the rest."""
    from hwmodels.profiled import fit_report, read_profile

    df, runs = read_profile(profile)
    if df.empty:
        raise UserError(f"{profile}: the table has no rows")
    rep = fit_report(df, holdout=holdout, seed=seed, device=device)
    if as_json:
        typer.echo(json.dumps({"profile": str(profile), "holdout": holdout, "seed": seed,
                               "families": rep.to_dict("records")}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"held-out error of the profiled cost model ({holdout:.0%} of rows, seed {seed})")
    for c in ("family", "train", "test", "median |err|", "p90 |err|", "interpolated", "fitted", "unpredicted"):
        t.add_column(c, justify="left" if c == "family" else "right")
    for r in rep.to_dict("records"):
        t.add_row(r["family"], str(r["num_train"]), str(r["num_test"]), f"{r['median_abs_rel_err']:.1%}",
                  f"{r['p90_abs_rel_err']:.1%}", str(r["num_interpolated"]), str(r["num_fitted"]),
                  str(r["num_unpredicted"]))
    Console().print(t)
    from hwmodels.profiled import ProfileFit

    fit = ProfileFit.from_frame(df, device)
    for (fam, dt), rf in sorted(fit.roofline.items()):
        typer.echo(f"fitted roofline {fam} ({dt}, {rf.num_rows} rows): {rf.flops_per_s / 1e9:.1f} GFLOP/s, "
                   f"{rf.bytes_per_s / 1e9:.1f} GB/s, launch {rf.launch_s * 1e6:.1f} us")
    dev = sorted({r.get("device", "?") for r in runs})
    typer.echo(f"device(s): {', '.join(dev)}; runs: {len(runs)}")


@profile_app.command("import-vidur")
def import_vidur_cmd(
    files: list[Path] = typer.Argument(..., help="Vidur mlp.csv (compute) and/or all_reduce.csv / send_recv.csv"),
    out: Path = typer.Option(..., help="profile table to write or extend (FILE.parquet)"),
    device: Optional[str] = typer.Option(None, help="device label (default: vidur:<gpu or node folder>)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
) -> None:
    """Turn Vidur's published op timings (microsoft/vidur, MIT) into profile-table rows."""
    from profiler.import_vidur import compute_rows, network_rows
    from profiler.table import append_rows

    if out.suffix != ".parquet":
        raise UserError(f"--out = {str(out)!r}: the profile table is parquet; name it FILE.parquet")
    added = {}
    for f in files:
        if not f.is_file():
            raise UserError(f"{f}: file not found")
        parts = f.resolve().parts
        if f.name == "mlp.csv" and "compute" in parts:
            label = device or f"vidur:{parts[parts.index('compute') + 1]}"
            rows = compute_rows(f, label)
        elif f.name in ("all_reduce.csv", "send_recv.csv") and "network" in parts:
            label = device or f"vidur:{parts[parts.index('network') + 1]}"
            rows = network_rows(f, label)
        else:
            raise UserError(f"{f}: expected Vidur's compute/<gpu>/<org>/<model>/mlp.csv or "
                            "network/<node>/{all_reduce,send_recv}.csv")
        added[str(f)] = append_rows(out, rows, {"device": label, "source": f"Vidur (microsoft/vidur) file {f}"})
    if as_json:
        typer.echo(json.dumps({"out": str(out), "rows_added": added}, indent=2))
        return
    for f, n in added.items():
        typer.echo(f"{n} rows from {f}")
    typer.echo(f"-> {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app, name="profile")
