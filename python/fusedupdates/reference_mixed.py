"""The reference for 16-bit parameters: float16 / bfloat16 storage and float32 master weights.

Extends :mod:`fusedupdates.reference` (whose rules it runs, unchanged, in float64) with what
the library does around a rule for 16-bit params:

* **storage rounding**: the updated value is rounded to the param's dtype after every step,
  as the kernel does (compute in float32, round to nearest even: the float64 value is rounded
  to float32 first, then to the 16-bit dtype, to model the same two roundings);
* **master weights**: the rule updates a float32-or-wider master copy instead, and the 16-bit
  param is the master rounded (the master itself is never rounded to 16 bits).

It does not import ml_dtypes: the caller's arrays carry the dtype (``ml_dtypes.bfloat16``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["round_to_storage", "storage_step"]


def round_to_storage(x: Any, dtype: Any) -> np.ndarray:
    """``x`` as the kernel stores it in ``dtype``: via float32, then round to nearest even.

    Parameters
    ----------
    x : array_like
        Values computed in float64 (or float32).
    dtype : dtype
        The storage dtype: float16, ``ml_dtypes.bfloat16``, float32 or float64.

    Returns
    -------
    numpy.ndarray
        The rounded values, back in float64 (so they can keep taking part in float64 math).
    """
    dtype = np.dtype(dtype)
    x = np.asarray(x, dtype=np.float64)
    if dtype == np.float64:
        return x.copy()
    return x.astype(np.float32).astype(dtype).astype(np.float64)


def storage_step(
    rule: Callable[..., Any],
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray | None],
    states: Sequence[Sequence[np.ndarray | None]],
    *,
    storage: Any,
    master: Sequence[np.ndarray] | None = None,
    **kwargs: Any,
) -> Any:
    """One reference step of params stored in ``storage``, in float64.

    Parameters
    ----------
    rule : callable
        A function of :mod:`fusedupdates.reference` (``reference.adam``, ...).
    params : list of float64 arrays
        The parameter values as stored (already rounded to ``storage``); updated in place to
        the new stored values.
    grads : list of arrays or None
        The gradients as the library sees them (16-bit values; widened to float64 here).
    states : list of lists of float64 arrays
        The rule's state buffers (and, through ``kwargs``, the velocity), updated in place.
    storage : dtype
        The params' storage dtype.
    master : list of float64 arrays, optional
        Master weights: the rule updates these (in place) and ``params`` become them rounded.
    **kwargs
        Passed to ``rule`` (hyperparameters, ``step``, ``max_norm``, ``velocity``, ...).

    Returns
    -------
    float or None
        What ``rule`` returns: the total gradient norm with ``max_norm``, else None.
    """
    g64 = [None if g is None else np.asarray(g, dtype=np.float64) for g in grads]
    work = list(params) if master is None else list(master)
    norm = rule(work, g64, *states, **kwargs)
    for p, w, g in zip(params, work, g64):
        if g is not None:  # a frozen param keeps its stored value
            p[...] = round_to_storage(w, storage)
    return norm
