from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMSIM_SHARED", REPO.parent / "shared"))
TRACES = SHARED / "traces"
PROFILES = SHARED / "profiles"


def _set_triton_interpreter() -> None:
    """Without CUDA, run Triton kernels in the CPU interpreter. Must happen before anything imports
    triton: triton.jit picks interpreter or compiler when a kernel is decorated."""
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
    except Exception:
        pass


_set_triton_interpreter()


@pytest.fixture
def traces_dir() -> Path:
    if not TRACES.is_dir():
        pytest.skip(f"shared traces folder {TRACES} is absent")
    return TRACES


@pytest.fixture
def profiles_dir() -> Path:
    if not PROFILES.is_dir():
        pytest.skip(f"shared profiles folder {PROFILES} is absent")
    return PROFILES


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none found)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
