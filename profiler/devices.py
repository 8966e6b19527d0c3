"""What device a profile was measured on, and a GPUSpec-compatible spec of this host's CPU.

`cpu_device_spec()` measures the CPU like a datasheet would state it: peak matmul FLOP/s per dtype
(best of a few large torch.matmul calls) and memory bandwidth (a large tensor copy, read + write
bytes / time, as STREAM's Copy kernel counts them; McCalpin 1995). Written as YAML with
`write_device_spec`, it loads through `HardwareConfig.gpu_file`, so CPU-only profile → simulate →
validate works on any laptop.
"""
from __future__ import annotations

import platform
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str) -> str:
    """Stable label of the timing device: the GPU name, or the CPU model and the threads torch uses."""
    if device == "cuda":
        return f"cuda:{torch.cuda.get_device_name()}"
    return f"cpu:{cpu_model_name()} ({torch.get_num_threads()} threads)"


def run_metadata(device: str, note: str = "") -> dict:
    """Versions, driver and host facts stored with every run in the table's parquet metadata."""
    import triton

    meta = {
        "device": device_name(device), "device_kind": device, "host": socket.gethostname(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        meta.update(cuda_runtime=torch.version.cuda, cuda_capability=f"{props.major}.{props.minor}",
                    gpu_memory_bytes=int(props.total_memory), num_sms=int(props.multi_processor_count),
                    driver=_nvidia_driver(), timing="triton.testing.do_bench (CUDA events, L2 flushed)",
                    impls="triton kernels and torch (cuBLAS / SDPA) references")
    else:
        meta.update(cpu=cpu_model_name(), driver="n/a", cuda_runtime="n/a",
                    timing="median of warmed-up time.perf_counter samples",
                    impls="torch implementations only: Triton's CPU interpreter (TRITON_INTERPRET=1) checks "
                          "kernel correctness but is not a timing device")
    if note:
        meta["note"] = note
    return meta


def _nvidia_driver() -> str:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def measure_matmul_peak(dtype: str, size: int = 1024, repeats: int = 5) -> float:
    """Best achieved FLOP/s of a size³ torch.matmul on CPU (2·size³ FLOPs per call)."""
    t = _TORCH_DTYPES[dtype]
    a = torch.randn(size, size).to(t)
    b = torch.randn(size, size).to(t)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size ** 3 / best


def measure_memory_bandwidth(nbytes: int = 256_000_000, repeats: int = 5) -> float:
    """Best copy bandwidth in bytes/s: y.copy_(x) moves 2·nbytes (read x, write y), STREAM Copy."""
    x = torch.ones(nbytes // 4, dtype=torch.float32)
    y = torch.empty_like(x)
    y.copy_(x)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * nbytes / best


def _mem_total_bytes() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024.0  # /proc/meminfo "kB" are KiB
    except OSError:
        pass
    return 8e9


def cpu_device_spec(quick: bool = False) -> dict:
    """GPUSpec fields for this CPU, measured now. fp16 matmul is timed smaller (slow on most CPUs)."""
    size = 512 if quick else 1024
    flops = {"fp32": measure_matmul_peak("fp32", size), "bf16": measure_matmul_peak("bf16", size)}
    flops["fp16"] = measure_matmul_peak("fp16", 128 if quick else 256, repeats=3)
    bw = measure_memory_bandwidth(64_000_000 if quick else 256_000_000)
    host = socket.gethostname()
    return {
        "name": f"cpu-{host}".lower().replace("_", "-"),
        "vendor": "cpu",
        "peak_flops_per_s": {k: float(f"{v:.4g}") for k, v in flops.items()},
        "hbm_bytes": _mem_total_bytes(),
        "hbm_bytes_per_s": float(f"{bw:.4g}"),
        "num_sms": max(1, torch.get_num_threads()),
        "source": (f"measured by `llmsim profile --device cpu` on {host} ({cpu_model_name()}, "
                   f"{torch.get_num_threads()} threads) at {datetime.now(timezone.utc).isoformat(timespec='seconds')}: "
                   f"best torch.matmul {size}^3 FLOP/s per dtype; STREAM-Copy-style bandwidth"),
    }


def write_device_spec(path: str | Path, spec: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p
