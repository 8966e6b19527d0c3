"""Triton kernels vs their torch references on random inputs, under the CPU interpreter.

TRITON_INTERPRET must be set before triton.jit decorates the kernels, so it is set before the
kernel modules are imported (a no-op when CUDA runs them natively).
"""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():  # also set by conftest, before any module imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from hwmodels.profiled import causal_pairs  # noqa: E402
from profiler.kernels import attention as attn  # noqa: E402
from profiler.kernels import elementwise as ew  # noqa: E402
from profiler.kernels import gemm  # noqa: E402
from profiler.kernels._common import TOLERANCE, rel_error  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _rand(gen, *shape, dtype):
    return torch.randn(*shape, generator=gen).to(device=DEVICE, dtype=dtype)


def _cu(lens):
    out = [0]
    for n in lens:
        out.append(out[-1] + n)
    return torch.tensor(out, dtype=torch.int32, device=DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mnk", [(1, 16, 16), (37, 23, 50), (64, 48, 33)])
def test_gemm_matches_torch(dtype, mnk):
    gen = torch.Generator().manual_seed(sum(mnk))
    m, n, k = mnk
    a, b = _rand(gen, m, k, dtype=dtype), _rand(gen, k, n, dtype=dtype)
    assert rel_error(gemm.matmul(a, b), gemm.matmul_ref(a, b)) < TOLERANCE[dtype]


def test_gemm_every_autotune_config_is_correct():
    """Each config the autotuner may pick on CUDA computes the same product (checked once, fp16)."""
    gen = torch.Generator().manual_seed(3)
    a, b = _rand(gen, 40, 72, dtype=torch.float16), _rand(gen, 72, 36, dtype=torch.float16)
    ref = gemm.matmul_ref(a, b)
    for cfg in gemm.GEMM_CONFIGS:
        # NOTE: big GPU tiles run slowly under the interpreter; shrink BLOCK_K to keep the test < 1 s.
        kw = dict(cfg.kwargs, BLOCK_K=16) if DEVICE == "cpu" else cfg.kwargs
        assert rel_error(gemm.matmul(a, b, config=kw), ref) < TOLERANCE[torch.float16], cfg


def test_gemm_rejects_bad_shapes():
    with pytest.raises(ValueError, match="a\\[M,K\\]"):
        gemm.matmul(torch.zeros(3, 4), torch.zeros(5, 2))


def test_gemm_wrong_result_is_detected():
    """The check can fail: a transposed operand gives a large error."""
    gen = torch.Generator().manual_seed(1)
    a, b = _rand(gen, 16, 16, dtype=torch.float32), _rand(gen, 16, 16, dtype=torch.float32)
    assert rel_error(gemm.matmul(a, b.t().contiguous()), gemm.matmul_ref(a, b)) > 0.1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False])
def test_flash_attention_varlen_ragged_gqa(dtype, causal):
    gen = torch.Generator().manual_seed(7)
    # ragged: a full prefill, a chunked prefill (queries are the last 17 of 30 keys), one decode-like
    # query, an empty sequence; GQA with 2 query heads per KV head; head_dim not a power of two.
    len_q, len_k = [5, 17, 1, 0], [5, 30, 9, 3]
    num_heads, num_kv_heads, head_dim = 4, 2, 24
    q = _rand(gen, sum(len_q), num_heads, head_dim, dtype=dtype)
    k = _rand(gen, sum(len_k), num_kv_heads, head_dim, dtype=dtype)
    v = _rand(gen, sum(len_k), num_kv_heads, head_dim, dtype=dtype)
    cq, ck = _cu(len_q), _cu(len_k)
    out = attn.flash_attention_varlen(q, k, v, cq, ck, causal=causal)
    ref = attn.flash_attention_varlen_ref(q, k, v, cq, ck, causal=causal)
    assert rel_error(out, ref) < TOLERANCE[dtype]


