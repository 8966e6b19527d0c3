"""Config sub-models owned by policies; each choice is a discriminated union on `kind`."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from hwmodels.config import Frozen


class _SchedulerBase(Frozen):
    max_batch_size: int = Field(default=256, ge=1, description="max sequences in one forward pass")
    max_num_batched_tokens: int = Field(default=8192, ge=1, description="max new tokens in one forward pass")


class StaticSchedulerConfig(_SchedulerBase):
    """Request-level batching (FasterTransformer): a batch runs until all its requests finish."""

    kind: Literal["static"] = "static"
    max_batch_size: int = Field(default=32, ge=1)


class OrcaSchedulerConfig(_SchedulerBase):
    """Iteration-level batching with selective batching (Orca, OSDI'22); whole prompts, no chunking."""

    kind: Literal["orca"] = "orca"


class VLLMSchedulerConfig(_SchedulerBase):
    """vLLM (SOSP'23): continuous batching on paged KV, prefill-first, preemption when blocks run out."""

    kind: Literal["vllm"] = "vllm"
    preemption: Literal["recompute", "swap"] = "recompute"
    watermark: float = Field(default=0.01, ge=0.0, lt=1.0, description="fraction of blocks kept free on admission")


class SarathiSchedulerConfig(_SchedulerBase):
    """Sarathi-Serve (OSDI'24): decodes first, then prefill chunks, under a per-iteration token budget."""

    kind: Literal["sarathi"] = "sarathi"
    preemption: Literal["recompute", "swap"] = "recompute"
    watermark: float = Field(default=0.01, ge=0.0, lt=1.0, description="fraction of blocks kept free on admission")
    chunk_size: int = Field(default=512, ge=1, description="token budget of one iteration")


class SplitFuseSchedulerConfig(_SchedulerBase):
    """DeepSpeed-FastGen Dynamic SplitFuse: forward passes of a fixed token count (decodes + prompt chunks)."""

    kind: Literal["splitfuse"] = "splitfuse"
    preemption: Literal["recompute", "swap"] = "recompute"
    watermark: float = Field(default=0.01, ge=0.0, lt=1.0, description="fraction of blocks kept free on admission")
    chunk_size: int = Field(default=512, ge=1, description="target tokens of every forward pass")


SchedulerConfig = Annotated[
    Union[StaticSchedulerConfig, OrcaSchedulerConfig, VLLMSchedulerConfig, SarathiSchedulerConfig,
          SplitFuseSchedulerConfig],
    Field(discriminator="kind"),
]


class _KVBase(Frozen):
    block_size: int = Field(default=16, ge=1, description="tokens per KV block")
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0,
                                          description="fraction of GPU memory for weights+activations+KV")
    num_blocks: int | None = Field(default=None, ge=1, description="override the derived KV block count")
    swap_space_bytes: float = Field(default=4e9, ge=0, description="host memory per GPU for swapped KV")


class PagedKVConfig(_KVBase):
    """Paged KV blocks with ref-counts (vLLM PagedAttention), optional prefix caching."""

    kind: Literal["paged"] = "paged"
    prefix_caching: bool = False
    eviction: Literal["lru", "lfu"] = Field(default="lru", description="prefix-cache eviction order")


class ContiguousKVConfig(_KVBase):
    """Contiguous reservation per request up front (Orca/FasterTransformer style)."""

    kind: Literal["contiguous"] = "contiguous"
    reserve: Literal["max_model_len", "pow2", "oracle"] = Field(
        default="max_model_len", description="reservation per request: max length, next power of two, or exact")


KVCacheConfig = Annotated[Union[PagedKVConfig, ContiguousKVConfig], Field(discriminator="kind")]


class RouterConfig(Frozen):
    """How requests are spread over replicas."""

    kind: Literal["round_robin", "least_outstanding", "least_kv", "power_of_two"] = "round_robin"
