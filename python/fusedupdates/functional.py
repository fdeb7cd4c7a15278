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

from collections.abc import Sequence
from typing import Any, Optional, Union

from . import _hyper
from ._dispatch import as_list, backend_for
from ._rules import ADADELTA, ADAGRAD, ADAM, ADAMAX, AMSGRAD, RMSPROP, SGD, RuleSpec

ArrayOrList = Union[Any, Sequence[Any]]
Norm = Optional[Any]

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


def fused_step(
    spec: RuleSpec,
    params: ArrayOrList,
    grads: ArrayOrList,
    states: Sequence[ArrayOrList],
    hyper: dict[str, Any],
    *,
    step: int | None = None,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """Apply rule ``spec`` once to every parameter (the engine under every public step).

    Builds a throwaway native stepper over the given arrays. Everything is validated
    (hyperparameters here, arrays natively) before any array is written, so an error leaves
    every parameter and state unchanged.
    """
    params = as_list(params, "params")
    grads = as_list(grads, "grads")
    if len(states) != len(spec.state_names):
        raise ValueError(
            f"{spec.name} needs {len(spec.state_names)} state arrays "
            f"{list(spec.state_names)}, got {len(states)}"
        )
    state_lists = [as_list(s, f"state '{n}'") for s, n in zip(states, spec.state_names)]
    velocity_list = None if velocity is None else as_list(velocity, "velocity")
    if spec.uses_step:
        if step is None:
            raise TypeError(f"{spec.name} needs step=t, the 1-based update count")
        t = _hyper.check_step(step)
    else:
        t = 1 if step is None else _hyper.check_step(step)
    values = {name: _hyper.check_hyper(name, hyper[name]) for name in spec.defaults}
    values["weight_decay"] = _hyper.check_hyper("weight_decay", weight_decay)
    if velocity_list is not None:
        values["momentum"] = _hyper.check_hyper("momentum", momentum)
    clip = _hyper.check_max_norm(max_norm)
    backend = backend_for(params)
    # functional: a captured CUDA graph replays this call's t and values (no device copy).
    stepper = backend.make_stepper(
        spec.rule_id, params, state_lists, list(spec.state_names), functional=True
    )
    if velocity_list is not None:
        stepper = stepper.with_momentum(velocity_list, bool(nesterov))
    stepper.set_hyperparameters(**_hyper.native_fields(values, bool(decoupled_weight_decay)))
    stepper.t = t - 1
    return stepper.step(grads, clip)


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


def adam(
    params: ArrayOrList,
    grads: ArrayOrList,
    m: ArrayOrList,
    v: ArrayOrList,
    *,
    step: int,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """Adam (Kingma & Ba 2014) as in Lasagne.

    ``a_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)``; ``m <- beta1 m + (1-beta1) g``;
    ``v <- beta2 v + (1-beta2) g^2``; ``p <- p - a_t m / (sqrt(v) + epsilon)``.

    Parameters
    ----------
    params, grads, m, v : array or list of arrays
        Parameters, gradients, first and second moment estimates (state).
    step : int
        t, the 1-based index of this update.
    learning_rate, beta1, beta2, epsilon : float
        As in Lasagne; epsilon is not bias-corrected.

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> norm = fu.functional.adam(p, g, m, v, step=t, max_norm=5.0)  # doctest: +SKIP
    """
    return fused_step(
        ADAM,
        params,
        grads,
        [m, v],
        {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon},
        step=step,
        velocity=velocity,
        momentum=momentum,
        nesterov=nesterov,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def adamax(
    params: ArrayOrList,
    grads: ArrayOrList,
    m: ArrayOrList,
    u: ArrayOrList,
    *,
    step: int,
    learning_rate: float = 0.002,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """Adamax, the infinity-norm variant of Adam.

    ``a_t = lr / (1 - beta1^t)``; ``m <- beta1 m + (1-beta1) g``; ``u <- max(beta2 u, |g|)``;
    ``p <- p - a_t m / (u + epsilon)``.

    Parameters
    ----------
    params, grads, m, u : array or list of arrays
        Parameters, gradients, first moment and weighted infinity norm (state).
    step : int
        t, the 1-based index of this update.
    learning_rate, beta1, beta2, epsilon : float
        As in Lasagne.

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.adamax(p, g, m, u, step=t)  # doctest: +SKIP
    """
    return fused_step(
        ADAMAX,
        params,
        grads,
        [m, u],
        {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon},
        step=step,
        velocity=velocity,
        momentum=momentum,
        nesterov=nesterov,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def amsgrad(
    params: ArrayOrList,
    grads: ArrayOrList,
    m: ArrayOrList,
    v: ArrayOrList,
    v_hat: ArrayOrList,
    *,
    step: int,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """AMSGrad: Adam with ``v_hat <- max(v_hat, v)`` in the denominator.

    Parameters
    ----------
    params, grads, m, v, v_hat : array or list of arrays
        Parameters, gradients, moments and the running maximum of v (state).
    step : int
        t, the 1-based index of this update.
    learning_rate, beta1, beta2, epsilon : float
        As in Lasagne.

    Returns
    -------
    float, 0-d device array or None
        The total gradient norm before clipping when ``max_norm`` is given, else None.

    Examples
    --------
    >>> fu.functional.amsgrad(p, g, m, v, v_hat, step=t)  # doctest: +SKIP
    """
    return fused_step(
        AMSGRAD,
        params,
        grads,
        [m, v, v_hat],
        {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon},
        step=step,
        velocity=velocity,
        momentum=momentum,
        nesterov=nesterov,
        max_norm=max_norm,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )
