"""Planner backends: serial, local process pool and Ray give the same results in the same order."""
from __future__ import annotations

import numpy as np
import pytest

from hwmodels.errors import UserError
from simulator.planner.backends import ray_available, run_tasks


def seeded_task(seed: int) -> float:
    """Deterministic work with its own RNG, like one layout's capacity search."""
    return float(np.random.default_rng(seed).standard_normal(1000).sum())


def test_pool_equals_serial_and_reports_progress():
    tasks = list(range(6))
    seen: list[tuple[int, int]] = []
    serial = run_tasks(seeded_task, tasks, backend="serial")
    pool = run_tasks(seeded_task, tasks, backend="local", workers=2, on_done=lambda d, t, _: seen.append((d, t)))
    assert pool == serial
    assert [d for d, _ in seen] == list(range(1, 7)) and all(t == 6 for _, t in seen)


def test_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="backend"):
        run_tasks(seeded_task, [1, 2], backend="dask")


def test_missing_ray_gives_install_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert not ray_available()
    with pytest.raises(UserError, match="pip install"):
        run_tasks(seeded_task, [1, 2], backend="ray", ray_address="local")


@pytest.mark.skipif(not ray_available(), reason="ray is not installed (pip install 'llmsim[ray]')")
def test_ray_local_equals_serial():
    import sys

    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import a test module
    tasks = list(range(4))
    assert run_tasks(seeded_task, tasks, backend="ray", ray_address="local") == run_tasks(
        seeded_task, tasks, backend="serial")
