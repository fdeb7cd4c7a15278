"""Where every parameter lives in the flat buffers: one buffer per dtype, padded so that it
splits into ``size`` equal shards (rank ``r`` owns elements ``[r * shard, (r + 1) * shard)``).

Equal shards let every transport use its plain reduce-scatter and all-gather (NCCL has no
uneven ones); the padding is at most ``size - 1`` elements per dtype, its gradients are zero
and so its parameters and state stay zero under every rule.

With 8-bit state (``state_dtype="int8"``) each dtype has up to two buffers: the params of
at least ``MIN_QUANTIZED_NUMEL`` elements, each starting on a ``QUANT_BLOCK`` boundary and
shards a whole number of blocks, so that every quantization block of the flat shard is a block
of exactly one param, as a single process has it (the zero padding after a param's last
partial block has code 0 and leaves that block's absmax alone); and the smaller params, whose
state stays full precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._compact import MIN_QUANTIZED_NUMEL, QUANT_BLOCK


@dataclass(frozen=True)
class Bucket:
    """The parameters of one dtype, laid end to end in one flat buffer."""

    dtype: np.dtype
    indices: tuple[int, ...]  # positions in the user's parameter list
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # element offset of each parameter in the flat buffer
    numel: int  # elements up to the end of the last parameter
    shard: int  # elements per rank
    size: int  # ranks
    quantized: bool = False  # 8-bit state: params and shards aligned to QUANT_BLOCK

    @property
    def padded(self) -> int:
        """Length of the flat buffer: ``shard * size``."""
        return self.shard * self.size

    @property
    def counts(self) -> tuple[int, ...]:
        """Elements of each parameter."""
        return tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)

    @property
    def gaps(self) -> tuple[int, ...]:
        """Padding elements after each parameter, before the next one (0 at the end)."""
        ends = [o + n for o, n in zip(self.offsets, self.counts)]
        return tuple(nxt - end for end, nxt in zip(ends, [*self.offsets[1:], ends[-1]]))


def plan_buckets(
    shapes: list[tuple[int, ...]], dtypes: list[np.dtype], size: int, state_dtype: Any = None
) -> list[Bucket]:
    """One bucket per dtype (two with ``state_dtype="int8"``: 8-bit and full state), in order
    of first appearance."""
    order: dict[tuple[np.dtype, bool], list[int]] = {}
    for i, dtype in enumerate(dtypes):
        numel = int(np.prod(shapes[i], dtype=np.int64))
        quantized = state_dtype == "int8" and numel >= MIN_QUANTIZED_NUMEL
        order.setdefault((np.dtype(dtype), quantized), []).append(i)
    buckets = []
    for (dtype, quantized), indices in order.items():
        unit = QUANT_BLOCK if quantized else 1
        sizes = [int(np.prod(shapes[i], dtype=np.int64)) for i in indices]
        slots = [-(-n // unit) * unit for n in sizes]  # each param's room, whole blocks
        offsets = np.concatenate([[0], np.cumsum(slots, dtype=np.int64)]).tolist()
        numel = offsets[-2] + sizes[-1]
        shard = -(-offsets[-1] // (size * unit)) * unit  # ceil, whole blocks
        buckets.append(
            Bucket(
                dtype,
                tuple(indices),
                tuple(tuple(shapes[i]) for i in indices),
                tuple(offsets[:-1]),
                numel,
                shard,
                size,
                quantized,
            )
        )
    return buckets


def with_gaps(xp: Any, arrays: list, bucket: Bucket, zeros: dict) -> list:
    """``arrays`` (the bucket's params, grads or states) with zeros between them where the
    layout has padding, for one end-to-end copy into ``flat[: bucket.numel]``. ``zeros``
    caches the padding arrays by (length, dtype)."""
    if not any(bucket.gaps):
        return arrays
    out = []
    for a, gap in zip(arrays, bucket.gaps):
        out.append(a)
        if gap:
            key = (gap, np.dtype(a.dtype))
            if key not in zeros:
                zeros[key] = xp.zeros(gap, dtype=a.dtype)
            out.append(zeros[key])
    return out


def views_of(flat: Any, bucket: Bucket) -> list[Any]:
    """The parameter-shaped views of ``flat`` (one per parameter of the bucket)."""
    return [
        flat[o : o + int(np.prod(s, dtype=np.int64))].reshape(s)
        for o, s in zip(bucket.offsets, bucket.shapes)
    ]


def data_pointer(x: Any) -> int:
    """The address of an array's first element (NumPy or CuPy)."""
    if isinstance(x, np.ndarray):
        return x.__array_interface__["data"][0]
    return x.data.ptr


def shared_flat_buffer(params: list, bucket: Bucket) -> Any | None:
    """The flat buffer that ``params`` of this bucket are views of, laid out exactly as the
    bucket says (as :func:`fusedupdates.distributed.allocate_params` makes them), else None:
    then the sharded updater keeps its own buffer and copies in and out every step."""
    first = params[bucket.indices[0]]
    base = first.base
    if base is None or base.ndim != 1 or base.size != bucket.padded:
        return None
    if np.dtype(base.dtype) != bucket.dtype or not base.flags.c_contiguous:
        return None
    start, itemsize = data_pointer(base), bucket.dtype.itemsize
    for i, offset in zip(bucket.indices, bucket.offsets):
        p = params[i]
        if p.base is not base:
            return None
        if p.size and data_pointer(p) != start + offset * itemsize:  # an empty view's may not
            return None
        if not p.flags.c_contiguous:
            return None
    return base
