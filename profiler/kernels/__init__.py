"""Triton kernels with torch references: GEMM, flash-attention (varlen prefill), paged decode
attention, RMSNorm / SwiGLU / RoPE. Each kernel runs on CUDA or, with TRITON_INTERPRET=1, on CPU.
"""
