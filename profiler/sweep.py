"""The profile sweep: the operator shapes one model under one TP degree produces, timed on this device.

For a model and TP the per-GPU shapes come from hwmodels.profiled.op_shapes (the same shapes the
profiled cost model looks up): GEMMs per weight over token counts, prefill attention over
(sequences x prompt length), paged decode attention over (sequences x context), RMSNorm / SwiGLU /
RoPE over token counts, and collectives over message sizes and world sizes. On CUDA both the Triton
kernel and the torch implementation are timed (impl column); on CPU only torch is (the Triton
interpreter is not a timing device). Rows are appended to the table after each op family, so an
interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from hwmodels.dtypes import dtype_bytes
from hwmodels.models import ModelSpec
from hwmodels.profiled import attention_work, causal_pairs, elementwise_work, gemm_work, op_shapes
from profiler.devices import device_name, run_metadata
from profiler.table import append_rows, existing_keys, key_of, row
from profiler.timing import Timing, bench, cpu_samples, summarize

OP_FAMILIES = ("gemm", "attention", "decode", "elementwise", "collectives")
FLUSH_S = 20.0  # one-round sweeps (CUDA) append their rows at least this often
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DECODE_BLOCK_SIZE = 16  # vLLM's default KV block size


@dataclass(frozen=True)
class Grid:
    """The sizes a sweep visits."""

    tokens: tuple[int, ...]
    logits: tuple[int, ...]
    prefill_seqs: tuple[int, ...]
    prefill_lens: tuple[int, ...]
    decode_seqs: tuple[int, ...]
    decode_contexts: tuple[int, ...]
    world_sizes: tuple[int, ...]
    message_bytes: tuple[int, ...]
    # cached tokens before a prefill chunk (chunked prefill, Sarathi / vLLM): chunks of prefill_lens on these
    chunk_contexts: tuple[int, ...] = ()


def default_grid(device: str, quick: bool, tp: int = 1) -> Grid:
    """Token counts, lengths and sizes to sweep; powers of two plus 3·2^k midpoints where not quick."""
    def pow2(lo: int, hi: int, mids: bool) -> tuple[int, ...]:
        out = []
        x = lo
        while x <= hi:
            out.append(x)
            if mids and 3 * x // 2 <= hi and x >= 2:
                out.append(3 * x // 2)
            x *= 2
        return tuple(out)

    if device == "cpu":
        worlds = (2,) if quick else (2, 4)
        if quick:
            return Grid(tokens=pow2(1, 512, False), logits=pow2(1, 64, False), prefill_seqs=(1, 2, 4),
                        prefill_lens=(16, 32, 64, 128, 256), decode_seqs=(1, 2, 4, 8, 16),
                        decode_contexts=(32, 64, 128, 256, 512), world_sizes=worlds,
                        message_bytes=tuple(4096 * 4 ** i for i in range(5)), chunk_contexts=(128, 512))
        return Grid(tokens=pow2(1, 2048, True), logits=pow2(1, 256, True), prefill_seqs=(1, 2, 4, 8),
                    prefill_lens=pow2(16, 1024, True), decode_seqs=(1, 2, 4, 8, 16, 32, 64),
                    decode_contexts=pow2(32, 2048, True), world_sizes=worlds,
                    message_bytes=tuple(4096 * 4 ** i for i in range(7)), chunk_contexts=(128, 512, 2048))
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 1
    worlds = tuple(sorted({w for w in (2, 4, 8, tp) if 1 < w <= n_gpu}))
    if quick:
        return Grid(tokens=pow2(1, 4096, False), logits=pow2(1, 256, False), prefill_seqs=(1, 4, 16),
                    prefill_lens=(128, 512, 2048), decode_seqs=(1, 8, 64), decode_contexts=(256, 1024, 4096),
                    world_sizes=worlds, message_bytes=tuple(4096 * 4 ** i for i in range(0, 9, 2)),
                    chunk_contexts=(2048, 8192))
    return Grid(tokens=pow2(1, 16384, True), logits=pow2(1, 512, True), prefill_seqs=(1, 2, 4, 8, 16, 32),
                prefill_lens=pow2(64, 8192, True), decode_seqs=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                decode_contexts=pow2(128, 32768, True), world_sizes=worlds,
                message_bytes=tuple(4096 * 4 ** i for i in range(10)), chunk_contexts=(1024, 4096, 16384))


@dataclass
class Case:
    """One measurement to make: its table key fields, its work, and a factory for the timed call."""

    op: str
    impl: str
    name: str
    shape: dict[str, int]
    flops: float
    nbytes: float
    make: Callable[[], Callable[[], object]]
    family: str


@dataclass
class SweepConfig:
    model: ModelSpec
    device: str = "cpu"
    tp: int = 1
    dtype: str = "fp32"
    ops: tuple[str, ...] = OP_FAMILIES
    quick: bool = False
    min_time_s: float = 0.05
    grid: Grid | None = None
    seed: int = 0
    # NOTE: CPU default is one thread: multi-threaded BLAS timings on a machine with any other load are
    # dominated by preempted OpenMP threads (measured 50 µs GEMMs reading 20-50 ms on a loaded 2-core VM).
    # Pass more on an idle machine, and run the executor with the same count (the device label records it).
    threads: int | None = None
    impls: tuple[str, ...] | None = None  # default: triton + torch on CUDA, torch on CPU
    rounds: int = 3  # CPU: interleaved sampling bursts per case


@dataclass
class SweepResult:
    rows_added: int = 0
    rows_skipped: int = 0
    seconds: float = 0.0
    per_family: dict[str, int] = field(default_factory=dict)


def _impls(device: str) -> tuple[str, ...]:
    return ("triton", "torch") if device == "cuda" else ("torch",)


def build_cases(cfg: SweepConfig) -> list[Case]:
    """Every (op, impl, shape) of the sweep, in family order (collectives are measured separately)."""
    sh = op_shapes(cfg.model, cfg.tp)
    grid = cfg.grid or default_grid(cfg.device, cfg.quick, cfg.tp)
    dt = TORCH_DTYPES[cfg.dtype]
    item = dtype_bytes(cfg.dtype)
    dev = cfg.device
    impls = cfg.impls or _impls(dev)

    def rand_for(op: str, shape: dict) -> Callable[[], tuple[Callable[..., torch.Tensor], torch.Generator]]:
        """Inputs seeded by (seed, op, shape): every impl of one shape gets the same tensors."""
        seed = zlib.crc32(repr((cfg.seed, op, sorted(shape.items()))).encode())

        def new():
            gen = torch.Generator().manual_seed(seed)  # CPU: tensors here, and page tables on any device
            if dev == "cpu":
                return (lambda *dims: torch.randn(*dims, generator=gen).to(dtype=dt)), gen
            # NOTE: on CUDA draw on the device. A CPU draw of the full grid's largest decode KV cache
            # (256 seqs x 32k tokens x Hkv x D) is billions of values; on an H200 the quick grid's decode
            # family alone ran past two minutes drawing its caches on the host.
            dgen = torch.Generator(device=dev).manual_seed(seed)
            return (lambda *dims: torch.randn(*dims, generator=dgen, device=dev).to(dtype=dt)), gen
        return new

    cases: list[Case] = []
    if "gemm" in cfg.ops:
        seen: set[tuple[int, int, int]] = set()
        for name, (k, n) in sh.gemms.items():
            for m in (grid.logits if name == "lm_head" else grid.tokens):
                if (m, n, k) in seen:  # two weights of one shape (e.g. qkv and a small LM head): time once
                    continue
                seen.add((m, n, k))
                fl, by = gemm_work(m, n, k, item)
                shape = {"m": m, "n": n, "k": k}
                for impl in impls:
                    cases.append(Case("gemm", impl, name, shape, fl, by,
                                      _gemm_factory(impl, m, n, k, rand_for("gemm", shape)), "gemm"))
    if "attention" in cfg.ops:
        for ctx in (0, *grid.chunk_contexts):
            for b in grid.prefill_seqs:
                for length in grid.prefill_lens:
                    pairs = b * causal_pairs(length, ctx + length)
                    fl, by = attention_work(pairs, b * length, b * (ctx + length), sh.heads, sh.kv_heads,
                                            sh.head_dim, item)
                    shape = {"num_seqs": b, "num_tokens": b * length, "context_len": ctx, "num_heads": sh.heads,
                             "num_kv_heads": sh.kv_heads, "head_dim": sh.head_dim}
                    for impl in impls:
                        cases.append(Case("attention_prefill", impl, "attention", shape, fl, by,
                                          _prefill_factory(impl, b, length, ctx, sh, rand_for("prefill", shape), dev),
                                          "attention"))
    if "decode" in cfg.ops:
        for b in grid.decode_seqs:
            for ctx in grid.decode_contexts:
                fl, by = attention_work(b * ctx, b, b * ctx, sh.heads, sh.kv_heads, sh.head_dim, item)
                shape = {"num_seqs": b, "num_tokens": b, "context_len": ctx, "num_heads": sh.heads,
                         "num_kv_heads": sh.kv_heads, "head_dim": sh.head_dim, "block_size": DECODE_BLOCK_SIZE}
                for impl in impls:
                    cases.append(Case("attention_decode", impl, "attention", shape, fl, by,
                                      _decode_factory(impl, b, ctx, sh, rand_for("decode", shape), dev), "decode"))
    if "elementwise" in cfg.ops:
        for t in grid.tokens:
            fl, by = elementwise_work("rmsnorm", t, sh.hidden, item)
            shape = {"num_tokens": t, "hidden": sh.hidden}
            for impl in impls:
                cases.append(Case("rmsnorm", impl, "norm", shape, fl, by,
                                  _rmsnorm_factory(impl, t, sh.hidden, rand_for("rmsnorm", shape)), "elementwise"))
            if sh.ffn_local:
                fl, by = elementwise_work("swiglu", t, sh.ffn_local, item)
                shape = {"num_tokens": t, "hidden": sh.ffn_local}
                for impl in impls:
                    cases.append(Case("swiglu", impl, "mlp_act", shape, fl, by,
                                      _swiglu_factory(impl, t, sh.ffn_local, rand_for("swiglu", shape)),
                                      "elementwise"))
            if sh.rope_heads:
                fl, by = elementwise_work("rope", t, sh.rope_heads * sh.head_dim, item)
                shape = {"num_tokens": t, "num_heads": sh.rope_heads, "head_dim": sh.head_dim}
                for impl in impls:
                    cases.append(Case("rope", impl, "rope", shape, fl, by,
                                      _rope_factory(impl, t, sh.rope_heads, sh.head_dim, rand_for("rope", shape), dev),
                                      "elementwise"))
    return cases


# ---- timed callables (tensors are allocated once, outside the timed call) ------------------------------
def _gemm_factory(impl, m, n, k, new_rand):
    def make():
        from profiler.kernels.gemm import matmul, matmul_ref

        rand, _ = new_rand()
        a, b = rand(m, k), rand(k, n)
        fn = matmul if impl == "triton" else matmul_ref
        return lambda: fn(a, b)
    return make


def _cu(lens: list[int], device: str) -> torch.Tensor:
    out = [0]
    for x in lens:
        out.append(out[-1] + x)
    return torch.tensor(out, dtype=torch.int32, device=device)


def _prefill_factory(impl, b, length, ctx, sh, new_rand, dev):
    """b sequences of `length` new tokens on top of `ctx` cached ones (ctx = 0: whole prompts)."""
    def make():
        from profiler.kernels.attention import flash_attention_varlen, flash_attention_varlen_ref

        rand, _ = new_rand()
        q = rand(b * length, sh.heads, sh.head_dim)
        k = rand(b * (ctx + length), sh.kv_heads, sh.head_dim)
        v = rand(b * (ctx + length), sh.kv_heads, sh.head_dim)
        cu_q, cu_k = _cu([length] * b, dev), _cu([ctx + length] * b, dev)
        if impl == "triton":
            return lambda: flash_attention_varlen(q, k, v, cu_q, cu_k, causal=True, max_seqlen_q=length)
        return lambda: flash_attention_varlen_ref(q, k, v, cu_q, cu_k, causal=True)
    return make


def _decode_factory(impl, b, ctx, sh, new_rand, dev):
    def make():
        from profiler.kernels.attention import paged_decode_attention, paged_decode_attention_torch

        rand, gen = new_rand()
        pages = -(-ctx // DECODE_BLOCK_SIZE)
        num_blocks = b * pages
        k_cache = rand(num_blocks, DECODE_BLOCK_SIZE, sh.kv_heads, sh.head_dim)
        v_cache = rand(num_blocks, DECODE_BLOCK_SIZE, sh.kv_heads, sh.head_dim)
        # scattered pages, as a paged KV manager hands them out
        table = torch.randperm(num_blocks, generator=gen).reshape(b, pages).to(torch.int32).to(dev)
        lens = torch.full((b,), ctx, dtype=torch.int32, device=dev)
        q = rand(b, sh.heads, sh.head_dim)
        if impl == "triton":
            return lambda: paged_decode_attention(q, k_cache, v_cache, table, lens, max_context_len=ctx)
        return lambda: paged_decode_attention_torch(q, k_cache, v_cache, table, lens)
    return make


def _rmsnorm_factory(impl, t, hidden, new_rand):
    def make():
        from profiler.kernels.elementwise import rmsnorm, rmsnorm_ref

        rand, _ = new_rand()
        x, w = rand(t, hidden), rand(hidden)
        fn = rmsnorm if impl == "triton" else rmsnorm_ref
        return lambda: fn(x, w)
    return make


def _swiglu_factory(impl, t, ffn, new_rand):
    def make():
        from profiler.kernels.elementwise import swiglu, swiglu_ref

        rand, _ = new_rand()
        g, u = rand(t, ffn), rand(t, ffn)
        fn = swiglu if impl == "triton" else swiglu_ref
        return lambda: fn(g, u)
    return make


def _rope_factory(impl, t, heads, head_dim, new_rand, dev):
    def make():
        from profiler.kernels.elementwise import rope

        rand, _ = new_rand()
        x = rand(t, heads, head_dim)
        pos = torch.arange(t, dtype=torch.int32, device=dev)
        if impl == "triton":
            return lambda: rope(x, pos)
        # torch: cos/sin tables precomputed once (as a serving engine caches them), rotation timed
        half = head_dim // 2
        ang = pos.double()[:, None] * (10000.0 ** (-torch.arange(half, dtype=torch.float64, device=dev) / half))
        c, s = ang.cos().to(x.dtype)[:, None, :], ang.sin().to(x.dtype)[:, None, :]
        return lambda: torch.cat([x[..., :half] * c - x[..., half:] * s, x[..., half:] * c + x[..., :half] * s], -1)
    return make


# ---- running ---------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_sweep(cfg: SweepConfig, out: str | Path, progress: bool = True) -> SweepResult:
    """Measure every case not already in `out` and append the rows; collectives last (they spawn processes)."""
    threads_before = torch.get_num_threads()
    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads or 1)
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_sweep(cfg, out, progress)
    finally:
        torch.set_num_threads(threads_before)


def launched_by_torchrun() -> bool:
    """RANK and WORLD_SIZE set with more than one rank: this process is one rank of a torchrun job."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _run_sweep(cfg: SweepConfig, out: str | Path, progress: bool) -> SweepResult:
    if launched_by_torchrun():
        return _run_distributed(cfg, out, progress)
    return _run_sweep_local(cfg, out, progress)


