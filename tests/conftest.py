"""Shared fixtures.

``xp`` is the array backend every numerical test runs on: ``"numpy"`` always, ``"cupy"`` only
when CuPy imports and a GPU is present (skipped otherwise). Tests build their data in NumPy,
move it with ``xp.asarray`` and bring results back with ``xp.get``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

# Let the test modules ``import _support`` whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cupy_with_gpu():
    """Return the cupy module when it imports and sees at least one GPU, else None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # no cupy, no driver, no device
        return None
    return None


class Backend:
    """Array creation and transfer for one device (``numpy`` on the host or ``cupy``)."""

    def __init__(self, name: str, module) -> None:
        self.name = name
        self.module = module

    def asarray(self, a):
        """A fresh C-contiguous copy of ``a`` on this backend, same dtype and shape."""
        return self.module.array(np.asarray(a), copy=True, order="C")

    def get(self, a) -> np.ndarray:
        """A NumPy copy of a backend array."""
        return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.array(a)

    def zeros(self, shape, dtype):
        return self.module.zeros(shape, dtype=dtype)

    def __repr__(self) -> str:
        return f"Backend({self.name})"


@pytest.fixture(params=["numpy", "cupy"])
def xp(request) -> Backend:
    """The array backend under test."""
    if request.param == "cupy":
        cupy = _cupy_with_gpu()
        if cupy is None:
            pytest.skip("cupy with a GPU is not available")
        return Backend("cupy", cupy)
    return Backend("numpy", np)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, fresh for every test (seed: $FU_TEST_SEED, default 12345)."""
    return np.random.default_rng(int(os.environ.get("FU_TEST_SEED", "12345")))
