"""The rule factories: each builds an :class:`~fusedupdates.Updater` over a parameter list.

Every factory takes the parameters (NumPy or CuPy arrays, float16/float32/float64, or NumPy
``ml_dtypes.bfloat16``; updated in place), the rule's hyperparameters with Lasagne's names and
defaults, and keywords of its own (the first two torch's convention, as Lasagne has no weight
decay in its update rules):

``weight_decay`` (default 0)
    L2 decay fused into the step: ``g <- g + weight_decay * p`` (after ``max_norm`` clipping,
    before the rule). A Lasagne penalty ``lambda * l2(params)`` added to the loss is
    ``weight_decay = 2 * lambda``.
``decoupled_weight_decay`` (default False)
    Decoupled decay instead (AdamW): ``p <- p * (1 - learning_rate * weight_decay)`` before the
    rule's update is added. Fixed for the updater's life; ``weight_decay`` is live-editable.
``master_weights`` (default False)
    float32 master weights for float16 / bfloat16 params (state ``"master"``), updated in the
    same fused pass.
"""

from __future__ import annotations

from ._build import make_updater
from ._factories_adam import adam, adamax, amsgrad
from ._factory_docs import Params, _doc
from ._modifiers import (
    _set_group_momentum,
    _split_group_momentum,
    apply_momentum,
    apply_nesterov_momentum,
)
from ._rules import ADADELTA, ADAGRAD, RMSPROP, SGD
from .updaters import Updater

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "amsgrad",
    "apply_momentum",
    "apply_nesterov_momentum",
    "momentum",
    "nesterov_momentum",
    "rmsprop",
    "sgd",
]


@_doc(
    """Stochastic gradient descent: ``p <- p - learning_rate * g``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place (NumPy or CuPy; float16, float32 or float64; NumPy
        bfloat16 from ml_dtypes).
    learning_rate : float
        The learning rate.
    {decay}

    Returns
    -------
    Updater
        Call ``updater.step(grads)`` once per training step.

    Examples
    --------
    >>> import numpy as np, fusedupdates as fu
    >>> w = np.ones(3, np.float32)
    >>> upd = fu.sgd([w], learning_rate=0.1)
    >>> upd.step([np.ones(3, np.float32)]); w
    array([0.9, 0.9, 0.9], dtype=float32)
    """
)
def sgd(
    params: Params,
    learning_rate: float,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    hyper = {"learning_rate": learning_rate}
    return make_updater(
        SGD,
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
    """SGD with classical momentum: ``apply_momentum(sgd(...))``.

    ``v <- momentum * v - learning_rate * g``; ``p <- p + v``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float
        The learning rate.
    momentum : float, optional
        The momentum, in [0, 1).
    {decay}

    Returns
    -------
    Updater
        With a ``velocity`` state buffer per parameter.

    Examples
    --------
    >>> upd = fu.momentum([w], learning_rate=0.1, momentum=0.9)  # doctest: +SKIP
    """
)
def momentum(
    params: Params,
    learning_rate: float,
    momentum: float = 0.9,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    params, group_momentum = _split_group_momentum(params)
    inner = sgd(
        params,
        learning_rate,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        master_weights=master_weights,
        rounding=rounding,
        state_dtype=state_dtype,
        state_rounding=state_rounding,
    )
    return _set_group_momentum(apply_momentum(inner, momentum=momentum), group_momentum)


@_doc(
    """SGD with Nesterov momentum: ``apply_nesterov_momentum(sgd(...))``.

    ``v <- momentum * v - learning_rate * g``; ``p <- p + momentum * v - learning_rate * g``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float
        The learning rate.
    momentum : float, optional
        The momentum, in [0, 1).
    {decay}

    Returns
    -------
    Updater
        With a ``velocity`` state buffer per parameter.

    Examples
    --------
    >>> upd = fu.nesterov_momentum([w], learning_rate=0.1)  # doctest: +SKIP
    """
)
def nesterov_momentum(
    params: Params,
    learning_rate: float,
    momentum: float = 0.9,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    params, group_momentum = _split_group_momentum(params)
    inner = sgd(
        params,
        learning_rate,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        master_weights=master_weights,
        rounding=rounding,
        state_dtype=state_dtype,
        state_rounding=state_rounding,
    )
    return _set_group_momentum(apply_nesterov_momentum(inner, momentum=momentum), group_momentum)


@_doc(
    """Adagrad: ``a <- a + g^2``; ``p <- p - learning_rate * g / sqrt(a + epsilon)``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float, optional
        The learning rate.
    epsilon : float, optional
        Added INSIDE the square root (Lasagne's placement).
    {decay}

    Returns
    -------
    Updater
        With an ``accu`` state buffer per parameter.

    Examples
    --------
    >>> upd = fu.adagrad([w], learning_rate=0.1)  # doctest: +SKIP
    """
)
def adagrad(
    params: Params,
    learning_rate: float = 1.0,
    epsilon: float = 1e-6,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    hyper = {"learning_rate": learning_rate, "epsilon": epsilon}
    return make_updater(
        ADAGRAD,
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
    """RMSProp: ``a <- rho a + (1 - rho) g^2``; ``p <- p - lr g / sqrt(a + epsilon)``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float, optional
        The learning rate.
    rho : float, optional
        Decay of the moving average of squared gradients, in [0, 1).
    epsilon : float, optional
        Added inside the square root.
    {decay}

    Returns
    -------
    Updater
        With an ``accu`` state buffer per parameter.

    Examples
    --------
    >>> upd = fu.rmsprop([w], learning_rate=1e-3)  # doctest: +SKIP
    """
)
def rmsprop(
    params: Params,
    learning_rate: float = 1.0,
    rho: float = 0.9,
    epsilon: float = 1e-6,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    hyper = {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon}
    return make_updater(
        RMSPROP,
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
    """Adadelta with Lasagne's learning rate.

    ``a <- rho a + (1-rho) g^2``; ``u = g sqrt(d + eps) / sqrt(a + eps)`` (old d);
    ``p <- p - lr u``; ``d <- rho d + (1-rho) u^2``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float, optional
        The learning rate (1.0 in the paper).
    rho : float, optional
        Decay of both moving averages, in [0, 1).
    epsilon : float, optional
        Added inside the square roots.
    {decay}

    Returns
    -------
    Updater
        With ``accu`` and ``delta_accu`` state buffers per parameter.

    Examples
    --------
    >>> upd = fu.adadelta([w])  # doctest: +SKIP
    """
)
def adadelta(
    params: Params,
    learning_rate: float = 1.0,
    rho: float = 0.95,
    epsilon: float = 1e-6,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    hyper = {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon}
    return make_updater(
        ADADELTA,
        params,
        hyper,
        weight_decay,
        decoupled_weight_decay,
        master_weights,
        rounding,
        state_dtype,
        state_rounding,
    )
