"""Choosing the backend from the array type, without importing CuPy on CPU paths."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import _cpu_backend
from ._precision import reject_gpu_bfloat16


def backend_for(arrays: list, what: str = "params") -> ModuleType:
    """Return the backend module for ``arrays`` (all NumPy, or all CUDA arrays)."""
    if not arrays:
        return _cpu_backend
    first = arrays[0]
    if isinstance(first, np.ndarray):
        return _cpu_backend
    if hasattr(first, "__cuda_array_interface__"):
        from . import _cuda_backend  # lazy: needs CuPy and the CUDA module

        reject_gpu_bfloat16(arrays, what)
        return _cuda_backend
    raise TypeError(
        f"{what}[0]: expected a numpy.ndarray or a CUDA array (CuPy), got {type(first).__name__}"
    )


def as_list(x: Any, what: str) -> list:
    """Accept a single array or a list/tuple of arrays; always return a new list."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__"):
        return [x]
    raise TypeError(f"{what}: expected an array or a list of arrays, got {type(x).__name__}")
