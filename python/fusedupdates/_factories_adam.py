"""The adam-family factories (adam, adamax, amsgrad); see :mod:`fusedupdates._factories`."""

from __future__ import annotations

from ._build import make_updater
from ._factory_docs import Params, _doc
from ._rules import ADAM, ADAMAX, AMSGRAD
from .updaters import Updater

_ADAM_PARAMS = """Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float, optional
        The step size.
    beta1, beta2 : float, optional
        Decays of the moment estimates, in [0, 1).
    epsilon : float, optional
        Stability constant, added to the denominator outside the square root and not
        bias-corrected (Lasagne's placement; the step size a_t IS bias-corrected).
    {decay}"""


@_doc(
    """Adam as in Lasagne.

    ``a_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)``; ``m <- beta1 m + (1-beta1) g``;
    ``v <- beta2 v + (1-beta2) g^2``; ``p <- p - a_t m / (sqrt(v) + epsilon)``.

    """
    + _ADAM_PARAMS
    + """

    Returns
    -------
    Updater
        With ``m`` and ``v`` state buffers per parameter.

    Examples
    --------
    >>> upd = fu.adam([w], learning_rate=1e-3, weight_decay=0.01,
    ...               decoupled_weight_decay=True)  # AdamW  # doctest: +SKIP
    """
)
def adam(
    params: Params,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    hyper = {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon}
    return make_updater(
        ADAM,
        params,
        hyper,
        weight_decay,
        decoupled_weight_decay,
        master_weights,
        rounding,
        state_dtype,
        state_rounding,
    )


@_doc(
    """Adamax, the infinity-norm variant of Adam.

    ``a_t = lr / (1 - beta1^t)``; ``m <- beta1 m + (1-beta1) g``; ``u <- max(beta2 u, |g|)``;
    ``p <- p - a_t m / (u + epsilon)``.

    """
    + _ADAM_PARAMS
    + """

    Returns
    -------
    Updater
        With ``m`` and ``u`` state buffers per parameter.

    Examples
    --------
    >>> upd = fu.adamax([w])  # doctest: +SKIP
    """
)
def adamax(
    params: Params,
    learning_rate: float = 0.002,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    hyper = {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon}
    return make_updater(
        ADAMAX,
        params,
        hyper,
        weight_decay,
        decoupled_weight_decay,
        master_weights,
        rounding,
        state_dtype,
        state_rounding,
    )


@_doc(
    """AMSGrad: Adam with ``v_hat <- max(v_hat, v)``; ``p <- p - a_t m / (sqrt(v_hat) + eps)``.

    """
    + _ADAM_PARAMS
    + """

    Returns
    -------
    Updater
        With ``m``, ``v`` and ``v_hat`` state buffers per parameter.

    Examples
    --------
    >>> upd = fu.amsgrad([w])  # doctest: +SKIP
    """
)
def amsgrad(
    params: Params,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    hyper = {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon}
    return make_updater(
        AMSGRAD,
        params,
        hyper,
        weight_decay,
        decoupled_weight_decay,
        master_weights,
        rounding,
        state_dtype,
        state_rounding,
    )
