"""Small helpers shared by the kernel wrappers."""
from __future__ import annotations

import os

import torch

# Relative tolerance of a kernel vs its torch reference, per dtype: a few ulps of the dtype's
# mantissa (fp16: 10 bits, bf16: 7 bits) after fp32 accumulation over long reductions.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def can_launch(t: torch.Tensor) -> bool:
    """A Triton kernel can run on this tensor: on CUDA, or on CPU under the interpreter."""
    return t.is_cuda or interpreting()


def check_launch(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if not can_launch(t):
            raise RuntimeError(
                f"Triton kernels need a CUDA tensor or TRITON_INTERPRET=1 for CPU tensors (got a tensor on {t.device})")


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref| in fp32 (a norm-wise relative error, robust to near-zero entries)."""
    out32, ref32 = out.float(), ref.float()
    denom = ref32.abs().max().clamp_min(1e-12)
    return float((out32 - ref32).abs().max() / denom)


def dot_precision(dtype: torch.dtype) -> str:
    """`tl.dot` input precision for operands of `dtype`: "ieee" for fp32, "tf32" (Triton's default) else.

    NOTE: Triton's default for an fp32 `tl.dot` on NVIDIA GPUs is TF32 (10-bit mantissa, relative
    error ~3e-4), while torch's fp32 matmul and SDPA reference run full fp32 unless
    `torch.backends.cuda.matmul.allow_tf32` is set (its default is False). Seen on an H200: fp32 GEMM
    and attention tests failed the 1e-4 bound with the default. Triton and torch rows of one fp32
    profile must time the same arithmetic, so fp32 is IEEE here. fp16/bf16 ignore it.
    """
    return "ieee" if dtype == torch.float32 else "tf32"


def upcast_dot(dtype: torch.dtype) -> bool:
    """Whether kernels must cast tl.dot operands to fp32 first.

    NOTE: Triton 3.9's interpreter multiplies bf16 tiles as raw 16-bit integers (numpy has no
    bf16), giving garbage; on CPU we upcast bf16 tiles to fp32 (same result up to rounding). On
    CUDA the tensor cores take bf16 directly.
    """
    return interpreting() and dtype == torch.bfloat16
