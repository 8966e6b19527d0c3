"""Attention kernels in Triton with torch references.

* `flash_attention_varlen`: FlashAttention-2 style forward for prefill over a packed ragged batch
  (Dao 2023, arXiv:2307.08691): online softmax over key blocks, causal, GQA, per-sequence lengths
  given by cumulative offsets (flash-attn's `cu_seqlens` convention).
* `paged_decode_attention`: one query token per sequence against a paged KV cache (vLLM's block
  table, Kwon et al. 2023, arXiv:2309.06180), split over the KV length and reduced in a second
  pass (flash-decoding, Dao et al. 2023).

Layouts (token-major, as vLLM/flash-attn): q[total_q, Hq, D], k/v[total_k, Hkv, D];
k_cache/v_cache[num_blocks, block_size, Hkv, D]; block_table[B, max_blocks] int32;
context_lens[B] int32 (KV tokens per sequence, the current token's included).
Causal masking is bottom-right aligned: query i of a sequence with Lq queries and Lk keys sees keys
j ≤ i + Lk − Lq (the queries are the last Lq positions, as in chunked prefill).
FLOPs and bytes: hwmodels.profiled.attention_work (4·D per query-key pair per head).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from profiler.kernels._common import check_launch, dot_precision, interpreting, upcast_dot


# --------------------------------------------------------------------------- prefill (varlen)
@triton.jit
def _flash_fwd_kernel(q_ptr, k_ptr, v_ptr, o_ptr, cu_q_ptr, cu_k_ptr, sm_scale,
                      stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
                      HEAD_DIM, GROUP: tl.constexpr, CAUSAL: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                      UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    pid_m = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2)
    kv_head = head // GROUP
    q_start = tl.load(cu_q_ptr + seq)
    len_q = tl.load(cu_q_ptr + seq + 1) - q_start
    k_start = tl.load(cu_k_ptr + seq)
    len_k = tl.load(cu_k_ptr + seq + 1) - k_start
    q_start = q_start.to(tl.int64)  # token offset x stride can pass 2^31 in long packed batches
    k_start = k_start.to(tl.int64)
    if pid_m * BLOCK_M >= len_q:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q = tl.load(q_ptr + (q_start + offs_m)[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                mask=(offs_m[:, None] < len_q) & mask_d[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    qk_scale = sm_scale * 1.4426950408889634  # exp(x) = exp2(x·log2 e)
    shift = len_k - len_q  # bottom-right causal alignment
    hi = len_k
    if CAUSAL:
        hi = tl.minimum(len_k, (pid_m + 1) * BLOCK_M + shift)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        kv_mask = (cols[:, None] < len_k) & mask_d[None, :]
        k = tl.load(k_ptr + (k_start + cols)[:, None] * stride_kt + kv_head * stride_kh + offs_d[None, :],
                    mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + (k_start + cols)[:, None] * stride_vt + kv_head * stride_vh + offs_d[None, :],
                    mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        valid = cols[None, :] < len_k
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None] + shift)
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row with no visible key yet keeps m = -inf; use 0 there so exp2 stays finite.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(o_ptr + (q_start + offs_m)[:, None] * stride_ot + head * stride_oh + offs_d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=(offs_m[:, None] < len_q) & mask_d[None, :])


def flash_attention_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                           causal: bool = True, sm_scale: float | None = None,
                           max_seqlen_q: int | None = None,
                           block_m: int | None = None, block_n: int | None = None) -> torch.Tensor:
    """Triton attention forward over a packed ragged batch; returns o[total_q, Hq, D] in q's dtype.

    q[total_q, Hq, D], k/v[total_k, Hkv, D] with Hq % Hkv == 0 (GQA); cu_seqlens_* int32[B+1].
    """
    _check_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k)
    check_launch(q, k, v)
    num_heads, head_dim = q.shape[1], q.shape[2]
    group = num_heads // k.shape[1]
    batch = cu_seqlens_q.numel() - 1
    if max_seqlen_q is None:
        max_seqlen_q = int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max()) if batch else 0
    o = torch.empty_like(q)
    if batch == 0 or max_seqlen_q == 0:
        return o
    small = interpreting()
    bm = block_m or (16 if small else 64)
    bn = block_n or (16 if small else 64)
    grid = (triton.cdiv(max_seqlen_q, bm), batch, num_heads)
    _flash_fwd_kernel[grid](
        q, k, v, o, cu_seqlens_q, cu_seqlens_k, sm_scale or 1.0 / math.sqrt(head_dim),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), o.stride(0), o.stride(1),
        head_dim, GROUP=group, CAUSAL=causal, BLOCK_M=bm, BLOCK_N=bn,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)), UPCAST=upcast_dot(q.dtype),
        DOT_PREC=dot_precision(q.dtype))
    return o


def flash_attention_varlen_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                               causal: bool = True, sm_scale: float | None = None) -> torch.Tensor:
    """torch reference: `F.scaled_dot_product_attention` per sequence with an explicit bottom-right mask."""
    _check_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k)
    group = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for b in range(len(cq) - 1):
        qs = q[cq[b]:cq[b + 1]].transpose(0, 1)  # [Hq, Lq, D]
        ks = k[ck[b]:ck[b + 1]].transpose(0, 1).repeat_interleave(group, dim=0)
        vs = v[ck[b]:ck[b + 1]].transpose(0, 1).repeat_interleave(group, dim=0)
        lq, lk = qs.shape[1], ks.shape[1]
        if lq == 0:
            continue
        if causal and lq == lk:  # a whole prompt: SDPA's own causal path (what the torch executor runs)
            o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=sm_scale)
        elif causal:
            i = torch.arange(lq, device=q.device)[:, None]
            j = torch.arange(lk, device=q.device)[None, :]
            mask = j <= i + (lk - lq)
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=sm_scale)
            # rows with no visible key (only when lq > lk): SDPA gives NaN, the kernel gives 0
            o = torch.where(mask.any(-1)[None, :, None], o, torch.zeros_like(o))
        else:
            o = F.scaled_dot_product_attention(qs, ks, vs, scale=sm_scale)
        out[cq[b]:cq[b + 1]] = o.transpose(0, 1)
    return out


def _check_varlen(q, k, v, cu_q, cu_k) -> None:
    if q.ndim != 3 or k.ndim != 3 or v.shape != k.shape or q.shape[2] != k.shape[2]:
        raise ValueError(f"need q[Tq,Hq,D], k=v[Tk,Hkv,D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads {q.shape[1]} not a multiple of KV heads {k.shape[1]}")
    if cu_q.numel() != cu_k.numel() or cu_q.dtype != torch.int32 or cu_k.dtype != torch.int32:
        raise ValueError("cu_seqlens_q and cu_seqlens_k must be int32 tensors of the same length B+1")


# --------------------------------------------------------------------------- decode (paged, split-KV)
@triton.jit
def _paged_decode_split_kernel(q_ptr, k_cache_ptr, v_cache_ptr, block_table_ptr, context_lens_ptr,
                               part_o_ptr, part_m_ptr, part_l_ptr, sm_scale,
                               stride_qb, stride_qh, stride_kb, stride_kt, stride_kh,
                               stride_vb, stride_vt, stride_vh, stride_bt,
                               HEAD_DIM, PAGES_PER_SPLIT, NUM_SPLITS,
                               GROUP: tl.constexpr, PAGE: tl.constexpr, BLOCK_D: tl.constexpr):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    split = tl.program_id(2)
    kv_head = head // GROUP
    ctx = tl.load(context_lens_ptr + seq)
    offs_t = tl.arange(0, PAGE)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q = tl.load(q_ptr + seq * stride_qb + head * stride_qh + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    m_i = float("-inf")
    l_i = 0.0
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    first_page = split * PAGES_PER_SPLIT
    last_page = tl.minimum(first_page + PAGES_PER_SPLIT, tl.cdiv(ctx, PAGE))
    for page in range(first_page, last_page):
        block = tl.load(block_table_ptr + seq * stride_bt + page).to(tl.int64)  # block x stride can pass 2^31
        tok = page * PAGE + offs_t
        mask_t = tok < ctx
        kv_mask = mask_t[:, None] & mask_d[None, :]
        k = tl.load(k_cache_ptr + block * stride_kb + offs_t[:, None] * stride_kt + kv_head * stride_kh
                    + offs_d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
        v = tl.load(v_cache_ptr + block * stride_vb + offs_t[:, None] * stride_vt + kv_head * stride_vh
                    + offs_d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
        # One query row: a GEMV, done as multiply + row sum (tl.dot needs ≥16 rows on GPUs).
        s = tl.sum(q[None, :] * k, 1) * sm_scale
        s = tl.where(mask_t, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 0))
        p = tl.exp(s - m_new)
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        acc = acc * alpha + tl.sum(p[:, None] * v, 0)
        m_i = m_new
    part = (seq * tl.num_programs(1) + head) * NUM_SPLITS + split
    tl.store(part_o_ptr + part * BLOCK_D + offs_d, acc)
    tl.store(part_m_ptr + part, m_i)
    tl.store(part_l_ptr + part, l_i)


@triton.jit
def _paged_decode_reduce_kernel(part_o_ptr, part_m_ptr, part_l_ptr, o_ptr, stride_ob, stride_oh,
                                HEAD_DIM, NUM_SPLITS, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    base = (seq * tl.num_programs(1) + head) * NUM_SPLITS
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < NUM_SPLITS
    m = tl.load(part_m_ptr + base + offs_s, mask=mask_s, other=float("-inf"))
    l_part = tl.load(part_l_ptr + base + offs_s, mask=mask_s, other=0.0)
    o = tl.load(part_o_ptr + (base + offs_s)[:, None] * BLOCK_D + offs_d[None, :], mask=mask_s[:, None], other=0.0)
    m_max = tl.max(m, 0)
    m_max = tl.where(m_max == float("-inf"), 0.0, m_max)
    w = tl.where(m == float("-inf"), 0.0, tl.exp(m - m_max))  # empty splits weigh 0
    l_tot = tl.sum(w * l_part, 0)
    out = tl.sum(w[:, None] * o, 0) / tl.where(l_tot == 0.0, 1.0, l_tot)
    tl.store(o_ptr + seq * stride_ob + head * stride_oh + offs_d, out.to(o_ptr.dtype.element_ty),
             mask=offs_d < HEAD_DIM)


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_table: torch.Tensor, context_lens: torch.Tensor,
                           sm_scale: float | None = None, num_splits: int | None = None,
                           max_context_len: int | None = None) -> torch.Tensor:
    """Triton decode attention: o[B, Hq, D] for q[B, Hq, D] over a paged KV cache.

    k_cache/v_cache[num_blocks, block_size, Hkv, D] (block_size a power of two), block_table[B, W]
    int32 page ids, context_lens[B] int32. The KV length is split into `num_splits` chunks of whole
    pages processed in parallel (default: enough to give ~4 programs per SM-sized chunk), then reduced.
    """
    _check_paged(q, k_cache, v_cache, block_table, context_lens)
    check_launch(q, k_cache, v_cache)
    batch, num_heads, head_dim = q.shape
    page = k_cache.shape[1]
    group = num_heads // k_cache.shape[2]
    o = torch.empty_like(q)
    if batch == 0:
        return o
    if max_context_len is None:
        max_context_len = int(context_lens.max())
    max_pages = max(1, triton.cdiv(max_context_len, page))
    if num_splits is None:
        # flash-decoding: split long contexts so B·Hq·splits programs fill the device; ~512 tokens a split.
        num_splits = max(1, min(max_pages, triton.cdiv(max_context_len, 512)))
    num_splits = max(1, min(int(num_splits), max_pages))
    pages_per_split = triton.cdiv(max_pages, num_splits)
    num_splits = triton.cdiv(max_pages, pages_per_split)
    block_d = max(16, triton.next_power_of_2(head_dim))
    part_o = torch.empty((batch, num_heads, num_splits, block_d), device=q.device, dtype=torch.float32)
    part_m = torch.empty((batch, num_heads, num_splits), device=q.device, dtype=torch.float32)
    part_l = torch.empty_like(part_m)
    _paged_decode_split_kernel[(batch, num_heads, num_splits)](
        q, k_cache, v_cache, block_table, context_lens, part_o, part_m, part_l,
        sm_scale or 1.0 / math.sqrt(head_dim),
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_table.stride(0),
        head_dim, pages_per_split, num_splits, GROUP=group, PAGE=page, BLOCK_D=block_d)
    _paged_decode_reduce_kernel[(batch, num_heads)](
        part_o, part_m, part_l, o, o.stride(0), o.stride(1), head_dim, num_splits,
        BLOCK_S=max(2, triton.next_power_of_2(num_splits)), BLOCK_D=block_d)
    return o


def paged_decode_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                               block_table: torch.Tensor, context_lens: torch.Tensor,
                               sm_scale: float | None = None) -> torch.Tensor:
    """torch reference: gather each sequence's pages into contiguous K/V, then SDPA (no mask needed)."""
    _check_paged(q, k_cache, v_cache, block_table, context_lens)
    page = k_cache.shape[1]
    group = q.shape[1] // k_cache.shape[2]
    out = torch.zeros_like(q)
    for b, ctx in enumerate(context_lens.tolist()):
        if ctx == 0:
            continue
        pages = block_table[b, :(ctx + page - 1) // page].long()
        ks = k_cache[pages].flatten(0, 1)[:ctx].transpose(0, 1).repeat_interleave(group, dim=0)  # [Hq, ctx, D]
        vs = v_cache[pages].flatten(0, 1)[:ctx].transpose(0, 1).repeat_interleave(group, dim=0)
        o = F.scaled_dot_product_attention(q[b][:, None, :], ks, vs, scale=sm_scale)  # [Hq, 1, D]
        out[b] = o[:, 0, :]
    return out


def paged_decode_attention_torch(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                 block_table: torch.Tensor, context_lens: torch.Tensor,
                                 sm_scale: float | None = None) -> torch.Tensor:
    """torch decode attention as a CPU serving engine runs it: per sequence, gather its pages, then two
    batched GEMMs over its KV heads (the G query heads of a KV head share its K and V) and a softmax.

    NOTE: per-sequence gathers cost a constant per sequence plus work proportional to Σ context, which
    is what the profiled cost model's (sequences, KV entries read) curve assumes; one padded batched
    gather would cost B·max(context) instead, which no aggregate shape predicts for ragged batches
    (and its multi-MB temporary makes CPU timings jump). Same algorithm as the executor's CPU path.
    """
    _check_paged(q, k_cache, v_cache, block_table, context_lens)
    batch = block_table.shape[0]
    page, hkv, d = k_cache.shape[1], k_cache.shape[2], k_cache.shape[3]
    group = q.shape[1] // hkv
    table = block_table.long()
    qs = (q * (sm_scale or 1.0 / math.sqrt(d))).view(batch, hkv, group, d)
    out = torch.zeros(batch, hkv, group, d, dtype=q.dtype, device=q.device)
    for i, length in enumerate(context_lens.tolist()):
        if length == 0:
            continue
        pages = table[i, :-(-length // page)]
        k = k_cache.index_select(0, pages).view(-1, hkv, d)[:length]  # [L, Hkv, D]
        v = v_cache.index_select(0, pages).view(-1, hkv, d)[:length]
        p = torch.softmax(torch.bmm(qs[i], k.permute(1, 2, 0)).float(), dim=-1).to(q.dtype)  # [Hkv, G, L]
        torch.bmm(p, v.transpose(0, 1), out=out[i])
    return out.view(batch, hkv * group, d)


def _check_paged(q, k_cache, v_cache, block_table, context_lens) -> None:
    if q.ndim != 3 or k_cache.ndim != 4 or v_cache.shape != k_cache.shape or q.shape[2] != k_cache.shape[3]:
        raise ValueError(f"need q[B,Hq,D], k_cache=v_cache[N,P,Hkv,D]; got {tuple(q.shape)}, {tuple(k_cache.shape)}")
    if q.shape[1] % k_cache.shape[2]:
        raise ValueError(f"query heads {q.shape[1]} not a multiple of KV heads {k_cache.shape[2]}")
    page = k_cache.shape[1]
    if page & (page - 1):
        raise ValueError(f"KV block size must be a power of two, got {page}")
    if block_table.dtype != torch.int32 or context_lens.dtype != torch.int32:
        raise ValueError("block_table and context_lens must be int32")
    if block_table.shape[0] != q.shape[0] or context_lens.shape != (q.shape[0],):
        raise ValueError("block_table and context_lens need one row per sequence of q")
