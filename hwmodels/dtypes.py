"""Numeric formats: bytes per element and which peak-FLOP/s entry a format computes at."""
from __future__ import annotations

from hwmodels.errors import UserError

# Bytes per element. int4 packs two values per byte (GPTQ/AWQ store int4 in int32 words; group scales
# are accounted separately by QUANT_SCALE_OVERHEAD below).
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0, "tf32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
}

# Extra bytes per weight element for group-wise scales/zeros of weight-only formats: one fp16 scale +
# one packed zero per group of 128 (GPTQ/AWQ default group_size=128; Frantar et al. 2023, Lin et al. 2024)
# = (2 + 0.5) / 128 bytes per element.
QUANT_SCALE_OVERHEAD_BYTES = 2.5 / 128


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of `dtype` (int4 -> 0.5)."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise UserError(f"dtype = {dtype!r}: unknown; allowed: {', '.join(DTYPE_BYTES)}") from None
