"""The few array operations the sharded updater needs, for NumPy and CuPy alike."""

from __future__ import annotations

from typing import Any

import numpy as np


def pack(xp: Any, arrays: list, out: Any) -> None:
    """Copy ``arrays`` end to end into the flat ``out`` in one call (no Python loop on NumPy:
    ``concatenate`` with ``axis=None`` flattens them itself); dtypes must match exactly."""
    if xp is np:
        np.concatenate(arrays, axis=None, out=out, casting="no")
    else:
        xp.concatenate([a.ravel() for a in arrays], out=out)


def sum_squares(xp: Any, x: Any) -> float:
    """Sum of the squares of ``x``, accumulated in float64 (float32 and float16 squares summed
    in their own precision would lose digits over millions of elements)."""
    if x.size == 0:
        return 0.0
    if xp is np:
        return float(np.einsum("i,i->", x, x, dtype=np.float64, casting="safe"))
    from .. import _cuda_backend  # the library's deterministic device reduction

    return float(_cuda_backend.sum_squares([x]))


def as_host_scalar(xp: Any, value: float) -> Any:
    """What a single-process step returns as its norm: a float on NumPy, a 0-d float64 device
    array on CuPy."""
    return value if xp is np else xp.asarray(value, dtype=np.float64)


def array_type(xp: Any) -> type:
    return xp.ndarray
