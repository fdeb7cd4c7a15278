"""Lasagne's norm constraints as native kernels (one reduction pass plus one scaling pass)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._dispatch import as_list, backend_for
from ._hyper import check_hyper, check_max_norm

# The native functions name their arguments x / xs / out (lists, so x[0], out[0]): errors
# re-raised from them name what the user passed instead.
_NATIVE_NAMES = {
    "norm_constraint": [(r"\bx\[0\]", "tensor_var"), (r"\bout\[0\]", "out")],
    "total_norm_constraint": [(r"\bxs\[", "tensor_vars[")],
}


@contextmanager
def _user_names(function: str):
    """Re-raise the native module's TypeError / ValueError with the public argument names.

    The native functions validate everything before writing, so nothing was written."""
    try:
        yield
    except (TypeError, ValueError) as err:
        message = str(err)
        for pattern, name in _NATIVE_NAMES[function]:
            message = re.sub(pattern, name, message)
        if message == str(err):
            raise
        raise (TypeError if isinstance(err, TypeError) else ValueError)(message) from None


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__")


def _data_pointer(x: Any) -> int:
    return x.__array_interface__["data"][0]


def _check_out(tensor_var: Any, out: Any) -> None:
    """Validate ``out`` for ``norm_constraint`` before anything is written, the same way
    whichever kernel path runs: same array type, dtype and shape as ``tensor_var``,
    C-contiguous, writable, and either ``tensor_var`` itself (in place) or disjoint from it."""
    if not _is_array(out) or isinstance(out, np.ndarray) != isinstance(tensor_var, np.ndarray):
        raise TypeError(
            f"out: expected an array of the same type as tensor_var "
            f"({type(tensor_var).__name__}), got {type(out).__name__}"
        )
    if out.dtype != tensor_var.dtype:
        raise TypeError(
            f"out: dtype {out.dtype} does not match tensor_var dtype {tensor_var.dtype}"
        )
    if tuple(out.shape) != tuple(tensor_var.shape):
        raise ValueError(
            f"out: shape {tuple(out.shape)} does not match tensor_var shape "
            f"{tuple(tensor_var.shape)}"
        )
    if not out.flags.c_contiguous:
        raise ValueError("out: array is not C-contiguous")
    if not getattr(out.flags, "writeable", True):  # CuPy arrays are always writable
        raise ValueError("out: array is read-only")
    if isinstance(out, np.ndarray) and out.size:
        in_place = tensor_var.flags.c_contiguous and _data_pointer(out) == _data_pointer(tensor_var)
        if not in_place and np.may_share_memory(out, tensor_var):
            raise ValueError(
                "out: shares memory with tensor_var (pass out=tensor_var, or a separate array)"
            )


def _default_norm_axes(ndim: int) -> tuple[int, ...]:
    if ndim == 2:
        return (0,)
    if ndim in (3, 4, 5):
        return tuple(range(1, ndim))
    raise ValueError(f"Unsupported tensor dimensionality {ndim}. Must specify `norm_axes`")


def _normalize_axes(norm_axes: Any, ndim: int) -> tuple[int, ...]:
    axes = (norm_axes,) if isinstance(norm_axes, (int, np.integer)) else tuple(norm_axes)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"norm_axes must hold integers, got {a!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"norm_axes: axis {a} is out of range for a {ndim}-d array")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"norm_axes: repeated axis in {tuple(axes)}")
    return tuple(sorted(out))


def _outer_reduce_inner(shape: tuple[int, ...], axes: tuple[int, ...]):
    """Sizes [outer, reduce, inner] if the reduced axes form one block (ignoring size-1
    axes), else None."""
    kinds = [(d, i in axes) for i, d in enumerate(shape) if d != 1]
    flags = [r for _, r in kinds]
    first = flags.index(True) if True in flags else len(flags)
    last = len(flags) - flags[::-1].index(True) if True in flags else len(flags)
    if not all(flags[first:last]):
        return None
    sizes = [d for d, _ in kinds]
    outer = int(np.prod(sizes[:first], dtype=np.int64))
    reduce = int(np.prod(sizes[first:last], dtype=np.int64))
    inner = int(np.prod(sizes[last:], dtype=np.int64))
    return outer, reduce, inner


def norm_constraint(
    tensor_var: Any,
    max_norm: float,
    norm_axes: int | Sequence[int] | None = None,
    epsilon: float = 1e-7,
    out: Any = None,
) -> Any:
    """Max weight norm constraint (Lasagne's ``norm_constraint``), as a native kernel.

    Norms are taken over ``norm_axes``, and every slice is scaled by
    ``min(norm, max_norm) / (epsilon + norm)``.

    Parameters
    ----------
    tensor_var : array
        The array to constrain (NumPy or CuPy, float16/32/64).
    max_norm : float
        The maximum norm.
    norm_axes : int or sequence of int, optional
        Axes to sum over. Default: ``(0,)`` for 2-D arrays (dense layers), all axes but the
        first for 3-D, 4-D and 5-D arrays (convolution filters).
    epsilon : float, optional
        Value added to the norm in the denominator.
    out : array, optional
        Where to write the result; pass ``tensor_var`` itself to constrain in place.

    Returns
    -------
    array
        ``out``, or a new array of the same shape and dtype.

    Raises
    ------
    ValueError
        ``"Unsupported tensor dimensionality"`` when ``norm_axes`` is None and the array is
        not 2-D to 5-D; an ``out`` of another shape, not C-contiguous, read-only or partly
        overlapping ``tensor_var``.
    TypeError
        An ``out`` of another dtype or array type; a ``tensor_var`` that is not a float16/32/64
        NumPy or CuPy array. Nothing is written when either is raised.
    """
    if not _is_array(tensor_var):
        raise TypeError(
            "tensor_var: expected a numpy.ndarray or a CUDA array (CuPy), got "
            f"{type(tensor_var).__name__}"
        )
    backend = backend_for([tensor_var], "tensor_var")
    ndim = tensor_var.ndim
    axes = _default_norm_axes(ndim) if norm_axes is None else _normalize_axes(norm_axes, ndim)
    bound = check_max_norm(max_norm)
    eps = check_hyper("epsilon", epsilon)
    if out is not None:
        _check_out(tensor_var, out)
    if not tensor_var.flags.c_contiguous:
        tensor_var = tensor_var.copy(order="C")  # the input is only read: a copy is harmless
    if out is None:
        out = backend.empty_like(tensor_var)
    sizes = _outer_reduce_inner(tuple(tensor_var.shape), axes)
    if sizes is not None:
        with _user_names("norm_constraint"):
            backend.norm_constraint(tensor_var, out, *sizes, bound, eps)
        return out
    # Reduced axes interleaved with kept ones: gather them last in a contiguous copy.
    kept = [a for a in range(ndim) if a not in axes]
    order = kept + list(axes)
    moved = tensor_var.transpose(order).copy()
    scaled = backend.empty_like(moved)
    outer = int(np.prod([tensor_var.shape[a] for a in kept], dtype=np.int64))
    with _user_names("norm_constraint"):
        backend.norm_constraint(moved, scaled, outer, moved.size // max(outer, 1), 1, bound, eps)
    out[...] = scaled.transpose(np.argsort(order))  # out was checked: an exact copy
    return out


def total_norm_constraint(
    tensor_vars: Sequence[Any],
    max_norm: float,
    epsilon: float = 1e-7,
    return_norm: bool = False,
    out: Sequence[Any] | None = None,
) -> Any:
    """Rescale a list of arrays so their joint L2 norm is at most ``max_norm``.

    Lasagne's ``total_norm_constraint``: ``N = sqrt(sum_i sum(x_i^2))`` and every array is
    multiplied by ``min(N, max_norm) / (epsilon + N)`` (slightly below 1 even when
    ``N < max_norm``, as in Lasagne).

    Parameters
    ----------
    tensor_vars : list of arrays
        The arrays (typically gradients), all of one dtype and backend.
    max_norm : float
        Threshold on the total norm.
    epsilon : float, optional
        Value added to the norm in the denominator.
    return_norm : bool, optional
        Also return the total norm.
    out : list of arrays, optional
        Where to write; pass ``tensor_vars`` itself to scale in place.

    Returns
    -------
    list of arrays, or (list of arrays, float)
        The scaled arrays, and the norm when ``return_norm`` is true.
    """
    xs = as_list(tensor_vars, "tensor_vars")
    backend = backend_for(xs, "tensor_vars")
    # Inputs are only read: a C-ordered copy of a strided one is harmless (outputs must be
    # contiguous, so scaling a strided array in place is refused natively).
    xs_read = [
        x if not hasattr(x, "flags") or x.flags.c_contiguous else x.copy(order="C") for x in xs
    ]
    bound = check_max_norm(max_norm)
    eps = check_hyper("epsilon", epsilon)
    outs = [backend.empty_like(x) for x in xs_read] if out is None else as_list(out, "out")
    if len(outs) != len(xs):
        raise ValueError(f"out: got {len(outs)} arrays for {len(xs)} tensor_vars")
    with _user_names("total_norm_constraint"):
        norm = backend.total_norm_constraint(xs_read, outs, bound, eps)
    return (outs, norm) if return_norm else outs
