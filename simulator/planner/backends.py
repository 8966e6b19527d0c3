"""Run independent planner tasks serially, on a local process pool, or on a Ray cluster.

Each task is a pure function of its argument (own RNG seeds, simulated time only), so every backend
returns the same results in the same (task) order; only wall time differs.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from hwmodels.errors import UserError

Progress = Callable[[int, int, Any], None]  # (done, total, result just finished)


def run_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], *, backend: str = "local", workers: int | None = None,
              ray_address: str | None = None, on_done: Progress | None = None) -> list[Any]:
    """`[fn(t) for t in tasks]` on the chosen backend ("serial", "local", "ray"); results in task order."""
    if backend == "serial" or (backend == "local" and (len(tasks) <= 1 or (workers or 0) == 1)):
        out = []
        for i, t in enumerate(tasks):
            out.append(fn(t))
            if on_done:
                on_done(i + 1, len(tasks), out[-1])
        return out
    if backend == "local":
        return _run_pool(fn, tasks, workers or os.cpu_count() or 1, on_done)
    if backend == "ray":
        return _run_ray(fn, tasks, ray_address, on_done)
    raise UserError(f"backend = {backend!r}: allowed are 'serial', 'local', 'ray'")


def _run_pool(fn, tasks, workers: int, on_done: Progress | None) -> list[Any]:
    # NOTE: "spawn" costs ~1 s of imports per worker but is safe with the threads of a progress bar.
    ctx = mp.get_context("spawn")
    out: list[Any] = [None] * len(tasks)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        pending, done_n = set(futures), 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=futures.__getitem__):
                out[futures[f]] = f.result()
                done_n += 1
                if on_done:
                    on_done(done_n, len(tasks), out[futures[f]])
    return out


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _run_ray(fn, tasks, address: str | None, on_done: Progress | None) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray, which is not installed: pip install 'llmsim[ray]' "
                        "(or pip install 'ray[default]')") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address in (None, "", "local"):
                ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"--ray {address}: cannot connect to a Ray cluster there ({exc}); "
                            f"use --ray local to start one on this machine") from None
    try:
        remote = ray.remote(fn)
        refs = [remote.remote(t) for t in tasks]
        index = {r: i for i, r in enumerate(refs)}
        out: list[Any] = [None] * len(tasks)
        pending, done_n = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for r in ready:
                out[index[r]] = ray.get(r)
                done_n += 1
                if on_done:
                    on_done(done_n, len(tasks), out[index[r]])
        return out
    finally:
        if started_here:
            ray.shutdown()
