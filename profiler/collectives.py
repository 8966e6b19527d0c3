"""Collectives over a real torch.distributed process group, timed per message size (nccl-tests style).

Sizes follow nccl-tests (PERFORMANCE.md): `size_bytes` is the per-rank buffer the operation is
named by — all-reduce: the reduced buffer; all-gather: the gathered output (n·send); reduce-scatter:
the input (n·output); all-to-all: the per-rank send buffer; send/recv: the message. Then
algbw = size / time and busbw = algbw · factor, factor = 2(n−1)/n (all-reduce), (n−1)/n
(all-gather, reduce-scatter, all-to-all), 1 (send/recv), so that busbw is comparable to link
bandwidth whatever n is. Time per size is the slowest rank's time of each iteration (NCCL-tests
reports the max over ranks), summarised by median/p10/p90 over iterations.

Run locally with `run_local(world_size, ...)` (one `python -m profiler.collectives` process per rank,
NCCL on GPUs or gloo on CPU, on loopback 127.0.0.1), or under torchrun across nodes with
`python -m profiler.collectives` (or `llmsim profile --ops collectives`), which read RANK /
WORLD_SIZE / MASTER_ADDR / MASTER_PORT / LOCAL_RANK from the environment.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def bus_factor(op: str, world_size: int) -> float:
    """nccl-tests' busbw/algbw ratio for `op` over `world_size` ranks."""
    n = world_size
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if op == "send_recv":
        return 1.0
    raise ValueError(f"unknown collective {op!r}; allowed: {', '.join(COLLECTIVES)}")


