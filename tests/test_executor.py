"""The real executor's forward passes and serving loop are correct on CPU.

Paged varlen forward == dense forward of the same model on the same tokens; tokens generated under
continuous batching (with chunking and preemption) == greedy decoding of each request alone.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hwmodels.errors import UserError  # noqa: E402
from policies.config import VLLMSchedulerConfig  # noqa: E402
from policies.core import ReplicaCore  # noqa: E402
from policies.kv import PagedKVManager  # noqa: E402
from policies.request import Request  # noqa: E402
from policies.schedulers import REGISTRY, make_scheduler  # noqa: E402
from profiler.executor import (Executor, LlamaDims, LlamaModel, PagedKVCache, VirtualClock, build_batch,  # noqa: E402
                               prompt_tokens)

DIMS = LlamaDims(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
                 vocab_size=512, max_position=512)
ATOL = 1e-4  # fp32 logits of O(1) magnitude; the paged path sums in a different order


@pytest.fixture(scope="module")
def model():
    return LlamaModel(DIMS, seed=0)


def _ids(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, DIMS.vocab_size, (n,), generator=torch.Generator().manual_seed(seed))


def test_chunked_paged_forward_matches_dense(model):
    ids = _ids(45, 1)
    ref = model.forward_dense(ids)
    bs = 4
    cache = PagedKVCache(DIMS.num_layers, 32, bs, DIMS.num_kv_heads, DIMS.head_dim)
    blocks = [17, 3, 30, 8, 0, 21, 5, 9, 12, 27, 1, 2]  # scattered, not in order
    got, ctx = [], 0
    for n in [13, 7, 16, 1, 1, 1, 1, 1, 1, 1, 1, 1]:
        batch = build_batch([(n, ctx, blocks)], bs)
        got.append(model.forward_packed(ids[ctx:ctx + n], batch, cache, torch.arange(n)))
        ctx += n
    assert ctx == 45
    torch.testing.assert_close(torch.cat(got), ref, atol=ATOL, rtol=0)


def test_mixed_packed_batch_matches_dense(model):
    """One pass holding a fresh prompt, a second chunk on cached context, and two decodes."""
    bs = 8
    cache = PagedKVCache(DIMS.num_layers, 40, bs, DIMS.num_kv_heads, DIMS.head_dim)
    a, b, c, d = _ids(19, 2), _ids(30, 3), _ids(25, 4), _ids(9, 5)
    blk = {"a": [4, 5, 6], "b": [10, 0, 33, 2], "c": [20, 21, 39, 7], "d": [15, 16]}
    # Earlier passes: b's first 18 tokens, c's first 24, d's first 8.
    pre = build_batch([(18, 0, blk["b"]), (24, 0, blk["c"]), (8, 0, blk["d"])], bs)
    model.forward_packed(torch.cat([b[:18], c[:24], d[:8]]), pre, cache, torch.tensor([17]))
    batch = build_batch([(19, 0, blk["a"]), (12, 18, blk["b"]), (1, 24, blk["c"]), (1, 8, blk["d"])], bs)
    assert batch.num_decodes == 2 and len(batch.prefills) == 2
    rows = torch.arange(19 + 12 + 2)
    got = model.forward_packed(torch.cat([a, b[18:], c[24:], d[8:]]), batch, cache, rows)
    torch.testing.assert_close(got[:19], model.forward_dense(a), atol=ATOL, rtol=0)
    torch.testing.assert_close(got[19:31], model.forward_dense(b)[18:], atol=ATOL, rtol=0)
    torch.testing.assert_close(got[31], model.forward_dense(c)[24], atol=ATOL, rtol=0)
    torch.testing.assert_close(got[32], model.forward_dense(d)[8], atol=ATOL, rtol=0)


def test_build_batch_rejects_decode_before_prefill():
    with pytest.raises(ValueError):
        build_batch([(1, 5, [0]), (4, 0, [1])], 8)


_SOLO: dict[tuple[int, int, int, int], list[int]] = {}


def _greedy_alone(model, req: Request, seed: int) -> list[int]:
    """Greedy decoding of one request alone with the dense forward (memoised across schedulers)."""
    key = (req.id, req.prompt_len, req.output_len, seed)
    if key not in _SOLO:
        ids = prompt_tokens(req, DIMS.vocab_size, seed)
        for _ in range(req.output_len):
            ids.append(int(model.forward_dense(torch.tensor(ids))[-1].argmax()))
        _SOLO[key] = ids[req.prompt_len:]
    return _SOLO[key]


def _requests(n: int, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(0.005, n))
    return [Request(i, float(t[i]), int(rng.integers(3, 60)), int(rng.integers(1, 20))) for i in range(n)]


SCHEDULERS = [VLLMSchedulerConfig(max_num_batched_tokens=128, max_batch_size=8)]
if "sarathi" in REGISTRY:
    from policies.config import SarathiSchedulerConfig

    SCHEDULERS.append(SarathiSchedulerConfig(chunk_size=32, max_batch_size=8))


@pytest.mark.parametrize("sched", SCHEDULERS, ids=lambda c: c.kind)
def test_batched_generation_matches_greedy_alone(model, sched):
    """Continuous batching with few KV blocks (forcing preemption) yields each request's solo greedy tokens."""
    reqs = _requests(16, seed=7)
    core = ReplicaCore(make_scheduler(sched), PagedKVManager(num_blocks=14, block_size=8), max_model_len=512)
    ex = Executor(model, core, clock=VirtualClock(lambda shape: 1e-3 + 1e-5 * shape.num_tokens), seed=3)
    res = ex.serve([Request(r.id, r.arrival_s, r.prompt_len, r.output_len) for r in reqs])
    assert (res.requests.state == "finished").all()
    assert res.requests.num_preemptions.sum() > 0, "scenario should exercise preemption + recompute"
    assert max(res.steps.batch_size) > 1, "scenario should batch"
    for r in reqs:
        assert res.output_tokens[r.id] == _greedy_alone(model, r, seed=3), f"request {r.id}"
        assert len(res.token_times_s[r.id]) >= r.output_len


