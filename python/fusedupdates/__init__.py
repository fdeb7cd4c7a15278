"""fusedupdates: Lasagne's update rules as fused C++/OpenMP (NumPy) and CUDA (CuPy) kernels.

Every rule updates all parameters in ONE pass over memory per step, with Lasagne's exact
semantics. See ``docs/DESIGN.md`` and the README for the API.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from . import functional, reference
from ._rules import ADADELTA, ADAGRAD, ADAM, ADAMAX, AMSGRAD, RMSPROP, SGD
from ._version import __version__
from .constraints import norm_constraint, total_norm_constraint
from .updaters import Updater, make_updater, with_momentum

__all__ = [
    "Updater",
    "sgd",
    "momentum",
    "nesterov_momentum",
    "adagrad",
    "rmsprop",
    "adadelta",
    "adam",
    "adamax",
    "amsgrad",
    "apply_momentum",
    "apply_nesterov_momentum",
    "norm_constraint",
    "total_norm_constraint",
    "functional",
    "reference",
    "build_info",
    "set_num_threads",
    "get_num_threads",
    "__version__",
]

Params = Sequence[Any]


def sgd(params: Params, learning_rate: float) -> Updater:
    """Stochastic gradient descent: ``p <- p - learning_rate * g``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place (NumPy or CuPy; float16, float32 or float64).
    learning_rate : float
        The learning rate.

    Returns
    -------
    Updater
        Call ``updater.step(grads)`` once per training step.
    """
    return make_updater(SGD, params, {"learning_rate": learning_rate})


def momentum(params: Params, learning_rate: float, momentum: float = 0.9) -> Updater:
    """SGD with classical momentum (``apply_momentum(sgd(...))``).

    ``v <- momentum * v - learning_rate * g``; ``p <- p + v``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float
        The learning rate.
    momentum : float, optional
        The momentum, in [0, 1).
    """
    return apply_momentum(sgd(params, learning_rate), momentum=momentum)


def nesterov_momentum(params: Params, learning_rate: float, momentum: float = 0.9) -> Updater:
    """SGD with Nesterov momentum (``apply_nesterov_momentum(sgd(...))``).

    ``v <- momentum * v - learning_rate * g``; ``p <- p + momentum * v - learning_rate * g``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float
        The learning rate.
    momentum : float, optional
        The momentum, in [0, 1).
    """
    return apply_nesterov_momentum(sgd(params, learning_rate), momentum=momentum)


def adagrad(params: Params, learning_rate: float = 1.0, epsilon: float = 1e-6) -> Updater:
    """Adagrad: ``a <- a + g^2``; ``p <- p - learning_rate * g / sqrt(a + epsilon)``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate : float, optional
        The learning rate.
    epsilon : float, optional
        Added INSIDE the square root (Lasagne's placement).
    """
    return make_updater(ADAGRAD, params, {"learning_rate": learning_rate, "epsilon": epsilon})


def rmsprop(
    params: Params, learning_rate: float = 1.0, rho: float = 0.9, epsilon: float = 1e-6
) -> Updater:
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
    """
    return make_updater(
        RMSPROP, params, {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon}
    )


def adadelta(
    params: Params, learning_rate: float = 1.0, rho: float = 0.95, epsilon: float = 1e-6
) -> Updater:
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
    """
    return make_updater(
        ADADELTA, params, {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon}
    )


def adam(
    params: Params,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> Updater:
    """Adam as in Lasagne (epsilon outside the root, not bias-corrected).

    ``a_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)``; ``m <- beta1 m + (1-beta1) g``;
    ``v <- beta2 v + (1-beta2) g^2``; ``p <- p - a_t m / (sqrt(v) + epsilon)``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate, beta1, beta2, epsilon : float, optional
        Step size, moment decays in [0, 1), stability constant.
    """
    return make_updater(
        ADAM,
        params,
        {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon},
    )


def adamax(
    params: Params,
    learning_rate: float = 0.002,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> Updater:
    """Adamax: ``u <- max(beta2 u, |g|)``; ``p <- p - lr/(1-beta1^t) m / (u + epsilon)``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate, beta1, beta2, epsilon : float, optional
        Step size, decays in [0, 1), stability constant.
    """
    return make_updater(
        ADAMAX,
        params,
        {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon},
    )


def amsgrad(
    params: Params,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> Updater:
    """AMSGrad: Adam with ``v_hat <- max(v_hat, v)``; ``p <- p - a_t m / (sqrt(v_hat) + eps)``.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    learning_rate, beta1, beta2, epsilon : float, optional
        Step size, decays in [0, 1), stability constant.
    """
    return make_updater(
        AMSGRAD,
        params,
        {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon},
    )


def apply_momentum(
    updates: Updater, params: Params | None = None, momentum: float = 0.9
) -> Updater:
    """Add Lasagne's momentum to any updater, fused into the same pass over memory.

    ``v <- momentum * v + delta``; ``p <- p + v``, where ``delta`` is the inner rule's update.

    Parameters
    ----------
    updates : Updater
        The updater to wrap (it keeps sharing its state and step counter with the result).
    params : list of arrays, optional
        Apply the momentum only to these of the updater's parameters (default: all).
    momentum : float, optional
        The momentum, in [0, 1).

    Returns
    -------
    Updater
        A new updater: its ``step`` runs the inner rule and the momentum in one fused pass.
    """
    return with_momentum(updates, params, momentum, nesterov=False)


def apply_nesterov_momentum(
    updates: Updater, params: Params | None = None, momentum: float = 0.9
) -> Updater:
    """Add Lasagne's Nesterov momentum to any updater, fused into the same pass.

    ``v <- momentum * v + delta``; ``p <- p + momentum * v + delta``.

    Parameters
    ----------
    updates : Updater
        The updater to wrap.
    params : list of arrays, optional
        Apply the momentum only to these of the updater's parameters (default: all).
    momentum : float, optional
        The momentum, in [0, 1).
    """
    return with_momentum(updates, params, momentum, nesterov=True)


def build_info() -> dict[str, Any]:
    """What was compiled and how it runs.

    Returns
    -------
    dict
        ``openmp`` (bool), ``cuda`` (bool: the CUDA module was built; loading it needs CuPy
        and a GPU), ``simd`` (instruction set of the CPU kernels in use), ``num_threads``
        and ``version``.
    """
    from . import _cpu

    return {
        "openmp": bool(_cpu.openmp()),
        "cuda": importlib.util.find_spec("fusedupdates._cuda") is not None,
        "simd": _cpu.simd(),
        "num_threads": _cpu.num_threads(),
        "version": __version__,
    }


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads of the CPU kernels (0 restores the default, which
    honours ``OMP_NUM_THREADS``)."""
    from . import _cpu

    limit = int(_cpu.max_threads())
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__}")
    if not 0 <= n <= limit:
        raise ValueError(f"set_num_threads: n must be in [0, {limit}] (8 per processor), got {n}")
    _cpu.set_num_threads(n)


def get_num_threads() -> int:
    """Number of OpenMP threads the CPU kernels use."""
    from . import _cpu

    return int(_cpu.num_threads())
