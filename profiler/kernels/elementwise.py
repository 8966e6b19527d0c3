"""Memory-bound ops the cost model prices per layer: RMSNorm, SwiGLU, rotary embedding (RoPE).

Each reads and writes its activations once, so its cost is bytes / bandwidth (FLOPs and bytes:
hwmodels.profiled.elementwise_work).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from profiler.kernels._common import check_launch


# --------------------------------------------------------------------------- RMSNorm
@triton.jit
def _rmsnorm_kernel(x_ptr, w_ptr, y_ptr, stride_x, stride_y, N, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, 0) / N + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * stride_y + offs, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """y = x / sqrt(mean(x²) + eps) · w over the last dim (Zhang & Sennrich 2019); x[..., N], w[N]."""
    check_launch(x, weight)
    n = x.shape[-1]
    x2 = x.reshape(-1, n).contiguous()
    y = torch.empty_like(x2)
    if x2.shape[0]:
        _rmsnorm_kernel[(x2.shape[0],)](x2, weight, y, x2.stride(0), y.stride(0), n, eps,
                                        BLOCK=triton.next_power_of_2(n))
    return y.reshape(x.shape)


def rmsnorm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


# --------------------------------------------------------------------------- SwiGLU
@triton.jit
def _swiglu_kernel(g_ptr, u_ptr, y_ptr, numel, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = g / (1.0 + tl.exp(-g)) * u  # silu(g)·u
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) · up, elementwise (Shazeer 2020, the gated FFN activation of Llama)."""
    if gate.shape != up.shape:
        raise ValueError(f"gate and up shapes differ: {tuple(gate.shape)} vs {tuple(up.shape)}")
    check_launch(gate, up)
    g, u = gate.contiguous(), up.contiguous()
    y = torch.empty_like(g)
    block = 1024
    if g.numel():
        _swiglu_kernel[(triton.cdiv(g.numel(), block),)](g, u, y, g.numel(), BLOCK=block)
    return y


def swiglu_ref(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return (F.silu(gate.float()) * up.float()).to(gate.dtype)


# --------------------------------------------------------------------------- RoPE
@triton.jit
def _rope_kernel(x_ptr, pos_ptr, y_ptr, stride_xt, stride_xh, stride_yt, stride_yh, HALF, log2_theta,
                 BLOCK: tl.constexpr):
    tok = tl.program_id(0)
    head = tl.program_id(1)
    offs = tl.arange(0, BLOCK)
    mask = offs < HALF
    pos = tl.load(pos_ptr + tok).to(tl.float32)
    inv_freq = tl.math.exp2(-(offs.to(tl.float32) / HALF) * log2_theta)  # theta^(-2i/D)
    ang = pos * inv_freq
    c = tl.cos(ang)
    s = tl.sin(ang)
    base = x_ptr + tok * stride_xt + head * stride_xh
    x1 = tl.load(base + offs, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(base + HALF + offs, mask=mask, other=0.0).to(tl.float32)
    out = y_ptr + tok * stride_yt + head * stride_yh
    tl.store(out + offs, (x1 * c - x2 * s).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(out + HALF + offs, (x2 * c + x1 * s).to(y_ptr.dtype.element_ty), mask=mask)


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotary embedding, GPT-NeoX half-split layout (Su et al. 2021): x[T, H, D] rotated by positions[T]."""
    if x.ndim != 3 or x.shape[-1] % 2 or positions.shape != (x.shape[0],):
        raise ValueError(f"need x[T,H,D] with even D and positions[T]; got {tuple(x.shape)}, {tuple(positions.shape)}")
    check_launch(x, positions)
    y = torch.empty_like(x)
    half = x.shape[-1] // 2
    if x.shape[0] and x.shape[1]:
        _rope_kernel[(x.shape[0], x.shape[1])](x, positions, y, x.stride(0), x.stride(1), y.stride(0), y.stride(1),
                                               half, math.log2(theta), BLOCK=triton.next_power_of_2(half))
    return y


def rope_ref(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    half = x.shape[-1] // 2
    inv_freq = theta ** (-torch.arange(half, dtype=torch.float64, device=x.device) / half)
    ang = positions.double()[:, None] * inv_freq[None, :]  # [T, half]
    c, s = ang.cos().float()[:, None, :], ang.sin().float()[:, None, :]
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)