def test_op_clock_records_every_kernel_call_of_every_pass(model):
    """The diagnostic per-op timing of served passes: one record per pass, a GEMM per projection per layer."""
    import time

    reqs = _requests(6, seed=2)
    core = ReplicaCore(make_scheduler(VLLMSchedulerConfig()), PagedKVManager(64, 16), max_model_len=512)
    ex = Executor(model, core, clock=VirtualClock(lambda s: 2e-3), op_clock=time.perf_counter)
    res = ex.serve(reqs)
    assert len(ex.op_records) == len(res.steps)
    layers = model.dims.num_layers
    for rec, tokens in zip(ex.op_records, res.steps.num_tokens):
        ops = [op for op, _, _ in rec]
        assert ops.count("attention") == layers and ops.count("gemm") >= 4 * layers
        assert all(sec >= 0 for _, _, sec in rec)
        assert {key[0] for op, key, _ in rec if op == "gemm"} <= {tokens, *range(1, tokens + 1)}


def test_frames_schema_and_timestamp_order(model):
    reqs = _requests(10, seed=1)
    core = ReplicaCore(make_scheduler(VLLMSchedulerConfig()), PagedKVManager(64, 16), max_model_len=512)
    res = Executor(model, core, clock=VirtualClock(lambda s: 2e-3)).serve(reqs)
    rq, st = res.requests, res.steps
    assert list(rq.columns) == ["id", "replica", "arrival_s", "scheduled_s", "first_token_s", "finish_s",
                                "input_tokens", "output_tokens", "num_generated", "num_preemptions",
                                "num_cached_tokens", "state", "reject_reason"]
    assert list(st.columns) == ["replica", "start_s", "end_s", "batch_size", "num_tokens", "prefill_tokens",
                                "decode_tokens", "kv_used_blocks", "kv_free_blocks", "kv_tokens", "num_waiting",
                                "num_running", "num_preempted"]
    assert (rq.arrival_s <= rq.scheduled_s).all() and (rq.scheduled_s < rq.first_token_s).all()
    assert (rq.first_token_s <= rq.finish_s).all() and (rq.num_generated == rq.output_tokens).all()
    assert (st.start_s.diff().dropna() > 0).all() and np.allclose(st.end_s - st.start_s, 2e-3)
    assert (st.prefill_tokens + st.decode_tokens == st.num_tokens).all()
    assert st.num_tokens.sum() == (rq.input_tokens + rq.output_tokens - 1).sum()  # last token is never fed back


