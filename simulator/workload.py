"""Workloads: arrays of arrival times and token counts, built from a synthetic generator or a trace file.

A Workload is always in arrival order (non-decreasing `arrival_s`), every length is ≥ 1, and request ids
are the row numbers. Generators draw from their own `np.random.default_rng` streams (one per part:
arrivals, input lengths, output lengths) so changing one distribution leaves the others' draws unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwmodels.errors import UserError
from policies.request import Request
from simulator.config import (ArrivalConfig, EmpiricalLength, FixedLength, LengthDist, LognormalLength,
                              SyntheticWorkload, TraceWorkload, UniformLength, WorkloadConfig)


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests as columns. arrival_s: float64 seconds, non-decreasing; input/output_tokens: int64 ≥ 1;
    hash_ids: per-request prefix-block ids (Mooncake, 512-token blocks) or None; notes: what the loader
    changed or assumed (zero lengths clamped, rows re-sorted, synthetic arrivals), for the user to see."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: list[tuple[int, ...]] | None
    source: str
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        arrival = np.array(self.arrival_s, dtype=np.float64)
        inp = np.array(self.input_tokens, dtype=np.int64)
        out = np.array(self.output_tokens, dtype=np.int64)
        n = len(arrival)
        if arrival.ndim != 1 or inp.shape != (n,) or out.shape != (n,):
            raise ValueError(f"Workload columns must be 1-D of one length, got {arrival.shape}, "
                             f"{inp.shape}, {out.shape}")
        if self.hash_ids is not None and len(self.hash_ids) != n:
            raise ValueError(f"hash_ids has {len(self.hash_ids)} entries for {n} requests")
        if n and not np.all(np.isfinite(arrival)):
            raise ValueError("arrival_s must be finite")
        if n > 1 and np.any(np.diff(arrival) < 0):
            raise ValueError("arrival_s must be non-decreasing (sort the requests first)")
        if n and (inp.min() < 1 or out.min() < 1):
            raise ValueError("input_tokens and output_tokens must be >= 1")
        for a in (arrival, inp, out):
            a.setflags(write=False)  # frozen means frozen: no one edits a shared workload in place
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)
        object.__setattr__(self, "notes", tuple(self.notes))

    def __len__(self) -> int:
        return len(self.arrival_s)

    def _replace(self, idx: slice | None = None, arrival_s: np.ndarray | None = None,
                 note: str | None = None) -> Workload:
        sel = idx if idx is not None else slice(None)
        return Workload(arrival_s=arrival_s if arrival_s is not None else self.arrival_s[sel],
                        input_tokens=self.input_tokens[sel], output_tokens=self.output_tokens[sel],
                        hash_ids=None if self.hash_ids is None else self.hash_ids[sel], source=self.source,
                        notes=self.notes + ((note,) if note else ()))

    def head(self, n: int) -> Workload:
        """The first n requests in arrival order (all of them if n ≥ len)."""
        if n < 1:
            raise UserError(f"num_requests = {n}: must be >= 1")
        return self if n >= len(self) else self._replace(slice(0, n))

    def scaled(self, rate_scale: float) -> Workload:
        """Arrival rate multiplied by rate_scale: gaps divided by it, the first arrival kept in place."""
        if not (rate_scale > 0 and math.isfinite(rate_scale)):
            raise UserError(f"rate_scale = {rate_scale!r}: must be a finite number > 0")
        if rate_scale == 1.0 or len(self) == 0:
            return self
        t0 = self.arrival_s[0]
        return self._replace(arrival_s=t0 + (self.arrival_s - t0) / rate_scale)

    def shifted_to_zero(self) -> Workload:
        """Times moved so the first request arrives at t=0."""
        if len(self) == 0 or self.arrival_s[0] == 0.0:
            return self
        return self._replace(arrival_s=self.arrival_s - self.arrival_s[0])

    def to_requests(self) -> list[Request]:
        """Fresh Request objects, ids 0..n-1 in arrival order."""
        hashes = self.hash_ids if self.hash_ids is not None else [None] * len(self)
        return [Request(id=i, arrival_s=t, prompt_len=p, output_len=o, hash_ids=h)
                for i, (t, p, o, h) in enumerate(zip(self.arrival_s.tolist(), self.input_tokens.tolist(),
                                                     self.output_tokens.tolist(), hashes))]

    def stats(self) -> dict:
        """A few plain numbers for a CLI line: count, span, mean rate and mean lengths."""
        n = len(self)
        span_s = float(self.arrival_s[-1] - self.arrival_s[0]) if n else 0.0
        return {"num_requests": n, "span_s": span_s,
                "rate_per_s": (n - 1) / span_s if span_s > 0 else None,
                "mean_input_tokens": float(self.input_tokens.mean()) if n else None,
                "mean_output_tokens": float(self.output_tokens.mean()) if n else None}


# ---- synthetic generators -----------------------------------------------------------------------


def synthetic_arrivals(cfg: ArrivalConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """n arrival times (s), first at 0. poisson: exponential gaps; gamma: gaps with shape 1/cv² and mean
    1/rate (cv=1 is Poisson); constant: evenly spaced; burst or rate=inf: all at 0."""
    if cfg.process == "burst" or math.isinf(cfg.rate_per_s):
        return np.zeros(n)
    mean_gap_s = 1.0 / cfg.rate_per_s
    if cfg.process == "constant":
        gaps = np.full(n - 1, mean_gap_s)
    elif cfg.process == "poisson":
        gaps = rng.exponential(mean_gap_s, n - 1)
    elif cfg.process == "gamma":
        shape = 1.0 / cfg.cv**2  # gamma: cv = 1/sqrt(shape), mean = shape * scale
        gaps = rng.gamma(shape, mean_gap_s / shape, n - 1)
    else:  # pragma: no cover - the config's Literal allows nothing else
        raise ValueError(cfg.process)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def sample_lengths(dist: LengthDist, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """n token counts ≥ 1 from a length distribution, and notes on anything changed."""
    notes: list[str] = []
    if isinstance(dist, FixedLength):
        return np.full(n, dist.value, dtype=np.int64), notes
    if isinstance(dist, UniformLength):
        return rng.integers(dist.low, dist.high, endpoint=True, size=n), notes
    if isinstance(dist, LognormalLength):
        mu = math.log(dist.mean) - dist.sigma**2 / 2  # E[exp(N(mu, s²))] = exp(mu + s²/2) = mean
        x = np.rint(rng.lognormal(mu, dist.sigma, n))
        return np.clip(x, dist.min, dist.max).astype(np.int64), notes
    if isinstance(dist, EmpiricalLength):
        from simulator.traces import read_length_column  # traces imports this module

        values, col_notes = read_length_column(dist.path, dist.column)
        return rng.choice(values, size=n, replace=True), col_notes
    raise ValueError(f"unknown length distribution {dist!r}")  # pragma: no cover


def _describe_arrival(cfg: ArrivalConfig) -> str:
    if cfg.process == "burst" or math.isinf(cfg.rate_per_s):
        return "all at t=0"
    extra = f", cv {cfg.cv:g}" if cfg.process == "gamma" else ""
    return f"{cfg.process} {cfg.rate_per_s:g}/s{extra}"


def build_workload(cfg: WorkloadConfig, seed: int) -> Workload:
    """The Workload a config describes; same config and seed give the same arrays."""
    if isinstance(cfg, TraceWorkload):
        from simulator.traces import load_trace  # traces imports this module

        return load_trace(cfg.path, cfg.format, num_requests=cfg.num_requests, rate_scale=cfg.rate_scale,
                          shift_to_zero=cfg.shift_to_zero, arrival=cfg.arrival, seed=seed,
                          arrival_set="arrival" in cfg.model_fields_set)
    if not isinstance(cfg, SyntheticWorkload):
        raise ValueError(f"unknown workload config {cfg!r}")  # pragma: no cover
    rng_arrival, rng_input, rng_output = (np.random.default_rng(s)
                                          for s in np.random.SeedSequence(seed).spawn(3))
    n = cfg.num_requests
    inp, notes_in = sample_lengths(cfg.input_len, n, rng_input)
    out, notes_out = sample_lengths(cfg.output_len, n, rng_output)
    return Workload(arrival_s=synthetic_arrivals(cfg.arrival, n, rng_arrival), input_tokens=inp,
                    output_tokens=out, hash_ids=None,
                    source=f"synthetic: {n} requests, {_describe_arrival(cfg.arrival)}, "
                           f"input {cfg.input_len.kind}, output {cfg.output_len.kind}, seed {seed}",
                    notes=tuple(notes_in + notes_out))
