"""Accelerator and interconnect catalog: datasheet facts in SI units, with the source of every entry.

Peak FLOP/s are *dense* (no 2:4 sparsity) tensor-core rates; `fp32` is the non-tensor (CUDA-core /
vector) rate. Memory capacities are the datasheet's decimal GB (1 GB = 1e9 B). NOTE: nvidia-smi
reports e.g. 81920 MiB (85.9e9 B) for an "80 GB" A100, so KV-cache capacity derived from these
numbers is conservative by up to ~7 %. `usd_per_hour` is a typical on-demand cloud price per GPU,
an editable default (override with `hardware.usd_per_gpu_hour`), not a datasheet fact.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hwmodels.config import HardwareConfig
from hwmodels.errors import UserError, format_validation_error

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")
# When a part lacks a format, which one its kernels fall back to (e.g. fp8 on A100 runs as bf16/fp16).
_FALLBACK = {"fp8": "bf16", "int8": "fp16", "bf16": "fp16", "fp16": "bf16", "tf32": "fp32", "int4": "fp16"}


# Alpha and bandwidth efficiency of NVLink3/4 and IB HDR/NDR were fitted on Vidur's NCCL timings
# (/work/shared/profiles/vidur/network/{a100_dgx,h100_dgx}/{all_reduce,send_recv}.csv) by
# `python benchmarks/fit_roofline_efficiency.py`, with the formulas of hwmodels.collectives, on all-reduce rows
# where there are any (else send/recv), each power-of-two message size weighted equally. Median |error| on
# all-reduce: NVLink3 9.9 % (messages <= 1 MB: 56 %, the small-message timings are noisy), NVLink4 8.9 % (35 %),
# IB-HDR 0.7 %; send/recv: NVLink3 47 %, NVLink4 3.7 %, IB-HDR 31 %, IB-NDR 1.3 %. Links without measurements
# use the mean NVLink efficiency below.
_LINK_EFF_DEFAULT = (0.532 + 0.765) / 2


class LinkSpec(BaseModel):
    """One interconnect: bandwidth per direction per GPU and per-message latency (alpha)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    bandwidth_bytes_per_s: float = Field(gt=0, description="per direction, per GPU")
    latency_s: float = Field(ge=0, description="alpha of the alpha-beta model, per message/step")
    efficiency: float = Field(default=_LINK_EFF_DEFAULT, gt=0, le=1,
                              description="fraction of the bandwidth NCCL collectives reach (bus bandwidth)")
    topology: str = Field(default="switch", description="switch | point-to-point | network")
    source: str = ""

    @property
    def effective_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s * self.efficiency


class GPUSpec(BaseModel):
    """One accelerator. Dense peak FLOP/s per dtype, HBM size and bandwidth, links it attaches to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    vendor: str = "nvidia"
    peak_flops_per_s: dict[str, float]
    hbm_bytes: float = Field(gt=0)
    hbm_bytes_per_s: float = Field(gt=0)
    l2_bytes: float = Field(default=0.0, ge=0, description="last-level on-chip cache")
    num_sms: int = Field(default=1, ge=1, description="SMs (NVIDIA) or CUs (AMD)")
    tdp_w: float = Field(default=0.0, ge=0)
    usd_per_hour: float = Field(default=0.0, ge=0, description="editable default, on-demand cloud")
    intra_node_link: str = "pcie-gen4"
    pcie_link: str = "pcie-gen4"
    source: str = ""

    @field_validator("peak_flops_per_s")
    @classmethod
    def _check_flops(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k in v if k not in DTYPES]
        if bad:
            raise ValueError(f"unknown dtype key(s) {bad}; allowed: {', '.join(DTYPES)}")
        if not any(k in v for k in ("fp16", "bf16", "fp32")):
            raise ValueError("needs at least one of fp32/fp16/bf16")
        if any(x <= 0 for x in v.values()):
            raise ValueError("peak FLOP/s must be > 0")
        return v

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s at `dtype`, falling back to the format the part would really run
        (no fp8 -> bf16, no int8 -> fp16, ...)."""
        seen = set()
        d = dtype
        while d not in self.peak_flops_per_s:
            if d in seen or d not in _FALLBACK:
                break
            seen.add(d)
            d = _FALLBACK[d]
        if d in self.peak_flops_per_s:
            return self.peak_flops_per_s[d]
        for d in ("bf16", "fp16", "fp32"):
            if d in self.peak_flops_per_s:
                return self.peak_flops_per_s[d]
        raise UserError(f"gpu {self.name}: no peak FLOP/s for {dtype}")  # unreachable (validator)

    def has_dtype(self, dtype: str) -> bool:
        return dtype in self.peak_flops_per_s


