"""Where every parameter lives in the flat buffers: one buffer per dtype, padded so that it
splits into ``size`` equal shards (rank ``r`` owns elements ``[r * shard, (r + 1) * shard)``).

Equal shards let every transport use its plain reduce-scatter and all-gather (NCCL has no
uneven ones); the padding is at most ``size - 1`` elements per dtype, its gradients are zero
and so its parameters and state stay zero under every rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Bucket:
    """The parameters of one dtype, laid end to end in one flat buffer."""

    dtype: np.dtype
    indices: tuple[int, ...]  # positions in the user's parameter list
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # element offset of each parameter in the flat buffer
    numel: int  # elements holding parameters
    shard: int  # elements per rank
    size: int  # ranks

    @property
    def padded(self) -> int:
        """Length of the flat buffer: ``shard * size``."""
        return self.shard * self.size


def plan_buckets(shapes: list[tuple[int, ...]], dtypes: list[np.dtype], size: int) -> list[Bucket]:
    """One bucket per dtype, in order of first appearance."""
    order: dict[np.dtype, list[int]] = {}
    for i, dtype in enumerate(dtypes):
        order.setdefault(np.dtype(dtype), []).append(i)
    buckets = []
    for dtype, indices in order.items():
        sizes = [int(np.prod(shapes[i], dtype=np.int64)) for i in indices]
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        numel = offsets[-1]
        shard = -(-numel // size)  # ceil
        buckets.append(
            Bucket(
                dtype,
                tuple(indices),
                tuple(tuple(shapes[i]) for i in indices),
                tuple(offsets[:-1]),
                numel,
                shard,
                size,
            )
        )
    return buckets


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
