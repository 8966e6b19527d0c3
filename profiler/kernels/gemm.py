"""Tiled GEMM `C[M,N] = A[M,K] @ B[K,N]` in Triton, autotuned over a few block configs.

After the Triton tutorial 03-matrix-multiplication: each program computes one BLOCK_M x BLOCK_N
tile of C, walking K in BLOCK_K steps with an fp32 accumulator; programs are grouped GROUP_M tiles
tall so neighbouring programs reuse A rows and B columns from L2.
Cost: 2·M·N·K FLOPs; bytes ≥ (M·K + K·N + M·N)·itemsize (hwmodels.profiled.gemm_work).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from profiler.kernels._common import check_launch, dot_precision, interpreting, upcast_dot

# Block configs the autotuner chooses among on CUDA (tutorial 03's list, trimmed to four that
# cover small-M decode GEMMs and large square GEMMs).
GEMM_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "GROUP_M": 8}, num_stages=3, num_warps=8),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8}, num_stages=4, num_warps=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8}, num_stages=4, num_warps=4),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8}, num_stages=5, num_warps=2),
]
# Under the CPU interpreter every program is run in numpy; small tiles keep tests fast.
INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 4}


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                   stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   GROUP_M: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # Grouped ordering: GROUP_M tile-rows share B tiles while they are hot in L2.
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k0 * BLOCK_K
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & (offs_n[None, :] < N), other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=DOT_PREC)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    c = acc.to(c_ptr.dtype.element_ty)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, c, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


_matmul_autotuned = triton.autotune(configs=GEMM_CONFIGS, key=["M", "N", "K"])(_matmul_kernel)


def matmul(a: torch.Tensor, b: torch.Tensor, config: dict | None = None) -> torch.Tensor:
    """Triton `a @ b` for 2-D `a[M,K]`, `b[K,N]` (fp16/bf16/fp32; fp32 accumulation).

    `config` pins one block config (a dict like INTERPRETER_CONFIG); default: autotuned on CUDA,
    INTERPRETER_CONFIG under the interpreter (the autotuner times configs, which the interpreter cannot).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs a[M,K] @ b[K,N]; got {tuple(a.shape)} @ {tuple(b.shape)}")
    check_launch(a, b)
    M, K = a.shape
    N = b.shape[1]
    c = torch.empty((M, N), device=a.device, dtype=a.dtype)
    args = (a, b, c, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1))
    upcast = upcast_dot(a.dtype)
    prec = dot_precision(a.dtype)
    if config is None and not interpreting():
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
        _matmul_autotuned[grid](*args, UPCAST=upcast, DOT_PREC=prec)
        return c
    cfg = dict(config or INTERPRETER_CONFIG)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _matmul_kernel[grid](*args, UPCAST=upcast, DOT_PREC=prec, **cfg)
    return c


def matmul_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch reference (cuBLAS on GPU, MKL/oneDNN on CPU)."""
    return torch.matmul(a, b)
