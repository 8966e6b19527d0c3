"""The real executor: a small Llama decoder on a paged KV cache, served with the simulator's policy objects.

`Executor.serve(requests)` runs the same `ReplicaCore` (scheduler + KV manager) as the simulator and
returns frames in the simulator's schema; `llmsim validate` compares the two.
"""
from profiler.executor.attention import AttentionBatch, PagedKVCache, build_batch, paged_attention
from profiler.executor.model import LlamaDims, LlamaModel
from profiler.executor.server import (CPUClock, Executor, ExecutorResult, VirtualClock, WallClock, prompt_tokens,
                                      torch_threads)

__all__ = ["AttentionBatch", "CPUClock", "Executor", "ExecutorResult", "LlamaDims", "LlamaModel", "PagedKVCache",
           "VirtualClock", "WallClock", "build_batch", "paged_attention", "prompt_tokens", "torch_threads"]
