"""Hyperparameter checks and packing into the tuple the native backends read."""

from __future__ import annotations

import math
from typing import Any

from ._rules import HYPER_SLOTS, RuleSpec


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got bool")
    try:
        x = float(value)
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
    if name == "epsilon" and x < 0.0:
        raise ValueError(f"epsilon must be >= 0, got {x}")
    return x


def check_max_norm(max_norm: Any) -> float | None:
    """Validate the optional total-norm bound of a step."""
    if max_norm is None:
        return None
    x = _as_float("max_norm", max_norm)
    if x < 0.0:  # 0 is legal, as in Lasagne: it zeroes the gradients
        raise ValueError(f"max_norm must be >= 0, got {x}")
    return x


def check_step(step: Any) -> int:
    """Validate the 1-based step counter t of a bias-corrected rule."""
    if isinstance(step, bool) or not isinstance(step, int):
        try:
            import numpy as np

            if not isinstance(step, np.integer):
                raise TypeError
        except TypeError:
            raise TypeError(
                f"step must be an integer (the 1-based update count t), got {step!r}"
            ) from None
    if int(step) < 1:
        raise ValueError(f"step must be >= 1 (t is incremented before use), got {step}")
    return int(step)


def pack(spec: RuleSpec, values: dict[str, Any], momentum: float, step: int) -> tuple:
    """Validate every hyperparameter of ``spec`` and pack the 6-tuple for the native call."""
    packed = [0.0, 0.0, 0.0, 0.0, check_hyper("momentum", momentum), float(step)]
    for name in spec.defaults:
        packed[HYPER_SLOTS[name]] = check_hyper(name, values[name])
    return tuple(packed)