_NV_A100 = "NVIDIA A100 Tensor Core GPU datasheet (2021), SXM column; dense rates; L2/SMs: Ampere GA100 whitepaper"
_NV_H100 = ("NVIDIA H100 Tensor Core GPU datasheet (2023); dense = half the with-sparsity figure; "
            "L2/SMs: Hopper whitepaper")
_PRICE = "typical on-demand $/GPU-hour (Lambda/AWS/GCP/RunPod list prices, 2025): editable default"

_GPUS: list[GPUSpec] = [
    GPUSpec(name="a100-40gb", peak_flops_per_s={"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12,
                                                 "int8": 624e12},
            hbm_bytes=40e9, hbm_bytes_per_s=1555e9, l2_bytes=40e6, num_sms=108, tdp_w=400, usd_per_hour=1.29,
            intra_node_link="nvlink3", pcie_link="pcie-gen4", source=f"{_NV_A100}; {_PRICE}"),
    GPUSpec(name="a100-80gb", peak_flops_per_s={"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12,
                                                 "int8": 624e12},
            hbm_bytes=80e9, hbm_bytes_per_s=2039e9, l2_bytes=40e6, num_sms=108, tdp_w=400, usd_per_hour=1.79,
            intra_node_link="nvlink3", pcie_link="pcie-gen4", source=f"{_NV_A100}; {_PRICE}"),
    GPUSpec(name="h100-sxm", peak_flops_per_s={"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12,
                                                "fp8": 1978.9e12, "int8": 1978.9e12},
            hbm_bytes=80e9, hbm_bytes_per_s=3.35e12, l2_bytes=50e6, num_sms=132, tdp_w=700, usd_per_hour=2.99,
            intra_node_link="nvlink4", pcie_link="pcie-gen5", source=f"{_NV_H100}, SXM column; {_PRICE}"),
    GPUSpec(name="h100-pcie", peak_flops_per_s={"fp32": 51e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12,
                                                 "fp8": 1513e12, "int8": 1513e12},
            hbm_bytes=80e9, hbm_bytes_per_s=2.0e12, l2_bytes=50e6, num_sms=114, tdp_w=350, usd_per_hour=2.49,
            intra_node_link="pcie-gen5", pcie_link="pcie-gen5",
            source=f"{_NV_H100}, PCIe column (NVLink bridge optional, not assumed); {_PRICE}"),
    GPUSpec(name="h200", peak_flops_per_s={"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12,
                                            "fp8": 1978.9e12, "int8": 1978.9e12},
            hbm_bytes=141e9, hbm_bytes_per_s=4.8e12, l2_bytes=50e6, num_sms=132, tdp_w=700, usd_per_hour=3.79,
            intra_node_link="nvlink4", pcie_link="pcie-gen5",
            source=f"NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column, dense; {_PRICE}"),
    GPUSpec(name="b200", peak_flops_per_s={"fp32": 80e12, "tf32": 1.1e15, "bf16": 2.25e15, "fp16": 2.25e15,
                                            "fp8": 4.5e15, "int8": 4.5e15},
            hbm_bytes=180e9, hbm_bytes_per_s=7.7e12, l2_bytes=126e6, num_sms=148, tdp_w=1000, usd_per_hour=5.99,
            intra_node_link="nvlink5", pcie_link="pcie-gen5",
            source="NVIDIA HGX B200 spec (2024): per-GPU dense = half of sparse figures, 180 GB HBM3e at 7.7 TB/s; "
                   f"SMs/L2: Blackwell architecture technical brief; fp32 approximate; {_PRICE}"),
    GPUSpec(name="l40s", peak_flops_per_s={"fp32": 91.6e12, "tf32": 183e12, "bf16": 362.05e12, "fp16": 362.05e12,
                                            "fp8": 733e12, "int8": 733e12},
            hbm_bytes=48e9, hbm_bytes_per_s=864e9, l2_bytes=96e6, num_sms=142, tdp_w=350, usd_per_hour=0.99,
            intra_node_link="pcie-gen4", pcie_link="pcie-gen4",
            source=f"NVIDIA L40S datasheet (2023), dense; GDDR6 (no NVLink); {_PRICE}"),
    GPUSpec(name="l4", peak_flops_per_s={"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "fp16": 121e12,
                                          "fp8": 242.5e12, "int8": 242.5e12},
            hbm_bytes=24e9, hbm_bytes_per_s=300e9, l2_bytes=48e6, num_sms=58, tdp_w=72, usd_per_hour=0.80,
            intra_node_link="pcie-gen4", pcie_link="pcie-gen4",
            source=f"NVIDIA L4 Tensor Core GPU datasheet (2023), dense; GDDR6; {_PRICE}"),
    GPUSpec(name="a10g", peak_flops_per_s={"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12,
                                            "int8": 250e12},
            hbm_bytes=24e9, hbm_bytes_per_s=600e9, l2_bytes=6e6, num_sms=80, tdp_w=300, usd_per_hour=1.006,
            intra_node_link="pcie-gen4", pcie_link="pcie-gen4",
            source="NVIDIA A10 datasheet (2021) dense rates (A10G is AWS's GA102 variant used in EC2 G5; AWS does not "
                   "publish separate tensor rates); 24 GB GDDR6 600 GB/s; price: AWS g5.xlarge on-demand us-east-1"),
    GPUSpec(name="mi300x", vendor="amd",
            peak_flops_per_s={"fp32": 163.4e12, "tf32": 653.7e12, "bf16": 1307.4e12, "fp16": 1307.4e12,
                              "fp8": 2614.9e12, "int8": 2614.9e12},
            hbm_bytes=192e9, hbm_bytes_per_s=5.3e12, l2_bytes=256e6, num_sms=304, tdp_w=750, usd_per_hour=2.50,
            intra_node_link="infinity-fabric", pcie_link="pcie-gen5",
            source="AMD Instinct MI300X data sheet (2023), dense; 304 CUs; l2_bytes = 256 MB Infinity Cache; "
                   f"{_PRICE}"),
]
GPUS: dict[str, GPUSpec] = {g.name: g for g in _GPUS}

