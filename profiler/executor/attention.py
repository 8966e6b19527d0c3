"""Paged KV cache and varlen attention over it (torch; the reference path, used on CPU).

The cache holds `num_blocks` blocks of `block_size` tokens per layer; which blocks a sequence owns
is decided by the policies' KV manager (`Request.blocks`), never here. One packed pass holds prefill
chunks (any number of new tokens on top of cached context) and decode tokens (one new token each);
decodes are attended in one batched call, each prefill chunk in its own call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


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
    decode_len_list: list[int] = field(default_factory=list)
    decode_slots: torch.Tensor | None = None  # [Σ decode_lens] flat cache slots of every decode's context

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
        pos = range(ctx, ctx + num_new)
        positions.extend(pos)
        slots.extend(blocks[p // block_size] * block_size + p % block_size for p in pos)
        nb = -(-(ctx + num_new) // block_size)
        if num_new == 1 and ctx > 0:
            dec_blocks.append(blocks[:nb])
            dec_lens.append(ctx + 1)
        else:
            if dec_lens:
                raise ValueError("prefill segments must come before decode rows")
            prefills.append(PrefillSeg(row, num_new, ctx, torch.tensor(blocks[:nb], dtype=torch.long, device=device)))
        row += num_new
    table = lens = dec_slots = None
    if dec_lens:
        width = max(len(b) for b in dec_blocks)
        table = torch.tensor([b + [0] * (width - len(b)) for b in dec_blocks], dtype=torch.long, device=device)
        lens = torch.tensor(dec_lens, dtype=torch.long, device=device)
        if torch.device(device).type == "cpu":  # the torch path's one-gather layout (vectorised)
            offs = torch.arange(width * block_size)
            every = (table[:, :, None] * block_size + torch.arange(block_size)).view(len(dec_lens), -1)
            dec_slots = every[offs[None, :] < lens[:, None]]
    num_prefill_rows = sum(p.num_new for p in prefills)
    return AttentionBatch(torch.tensor(positions, dtype=torch.long, device=device),
                          torch.tensor(slots, dtype=torch.long, device=device), prefills, num_prefill_rows,
                          table, lens, block_size, dec_lens, dec_slots)


def paged_attention(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor,
                    v_cache: torch.Tensor, batch: AttentionBatch) -> torch.Tensor:
    """q [T, H, D]; k_new/v_new [T, Hkv, D] (already written to the cache); k/v_cache [NB, bs, Hkv, D].

    Returns o [T, H, D]. Query i of a segment with `ctx` cached tokens sees keys 0..ctx+i (causal).
    NOTE: one SDPA call per sequence (prefill chunk or decode), so a pass costs a per-sequence
    constant plus work proportional to its query-key pairs and KV reads — a function of the batch
    aggregates a cost model sees. A padded batched decode is faster at uniform context lengths but
    costs B·max(context), which no aggregate shape predicts for ragged batches.
    """
    out = torch.empty_like(q)
    hkv, d = k_cache.shape[2], k_cache.shape[3]
    for seg in batch.prefills:
        s, n, ctx = seg.start, seg.num_new, seg.ctx
        qs = q[s:s + n].transpose(0, 1)  # [H, n, D]
        if ctx == 0:  # whole prompt in this pass: its own K/V, plain causal attention
            o = F.scaled_dot_product_attention(qs, k_new[s:s + n].transpose(0, 1), v_new[s:s + n].transpose(0, 1),
                                               is_causal=True, enable_gqa=True)
        else:  # a later chunk: cached context + this chunk, read through the block table
            total = ctx + n
            ks = k_cache[seg.blocks].view(-1, hkv, d)[:total]
            vs = v_cache[seg.blocks].view(-1, hkv, d)[:total]
            mask = (torch.arange(total, device=q.device)[None, :]
                    <= (ctx + torch.arange(n, device=q.device))[:, None])
            o = F.scaled_dot_product_attention(qs, ks.transpose(0, 1), vs.transpose(0, 1), attn_mask=mask,
                                               enable_gqa=True)
        out[s:s + n] = o.transpose(0, 1)
    if batch.decode_lens is not None:
        r0 = batch.num_prefill_rows
        k_flat, v_flat = k_cache.view(-1, hkv, d), v_cache.view(-1, hkv, d)
        slots = batch.decode_slots  # every decode's context, back to back: one gather for all
        ks, vs = k_flat[slots].transpose(0, 1), v_flat[slots].transpose(0, 1)  # [Hkv, Σctx, D]
        o0 = 0
        for i, length in enumerate(batch.decode_len_list):
            out[r0 + i] = F.scaled_dot_product_attention(q[r0 + i][:, None, :], ks[:, o0:o0 + length],
                                                         vs[:, o0:o0 + length], enable_gqa=True)[:, 0]
            o0 += length
    return out


def paged_attention_triton(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor,
                           v_cache: torch.Tensor, batch: AttentionBatch) -> torch.Tensor:
    """Same contract as `paged_attention`, on the profiler's Triton kernels: prefill segments as one
    varlen flash-attention call (bottom-right causal), decodes as one paged split-KV decode call."""
    from profiler.kernels.attention import flash_attention_varlen, paged_decode_attention

    out = torch.empty_like(q)
    hkv, d = k_cache.shape[2], k_cache.shape[3]
    if batch.prefills:
        ks, vs, cu_q, cu_k = [], [], [0], [0]
        for seg in batch.prefills:
            s, n, total = seg.start, seg.num_new, seg.ctx + seg.num_new
            if seg.ctx == 0:
                ks.append(k_new[s:s + n])
                vs.append(v_new[s:s + n])
            else:
                ks.append(k_cache[seg.blocks].view(-1, hkv, d)[:total])
                vs.append(v_cache[seg.blocks].view(-1, hkv, d)[:total])
            cu_q.append(cu_q[-1] + n)
            cu_k.append(cu_k[-1] + total)
        p = batch.num_prefill_rows
        out[:p] = flash_attention_varlen(q[:p].contiguous(), torch.cat(ks), torch.cat(vs),
                                         torch.tensor(cu_q, dtype=torch.int32, device=q.device),
                                         torch.tensor(cu_k, dtype=torch.int32, device=q.device), causal=True)
    if batch.decode_lens is not None:
        r0 = batch.num_prefill_rows
        out[r0:] = paged_decode_attention(q[r0:].contiguous(), k_cache, v_cache,
                                          batch.decode_block_table.to(torch.int32),
                                          batch.decode_lens.to(torch.int32))
    return out