def _make_call(op: str, size_bytes: int, dtype: torch.dtype, device: torch.device, rank: int, n: int):
    """A zero-argument callable doing one `op` of `size_bytes` on this rank (buffers allocated once)."""
    item = torch.empty((), dtype=dtype).element_size()
    count = max(n, size_bytes // item // n * n)  # divisible by n for the split collectives
    if op == "all_reduce":
        buf = torch.ones(count, dtype=dtype, device=device)
        return lambda: dist.all_reduce(buf)
    if op == "all_gather":
        out = torch.empty(count, dtype=dtype, device=device)
        inp = torch.ones(count // n, dtype=dtype, device=device)
        fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: fn(out, inp)
    if op == "reduce_scatter":
        inp = torch.ones(count, dtype=dtype, device=device)
        out = torch.empty(count // n, dtype=dtype, device=device)
        fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: fn(out, inp)
    if op == "all_to_all":
        inp = torch.ones(count, dtype=dtype, device=device)
        out = torch.empty(count, dtype=dtype, device=device)
        return lambda: dist.all_to_all_single(out, inp)
    if op == "send_recv":
        # Ring: even ranks send first then receive, odd ranks the reverse, so no rank deadlocks.
        buf = torch.ones(max(1, size_bytes // item), dtype=dtype, device=device)
        peer_to, peer_from = (rank + 1) % n, (rank - 1) % n

        def sendrecv():
            if rank % 2 == 0:
                dist.send(buf, peer_to)
                dist.recv(buf, peer_from)
            else:
                dist.recv(buf, peer_from)
                dist.send(buf, peer_to)
        return sendrecv
    raise ValueError(f"unknown collective {op!r}; allowed: {', '.join(COLLECTIVES)}")


def measure(ops: list[str], sizes_bytes: list[int], dtype: str = "fp32", warmup: int = 2, iters: int = 10,
            device_label: str = "", rounds: int = 5) -> list[dict]:
    """Time each (op, size) in the already-initialised process group; every rank must call this.

    The iterations of each (op, size) are spread over `rounds` passes over all of them, so a burst of
    foreign load spoils a few iterations of every size rather than all of one. Returns rows (see
    profiler.table.row) on rank 0 and [] on the others.
    """
    from profiler.table import row

    rank, n = dist.get_rank(), dist.get_world_size()
    device = _device()
    tdt = _DTYPES[dtype]
    keys = [(op, size) for op in ops if not (op == "send_recv" and n % 2)  # send/recv pairs need even n
            for size in sizes_bytes]
    rounds = max(1, min(rounds, iters))
    per_round = [iters // rounds + (1 if r < iters % rounds else 0) for r in range(rounds)]
    samples: dict[tuple[str, int], list[float]] = {k: [] for k in keys}
    for rnd in range(rounds):
        for op, size in keys:
            call = _make_call(op, size, tdt, device, rank, n)
            for _ in range(warmup if rnd == 0 else 1):
                call()
            _sync(device)
            for _ in range(per_round[rnd]):
                dist.barrier()
                _sync(device)
                t0 = time.perf_counter()
                call()
                _sync(device)
                samples[(op, size)].append(time.perf_counter() - t0)
            del call
    rows = []
    for op, size in keys:
        # slowest rank per iteration; NCCL reduces device tensors only
        worst = torch.tensor(samples[(op, size)], dtype=torch.float64).to(device)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        if rank != 0:
            continue
        p10, med, p90 = np.percentile(worst.cpu().numpy(), [10, 50, 90])
        # send_recv: each rank sends then receives (or the reverse): two messages per timed exchange.
        k = 0.5 if op == "send_recv" else 1.0
        algbw = size / (med * k)
        rows.append(row(device_label or device_name(), op, backend_name(dist.get_backend()), dtype, med * k,
                        p10 * k, p90 * k, iters, nbytes=size, measured_at=_now(), algbw_bytes_per_s=algbw,
                        busbw_bytes_per_s=algbw * bus_factor(op, n), world_size=n, size_bytes=size))
    return rows


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def backend_name(backend: str) -> str:
    """The table's `impl` of a collective row, e.g. 'torch.distributed/gloo'."""
    return f"torch.distributed/{backend}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_name() -> str:
    from profiler.devices import device_name as name

    return name("cuda" if dist.is_initialized() and dist.get_backend() == "nccl" else "cpu")


# --------------------------------------------------------------------------- launching
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_local(world_size: int, ops: list[str], sizes_bytes: list[int], dtype: str = "fp32",
              backend: str | None = None, warmup: int = 2, iters: int = 10, device_label: str = "",
              timeout_s: float = 600.0) -> list[dict]:
    """Launch `world_size` ranks of this module's entry point on this host (loopback 127.0.0.1, as
    torchrun would with --standalone) and return rank 0's rows."""
    backend = backend or ("nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world_size else "gloo")
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise ValueError(f"world_size {world_size} needs {world_size} GPUs; found {torch.cuda.device_count()}")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="llmsim-coll-") as tmp:
        result = Path(tmp) / "rows.json"
        procs, logs = [], []
        for rank in range(world_size):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                   "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, "-m", "profiler.collectives", "--rows-json", str(result), "--ops", ",".join(ops),
                   "--sizes", ",".join(str(s) for s in sizes_bytes), "--dtype", dtype, "--iters", str(iters),
                   "--warmup", str(warmup), "--backend", backend, "--device-label", device_label]
            log = open(Path(tmp) / f"rank{rank}.log", "w+")  # a file, not a pipe: polled ranks never block on it
            logs.append(log)
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
        # NOTE: poll all ranks; once one fails, the others may wait in rendezvous or a collective for
        # the store's timeout, so they are killed rather than waited for.
        deadline = time.monotonic() + timeout_s
        timed_out = False
        while any(p.poll() is None for p in procs):
            failed = any(p.returncode not in (None, 0) for p in procs)
            timed_out = time.monotonic() > deadline
            if failed or timed_out:
                for q in procs:
                    if q.poll() is None:
                        q.kill()
                        q.wait()
                break
            time.sleep(0.05)
        outputs = []
        for p, log in zip(procs, logs):
            log.seek(0)
            outputs.append((p.returncode, log.read()))
            log.close()
        bad = [(i, rc, out) for i, (rc, out) in enumerate(outputs) if rc != 0]
        own = [b for b in bad if b[1] > 0]  # ranks that exited on their own (killed ones have rc < 0)
        if own:
            i, rc, out = own[0]
            raise RuntimeError(f"collective rank {i} exited with {rc}:\n{out[-2000:]}")
        if timed_out:
            raise RuntimeError(f"collectives on {world_size} ranks timed out after {timeout_s} s")
        if bad:
            i, rc, out = bad[0]
            raise RuntimeError(f"collective rank {i} exited with {rc}:\n{out[-2000:]}")
        return json.loads(result.read_text())


def run_from_env(ops: list[str], sizes_bytes: list[int], dtype: str = "fp32", warmup: int = 2,
                 iters: int = 10, backend: str | None = None, device_label: str = "") -> list[dict]:
    """Under torchrun: join the group RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT describe; rank 0 gets the rows."""
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"{var} is not set: launch with torchrun, or use run_local()")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    try:
        return measure(ops, sizes_bytes, dtype, warmup, iters, device_label)
    finally:
        dist.destroy_process_group()


def default_sizes(quick: bool) -> list[int]:
    """Message sizes: powers of 4 from 4 KiB (latency-bound) to 64 MiB (bandwidth-bound); quick: 4 sizes."""
    if quick:
        return [4096, 65536, 1 << 20, 4 << 20]
    return [4096 * 4 ** i for i in range(8)]


def main(argv: list[str] | None = None) -> None:
    """`torchrun --nproc-per-node N [--nnodes M ...] -m profiler.collectives --out FILE.parquet`.

    Every rank runs the same sweep; rank 0 appends the rows to --out (or writes them as JSON to
    --rows-json, which run_local uses).
    """
    from profiler.devices import run_metadata
    from profiler.table import append_rows

    ap = argparse.ArgumentParser(description="Time collectives over torch.distributed (nccl-tests busbw).")
    ap.add_argument("--out", help="profile table (parquet) to append to")
    ap.add_argument("--rows-json", help="write rank 0's rows here as JSON instead")
    ap.add_argument("--ops", default=",".join(COLLECTIVES))
    ap.add_argument("--sizes", default="", help="comma-separated message sizes in bytes")
    ap.add_argument("--dtype", default="fp32", choices=sorted(_DTYPES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--backend", default=None, choices=["nccl", "gloo"])
    ap.add_argument("--device-label", default="")
    args = ap.parse_args(argv)
    if not args.out and not args.rows_json:
        ap.error("one of --out or --rows-json is required")
    bad = [o for o in args.ops.split(",") if o and o not in COLLECTIVES]
    if bad:
        ap.error(f"--ops: unknown collective(s) {bad}; allowed: {', '.join(COLLECTIVES)}")
    ops = [o for o in args.ops.split(",") if o]
    sizes = [int(x) for x in args.sizes.split(",") if x] or default_sizes(args.quick)
    torch.set_num_threads(1)
    rows = run_from_env(ops, sizes, args.dtype, args.warmup, args.iters, args.backend, args.device_label)
    if int(os.environ["RANK"]) != 0:
        return
    if args.rows_json:
        Path(args.rows_json).write_text(json.dumps(rows))
    if args.out:
        dev = "cuda" if dist.is_available() and torch.cuda.is_available() else "cpu"
        added = append_rows(args.out, rows, run_metadata(dev, note="collectives under torchrun"))
        print(f"wrote {added} rows to {args.out}")


if __name__ == "__main__":
    main()
