"""The adam family of :mod:`fusedupdates.functional` (adam, adamax, amsgrad); see that
module's docstring for the keyword arguments every function shares."""

from __future__ import annotations

from ._fused_step import ArrayOrList, Norm, fused_step
from ._rules import ADAM, ADAMAX, AMSGRAD


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
