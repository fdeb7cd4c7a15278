"""Stateless fused steps for users who keep their own state buffers.

Each function applies one update of its rule to every parameter, in place, in ONE native call
(one pass over memory). Arguments may be single arrays or lists of arrays. The updaters of
:mod:`fusedupdates` are built on :func:`fused_step`.

All functions share these keyword arguments:

velocity : array, list of arrays (entries may be None) or None
    Velocity buffers of Lasagne's ``apply_momentum`` / ``apply_nesterov_momentum`` modifier,
    fused into the same pass. ``None`` entries leave that parameter without the modifier.
momentum : float
    The modifier's momentum (used only with ``velocity``).
nesterov : bool
    Nesterov form of the modifier.
weight_decay : float
    Weight decay, fused into the same pass (default 0). L2 (torch's convention, the default):
    ``g <- g + weight_decay * p`` after clipping, before the rule; a Lasagne penalty
    ``lambda * l2(params)`` added to the loss is ``weight_decay = 2 * lambda``.
decoupled_weight_decay : bool
    Decoupled weight decay instead (AdamW, torch's ``decoupled_weight_decay``):
    ``p <- p * (1 - learning_rate * weight_decay)`` before the rule's update is added.
max_norm : float or None
    If given, the gradients are scaled by Lasagne's ``total_norm_constraint`` multiplier
    (``epsilon=1e-7``) inside the step; the caller's arrays are not modified and the total
    norm is returned.

Returns
-------
float, 0-d device array or None
    The total gradient norm when ``max_norm`` is given (a 0-d CuPy array on the GPU, so that
    no host synchronisation happens), else None.
"""

from __future__ import annotations

from ._functional_adam import adam, adamax, amsgrad
from ._fused_step import ArrayOrList, Norm, fused_step
from ._rules import ADADELTA, ADAGRAD, RMSPROP, SGD

__all__ = [
    "sgd",
    "momentum",
    "nesterov_momentum",
    "adagrad",
    "rmsprop",
    "adadelta",
    "adam",
    "adamax",
    "amsgrad",
    "fused_step",
]


def sgd(
    params: ArrayOrList,
    grads: ArrayOrList,
    *,
    learning_rate: float,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """Stochastic gradient descent: ``p <- p - learning_rate * g``.

    Parameters
    ----------
    params, grads : array or list of arrays
        Parameters (updated in place) and their gradients.
    learning_rate : float
        The learning rate.

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.sgd(p, g, learning_rate=0.1)  # doctest: +SKIP
    """
    return fused_step(
        SGD,
        params,
        grads,
        [],
        {"learning_rate": learning_rate},
        velocity=velocity,
        momentum=momentum,
        nesterov=nesterov,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def momentum(
    params: ArrayOrList,
    grads: ArrayOrList,
    velocity: ArrayOrList,
    *,
    learning_rate: float,
    momentum: float = 0.9,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """SGD with classical momentum: ``v <- mu v - lr g``; ``p <- p + v``.

    Parameters
    ----------
    params, grads, velocity : array or list of arrays
        Parameters (updated in place), gradients, velocity state (updated in place).
    learning_rate : float
        The learning rate.
    momentum : float
        The momentum mu, in [0, 1).

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.momentum(p, g, velocity, learning_rate=0.1, momentum=0.9)  # doctest: +SKIP
    """
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
    params: ArrayOrList,
    grads: ArrayOrList,
    velocity: ArrayOrList,
    *,
    learning_rate: float,
    momentum: float = 0.9,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """SGD with Nesterov momentum: ``v <- mu v - lr g``; ``p <- p + mu v - lr g``.

    Parameters
    ----------
    params, grads, velocity : array or list of arrays
        Parameters (updated in place), gradients, velocity state (updated in place).
    learning_rate : float
        The learning rate.
    momentum : float
        The momentum mu, in [0, 1).

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.nesterov_momentum(p, g, velocity, learning_rate=0.1)  # doctest: +SKIP
    """
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
    params: ArrayOrList,
    grads: ArrayOrList,
    accu: ArrayOrList,
    *,
    learning_rate: float = 1.0,
    epsilon: float = 1e-6,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """Adagrad: ``a <- a + g^2``; ``p <- p - lr g / sqrt(a + epsilon)``.

    Parameters
    ----------
    params, grads, accu : array or list of arrays
        Parameters, gradients and the accumulated squared gradients (state).
    learning_rate, epsilon : float
        Step size and the constant added INSIDE the square root.

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.adagrad(p, g, accu, learning_rate=0.1)  # doctest: +SKIP
    """
    return fused_step(
        ADAGRAD,
        params,
        grads,
        [accu],
        {"learning_rate": learning_rate, "epsilon": epsilon},
        velocity=velocity,
        momentum=momentum,
        nesterov=nesterov,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def rmsprop(
    params: ArrayOrList,
    grads: ArrayOrList,
    accu: ArrayOrList,
    *,
    learning_rate: float = 1.0,
    rho: float = 0.9,
    epsilon: float = 1e-6,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """RMSProp: ``a <- rho a + (1 - rho) g^2``; ``p <- p - lr g / sqrt(a + epsilon)``.

    Parameters
    ----------
    params, grads, accu : array or list of arrays
        Parameters, gradients and the moving average of squared gradients (state).
    learning_rate, rho, epsilon : float
        Step size, decay in [0, 1), constant added inside the square root.

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.rmsprop(p, g, accu, learning_rate=1e-3)  # doctest: +SKIP
    """
    return fused_step(
        RMSPROP,
        params,
        grads,
        [accu],
        {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon},
        velocity=velocity,
        momentum=momentum,
        nesterov=nesterov,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def adadelta(
    params: ArrayOrList,
    grads: ArrayOrList,
    accu: ArrayOrList,
    delta_accu: ArrayOrList,
    *,
    learning_rate: float = 1.0,
    rho: float = 0.95,
    epsilon: float = 1e-6,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """Adadelta (Zeiler 2012) with Lasagne's learning rate.

    ``a <- rho a + (1-rho) g^2``; ``u = g sqrt(d + eps) / sqrt(a + eps)``;
    ``p <- p - lr u``; ``d <- rho d + (1-rho) u^2``.

    Parameters
    ----------
    params, grads, accu, delta_accu : array or list of arrays
        Parameters, gradients and the two accumulators (state).
    learning_rate, rho, epsilon : float
        Step size, decay in [0, 1), constant added inside the square roots.

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.adadelta(p, g, accu, delta_accu)  # doctest: +SKIP
    """
    return fused_step(
        ADADELTA,
        params,
        grads,
        [accu, delta_accu],
        {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon},
        velocity=velocity,
        momentum=momentum,
        nesterov=nesterov,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )
