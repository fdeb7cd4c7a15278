"""The OpenMP backend for NumPy arrays: a thin shim over the native ``_cpu`` module.

Both backends expose the same functions (see ``_cuda_backend.py``); the updaters and the
functional API only talk to this interface and to the native ``Stepper`` it returns.
"""

from __future__ import annotations

import numpy as np

from . import _cpu


def make_stepper(
    rule_id: int,
    params: list,
    states: list,
    state_names: list,
    groups: list | None = None,
    *,
    functional: bool = False,
    stochastic_rounding: bool = False,
    stochastic_state_rounding: bool = False,
    scales: list | None = None,
) -> _cpu.Stepper:
    """The native stepper of one updater: validates params and states once, owns ``t`` and
    each parameter group's hyperparameters (``groups``: the group index of each param).
    ``functional`` only matters on the GPU (how a captured CUDA graph treats ``t``);
    ``stochastic_rounding`` rounds 16-bit params stochastically,
    ``stochastic_state_rounding`` bfloat16 states, and ``scales`` holds the block scales of
    8-bit states."""
    return _cpu.Stepper(
        rule_id,
        params,
        states,
        state_names,
        groups,
        stochastic_rounding=stochastic_rounding,
        stochastic_state_rounding=stochastic_state_rounding,
        scales=scales,
    )


def zeros_like(param: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.zeros(param.shape, dtype=dtype)


def zeros_on(shape: tuple, dtype: np.dtype, like: np.ndarray) -> np.ndarray:
    """Zeros of ``shape`` where ``like`` lives (the block scales of 8-bit state)."""
    return np.zeros(shape, dtype=dtype)


def empty_like(x: np.ndarray) -> np.ndarray:
    return np.empty(x.shape, dtype=x.dtype)  # always C-contiguous, whatever x is


def to_numpy(x: np.ndarray) -> np.ndarray:
    return np.array(x, copy=True)


def copy_from_numpy(dst: np.ndarray, src: np.ndarray) -> None:
    np.copyto(dst, src, casting="no")


def total_norm_constraint(xs: list, out: list, max_norm: float, epsilon: float) -> float:
    """Scale every array by Lasagne's total-norm multiplier into ``out``; return the norm."""
    return _cpu.total_norm_constraint(xs, out, max_norm, epsilon)


def norm_constraint(x, out, outer: int, reduce: int, inner: int, max_norm: float, eps: float):
    _cpu.norm_constraint(x, out, outer, reduce, inner, max_norm, eps)