_LINKS: list[LinkSpec] = [
    # NVLink: datasheet totals are bidirectional per GPU; per direction is half. Latency: NCCL's per-step
    # latency over NVLink is ~1 us (NCCL tuning constants, src/graph/tuning.cc, LL/Simple base latencies).
    LinkSpec(name="nvlink3", bandwidth_bytes_per_s=300e9, latency_s=9.82e-6, efficiency=0.532, topology="switch",
             source="A100 datasheet: 600 GB/s NVLink (12 links x 25 GB/s/dir) via NVSwitch (DGX/HGX A100); "
                    "alpha, efficiency fitted on vidur a100_dgx NCCL timings"),
    LinkSpec(name="nvlink4", bandwidth_bytes_per_s=450e9, latency_s=6.44e-6, efficiency=0.765, topology="switch",
             source="H100 SXM datasheet: 900 GB/s NVLink (18 links x 25 GB/s/dir) via NVSwitch (DGX/HGX H100/H200); "
                    "alpha, efficiency fitted on vidur h100_dgx NCCL timings"),
    LinkSpec(name="nvlink5", bandwidth_bytes_per_s=900e9, latency_s=6.44e-6, efficiency=0.765, topology="switch",
             source="HGX B200 spec: 1.8 TB/s NVLink 5 per GPU via NVSwitch; alpha and efficiency assumed as NVLink4"),
    LinkSpec(name="nvlink-bridge-a100", bandwidth_bytes_per_s=300e9, latency_s=9.82e-6, efficiency=0.532,
             topology="point-to-point",
             source="A100 PCIe datasheet: NVLink bridge for 2 GPUs, 600 GB/s bidirectional"),
    LinkSpec(name="infinity-fabric", bandwidth_bytes_per_s=448e9, latency_s=5e-6, topology="point-to-point",
             source="AMD MI300X data sheet: 7 x 64 GB/s/dir Infinity Fabric links, fully connected 8-GPU mesh"),
    # PCIe: x16 payload rate per direction (after 128b/130b encoding). Latency: no measurement at hand; the fitted
    # NVLink alphas (4-8 us, dominated by NCCL protocol and kernel launch) are used as the order of magnitude.
    LinkSpec(name="pcie-gen4", bandwidth_bytes_per_s=31.5e9, latency_s=8e-6, topology="switch",
             source="PCI-SIG PCIe 4.0: 16 GT/s x16 = 31.5 GB/s per direction"),
    LinkSpec(name="pcie-gen5", bandwidth_bytes_per_s=63e9, latency_s=8e-6, topology="switch",
             source="PCI-SIG PCIe 5.0: 32 GT/s x16 = 63 GB/s per direction"),
    # Inter-node: one NIC per GPU (rail-optimised DGX/HGX designs). HDR/NDR alpha and efficiency fitted on vidur's
    # cross-node NCCL timings (2 nodes, 1 GPU each; that cluster reached only 24 % of HDR line rate).
    LinkSpec(name="ib-hdr", bandwidth_bytes_per_s=25e9, latency_s=2.71e-5, efficiency=0.235, topology="network",
             source="NVIDIA ConnectX-6 / Quantum HDR InfiniBand: 200 Gb/s per port, one port per GPU (DGX A100); "
                    "alpha, efficiency fitted on vidur a100_dgx cross-node timings"),
    LinkSpec(name="ib-ndr", bandwidth_bytes_per_s=50e9, latency_s=1.81e-5, efficiency=0.724, topology="network",
             source="NVIDIA ConnectX-7 / Quantum-2 NDR InfiniBand: 400 Gb/s per port, one port per GPU (DGX H100); "
                    "alpha, efficiency fitted on vidur h100_dgx cross-node send/recv timings"),
    LinkSpec(name="roce-200g", bandwidth_bytes_per_s=25e9, latency_s=2.5e-5, topology="network",
             source="200 GbE RoCEv2 NIC per GPU; RoCE adds a few us over IB (Ethernet switching)"),
    LinkSpec(name="roce-400g", bandwidth_bytes_per_s=50e9, latency_s=2.5e-5, topology="network",
             source="400 GbE RoCEv2 NIC per GPU (e.g. ConnectX-7 / Spectrum-X)"),
    LinkSpec(name="ethernet-100g", bandwidth_bytes_per_s=12.5e9, latency_s=5e-5, topology="network",
             source="100 GbE TCP (no RDMA), shared per node; latency of a kernel TCP round trip"),
]
LINKS: dict[str, LinkSpec] = {lk.name: lk for lk in _LINKS}


