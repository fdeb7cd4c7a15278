"""The momentum modifiers (Lasagne's ``apply_momentum`` / ``apply_nesterov_momentum``) and the
parameter-group helpers of the ``momentum`` / ``nesterov_momentum`` factories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._build import with_momentum
from .updaters import Updater

Params = Sequence[Any]


def apply_momentum(
    updater: Updater | None = None,
    params: Params | None = None,
    momentum: float = 0.9,
    *,
    updates: Updater | None = None,
) -> Updater:
    """Add Lasagne's momentum to any updater, fused into the same pass over memory.

    ``v <- momentum * v + delta``; ``p <- p + v``, where ``delta`` is the inner rule's update.

    Parameters
    ----------
    updater : Updater
        The updater to wrap. It keeps sharing its params, state, hyperparameters and step
        counter with the result. (``updates=`` is accepted too: Lasagne's name.)
    params : list of arrays, optional
        Apply the momentum only to these of the updater's parameters (default: all).
    momentum : float, optional
        The momentum, in [0, 1).

    Returns
    -------
    Updater
        A new updater: its ``step`` runs the inner rule and the momentum in one fused pass.

    Examples
    --------
    >>> upd = fu.apply_momentum(fu.rmsprop(params, 1e-3), momentum=0.9)  # doctest: +SKIP
    """
    return with_momentum(_updater_arg(updater, updates), params, momentum, nesterov=False)


def apply_nesterov_momentum(
    updater: Updater | None = None,
    params: Params | None = None,
    momentum: float = 0.9,
    *,
    updates: Updater | None = None,
) -> Updater:
    """Add Lasagne's Nesterov momentum to any updater, fused into the same pass.

    ``v <- momentum * v + delta``; ``p <- p + momentum * v + delta``.

    Parameters
    ----------
    updater : Updater
        The updater to wrap (``updates=`` is accepted too: Lasagne's name).
    params : list of arrays, optional
        Apply the momentum only to these of the updater's parameters (default: all).
    momentum : float, optional
        The momentum, in [0, 1).

    Returns
    -------
    Updater
        A new updater applying the inner rule and Nesterov momentum in one fused pass.

    Examples
    --------
    >>> upd = fu.apply_nesterov_momentum(fu.adagrad(params), params=params[:2])  # doctest: +SKIP
    """
    return with_momentum(_updater_arg(updater, updates), params, momentum, nesterov=True)


def _split_group_momentum(params: Any) -> tuple[Any, list]:
    """Parameter-group dicts may set "momentum" (the modifier's, not sgd's): take it out."""
    if not isinstance(params, (list, tuple)) or not all(isinstance(g, Mapping) for g in params):
        return params, []
    if not params:
        return params, []
    stripped = [{k: v for k, v in g.items() if k != "momentum"} for g in params]
    return stripped, [g.get("momentum") for g in params]


def _set_group_momentum(upd: Updater, group_momentum: list) -> Updater:
    for group, mu in zip(upd.param_groups, group_momentum):
        if mu is not None:
            group["momentum"] = mu
    return upd


def _updater_arg(updater: Updater | None, updates: Updater | None) -> Updater:
    if (updater is None) == (updates is None):
        raise TypeError("pass the updater to wrap once, as `updater` (or Lasagne's `updates`)")
    return updater if updater is not None else updates
