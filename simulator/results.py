"""A simulation's results and their on-disk form: a folder of parquet tables, JSON and the config as YAML.

Layout: requests.parquet, steps.parquet, itl_s.npy, summary.json, memory.json, config.yaml and
llmsim_result.json (a manifest naming the files; it marks the folder as llmsim's). `write` creates the
folder, or reuses one that is empty or already an llmsim results folder (replacing only the files its
manifest lists); any other non-empty folder is refused, so user files are never overwritten.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hwmodels.errors import UserError

MANIFEST = "llmsim_result.json"
FILES = ("requests.parquet", "steps.parquet", "itl_s.npy", "summary.json", "memory.json", "config.yaml")
FORMAT_VERSION = 1


def json_ready(x: Any) -> Any:
    """Plain JSON types: numpy scalars → Python, NaN/inf → None."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _config_data(config: Any) -> Any:
    if config is None:
        return None
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")  # keeps inf (e.g. rate_per_s) as a float; YAML writes .inf
    return config


@dataclass
class SimulationResult:
    """Everything one run produced. requests/steps follow metrics.REQUEST_COLUMNS / STEP_COLUMNS;
    itl_s: every inter-token gap (s); memory: the per-GPU memory breakdown (bytes)."""

    config: Any
    requests: pd.DataFrame
    steps: pd.DataFrame
    itl_s: np.ndarray
    summary: dict
    memory: dict = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> Path:
        """Write the results folder (see the module docstring for what is refused); returns its path."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise UserError(f"results folder {out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise UserError(f"results folder {out}: exists, is not empty and is not an llmsim results folder "
                            f"(no {MANIFEST}); choose another folder or empty this one")
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.requests.to_parquet(out / "requests.parquet", index=False)
            self.steps.to_parquet(out / "steps.parquet", index=False)
            np.save(out / "itl_s.npy", np.asarray(self.itl_s, dtype=np.float64))
            (out / "summary.json").write_text(json.dumps(json_ready(self.summary), indent=2) + "\n")
            (out / "memory.json").write_text(json.dumps(json_ready(self.memory), indent=2) + "\n")
            (out / "config.yaml").write_text(yaml.safe_dump(_config_data(self.config), sort_keys=False))
            (out / MANIFEST).write_text(json.dumps({"llmsim_result": FORMAT_VERSION, "files": list(FILES)},
                                                   indent=2) + "\n")
        except OSError as exc:
            raise UserError(f"results folder {out}: cannot write ({exc.strerror or exc})") from None
        return out

    @classmethod
    def read(cls, out_dir: str | Path) -> SimulationResult:
        """Load a folder written by `write`; config comes back as a validated Config."""
        from simulator.config import load_config

        out = Path(out_dir)
        if not (out / MANIFEST).is_file():
            raise UserError(f"results folder {out}: not an llmsim results folder (no {MANIFEST})")
        missing = [f for f in FILES if not (out / f).is_file()]
        if missing:
            raise UserError(f"results folder {out}: missing {', '.join(missing)}")
        raw = yaml.safe_load((out / "config.yaml").read_text())
        config = load_config(out / "config.yaml") if isinstance(raw, dict) else raw
        return cls(config=config, requests=pd.read_parquet(out / "requests.parquet"),
                   steps=pd.read_parquet(out / "steps.parquet"), itl_s=np.load(out / "itl_s.npy"),
                   summary=json.loads((out / "summary.json").read_text()),
                   memory=json.loads((out / "memory.json").read_text()))
