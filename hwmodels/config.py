"""Config sub-models owned by hwmodels: model choice, hardware, parallel layout, quantization, cost model."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

ComputeDType = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8"]
WeightDType = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
KVDType = Literal["fp32", "fp16", "bf16", "fp8", "int8"]


class Frozen(BaseModel):
    """Base for every config node: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(Frozen):
    """Which LLM: a catalog name, or a Hugging Face `config.json` (file or model directory)."""

    name: str = "llama-3.1-8b"
    hf_config: str | None = Field(default=None, description="path to a HF config.json or a model dir")


class HardwareConfig(Frozen):
    """Accelerator type and node shape; links default to the accelerator's own."""

    gpu: str = "h100-sxm"
    gpu_file: str | None = Field(default=None, description="YAML file with a user accelerator spec")
    gpus_per_node: int = Field(default=8, ge=1)
    intra_node_link: str | None = None
    inter_node_link: str = "ib-ndr"
    usd_per_gpu_hour: float | None = Field(default=None, gt=0, description="overrides the catalog default")


class ParallelConfig(Frozen):
    """Layout of one replica (TP x PP, EP for MoE experts) and number of replicas (data parallel)."""

    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=1)

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.replicas


class QuantConfig(Frozen):
    """Numeric formats. `weight_dtype`/`kv_dtype` default to `dtype` (the activation/compute dtype)."""

    dtype: Literal["fp32", "fp16", "bf16", "fp8"] = "bf16"
    weight_dtype: WeightDType | None = None
    kv_dtype: KVDType | None = None
    weight_method: Literal["none", "gptq", "awq"] = Field(
        default="none", description="weight-only quantization scheme (int4/int8 weights, dequantised to dtype)"
    )

    @property
    def weights(self) -> str:
        return self.weight_dtype or self.dtype

    @property
    def kv(self) -> str:
        return self.kv_dtype or self.dtype


class RooflineCostConfig(Frozen):
    kind: Literal["roofline"] = "roofline"


class ProfiledCostConfig(Frozen):
    kind: Literal["profiled"] = "profiled"
    profile: str = Field(description="profile table written by `llmsim profile` (parquet)")


CostModelConfig = Annotated[Union[RooflineCostConfig, ProfiledCostConfig], Field(discriminator="kind")]
