"""`llmsim catalog gpus|models|links [--json]`: list the accelerators, models and interconnects llmsim knows."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from hwmodels.errors import UserError
from hwmodels.hardware import list_gpus, list_links
from hwmodels.models import list_models

KINDS = ("gpus", "models", "links")


def gpu_rows() -> list[dict]:
    return [g.model_dump() for g in list_gpus()]


def model_rows() -> list[dict]:
    out = []
    for m in list_models():
        d = m.model_dump()
        d.update(num_params=m.num_params(), num_active_params=m.num_active_params(),
                 attn_kind=m.attn_kind, kv_bytes_per_token_bf16=m.kv_bytes_per_token("bf16"),
                 weight_bytes_bf16=m.weight_bytes("bf16"))
        out.append(d)
    return out


def link_rows() -> list[dict]:
    return [lk.model_dump() for lk in list_links()]


def _print_gpus(console: Console) -> None:
    t = Table(title="Accelerators (dense peak; editable $/h default)")
    for col in ("name", "bf16 TFLOP/s", "fp8 TFLOP/s", "HBM GB", "HBM TB/s", "L2 MB", "SMs", "TDP W", "$/h",
                "intra-node link"):
        t.add_column(col, justify="left" if col in ("name", "intra-node link") else "right")
    for g in list_gpus():
        fp8 = g.peak_flops_per_s.get("fp8")
        t.add_row(g.name, f"{g.peak_flops('bf16') / 1e12:.0f}", f"{fp8 / 1e12:.0f}" if fp8 else "-",
                  f"{g.hbm_bytes / 1e9:.0f}", f"{g.hbm_bytes_per_s / 1e12:.2f}", f"{g.l2_bytes / 1e6:.0f}",
                  str(g.num_sms), f"{g.tdp_w:.0f}", f"{g.usd_per_hour:.2f}", g.intra_node_link)
    console.print(t)


def _print_models(console: Console) -> None:
    t = Table(title="Models")
    for col in ("name", "params B", "active B", "layers", "hidden", "heads", "kv heads", "attn", "ffn", "vocab",
                "experts", "window", "max pos", "KV KB/token (bf16)"):
        t.add_column(col, justify="left" if col in ("name", "attn") else "right")
    for m in list_models():
        t.add_row(m.name, f"{m.num_params() / 1e9:.2f}", f"{m.num_active_params() / 1e9:.2f}", str(m.num_layers),
                  str(m.hidden_size), str(m.num_heads), str(m.num_kv_heads), m.attn_kind,
                  f"{m.ffn_kind} {m.intermediate_size}", str(m.vocab_size),
                  f"{m.num_experts} top-{m.top_k}" if m.is_moe else "-", str(m.sliding_window or "-"),
                  str(m.max_position), f"{m.kv_bytes_per_token('bf16') / 1e3:.0f}")
    console.print(t)


def _print_links(console: Console) -> None:
    t = Table(title="Interconnects (bandwidth per direction per GPU)")
    for col in ("name", "GB/s", "latency us", "topology", "source"):
        t.add_column(col, justify="right" if col in ("GB/s", "latency us") else "left")
    for lk in list_links():
        t.add_row(lk.name, f"{lk.bandwidth_bytes_per_s / 1e9:.1f}", f"{lk.latency_s * 1e6:.1f}", lk.topology,
                  lk.source)
    console.print(t)


def register(app: typer.Typer) -> None:
    @app.command()
    def catalog(
        what: str = typer.Argument(..., help="gpus | models | links"),
        as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of a table"),
    ) -> None:
        """List the accelerators, models or interconnects in the catalog."""
        if what not in KINDS:
            raise UserError(f"catalog {what!r}: unknown; allowed: {', '.join(KINDS)}")
        if as_json:
            rows = {"gpus": gpu_rows, "models": model_rows, "links": link_rows}[what]()
            typer.echo(json.dumps(rows, indent=2))
            return
        console = Console(width=200)
        {"gpus": _print_gpus, "models": _print_models, "links": _print_links}[what](console)
