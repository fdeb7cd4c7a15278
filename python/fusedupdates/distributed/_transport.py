"""The transports: the four collectives the sharded updater needs, behind one small interface.

The algorithm (``_sharded.py``) is written once against :class:`Transport`; a transport only
moves flat 1-D arrays of one dtype. Two exist:

* :class:`MpiTransport` wraps an ``mpi4py`` communicator and moves NumPy arrays (any MPI:
  MPICH or Open MPI, one or many nodes).
* :class:`NcclTransport` wraps CuPy's NCCL communicator (``cupy.cuda.nccl.NcclCommunicator``)
  and moves CuPy arrays on the current stream. It is written to CuPy's documented API and has
  NOT been run: the machines this library is developed on have no GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Transport:
    """What the sharded updater asks of a communication engine.

    Every method is a collective: every rank of the communicator must call it, in the same
    order, with arrays of the same dtype and size. Arrays are flat, 1-D and C-contiguous.

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of ranks.
    xp : module
        The array module of the arrays it moves (``numpy`` or ``cupy``).
    """

    rank: int
    size: int
    xp: Any

    def reduce_scatter_sum(self, send: Any, recv: Any) -> None:
        """``recv`` <- block ``rank`` of the element-wise sum of every rank's ``send``
        (``send.size == size * recv.size``)."""
        raise NotImplementedError

    def allgather_inplace(self, flat: Any) -> None:
        """Every rank's block ``r`` of ``flat`` <- rank ``r``'s block ``r`` (``size`` equal
        blocks; this rank's own block is the input)."""
        raise NotImplementedError

    def allgather(self, send: Any, recv: Any) -> None:
        """``recv`` <- every rank's ``send``, concatenated in rank order."""
        raise NotImplementedError

    def allreduce_sum(self, buf: Any) -> None:
        """``buf`` <- the element-wise sum of every rank's ``buf``, in place."""
        raise NotImplementedError

    # --- built once on top of the array collectives ------------------------------------
    def allgather_floats(self, values: list[float]) -> np.ndarray:
        """Every rank's ``values`` (all ranks pass the same count) as a (size, n) host array."""
        xp = self.xp
        send = xp.asarray(np.asarray(values, dtype=np.float64))
        recv = xp.empty(self.size * send.size, dtype=np.float64)
        self.allgather(send, recv)
        return _to_host(recv).reshape(self.size, send.size)

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data`` (any lengths), in rank order: lengths first, then the padded
        bytes, so that no rank needs to know another's length in advance."""
        xp = self.xp
        lengths = self.allgather_floats([len(data)])[:, 0].astype(np.int64)
        width = max(int(lengths.max()), 1)
        padded = np.zeros(width, dtype=np.uint8)
        padded[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        recv = xp.empty(self.size * width, dtype=np.uint8)
        self.allgather(xp.asarray(padded), recv)
        rows = _to_host(recv).reshape(self.size, width)
        return [rows[r, : lengths[r]].tobytes() for r in range(self.size)]


def _to_host(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.get()


class MpiTransport(Transport):
    """Collectives over an ``mpi4py`` communicator, for NumPy arrays.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        An intra-communicator, e.g. ``MPI.COMM_WORLD``.

    Examples
    --------
    >>> from mpi4py import MPI  # doctest: +SKIP
    >>> MpiTransport(MPI.COMM_WORLD).size  # doctest: +SKIP
    2
    """

    xp = np

    def __init__(self, comm: Any):
        from mpi4py import MPI  # only imported when an MPI communicator is given

        if not isinstance(comm, MPI.Intracomm):
            raise TypeError(f"expected an mpi4py intra-communicator, got {type(comm).__name__}")
        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def reduce_scatter_sum(self, send: np.ndarray, recv: np.ndarray) -> None:
        self.comm.Reduce_scatter_block(send, recv, op=self._mpi.SUM)

    def allgather_inplace(self, flat: np.ndarray) -> None:
        self.comm.Allgather(self._mpi.IN_PLACE, flat)

    def allgather(self, send: np.ndarray, recv: np.ndarray) -> None:
        self.comm.Allgather(send, recv)

    def allreduce_sum(self, buf: np.ndarray) -> None:
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)


class NcclTransport(Transport):
    """Collectives over CuPy's NCCL communicator, for CuPy arrays, on CuPy's current stream.

    Written to the documented API of ``cupy.cuda.nccl.NcclCommunicator`` (``reduceScatter``,
    ``allGather``, ``allReduce``, ``rank_id``, ``size``); untested here (no GPU). With one GPU
    it runs with one rank; a real test of the communication needs two or more GPUs.

    Parameters
    ----------
    comm : cupy.cuda.nccl.NcclCommunicator
        E.g. ``nccl.NcclCommunicator(size, uid, rank)`` with ``uid`` broadcast by MPI.

    Examples
    --------
    >>> from cupy.cuda import nccl  # doctest: +SKIP
    >>> NcclTransport(nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)).size  # doctest: +SKIP
    1
    """

    def __init__(self, comm: Any):
        import cupy
        from cupy.cuda import nccl

        if not isinstance(comm, nccl.NcclCommunicator):
            raise TypeError(f"expected a cupy NcclCommunicator, got {type(comm).__name__}")
        self.xp = cupy
        self._nccl = nccl
        self.comm = comm
        self.rank = int(comm.rank_id())
        self.size = int(comm.size())
        self._types = {
            np.dtype(np.float16): nccl.NCCL_FLOAT16,
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.uint8): nccl.NCCL_UINT8,
        }

    def _args(self, x: Any) -> tuple[int, int]:
        return self._types[np.dtype(x.dtype)], self.xp.cuda.get_current_stream().ptr

    def reduce_scatter_sum(self, send: Any, recv: Any) -> None:
        dtype, stream = self._args(recv)
        self.comm.reduceScatter(
            send.data.ptr, recv.data.ptr, recv.size, dtype, self._nccl.NCCL_SUM, stream
        )

    def allgather_inplace(self, flat: Any) -> None:
        # NCCL's in-place all-gather: the send buffer is this rank's block of the receive one
        dtype, stream = self._args(flat)
        block = flat.size // self.size
        own = flat[self.rank * block : (self.rank + 1) * block]
        self.comm.allGather(own.data.ptr, flat.data.ptr, block, dtype, stream)

    def allgather(self, send: Any, recv: Any) -> None:
        dtype, stream = self._args(send)
        self.comm.allGather(send.data.ptr, recv.data.ptr, send.size, dtype, stream)

    def allreduce_sum(self, buf: Any) -> None:
        dtype, stream = self._args(buf)
        self.comm.allReduce(
            buf.data.ptr, buf.data.ptr, buf.size, dtype, self._nccl.NCCL_SUM, stream
        )


def transport_for(comm: Any) -> Transport:
    """The transport for ``comm``: a :class:`Transport` as is, an mpi4py communicator or a
    CuPy NCCL communicator; TypeError for anything else (before any collective)."""
    if isinstance(comm, Transport):
        return comm
    module = type(comm).__module__ or ""
    if module.startswith("mpi4py"):
        return MpiTransport(comm)
    if module.startswith("cupy"):
        return NcclTransport(comm)
    raise TypeError(
        "comm must be an mpi4py communicator (NumPy arrays), a cupy.cuda.nccl."
        f"NcclCommunicator (CuPy arrays) or a fusedupdates.distributed.Transport, got "
        f"{type(comm).__name__}"
    )
