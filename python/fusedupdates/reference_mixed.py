"""The reference for 16-bit parameters: float16 / bfloat16 storage and float32 master weights.

Extends :mod:`fusedupdates.reference` (whose rules it runs, unchanged, in float64) with what
the library does around a rule for 16-bit params:

* **storage rounding**: the updated value is rounded to the param's dtype after every step,
  as the kernel does (compute in float32, round to nearest even: the float64 value is rounded
  to float32 first, then to the 16-bit dtype, to model the same two roundings);
* **master weights**: the rule updates a float32-or-wider master copy instead, and the 16-bit
  param is the master rounded (the master itself is never rounded to 16 bits);
* **stochastic rounding** (``rounding="stochastic"``): the float32 value gets uniform random
  bits added below the 16-bit last place, which are then cleared, with the kernel's generator
  (a hash of t, the param index and the element index), so the result can match bit for bit.

It does not import ml_dtypes: the caller's arrays carry the dtype (``ml_dtypes.bfloat16``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["round_to_storage", "stochastic_round", "stochastic_round_state", "storage_step"]


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


def _mix32(x: np.ndarray) -> np.ndarray:
    """Wellons' lowbias32 hash on uint32 arrays (wrapping arithmetic), as the kernel's mix32."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def stochastic_round(x: Any, dtype: Any, step: int, index: int) -> np.ndarray:
    """``x`` rounded stochastically to ``dtype`` as the kernel does for param ``index`` at
    step ``t = step``: via float32, plus uniform random bits below the last place, truncated.

    Parameters
    ----------
    x : array_like
        Values computed in float64 (the kernel's float32 value may differ in the last float32
        bit, which changes the result only when that crosses a 16-bit boundary: rarely).
    dtype : dtype
        float16 or ``ml_dtypes.bfloat16``.
    step : int
        The 1-based t of the step.
    index : int
        The param's index in its updater (or functional call).

    Returns
    -------
    numpy.ndarray
        The rounded values, in float64.
    """
    return _stochastic_round_keyed(x, dtype, _rounding_key(step, index))


def stochastic_round_state(x: Any, step: int, index: int, state_index: int) -> np.ndarray:
    """``x`` rounded stochastically to bfloat16 as the kernel rounds state ``state_index``
    (the rule's states in order, then the velocity) of param ``index`` at step ``t = step``
    under ``state_rounding="stochastic"``.

    As :func:`stochastic_round` for bfloat16, with a key of its own and 16 random bits per
    element: one hash serves two elements, element ``i < 64`` of each 128-element unit ``b``
    taking the low half of ``mix32(key ^ (64 b + i))`` and element ``i + 64`` the high half.

    Returns
    -------
    numpy.ndarray
        The rounded values (exactly bfloat16 values), in float64.
    """
    x32 = np.ascontiguousarray(np.asarray(x, dtype=np.float64).astype(np.float32)).reshape(-1)
    u = x32.view(np.uint32).copy()
    random16 = state_random_bits(u.size, step, index, state_index)
    out = (u + random16) & np.uint32(0xFFFF0000)
    out = np.where(((u >> np.uint32(23)) & np.uint32(0xFF)) == 0xFF, u, out).astype(np.uint32)
    return out.view(np.float32).astype(np.float64).reshape(np.shape(x))  # NaN stays NaN


def state_random_bits(n: int, step: int, index: int, state_index: int) -> np.ndarray:
    """The 16 random bits (as uint32) of each of the first ``n`` elements of state
    ``state_index`` of param ``index`` at step ``t = step``, as the kernels draw them for
    ``state_rounding="stochastic"`` (bfloat16 values and 8-bit codes alike): element ``i < 64``
    of each 128-element unit ``b`` (a unit of its own, not the 8-bit block size) takes the low
    half of ``mix32(key ^ (64 b + i))``, element ``i + 64`` the high half."""
    salt = np.uint32(((state_index + 1) * 0x85EBCA6B) & 0xFFFFFFFF)
    key = _mix32(np.array([_rounding_key(step, index) ^ salt]))[0]
    e = np.arange(n, dtype=np.int64)
    h = _mix32(key ^ ((e >> 7) * 64 + (e & 63)).astype(np.uint32))
    return np.where(e & 64, h >> np.uint32(16), h & np.uint32(0xFFFF)).astype(np.uint32)


def _rounding_key(step: int, index: int) -> np.uint32:
    """The kernel's rounding_key: the generator key of one tensor in one step."""
    key = _mix32(np.array([step], np.uint64).astype(np.uint32))[0]
    return _mix32(np.array([key ^ np.uint32((index * 0x9E3779B9) & 0xFFFFFFFF)]))[0]


def _stochastic_round_keyed(x: Any, dtype: Any, key: np.uint32) -> np.ndarray:
    """stochastic_round with the generator key given."""
    dtype = np.dtype(dtype)
    bfloat16 = dtype.itemsize == 2 and dtype != np.float16
    x32 = np.ascontiguousarray(np.asarray(x, dtype=np.float64).astype(np.float32)).reshape(-1)
    u = x32.view(np.uint32).copy()
    r = _mix32(key ^ np.arange(u.size, dtype=np.uint64).astype(np.uint32))
    exponent = (u >> np.uint32(23)) & np.uint32(0xFF)
    if bfloat16:  # drop 16 bits
        out = (u + (r & np.uint32(0xFFFF))) & np.uint32(0xFFFF0000)
    else:
        below_normal = np.where(exponent < 113, 113 - exponent.astype(np.int64), 0)
        shift = np.minimum(13 + below_normal, 31).astype(np.uint32)
        mask = ((np.uint64(1) << shift.astype(np.uint64)) - np.uint64(1)).astype(np.uint32)
        out = (u + (r & mask)) & ~mask
        tiny = exponent < 103  # |x| < 2^-24: 0 or 2^-24, with probability |x| / 2^-24
        magnitude = (u & np.uint32(0x7FFFFFFF)).view(np.float32)
        uniform = (r >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)
        up = uniform < magnitude * np.float32(2.0**24)
        tiny_out = (u & np.uint32(0x80000000)) | np.where(up, 0x33800000, 0).astype(np.uint32)
        out = np.where(tiny, tiny_out, out)
    out = np.where(exponent == 0xFF, u, out).astype(np.uint32)  # Inf, NaN unchanged
    rounded = out.view(np.float32).astype(dtype).astype(np.float64)
    return rounded.reshape(np.shape(x))


def storage_step(
    rule: Callable[..., Any],
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray | None],
    states: Sequence[Sequence[np.ndarray | None]],
    *,
    storage: Any,
    master: Sequence[np.ndarray] | None = None,
    stochastic_step: int | None = None,
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
    stochastic_step : int, optional
        Round stochastically (:func:`stochastic_round`) with this t instead of to nearest.
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
    for i, (p, w, g) in enumerate(zip(params, work, g64)):
        if g is None:  # a frozen param keeps its stored value
            continue
        if stochastic_step is None:
            p[...] = round_to_storage(w, storage)
        else:
            p[...] = stochastic_round(w, storage, stochastic_step, i)
    return norm
