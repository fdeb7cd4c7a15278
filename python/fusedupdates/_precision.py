"""16-bit parameters: which dtypes they are, the dtype of their state, and master weights.

bfloat16 is ``ml_dtypes.bfloat16`` (an optional dependency): NumPy sees it as a user-defined
2-byte dtype of kind ``"V"`` named ``"bfloat16"``, so it is recognised by those properties and
this module never imports ml_dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MASTER = "master"  # the state name of float32 master weights (csrc/bindings/cpu_stepper.h)


def is_bfloat16(dtype: Any) -> bool:
    """Whether ``dtype`` is ml_dtypes' (or CuPy's) bfloat16."""
    dtype = np.dtype(dtype)
    return dtype.name == "bfloat16" and dtype.itemsize == 2 and dtype.kind == "V"


def is_16bit_float(dtype: Any) -> bool:
    """float16 or bfloat16: stored in 16 bits, computed and kept in float32."""
    return np.dtype(dtype) == np.float16 or is_bfloat16(dtype)


def state_dtype(param: Any) -> np.dtype:
    """The dtype of a parameter's state buffers: float32 for 16-bit params, else its own."""
    if is_16bit_float(param.dtype):
        return np.dtype(np.float32)
    return np.dtype(param.dtype)


def check_master_weights(master_weights: Any, params: list) -> bool:
    """Validate the ``master_weights`` keyword against the params, before anything is built."""
    if not isinstance(master_weights, (bool, np.bool_)):
        raise TypeError(f"master_weights must be a bool, got {type(master_weights).__name__}")
    if not master_weights:
        return False
    _require_16bit(params, "master_weights=True", " (a float32 param is its own master copy)")
    return True


def _require_16bit(params: list, option: str, hint: str = "") -> None:
    """``option`` is only for float16 / bfloat16 params: ValueError naming the first other."""
    for i, p in enumerate(params):
        if not is_16bit_float(p.dtype):
            raise ValueError(
                f"params[{i}]: {option} is for float16 and bfloat16 params, not "
                f"{np.dtype(p.dtype)}{hint}"
            )


ROUNDINGS = ("nearest", "stochastic")


def _is_stochastic(keyword: str, value: Any) -> bool:
    """``value`` of a rounding keyword, checked: True for "stochastic", False for "nearest"."""
    if not isinstance(value, str):
        raise TypeError(f"{keyword} must be a str, got {type(value).__name__}")
    if value not in ROUNDINGS:
        raise ValueError(f"{keyword} must be one of {ROUNDINGS}, got {value!r}")
    return value == "stochastic"


def check_rounding(rounding: Any, params: list, master_weights: bool, on_gpu: bool) -> bool:
    """Validate the ``rounding`` keyword; True for stochastic rounding."""
    if not _is_stochastic("rounding", rounding):
        return False
    if on_gpu:
        raise ValueError("rounding='stochastic' is not supported for CuPy arrays yet (CPU only)")
    if master_weights:
        raise ValueError(
            "rounding='stochastic' is instead of master weights: the master copy is rounded "
            "to nearest; pass one of them"
        )
    _require_16bit(params, "rounding='stochastic'")
    return True


def check_state_rounding(state_rounding: Any, state_dtype: Any, on_gpu: bool) -> bool:
    """Validate the ``state_rounding`` keyword; True for stochastic rounding of the state."""
    if not _is_stochastic("state_rounding", state_rounding):
        return False
    if state_dtype not in ("bfloat16", "int8"):
        raise ValueError(
            "state_rounding='stochastic' is for state_dtype='bfloat16' or 'int8', "
            f"not {state_dtype!r}"
        )
    if on_gpu:
        raise ValueError(
            "state_rounding='stochastic' is not supported for CuPy arrays yet (CPU only)"
        )
    return True
