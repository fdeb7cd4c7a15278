"""Data-parallel training past one process: ZeRO-1 sharded optimizer state over MPI or NCCL.

``sharded(fu.adam, params, comm, learning_rate=...)`` returns an updater whose ``step(grads)``
averages this rank's gradients with every other rank's (reduce-scatter), updates only this
rank's 1/N of the flattened parameters with 1/N of the state (one fused native step), and
all-gathers the result, so that every rank's params stay identical. See the README and
``docs/DESIGN.md``.

Transports: an ``mpi4py`` communicator for NumPy arrays (``pip install "fusedupdates[mpi]"``),
CuPy's ``cupy.cuda.nccl.NcclCommunicator`` for CuPy arrays (written to CuPy's documented API,
not yet run: no GPU was available where it was written).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .._compact import check_state_dtype
from ._arrays import pack
from ._layout import plan_buckets, views_of, with_gaps
from ._sharded import ShardedUpdater
from ._transport import MpiTransport, NcclTransport, Transport, transport_for

__all__ = [
    "sharded",
    "allocate_params",
    "ShardedUpdater",
    "Transport",
    "MpiTransport",
    "NcclTransport",
]


def allocate_params(arrays: list, comm: Any, state_dtype: str | None = None) -> list:
    """New parameters with the values of ``arrays``, as views of the flat buffers that
    :func:`sharded` communicates (one per dtype, padded for ``comm``'s size).

    Pass the result to :func:`sharded` with the same ``comm``: its steps then move the flat
    buffers directly. With your own arrays instead, every step copies the params into the
    flat buffer and back out after the all-gather (one read and one write of every parameter
    byte; the grads are always copied into the send buffer once).

    Parameters
    ----------
    arrays : list of arrays
        Initial values (NumPy, or CuPy for NCCL); their shapes and dtypes are kept.
    comm : mpi4py.MPI.Comm, cupy.cuda.nccl.NcclCommunicator or Transport
        The communicator the updater will use (its size fixes the padding).
    state_dtype : {None, "float32", "bfloat16", "int8"}, optional
        The ``state_dtype`` you will pass to :func:`sharded`: with ``"int8"`` the layout
        aligns every large param to the 8-bit blocks (the others need no change). With a
        different one the updater still works, but copies the params every step.

    Returns
    -------
    list of arrays
        One C-contiguous view per input, in the same order.

    Examples
    --------
    >>> from mpi4py import MPI  # doctest: +SKIP
    >>> W, b = allocate_params([np.zeros((4, 3), np.float32), np.zeros(3, np.float32)],
    ...                        MPI.COMM_WORLD)  # doctest: +SKIP
    >>> W.base is b.base  # doctest: +SKIP
    True
    """
    transport = transport_for(comm)
    xp = transport.xp
    arrays = list(arrays)
    for i, a in enumerate(arrays):
        if not isinstance(a, xp.ndarray):
            raise TypeError(
                f"arrays[{i}]: expected a {xp.__name__}.ndarray, got {type(a).__name__}"
            )
    state_dtype = check_state_dtype(state_dtype, arrays, xp is not np)
    buckets = plan_buckets(
        [a.shape for a in arrays], [a.dtype for a in arrays], transport.size, state_dtype
    )
    out: list = [None] * len(arrays)
    zeros: dict = {}
    for b in buckets:
        flat = xp.zeros(b.padded, dtype=b.dtype)
        pack(xp, with_gaps(xp, [arrays[i] for i in b.indices], b, zeros), flat[: b.numel])
        for i, view in zip(b.indices, views_of(flat, b)):
            out[i] = view
    return out


def sharded(
    rule_factory: Callable, params: Any, comm: Any, **hyperparameters: Any
) -> ShardedUpdater:
    """A ZeRO-1 data-parallel updater: each rank keeps 1/N of the optimizer state.

    Collective: every rank calls it with the same shapes, dtypes, rule and hyperparameters
    (checked; a mismatch or a rank's bad input raises the same error on every rank).

    Parameters
    ----------
    rule_factory : callable
        ``rule_factory(params, **hyperparameters)`` -> :class:`~fusedupdates.Updater`: a
        factory such as :func:`fusedupdates.adam`, or any function building an updater from a
        parameter list, e.g. ``lambda ps, **kw: fu.apply_momentum(fu.rmsprop(ps, **kw))``. It
        is called with this rank's flat shards (one 1-D array per dtype), so it must treat
        every parameter alike (no ``params=`` subsets, no parameter groups).
    params : list of arrays
        The parameters, equal on every rank (e.g. built from the same seed). NumPy arrays
        with an mpi4py communicator, CuPy arrays with NCCL. Views of the flat buffers from
        :func:`allocate_params` avoid two copies per step.
    comm : mpi4py.MPI.Comm, cupy.cuda.nccl.NcclCommunicator or Transport
        The ranks that share the work.
    **hyperparameters
        Passed to ``rule_factory``. ``state_dtype`` (``"bfloat16"`` or ``"int8"``, compact
        state) belongs here rather than inside ``rule_factory``: with ``"int8"`` the flat
        layout aligns every param of 4096 elements or more to the 8-bit blocks and keeps
        the smaller ones (full-precision state) in a buffer of their own, so that the state
        and checkpoints are exactly a single process's. ``state_rounding="stochastic"``
        passes through too; its random bits are keyed by each rank's flat shard (bucket and
        offset), not by the single process's param and element index, so a sharded run
        rounds as unbiased but not bit for bit like one process.

    Returns
    -------
    ShardedUpdater
        ``step(grads, max_norm=None)``, ``t``, hyperparameter attributes, ``state_dict()``.

    Examples
    --------
    >>> from mpi4py import MPI  # doctest: +SKIP
    >>> import fusedupdates as fu, fusedupdates.distributed as fud  # doctest: +SKIP
    >>> params = fud.allocate_params([np.zeros((4, 3), np.float32)], MPI.COMM_WORLD)
    >>> upd = fud.sharded(fu.adam, params, MPI.COMM_WORLD, learning_rate=1e-3)
    >>> upd.step([np.ones((4, 3), np.float32)])  # doctest: +SKIP
    """
    return ShardedUpdater(rule_factory, params, transport_for(comm), hyperparameters)