def test_flash_attention_is_causal():
    """Changing a future key leaves earlier queries' outputs unchanged (and changes later ones)."""
    gen = torch.Generator().manual_seed(11)
    q, k, v = (_rand(gen, 20, 2, 16, dtype=torch.float32) for _ in range(3))
    cu = _cu([20])
    out1 = attn.flash_attention_varlen(q, k, v, cu, cu)
    k2 = k.clone()
    k2[12] += 5.0
    out2 = attn.flash_attention_varlen(q, k2, v, cu, cu)
    assert torch.equal(out1[:12], out2[:12])
    assert not torch.allclose(out1[12:], out2[12:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_splits", [1, 3])
def test_paged_decode_attention(dtype, num_splits):
    gen = torch.Generator().manual_seed(5)
    batch, page, num_blocks = 3, 4, 20
    num_heads, num_kv_heads, head_dim = 4, 1, 16  # MQA-style grouping
    context = torch.tensor([1, 9, 21], dtype=torch.int32, device=DEVICE)  # 1 token, partial page, 6 pages
    k_cache = _rand(gen, num_blocks, page, num_kv_heads, head_dim, dtype=dtype)
    v_cache = _rand(gen, num_blocks, page, num_kv_heads, head_dim, dtype=dtype)
    # scattered, non-contiguous pages: what a paged KV manager hands out
    block_table = torch.randperm(num_blocks, generator=gen)[:batch * 6].reshape(batch, 6).to(torch.int32).to(DEVICE)
    q = _rand(gen, batch, num_heads, head_dim, dtype=dtype)
    out = attn.paged_decode_attention(q, k_cache, v_cache, block_table, context, num_splits=num_splits)
    ref = attn.paged_decode_attention_ref(q, k_cache, v_cache, block_table, context)
    assert rel_error(out, ref) < TOLERANCE[dtype]
    batched = attn.paged_decode_attention_torch(q, k_cache, v_cache, block_table, context)
    assert rel_error(batched, ref) < TOLERANCE[dtype]


def test_paged_decode_equals_contiguous_prefill_attention():
    """A decode query over paged KV equals the last row of causal attention over the same keys."""
    gen = torch.Generator().manual_seed(9)
    ctx, page, heads, dim = 11, 4, 2, 16
    k = _rand(gen, ctx, heads, dim, dtype=torch.float32)
    v = _rand(gen, ctx, heads, dim, dtype=torch.float32)
    q = _rand(gen, 1, heads, dim, dtype=torch.float32)
    pages = [5, 0, 2]  # logical page i lives in physical block pages[i]
    k_cache = torch.zeros(6, page, heads, dim, device=DEVICE)
    v_cache = torch.zeros_like(k_cache)
    for i, blk in enumerate(pages):
        n = min(page, ctx - i * page)
        k_cache[blk, :n], v_cache[blk, :n] = k[i * page:i * page + n], v[i * page:i * page + n]
    bt = torch.tensor([pages], dtype=torch.int32, device=DEVICE)
    out = attn.paged_decode_attention(q, k_cache, v_cache, bt, torch.tensor([ctx], dtype=torch.int32, device=DEVICE))
    full = attn.flash_attention_varlen(q, k, v, _cu([1]), _cu([ctx]), causal=True)
    assert rel_error(out, full) < 1e-5


def test_attention_rejects_bad_heads():
    with pytest.raises(ValueError, match="multiple of KV heads"):
        attn.flash_attention_varlen_ref(torch.zeros(2, 3, 8), torch.zeros(2, 2, 8), torch.zeros(2, 2, 8),
                                        _cu([2]), _cu([2]))


def test_causal_pairs_formula():
    for lq, lk in [(1, 1), (5, 5), (3, 10), (7, 4)]:
        brute = sum(1 for i in range(lq) for j in range(lk) if j <= i + lk - lq)
        assert causal_pairs(lq, lk) == brute


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_ops(dtype):
    gen = torch.Generator().manual_seed(2)
    x, w = _rand(gen, 7, 48, dtype=dtype), _rand(gen, 48, dtype=dtype)
    assert rel_error(ew.rmsnorm(x, w), ew.rmsnorm_ref(x, w)) < TOLERANCE[dtype]
    g, u = _rand(gen, 5, 33, dtype=dtype), _rand(gen, 5, 33, dtype=dtype)
    assert rel_error(ew.swiglu(g, u), ew.swiglu_ref(g, u)) < TOLERANCE[dtype]
    x = _rand(gen, 6, 3, 16, dtype=dtype)
    pos = torch.tensor([0, 1, 5, 100, 2047, 3], dtype=torch.int32, device=DEVICE)
    assert rel_error(ew.rope(x, pos), ew.rope_ref(x, pos)) < TOLERANCE[dtype]


def test_rope_preserves_norm_and_is_identity_at_zero():
    gen = torch.Generator().manual_seed(4)
    x = _rand(gen, 4, 2, 32, dtype=torch.float32)
    pos = torch.tensor([0, 3, 70, 9000], dtype=torch.int32, device=DEVICE)
    y = ew.rope(x, pos)
    assert torch.allclose(y[0], x[0])
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5)


@pytest.mark.gpu
def test_gemm_autotuned_on_cuda():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(512, 1024, generator=gen).half().cuda()
    b = torch.randn(1024, 768, generator=gen).half().cuda()
    assert rel_error(gemm.matmul(a, b), gemm.matmul_ref(a, b)) < TOLERANCE[torch.float16]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attention_kernels_on_cuda(dtype):
    gen = torch.Generator().manual_seed(0)
    len_q, len_k = [300, 77, 1], [300, 500, 2049]
    q = _rand(gen, sum(len_q), 32, 128, dtype=dtype)
    k = _rand(gen, sum(len_k), 8, 128, dtype=dtype)
    v = _rand(gen, sum(len_k), 8, 128, dtype=dtype)
    out = attn.flash_attention_varlen(q, k, v, _cu(len_q), _cu(len_k))
    assert rel_error(out, attn.flash_attention_varlen_ref(q, k, v, _cu(len_q), _cu(len_k))) < TOLERANCE[dtype]
    ctx = torch.tensor([1, 700, 4097], dtype=torch.int32, device=DEVICE)
    kc = _rand(gen, 800, 16, 8, 128, dtype=dtype)  # 3 x 257 pages (4097 tokens / 16) fit in 800 blocks
    vc = _rand(gen, 800, 16, 8, 128, dtype=dtype)
    bt = torch.randperm(800, generator=gen)[:3 * 257].reshape(3, 257).to(torch.int32).to(DEVICE)
    qd = _rand(gen, 3, 32, 128, dtype=dtype)
    ref = attn.paged_decode_attention_ref(qd, kc, vc, bt, ctx)
    assert rel_error(attn.paged_decode_attention(qd, kc, vc, bt, ctx), ref) < TOLERANCE[dtype]