def _run_sweep_local(cfg: SweepConfig, out: str | Path, progress: bool) -> SweepResult:
    t0 = time.perf_counter()
    res = SweepResult()
    dev_label = device_name(cfg.device)
    meta = run_metadata(cfg.device, note=f"sweep: model {cfg.model.name}, tp {cfg.tp}, dtype {cfg.dtype}, "
                                         f"quick {cfg.quick}")
    have = existing_keys(out)
    cases = build_cases(cfg)
    todo = []
    for c in cases:
        k = key_of(row(dev_label, c.op, c.impl, cfg.dtype, 0.0, 0.0, 0.0, 0, **c.shape))
        if k in have:
            res.rows_skipped += 1
        else:
            todo.append(c)
    grid = cfg.grid or default_grid(cfg.device, cfg.quick, cfg.tp)
    coll_ops = [] if "collectives" not in cfg.ops else _collective_todo(grid, cfg.dtype, dev_label, have, res)

    rounds = 1 if cfg.device == "cuda" else max(1, cfg.rounds)
    families: list[list[Case]] = []
    for c in todo:
        if not families or families[-1][0].family != c.family:
            families.append([])
        families[-1].append(c)
    with _progress(progress) as bar:
        total = len(todo) * rounds + sum(len(sizes) for _, _, sizes in coll_ops)
        task = bar.add_task("profiling", total=total) if bar else None
        for fam in families:
            samples: list[list[float]] = [[] for _ in fam]
            timings: list[Timing | None] = [None] * len(fam)
            written, flushed_at = 0, time.perf_counter()

            def flush(upto: int) -> None:  # append the rows of fam[written:upto]
                nonlocal written, flushed_at
                rows = []
                for i in range(written, upto):
                    c = fam[i]
                    t = timings[i] or summarize(samples[i])
                    rows.append(row(dev_label, c.op, c.impl, cfg.dtype, t.median_s, t.p10_s, t.p90_s, t.num_samples,
                                    flops=c.flops, nbytes=c.nbytes, name=c.name, measured_at=_now(), **c.shape))
                if rows:
                    res.rows_added += append_rows(out, rows, meta)
                written, flushed_at = upto, time.perf_counter()

            # NOTE: on CPU each case is sampled in `rounds` bursts interleaved with the other cases of its
            # family, so a burst of foreign load on the machine spoils part of every case's samples rather
            # than all samples of a few cases; the median then discards it.
            for rnd in range(rounds):
                for i, c in enumerate(fam):
                    if bar:
                        bar.update(task, description=f"{c.op} {c.impl} {_short(c.shape)}")
                    fn = c.make()
                    if cfg.device == "cuda":
                        fn()  # compile / autotune outside the timed region (do_bench's estimate would see it)
                        torch.cuda.synchronize()
                        timings[i] = bench(fn, "cuda", min_time_s=cfg.min_time_s)
                    else:
                        samples[i] += cpu_samples(fn, cfg.min_time_s / rounds, warmup=2 if rnd == 0 else 1,
                                                  max_samples=200, min_samples=max(3, 15 // rounds))
                    del fn
                    if bar:
                        bar.advance(task)
                    # NOTE: with one round (CUDA) a case is final once timed: write every FLUSH_S, so a sweep
                    # stopped mid-family (a time limit on a lent GPU) keeps what it measured; the table is
                    # resumable, so the next call times only the rest.
                    if rounds == 1 and time.perf_counter() - flushed_at > FLUSH_S:
                        flush(i + 1)
            flush(len(fam))
            res.per_family[fam[0].family] = res.per_family.get(fam[0].family, 0) + len(fam)
        for world, ops, sizes in coll_ops:
            from profiler.collectives import run_local

            if bar:
                bar.update(task, description=f"collectives world {world} ({', '.join(ops)})")
            rows = run_local(world, ops, sizes, dtype=cfg.dtype, iters=50 if cfg.quick else 100,
                             device_label=dev_label)
            note = f"{meta.get('note', '')}; collectives world {world}"
            res.rows_added += append_rows(out, rows, {**meta, "note": note})
            res.per_family["collectives"] = res.per_family.get("collectives", 0) + len(rows)
            if bar:
                bar.advance(task, len(sizes))
    res.seconds = time.perf_counter() - t0
    return res


def _run_distributed(cfg: SweepConfig, out: str | Path, progress: bool) -> SweepResult:
    """Under torchrun (possibly across nodes): every rank joins the collectives of the group the environment
    describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK); rank 0 also times the kernels
    (on its own device) and is the only writer of the table."""
    from profiler.collectives import run_from_env

    t0 = time.perf_counter()
    rank = int(os.environ["RANK"])
    res = SweepResult()
    if cfg.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    kernels = tuple(op for op in cfg.ops if op != "collectives")
    if rank == 0 and kernels:
        res = _run_sweep_local(replace(cfg, ops=kernels), out, progress)
    if "collectives" in cfg.ops:
        from profiler.collectives import COLLECTIVES

        grid = cfg.grid or default_grid(cfg.device, cfg.quick, cfg.tp)
        dev_label = device_name(cfg.device)
        # NOTE: no resume here: every rank must run the same collectives; rank 0's append skips known keys.
        # NOTE: the backend follows --device, not torch.cuda.is_available(): `--device cpu` on a GPU host
        # must time gloo on the CPU (seen on a one-GPU H200: nccl was picked, and rank 1 had no GPU 1).
        rows = run_from_env(list(COLLECTIVES), list(grid.message_bytes), cfg.dtype, iters=50 if cfg.quick else 100,
                            backend="nccl" if cfg.device == "cuda" else "gloo", device_label=dev_label)
        if rank == 0:
            meta = run_metadata(cfg.device, note=f"collectives under torchrun, world {os.environ['WORLD_SIZE']}")
            res.rows_added += append_rows(out, rows, meta)
            res.per_family["collectives"] = len(rows)
    res.seconds = time.perf_counter() - t0
    return res


def _collective_todo(grid: Grid, dtype: str, dev_label: str, have: set, res: SweepResult):
    from profiler.collectives import COLLECTIVES, backend_name

    out = []
    for world in grid.world_sizes:
        ops = []
        impl = backend_name("nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world else "gloo")
        for op in COLLECTIVES:
            if op == "send_recv" and world % 2:
                continue
            keys = [key_of(row(dev_label, op, impl, dtype, 0, 0, 0, 0, world_size=world, size_bytes=s))
                    for s in grid.message_bytes]
            if all(k in have for k in keys):
                res.rows_skipped += len(keys)
            else:
                ops.append(op)
        if ops:
            out.append((world, ops, list(grid.message_bytes)))
    return out


def _short(shape: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in shape.items() if k not in ("num_heads", "num_kv_heads", "head_dim",
                                                                        "block_size"))


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)
