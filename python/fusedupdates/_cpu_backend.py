"""The OpenMP backend for NumPy arrays: a thin shim over the native ``_cpu`` module.

Both backends expose the same functions (see ``_cuda_backend.py``); the updaters and the
functional API only talk to this interface.
"""

from __future__ import annotations

import numpy as np

from . import _cpu

name = "cpu"


def zeros_like(param: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.zeros(param.shape, dtype=dtype)


def empty_like(x: np.ndarray) -> np.ndarray:
    return np.empty(x.shape, dtype=x.dtype)  # always C-contiguous, whatever x is


def to_numpy(x: np.ndarray) -> np.ndarray:
    return np.array(x, copy=True)


def copy_from_numpy(dst: np.ndarray, src: np.ndarray) -> None:
    np.copyto(dst, src, casting="no")


def check_params(params: list) -> None:
    _cpu.check_params(params)


def step(
    rule_id: int,
    nesterov: bool,
    params: list,
    grads: list,
    states: list,
    state_names: list,
    velocity: list | None,
    hyper: tuple,
    max_norm: float | None,
    clip_epsilon: float,
    cache: dict | None = None,
) -> float | None:
    """One fused native step over every parameter; returns the total norm when clipping.

    ``cache`` is per-updater scratch space (unused on the CPU).
    """
    return _cpu.step(
        rule_id,
        nesterov,
        params,
        grads,
        states,
        state_names,
        velocity,
        hyper,
        max_norm,
        clip_epsilon,
    )


def bind_step(cache: dict):
    """The step callable an updater calls directly (no cache on the CPU): the native one."""
    return _cpu.step


def hyper_changed(cache: dict, hyper: tuple, reset_step: bool | None = None) -> None:
    """Called when an updater's hyperparameters or step count change (CPU: nothing to do,
    they are passed to every step)."""


def device_step(cache: dict) -> None:
    """The step count as the device sees it: the CPU has no separate count."""
    return None


def total_norm_constraint(xs: list, out: list, max_norm: float, epsilon: float) -> float:
    """Scale every array by Lasagne's total-norm multiplier into ``out``; return the norm."""
    return _cpu.total_norm_constraint(xs, out, max_norm, epsilon)


def norm_constraint(x, out, outer: int, reduce: int, inner: int, max_norm: float, eps: float):
    _cpu.norm_constraint(x, out, outer, reduce, inner, max_norm, eps)
