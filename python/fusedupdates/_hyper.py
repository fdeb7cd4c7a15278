"""Hyperparameter checks: every value becomes a validated Python float (or int for counts)
when it is given, so what an updater shows is exactly what its next step uses."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ._rules import FIELD_OF

# t + 1 reaches the kernels as a double: keep every count exact in one.
MAX_STEP = 2**53


def _as_float(name: str, value: Any) -> float:
    """A real number (Python or NumPy scalar, 0-d array) as a float, read NOW: a 0-d array
    changed later does not change the value stored."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, np.ndarray) and value.ndim != 0:
        raise TypeError(f"{name} must be a real number, got an array of shape {value.shape}")
    try:
        x = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {value!r} does not fit in a float") from None
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def check_hyper(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not valid for hyperparameter ``name``."""
    x = _as_float(name, value)
    if name in ("rho", "beta1", "beta2", "momentum") and not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {x}")
    if name in ("learning_rate", "epsilon", "weight_decay") and x < 0.0:
        raise ValueError(f"{name} must be >= 0, got {x}")
    return x


def check_max_norm(max_norm: Any) -> float | None:
    """Validate the optional total-norm bound of a step."""
    if max_norm is None:
        return None
    x = _as_float("max_norm", max_norm)
    if x < 0.0:  # 0 is legal, as in Lasagne: it zeroes the gradients
        raise ValueError(f"max_norm must be >= 0, got {x}")
    return x


def check_grad_scale(grad_scale: Any) -> Any:
    """Validate a loss scale: finite and > 0. A CUDA array (a LossScaler's scale on the GPU)
    is passed through: the native stepper checks its dtype, size and device, and the kernel
    skips the step when its value is not finite and > 0 (reading it here would synchronise)."""
    if hasattr(grad_scale, "__cuda_array_interface__"):
        return grad_scale
    x = _as_float("grad_scale", grad_scale)
    if not x > 0.0:
        raise ValueError(f"grad_scale must be > 0, got {x}")
    return x


def check_count(name: str, value: Any, minimum: int) -> int:
    """An integer (Python, NumPy scalar or 0-d integer array) in [minimum, 2**53)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value.item()
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not minimum <= n < MAX_STEP:
        raise ValueError(f"{name} must be in [{minimum}, 2**53), got {n}")
    return n


def check_step(step: Any) -> int:
    """Validate the 1-based step counter t of a bias-corrected rule."""
    return check_count("step", step, 1)


def native_fields(values: dict[str, float], decoupled: bool = False) -> dict[str, float]:
    """Validated hyperparameters by user name -> keyword arguments of
    ``Stepper.set_hyperparameters`` (the native field names). ``weight_decay`` goes to the
    L2 field, or to the decoupled one (AdamW) when ``decoupled``; the other is zeroed."""
    fields = {FIELD_OF[name]: value for name, value in values.items() if name != "weight_decay"}
    if "weight_decay" in values:
        fields["decoupled_weight_decay" if decoupled else "weight_decay"] = values["weight_decay"]
        fields["weight_decay" if decoupled else "decoupled_weight_decay"] = 0.0
    return fields
