"""The shared part of :mod:`fusedupdates.reference`: list handling, the clip / weight-decay /
momentum frame every rule runs in (``_apply``) and the norm constraints (split from
reference.py to keep each file small)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import numpy as np

Array = Any  # numpy.ndarray (the ufuncs used here also dispatch to cupy arrays)
# Runtime aliases, so typing.Union keeps Python 3.9 working.
Arrays = Union[Array, Sequence[Array]]
OptArrays = Optional[Union[Array, Sequence[Optional[Array]]]]


def _as_list(x: Arrays | None, n: int | None = None, name: str = "arrays") -> list:
    """Wrap a single array (or None) into a list; check the length against ``n``."""
    if x is None:
        out = [None] * (n if n is not None else 0)
    elif isinstance(x, (list, tuple)):
        out = list(x)
    else:
        out = [x]
    if n is not None and len(out) != n:
        raise ValueError(f"{name}: expected {n} entries, got {len(out)}")
    return out


def _apply(
    inner: Callable[..., Array],
    params: Arrays,
    grads: Arrays,
    states: Sequence[Arrays],
    velocity: OptArrays,
    momentum: float,
    nesterov: bool,
    max_norm: float | None,
    decay: tuple[float, float, bool] = (0.0, 0.0, False),
) -> float | None:
    """Clip the grads, add weight decay, compute each inner ``delta``, apply the momentum
    modifier, write ``p``.

    ``inner(g, *state)`` updates its state buffers in place and returns ``delta = p' - p``.
    ``decay`` is ``(learning_rate, weight_decay, decoupled)``: L2 adds ``wd * p`` to the
    (clipped) gradient; decoupled shrinks ``p`` by ``1 - lr * wd`` before ``delta`` is added.
    """
    learning_rate, weight_decay, decoupled = decay
    ps = _as_list(params)
    gs = _as_list(grads, len(ps), "grads")
    sts = [_as_list(s, len(ps), "state") for s in states]
    vs = _as_list(velocity, len(ps), "velocity")
    norm = None
    live = [i for i, g in enumerate(gs) if g is not None]  # None: a frozen param, untouched
    if max_norm is not None:
        clipped, norm = total_norm_constraint([gs[i] for i in live], max_norm, return_norm=True)
        for i, g in zip(live, clipped):
            gs[i] = g
    for i, (p, g) in enumerate(zip(ps, gs)):
        if g is None:
            continue
        if weight_decay and not decoupled:
            g = g + weight_decay * p
        delta = inner(g, *[s[i] for s in sts])
        if weight_decay and decoupled:
            p[...] = p * (1 - learning_rate * weight_decay)
        v = vs[i]
        if v is None:  # no modifier for this parameter
            p[...] = p + delta
        elif nesterov:  # apply_nesterov_momentum: v <- mu v + delta; p <- p + mu v + delta
            v[...] = momentum * v + delta
            p[...] = p + momentum * v + delta
        else:  # apply_momentum: v <- mu v + delta; p <- p + v
            v[...] = momentum * v + delta
            p[...] = p + v
    return norm


def _times(x: Array, factor: Any) -> Array:
    """``x * factor`` as a new array (NumPy turns 0-d results into scalars: undo that)."""
    out = x * factor
    return np.asarray(out) if isinstance(out, np.generic) else out


def norm_constraint(
    x: Array,
    max_norm: float,
    norm_axes: Sequence[int] | None = None,
    epsilon: float = 1e-7,
) -> Array:
    """Rescale ``x`` so that its norms over ``norm_axes`` are at most ``max_norm`` (Lasagne).

    Parameters
    ----------
    x : ndarray
        Tensor to constrain (not modified).
    max_norm : float
        Largest allowed norm.
    norm_axes : sequence of int, optional
        Axes to take the norms over. Default: ``(0,)`` for 2-D, all axes but 0 for 3-D to 5-D.
    epsilon : float
        Added to the norms before dividing.

    Returns
    -------
    ndarray
        ``x * min(n, max_norm) / (epsilon + n)`` with ``n`` the norms (keepdims).

    Raises
    ------
    ValueError
        "Unsupported tensor dimensionality" when ``norm_axes`` is None and ``x.ndim`` is not 2-5.
    """
    ndim = x.ndim
    if norm_axes is not None:
        sum_over = tuple(norm_axes)
    elif ndim == 2:  # dense layer
        sum_over = (0,)
    elif ndim in (3, 4, 5):  # conv layers
        sum_over = tuple(range(1, ndim))
    else:
        raise ValueError(f"Unsupported tensor dimensionality {ndim}. Must specify `norm_axes`")
    norms = np.sqrt(np.sum(x**2, axis=sum_over, keepdims=True))
    target = np.clip(norms, 0, max_norm)
    return _times(x, target / (epsilon + norms))


def total_norm_constraint(
    xs: Sequence[Array],
    max_norm: float,
    epsilon: float = 1e-7,
    return_norm: bool = False,
) -> list[Array] | tuple[list[Array], float]:
    """Rescale a list of tensors by their combined norm (Lasagne's gradient clipping).

    Parameters
    ----------
    xs : list of ndarray
        Tensors to rescale (not modified); 0-d arrays are fine.
    max_norm : float
        Threshold for the total norm ``N = sqrt(sum_i sum(x_i^2))``.
    epsilon : float
        Added to ``N`` before dividing: the multiplier ``min(N, max_norm) / (epsilon + N)`` is
        slightly below 1 even when ``N < max_norm``.
    return_norm : bool
        Also return ``N``.

    Returns
    -------
    list of ndarray, or (list of ndarray, float)
        The scaled tensors, and ``N`` (accumulated in float64) when ``return_norm``.
    """
    xs = _as_list(xs)
    norm = math.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in xs))
    multiplier = min(norm, max_norm) / (epsilon + norm)
    scaled = [_times(x, multiplier) for x in xs]
    if return_norm:
        return scaled, norm
    return scaled
