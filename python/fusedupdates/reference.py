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

import math
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import numpy as np

Array = Any  # numpy.ndarray (the ufuncs used here also dispatch to cupy arrays)
# Runtime aliases, so typing.Union keeps Python 3.9 working.
Arrays = Union[Array, Sequence[Array]]
OptArrays = Optional[Union[Array, Sequence[Optional[Array]]]]

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
