"""Paged KV cache and varlen attention over it: torch on CPU, the profiler's Triton kernels on CUDA.

The cache holds `num_blocks` blocks of `block_size` tokens per layer; which blocks a sequence owns
is decided by the policies' KV manager (`Request.blocks`), never here. One packed pass holds prompt
chunks (any number of new tokens on top of cached context) and decode tokens (one new token each).
On CPU each sequence is attended on its own (batched GEMMs over its KV heads), so a pass costs a
per-sequence constant plus work in its query-key pairs and KV reads — what a cost model sees of a
batch. On CUDA, one varlen flash-attention call for the prompts and one paged decode call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


class PagedKVCache:
    """K and V tensors [num_layers, num_blocks, block_size, Hkv, D]. Slot s = block·block_size + offset."""

    def __init__(self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        shape = (num_layers, num_blocks, block_size, num_kv_heads, head_dim)
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def snapshot(self, num_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of blocks 0..num_blocks-1 (e.g. the blocks a KV manager hands out), for `restore`."""
        return self.k[:, :num_blocks].clone(), self.v[:, :num_blocks].clone()

    def restore(self, saved: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Put back what `snapshot` copied."""
        n = saved[0].shape[1]
        self.k[:, :n].copy_(saved[0])
        self.v[:, :n].copy_(saved[1])

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """k/v [T, Hkv, D] go to flat slots [T]."""
        hkv, d = k.shape[1], k.shape[2]
        self.k[layer].view(-1, hkv, d).index_copy_(0, slots, k)
        self.v[layer].view(-1, hkv, d).index_copy_(0, slots, v)


@dataclass
class PrefillSeg:
    """One sequence with several new tokens: rows [start, start+num_new) of the pass, `ctx` cached before."""

    start: int
    num_new: int
    ctx: int
    blocks: torch.Tensor  # [ceil((ctx+num_new)/block_size)] block ids


@dataclass
class AttentionBatch:
    """Metadata of one packed pass. Rows: prefill segments first, then `num_decodes` decode rows."""

    positions: torch.Tensor  # [T] position of each new token in its sequence
    slot_mapping: torch.Tensor  # [T] flat cache slot each new token's K/V is written to
    prefills: list[PrefillSeg]
    num_prefill_rows: int
    decode_block_table: torch.Tensor | None  # [B, max_blocks] (padded with block 0)
    decode_lens: torch.Tensor | None  # [B] tokens each decode attends to (context + itself)
    block_size: int

    @property
    def num_decodes(self) -> int:
        return 0 if self.decode_lens is None else int(self.decode_lens.shape[0])


def build_batch(seqs: list[tuple[int, int, list[int]]], block_size: int,
                device: str | torch.device = "cpu") -> AttentionBatch:
    """seqs: (num_new, ctx, block_ids) per sequence, prefill chunks (num_new > 1 or ctx == 0) first,
    then decodes (num_new == 1, ctx > 0), in row order."""
    positions, slots, prefills = [], [], []
    dec_blocks, dec_lens = [], []
    row = 0
    for num_new, ctx, blocks in seqs:
        nb = -(-(ctx + num_new) // block_size)
        if num_new == 1:
            positions.append(np.array([ctx]))
            slots.append(np.array([blocks[ctx // block_size] * block_size + ctx % block_size]))
        else:
            pos = np.arange(ctx, ctx + num_new)
            positions.append(pos)
            slots.append(np.asarray(blocks[:nb])[pos // block_size] * block_size + pos % block_size)
        if num_new == 1 and ctx > 0:
            dec_blocks.append(blocks[:nb])
            dec_lens.append(ctx + 1)
        else:
            if dec_lens:
                raise ValueError("prefill segments must come before decode rows")
            prefills.append(PrefillSeg(row, num_new, ctx, torch.tensor(blocks[:nb], dtype=torch.long, device=device)))
        row += num_new
    table = lens = None
    if dec_lens:
        width = max(len(b) for b in dec_blocks)
        table = torch.tensor([b + [0] * (width - len(b)) for b in dec_blocks], dtype=torch.long, device=device)
        lens = torch.tensor(dec_lens, dtype=torch.long, device=device)
    num_prefill_rows = sum(p.num_new for p in prefills)
    return AttentionBatch(torch.from_numpy(np.concatenate(positions)).to(device),
                          torch.from_numpy(np.concatenate(slots)).to(device), prefills, num_prefill_rows,
                          table, lens, block_size)


def paged_decode_attention_cpu(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                               block_table: torch.Tensor, context_lens: torch.Tensor) -> torch.Tensor:
    """Decode attention on CPU: o[B, Hq, D] for q[B, Hq, D] over a paged cache [NB, bs, Hkv, D].

    Same contract as `profiler.kernels.attention.paged_decode_attention` (block_table [B, W], context
    lengths [B] including the current token). Per sequence: gather its pages, then two batched GEMMs
    over its KV heads and a softmax (GQA: the G query heads of a KV head share its K and V). Gathering
    per sequence keeps each temporary small (one gather of a whole batch's context is several MB, whose
    cost on this CPU jumps and varies with cache and allocator state).
    The gather is `index_select`, not `k_cache[pages]`: advanced indexing takes the element-wise index
    kernel, index_select copies whole blocks. `benchmarks/bench_executor_timing.py gather` (this CPU,
    4 sequences x 8 blocks x 4 layers, K and V, L3 flushed first): 0.47 ms with contiguous and 0.70 ms
    with scattered blocks for indexing vs 0.23 / 0.32 ms for index_select, so a pass is faster and
    depends less on where the KV manager put the blocks (`layout`: 4 decodes x 128, scattered over
    contiguous attention 1.65x before, 1.34x after).
    NOTE: a padded batched call is faster at uniform lengths but costs B·max(context), which no
    aggregate shape (Σ context, num_seqs) predicts for ragged serving batches; this costs a
    per-sequence constant plus work proportional to Σ context.
    """
    b = block_table.shape[0]
    bs, hkv, d = k_cache.shape[1], k_cache.shape[2], k_cache.shape[3]
    group = q.shape[1] // hkv
    table = block_table.long()
    qs = (q * (1.0 / math.sqrt(d))).view(b, hkv, group, d)
    out = torch.empty(b, hkv, group, d, dtype=q.dtype, device=q.device)
    for i, length in enumerate(context_lens.tolist()):
        # per sequence: gather its pages (small, stays in cache), [Hkv, G, D] @ [Hkv, D, L] -> softmax -> @ V
        pages = table[i, :-(-length // bs)]
        k = k_cache.index_select(0, pages).view(-1, hkv, d)[:length]
        v = v_cache.index_select(0, pages).view(-1, hkv, d)[:length]
        p = torch.softmax(torch.bmm(qs[i], k.permute(1, 2, 0)), dim=-1)
        torch.bmm(p, v.transpose(0, 1), out=out[i])
    return out.view(b, hkv * group, d)


def _prefill_kv(k_new, v_new, k_cache, v_cache, batch: AttentionBatch):
    """Packed K/V of the prefill segments (cached context + chunk each) and int32 cu_seqlens for q and k."""
    hkv, d = k_cache.shape[2], k_cache.shape[3]
    ks, vs, cu_q, cu_k = [], [], [0], [0]
    for seg in batch.prefills:
        s, n, total = seg.start, seg.num_new, seg.ctx + seg.num_new
        if seg.ctx == 0:  # whole prompt in this pass: its own K/V
            ks.append(k_new[s:s + n])
            vs.append(v_new[s:s + n])
        else:  # a later chunk: cached context + this chunk, read through the block table
            ks.append(k_cache[seg.blocks].view(-1, hkv, d)[:total])
            vs.append(v_cache[seg.blocks].view(-1, hkv, d)[:total])
        cu_q.append(cu_q[-1] + n)
        cu_k.append(cu_k[-1] + total)
    dev = k_new.device
    k = ks[0] if len(ks) == 1 else torch.cat(ks)
    v = vs[0] if len(vs) == 1 else torch.cat(vs)
    return (k, v, torch.tensor(cu_q, dtype=torch.int32, device=dev), torch.tensor(cu_k, dtype=torch.int32, device=dev))


def prefill_attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_new: int, ctx: int) -> torch.Tensor:
    """One prompt segment on CPU: q [n, Hq, D] against k/v [ctx + n, Hkv, D], bottom-right causal.

    Scores as one batched GEMM per KV head ([G·n, D] @ [D, ctx+n]), masked softmax, then @ V: plain
    MKL GEMMs, which on this CPU run faster and with far less run-to-run spread than SDPA's CPU
    kernel (measured for one 256-token prompt, 4 heads x 64: 0.92 ms, p10-p90 0.91-0.96, vs SDPA
    1.14-1.82 ms median across runs with p90 up to 2.2 ms).
    """
    n, hq, d = q.shape
    total, hkv = k.shape[0], k.shape[1]
    g = hq // hkv
    qs = (q * (1.0 / math.sqrt(d))).view(n, hkv, g, d).permute(1, 2, 0, 3).reshape(hkv, g * n, d)
    scores = torch.bmm(qs, k.permute(1, 2, 0))  # [Hkv, G·n, ctx+n]
    mask = torch.arange(total, device=q.device)[None, :] > (ctx + torch.arange(n, device=q.device))[:, None]
    scores.view(hkv, g, n, total).masked_fill_(mask, float("-inf"))
    o = torch.bmm(torch.softmax(scores, dim=-1), v.transpose(0, 1))  # [Hkv, G·n, D]
    return o.view(hkv, g, n, d).permute(2, 0, 1, 3).reshape(n, hq, d)


def paged_attention(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor,
                    v_cache: torch.Tensor, batch: AttentionBatch) -> torch.Tensor:
    """q [T, H, D]; k_new/v_new [T, Hkv, D] (already written to the cache); k/v_cache [NB, bs, Hkv, D].

    Returns o [T, H, D]. Query i of a segment with `ctx` cached tokens sees keys 0..ctx+i (causal).
    CPU path: `prefill_attention_cpu` per prompt segment, `paged_decode_attention_cpu` for the decodes;
    both cost a per-sequence constant plus work proportional to their query-key pairs and KV reads.
    """
    out = torch.empty_like(q)
    hkv, d = k_cache.shape[2], k_cache.shape[3]
    for seg in batch.prefills:
        s, n, ctx = seg.start, seg.num_new, seg.ctx
        if ctx == 0:  # whole prompt in this pass: its own K/V
            k, v = k_new[s:s + n], v_new[s:s + n]
        else:  # a later chunk: cached context + this chunk, read through the block table
            k = k_cache.index_select(0, seg.blocks).view(-1, hkv, d)[:ctx + n]
            v = v_cache.index_select(0, seg.blocks).view(-1, hkv, d)[:ctx + n]
        out[s:s + n] = prefill_attention_cpu(q[s:s + n], k, v, n, ctx)
    if batch.decode_lens is not None:
        p = batch.num_prefill_rows
        out[p:] = paged_decode_attention_cpu(q[p:], k_cache, v_cache, batch.decode_block_table, batch.decode_lens)
    return out


def paged_attention_triton(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor,
                           v_cache: torch.Tensor, batch: AttentionBatch) -> torch.Tensor:
    """Same contract as `paged_attention`, on the profiler's Triton kernels: prefill segments as one
    varlen flash-attention call (bottom-right causal), decodes as one paged split-KV decode call."""
    from profiler.kernels.attention import flash_attention_varlen, paged_decode_attention

    out = torch.empty_like(q)
    p = batch.num_prefill_rows
    if batch.prefills:
        k, v, cu_q, cu_k = _prefill_kv(k_new, v_new, k_cache, v_cache, batch)
        out[:p] = flash_attention_varlen(q[:p].contiguous(), k.contiguous(), v.contiguous(), cu_q, cu_k, causal=True)
    if batch.decode_lens is not None:
        out[p:] = paged_decode_attention(q[p:].contiguous(), k_cache, v_cache, batch.decode_block_table.to(torch.int32),
                                         batch.decode_lens.to(torch.int32))
    return out
