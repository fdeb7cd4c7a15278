"""The adam family of :mod:`fusedupdates.reference` (adam, adamax, amsgrad)."""

from __future__ import annotations

import math

import numpy as np

from ._reference_core import Arrays, OptArrays, _apply


def _check_step(step: int) -> int:
    if step is None or int(step) != step or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")
    return int(step)


def adam(
    params: Arrays,
    grads: Arrays,
    m: Arrays,
    v: Arrays,
    *,
    step: int,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    velocity: OptArrays = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """Adam as in Lasagne: epsilon outside the sqrt and not bias-corrected.

    ``a_t = lr sqrt(1 - b2^t) / (1 - b1^t); m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
    p <- p - a_t m / (sqrt(v) + eps)``.

    Parameters
    ----------
    m, v : ndarray or list of ndarray
        First and second moment estimates (updated in place).
    step : int
        The 1-based step ``t`` of this update. Other arguments as :func:`sgd`.
    """
    t = _check_step(step)
    a_t = learning_rate * math.sqrt(1 - beta2**t) / (1 - beta1**t)

    def inner(g, m_, v_):
        m_[...] = beta1 * m_ + (1 - beta1) * g
        v_[...] = beta2 * v_ + (1 - beta2) * g**2
        return -a_t * m_ / (np.sqrt(v_) + epsilon)

    return _apply(
        inner,
        params,
        grads,
        [m, v],
        velocity,
        momentum,
        nesterov,
        max_norm,
        (learning_rate, weight_decay, decoupled_weight_decay),
    )


def adamax(
    params: Arrays,
    grads: Arrays,
    m: Arrays,
    u: Arrays,
    *,
    step: int,
    learning_rate: float = 0.002,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    velocity: OptArrays = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """Adamax: ``a_t = lr / (1 - b1^t); m <- b1 m + (1-b1) g; u <- max(b2 u, |g|);
    p <- p - a_t m / (u + eps)``.

    Parameters
    ----------
    m, u : ndarray or list of ndarray
        First moment and weighted infinity norm (updated in place). Others as :func:`adam`.
    """
    t = _check_step(step)
    a_t = learning_rate / (1 - beta1**t)

    def inner(g, m_, u_):
        m_[...] = beta1 * m_ + (1 - beta1) * g
        u_[...] = np.maximum(beta2 * u_, np.abs(g))
        return -a_t * m_ / (u_ + epsilon)

    return _apply(
        inner,
        params,
        grads,
        [m, u],
        velocity,
        momentum,
        nesterov,
        max_norm,
        (learning_rate, weight_decay, decoupled_weight_decay),
    )


def amsgrad(
    params: Arrays,
    grads: Arrays,
    m: Arrays,
    v: Arrays,
    v_hat: Arrays,
    *,
    step: int,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    velocity: OptArrays = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """AMSGrad: as :func:`adam`, plus ``v_hat <- max(v_hat, v)`` used in the denominator.

    Parameters
    ----------
    m, v, v_hat : ndarray or list of ndarray
        Moment estimates and the running maximum of ``v`` (updated in place).
    """
    t = _check_step(step)
    a_t = learning_rate * math.sqrt(1 - beta2**t) / (1 - beta1**t)

    def inner(g, m_, v_, vh):
        m_[...] = beta1 * m_ + (1 - beta1) * g
        v_[...] = beta2 * v_ + (1 - beta2) * g**2
        vh[...] = np.maximum(vh, v_)
        return -a_t * m_ / (np.sqrt(vh) + epsilon)

    return _apply(
        inner,
        params,
        grads,
        [m, v, v_hat],
        velocity,
        momentum,
        nesterov,
        max_norm,
        (learning_rate, weight_decay, decoupled_weight_decay),
    )
