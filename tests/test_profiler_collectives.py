"""Collectives over real torch.distributed process groups (gloo on loopback here; NCCL on GPUs)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from profiler.collectives import COLLECTIVES, bus_factor, run_local  # noqa: E402


def test_bus_factors_follow_nccl_tests():
    # nccl-tests PERFORMANCE.md: allreduce 2(n-1)/n, allgather/reducescatter (n-1)/n, alltoall (n-1)/n, sendrecv 1
    assert bus_factor("all_reduce", 8) == pytest.approx(1.75)
    assert bus_factor("all_gather", 4) == pytest.approx(0.75)
    assert bus_factor("reduce_scatter", 2) == pytest.approx(0.5)
    assert bus_factor("all_to_all", 8) == pytest.approx(0.875)
    assert bus_factor("send_recv", 2) == 1.0
    with pytest.raises(ValueError, match="unknown collective"):
        bus_factor("broadcast", 2)


def test_gloo_world_of_two_measures_every_collective():
    sizes = [4096, 65536]
    rows = run_local(2, list(COLLECTIVES), sizes, dtype="fp32", backend="gloo", warmup=1, iters=3,
                     device_label="cpu:test")
    assert {(r["op"], r["size_bytes"]) for r in rows} == {(op, s) for op in COLLECTIVES for s in sizes}
    for r in rows:
        assert r["world_size"] == 2 and r["impl"] == "torch.distributed/gloo" and r["device"] == "cpu:test"
        assert r["median_s"] > 0 and r["p10_s"] <= r["median_s"] <= r["p90_s"]
        assert r["algbw_bytes_per_s"] == pytest.approx(r["size_bytes"] / r["median_s"])
        assert r["busbw_bytes_per_s"] == pytest.approx(r["algbw_bytes_per_s"] * bus_factor(r["op"], 2))


def test_rank_failure_is_reported():
    """A rank that dies (here: an invalid dtype for the entry point) surfaces as an error with its output."""
    with pytest.raises(RuntimeError, match="exited with"):
        run_local(2, ["all_reduce"], [4096], dtype="fp64", backend="gloo", iters=1, warmup=0, timeout_s=120.0)


@pytest.mark.gpu
def test_nccl_all_gpus():
    n = torch.cuda.device_count()
    if n < 2:
        pytest.skip("needs 2 or more GPUs")
    rows = run_local(n, ["all_reduce", "all_gather"], [1 << 20], dtype="bf16", backend="nccl", iters=5)
    assert all(r["impl"] == "torch.distributed/nccl" and r["busbw_bytes_per_s"] > 0 for r in rows)