def get_gpu(name: str) -> GPUSpec:
    """Catalog accelerator by name (case-insensitive)."""
    g = GPUS.get(name.lower())
    if g is None:
        raise UserError(f"hardware.gpu = {name!r}: unknown accelerator; allowed: {', '.join(GPUS)} "
                        "(or describe your own in a YAML file via hardware.gpu_file)")
    return g


def list_gpus() -> list[GPUSpec]:
    return list(GPUS.values())


def get_link(name: str) -> LinkSpec:
    lk = LINKS.get(name.lower())
    if lk is None:
        raise UserError(f"link = {name!r}: unknown interconnect; allowed: {', '.join(LINKS)}")
    return lk


def list_links() -> list[LinkSpec]:
    return list(LINKS.values())


def load_gpu_file(path: str | Path) -> GPUSpec:
    """A user accelerator from YAML: the GPUSpec fields (peak_flops_per_s keyed by fp32/tf32/bf16/fp16/fp8/int8)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"hardware.gpu_file = {str(p)!r}: file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise UserError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of GPUSpec fields ({', '.join(GPUSpec.model_fields)})")
    data.setdefault("source", f"user file {p}")
    try:
        g = GPUSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, str(p))) from None
    for field in ("intra_node_link", "pcie_link"):
        if getattr(g, field).lower() not in LINKS:
            raise UserError(f"{p}: {field} = {getattr(g, field)!r}: unknown link; allowed: {', '.join(LINKS)}")
    return g


def resolve_gpu(hw: HardwareConfig) -> GPUSpec:
    """The accelerator a HardwareConfig names (gpu_file wins over gpu), with its price override applied."""
    g = load_gpu_file(hw.gpu_file) if hw.gpu_file else get_gpu(hw.gpu)
    if hw.usd_per_gpu_hour is not None:
        g = g.model_copy(update={"usd_per_hour": hw.usd_per_gpu_hour})
    return g


def intra_link(gpu: GPUSpec, hw: HardwareConfig) -> LinkSpec:
    return get_link(hw.intra_node_link or gpu.intra_node_link)


def inter_link(hw: HardwareConfig) -> LinkSpec:
    return get_link(hw.inter_node_link)
