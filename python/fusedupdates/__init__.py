"""fusedupdates: Lasagne's update rules as fused C++/OpenMP (NumPy) and CUDA (CuPy) kernels.

Every rule updates all parameters in ONE pass over memory per step, with Lasagne's exact
semantics. See ``docs/DESIGN.md`` and the README for the API.
"""

from __future__ import annotations

from typing import Any as _Any

from . import functional, reference, reference_compact, reference_mixed
from ._compact import convert_state_dict
from ._factories import (
    adadelta,
    adagrad,
    adam,
    adamax,
    amsgrad,
    apply_momentum,
    apply_nesterov_momentum,
    momentum,
    nesterov_momentum,
    rmsprop,
    sgd,
)
from ._groups import ParamGroup
from ._version import __version__
from .constraints import norm_constraint, total_norm_constraint
from .loss_scaler import LossScaler
from .updaters import Updater

__all__ = [
    "Updater",
    "ParamGroup",
    "LossScaler",
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
    "reference_mixed",
    "reference_compact",
    "convert_state_dict",
    "build_info",
    "set_num_threads",
    "get_num_threads",
    "__version__",
]


def build_info() -> dict[str, _Any]:
    """What was compiled and how it runs.

    Returns
    -------
    dict
        ``openmp`` (bool), ``cuda`` (bool: the CUDA module was built; loading it needs CuPy
        and a GPU), ``simd`` (instruction set of the CPU kernels in use), ``num_threads``
        and ``version``.

    Examples
    --------
    >>> fu.build_info()["simd"]  # doctest: +SKIP
    'avx512'
    """
    import importlib.util

    from . import _cpu

    return {
        "openmp": bool(_cpu.openmp()),
        "cuda": importlib.util.find_spec("fusedupdates._cuda") is not None,
        "simd": _cpu.simd(),
        "num_threads": _cpu.num_threads(),
        "version": __version__,
    }


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads of the CPU kernels.

    Parameters
    ----------
    n : int
        Threads, at most 8 per processor; 0 restores the default (which honours
        ``OMP_NUM_THREADS``). Results do not depend on it: every reduction is deterministic.

    Returns
    -------
    None

    Examples
    --------
    >>> fu.set_num_threads(1)  # doctest: +SKIP
    """
    from . import _cpu

    limit = int(_cpu.max_threads())
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__}")
    if not 0 <= n <= limit:
        raise ValueError(f"set_num_threads: n must be in [0, {limit}] (8 per processor), got {n}")
    _cpu.set_num_threads(n)


def get_num_threads() -> int:
    """Number of OpenMP threads the CPU kernels use.

    Returns
    -------
    int
        The value set by :func:`set_num_threads`, else OpenMP's default.

    Examples
    --------
    >>> fu.get_num_threads()  # doctest: +SKIP
    2
    """
    from . import _cpu

    return int(_cpu.num_threads())


def __dir__() -> list[str]:
    """Only the public names (plus the submodules Python adds once they are imported)."""
    return sorted(__all__)