def test_hf_config_loads_and_errors_name_the_field(tmp_path):
    good = {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 6,
            "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 1024}
    (tmp_path / "config.json").write_text(json.dumps(good))
    dims = LlamaDims.from_hf_config(tmp_path)
    assert (dims.head_dim, dims.num_kv_heads, dims.num_layers) == (16, 2, 3)
    (tmp_path / "bad.json").write_text(json.dumps({**good, "num_key_value_heads": 4}))
    with pytest.raises(UserError, match="num_key_value_heads=4"):
        LlamaDims.from_hf_config(tmp_path / "bad.json")
    with pytest.raises(UserError, match="no config.json"):
        LlamaDims.from_hf_config(tmp_path / "missing")


def test_shipped_tiny_llama_config_loads():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "tiny-llama" / "config.json"
    dims = LlamaDims.from_hf_config(path)
    assert dims.num_heads % dims.num_kv_heads == 0 and dims.num_params > 0


def test_triton_backend_matches_dense():
    """The CUDA path (profiler's Triton kernels), here under TRITON_INTERPRET=1 on a tiny model."""
    from profiler.kernels._common import interpreting

    if not (torch.cuda.is_available() or interpreting()):
        pytest.skip("Triton needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it without CUDA)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dims = LlamaDims(hidden_size=32, intermediate_size=48, num_layers=1, num_heads=2, num_kv_heads=1,
                     vocab_size=64, max_position=64)
    m = LlamaModel(dims, seed=1, device=device, backend="triton")
    ref_model = LlamaModel(dims, seed=1, device=device, backend="torch")
    bs = 4
    cache = PagedKVCache(1, 16, bs, 1, dims.head_dim, device=device)
    a, b = _ids(9, 8).to(device) % 64, _ids(7, 9).to(device) % 64
    ba, bb = [3, 9, 1], [5, 12]
    pre = build_batch([(6, 0, bb)], bs, device)
    m.forward_packed(b[:6], pre, cache, torch.tensor([5], device=device))
    batch = build_batch([(9, 0, ba), (1, 6, bb)], bs, device)
    got = m.forward_packed(torch.cat([a, b[6:7]]), batch, cache, torch.arange(10, device=device))
    torch.testing.assert_close(got[:9], ref_model.forward_dense(a), atol=1e-3, rtol=0)
    torch.testing.assert_close(got[9], ref_model.forward_dense(b[:7])[6], atol=1e-3, rtol=0)


def test_prefix_cache_hits_reuse_kv_and_keep_greedy_outputs(model):
    """Requests sharing trace prefix ids share prompt tokens, so a prefix-cache hit reuses another
    request's KV blocks; the generated tokens must still equal solo greedy decoding."""
    from policies.config import PagedKVConfig
    from profiler.executor.server import make_core

    rng = np.random.default_rng(5)
    reqs = [Request(i, 0.004 * i, int(rng.integers(20, 60)), int(rng.integers(1, 8)), hash_ids=(int(i % 3), 100 + i))
            for i in range(12)]
    core = make_core(VLLMSchedulerConfig(max_num_batched_tokens=256), PagedKVConfig(block_size=8, num_blocks=64,
                                                                                    prefix_caching=True), 64, 512)
    res = Executor(model, core, clock=VirtualClock(lambda s: 2e-3), seed=2).serve(
        [Request(r.id, r.arrival_s, r.prompt_len, r.output_len, hash_ids=r.hash_ids) for r in reqs])
    assert res.requests.num_cached_tokens.sum() > 0, "scenario should hit the prefix cache"
    for r in reqs:
        assert res.output_tokens[r.id] == _greedy_alone(model, r, seed=2), f"request {r.id}"


def test_pauses_run_off_the_clock_once_each_and_keep_the_served_run(model):
    """`serve(pauses=...)`: each pause runs once, after the first pass ending at or past its time (late ones after
    the last pass); the served timeline and tokens are those of a run without pauses when a pause restores the
    KV blocks it overwrote — and they are not when it does not (the test can see a clobbered cache)."""
    reqs = _requests(12, seed=5)
    calls: list[tuple[float, float]] = []
    ex: list[Executor] = []

    def serve(pauses):
        core = ReplicaCore(make_scheduler(VLLMSchedulerConfig()), PagedKVManager(64, 8), max_model_len=512)
        ex[:] = [Executor(model, core, clock=VirtualClock(lambda s: 1e-3 + 1e-5 * s.num_tokens), seed=3)]
        return ex[0].serve([Request(r.id, r.arrival_s, r.prompt_len, r.output_len) for r in reqs], pauses)

    def pause(t, restore=True):
        def fn():
            e = ex[0]
            calls.append((t, e.clock.now()))
            saved = e.cache.snapshot(64)
            e.cache.k.normal_()
            e.cache.v.normal_()
            if restore:
                e.cache.restore(saved)
        return t, fn

    base = serve(())
    span = base.steps.end_s.max()
    res = serve([pause(span * 0.6), pause(span * 0.3), pause(span * 10)])
    assert [t for t, _ in calls] == [span * 0.3, span * 0.6, span * 10]
    ends = res.steps.end_s.to_numpy()
    for t, at in calls[:2]:
        assert at == ends[ends >= t].min()  # right after the first pass that ends at or past t
    assert calls[2][1] == ends.max()  # past the run: after the last pass
    assert res.steps.equals(base.steps) and res.requests.equals(base.requests)
    assert res.output_tokens == base.output_tokens
    assert serve([pause(span * 0.3, restore=False)]).output_tokens != base.output_tokens


def test_clocks_leave_excluded_work_off():
    import time

    from profiler.executor import CPUClock, WallClock

    def burn():  # 50 ms of this thread's CPU time
        t = time.thread_time()
        while time.thread_time() - t < 0.05:
            pass

    for clock, work in ((CPUClock(), burn), (WallClock(), lambda: time.sleep(0.05))):
        clock.start()
        a = clock.now()
        t = time.perf_counter()
        clock.excluding(work)
        assert time.perf_counter() - t > 0.01  # the work took real time ...
        assert clock.now() - a < 0.005  # ... that the clock does not show
