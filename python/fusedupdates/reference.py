"""Plain NumPy reference implementation of the update rules (Lasagne semantics).

Written straight from ``docs/UPDATE_RULES.md``, one NumPy expression per line of the
spec, with no fusion and no validation beyond list lengths. The signatures match
:mod:`fusedupdates.functional`: every function takes single arrays or lists, updates the params
and state buffers in place in the arrays' own dtype, and returns ``None`` or, with ``max_norm``,
the total gradient norm before clipping.

The test-suite runs it on float64 copies and compares the fused library against it; the
benchmarks run it on float32 arrays as the "unfused NumPy" baseline.
"""

from __future__ import annotations

import numpy as np

from ._reference_adam import adam, adamax, amsgrad
from ._reference_core import (
    Arrays,
    OptArrays,
    _apply,
    norm_constraint,
    total_norm_constraint,
)

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "amsgrad",
    "momentum",
    "nesterov_momentum",
    "norm_constraint",
    "rmsprop",
    "sgd",
    "total_norm_constraint",
]


def sgd(
    params: Arrays,
    grads: Arrays,
    *,
    learning_rate: float,
    velocity: OptArrays = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """Stochastic gradient descent: ``p <- p - lr * g``.

    Parameters
    ----------
    params, grads : ndarray or list of ndarray
        Parameters (updated in place) and their gradients (never modified).
    learning_rate : float
        Step size ``lr``.
    velocity : ndarray or list of (ndarray or None), optional
        Velocity buffers of the momentum modifier; ``None`` entries get no modifier.
    momentum : float
        ``mu`` of the modifier.
    nesterov : bool
        Use ``apply_nesterov_momentum`` instead of ``apply_momentum``.
    max_norm : float, optional
        Clip the grads with :func:`total_norm_constraint` first.
    weight_decay : float, optional
        L2 weight decay ``g <- g + wd * p`` (after clipping), or with ``decoupled_weight_decay``
        the AdamW form ``p <- p * (1 - learning_rate * wd)`` before the update.

    Returns
    -------
    float or None
        The total gradient norm before clipping when ``max_norm`` is given.
    """

    def inner(g):
        return -learning_rate * g

    return _apply(
        inner,
        params,
        grads,
        [],
        velocity,
        momentum,
        nesterov,
        max_norm,
        (learning_rate, weight_decay, decoupled_weight_decay),
    )


def momentum(
    params: Arrays,
    grads: Arrays,
    velocity: Arrays,
    *,
    learning_rate: float,
    momentum: float = 0.9,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """SGD with classical momentum: ``v <- mu v - lr g; p <- p + v``. See :func:`sgd`."""
    return sgd(
        params,
        grads,
        learning_rate=learning_rate,
        velocity=velocity,
        momentum=momentum,
        nesterov=False,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def nesterov_momentum(
    params: Arrays,
    grads: Arrays,
    velocity: Arrays,
    *,
    learning_rate: float,
    momentum: float = 0.9,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """SGD with Nesterov momentum: ``v <- mu v - lr g; p <- p + mu v - lr g``. See :func:`sgd`."""
    return sgd(
        params,
        grads,
        learning_rate=learning_rate,
        velocity=velocity,
        momentum=momentum,
        nesterov=True,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def adagrad(
    params: Arrays,
    grads: Arrays,
    accu: Arrays,
    *,
    learning_rate: float = 1.0,
    epsilon: float = 1e-6,
    velocity: OptArrays = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """Adagrad: ``a <- a + g^2; p <- p - lr g / sqrt(a + eps)``. Other arguments as :func:`sgd`.

    Parameters
    ----------
    accu : ndarray or list of ndarray
        Accumulated squared gradients ``a`` (updated in place).
    """

    def inner(g, a):
        a[...] = a + g**2
        return -learning_rate * g / np.sqrt(a + epsilon)

    return _apply(
        inner,
        params,
        grads,
        [accu],
        velocity,
        momentum,
        nesterov,
        max_norm,
        (learning_rate, weight_decay, decoupled_weight_decay),
    )


def rmsprop(
    params: Arrays,
    grads: Arrays,
    accu: Arrays,
    *,
    learning_rate: float = 1.0,
    rho: float = 0.9,
    epsilon: float = 1e-6,
    velocity: OptArrays = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """RMSProp: ``a <- rho a + (1 - rho) g^2; p <- p - lr g / sqrt(a + eps)``.

    Parameters
    ----------
    accu : ndarray or list of ndarray
        Moving average of squared gradients ``a`` (updated in place).
    rho : float
        Decay factor. Other arguments as :func:`sgd`.
    """

    def inner(g, a):
        a[...] = rho * a + (1 - rho) * g**2
        return -learning_rate * g / np.sqrt(a + epsilon)

    return _apply(
        inner,
        params,
        grads,
        [accu],
        velocity,
        momentum,
        nesterov,
        max_norm,
        (learning_rate, weight_decay, decoupled_weight_decay),
    )


def adadelta(
    params: Arrays,
    grads: Arrays,
    accu: Arrays,
    delta_accu: Arrays,
    *,
    learning_rate: float = 1.0,
    rho: float = 0.95,
    epsilon: float = 1e-6,
    velocity: OptArrays = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> float | None:
    """Adadelta, with Lasagne's learning rate and epsilon inside both square roots.

    ``a <- rho a + (1-rho) g^2; u = g sqrt(d + eps) / sqrt(a + eps); p <- p - lr u;
    d <- rho d + (1-rho) u^2`` (``u`` uses the old ``d``).

    Parameters
    ----------
    accu, delta_accu : ndarray or list of ndarray
        ``a`` and ``d`` (updated in place). Other arguments as :func:`sgd`.
    """

    def inner(g, a, d):
        a[...] = rho * a + (1 - rho) * g**2
        u = g * np.sqrt(d + epsilon) / np.sqrt(a + epsilon)
        d[...] = rho * d + (1 - rho) * u**2
        return -learning_rate * u

    return _apply(
        inner,
        params,
        grads,
        [accu, delta_accu],
        velocity,
        momentum,
        nesterov,
        max_norm,
        (learning_rate, weight_decay, decoupled_weight_decay),
    )
