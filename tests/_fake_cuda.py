"""Stand-in CUDA arrays for the binding tests that run without a GPU: NumPy memory seen through
``__cuda_array_interface__`` (and ``.device.id``), and a helper that runs one call on both
bindings to compare their errors."""

from __future__ import annotations

import numpy as np
import pytest
from fusedupdates import _cpu


class _Device:
    def __init__(self, index):
        self.id = index


class FakeCuda:
    """A NumPy array seen through the CUDA array interface (v3), on CUDA device ``device``."""

    def __init__(self, a: np.ndarray, device: int = 0):
        self.a = a
        self.device = _Device(device)
        self.__cuda_array_interface__ = {
            "shape": a.shape,
            "typestr": a.dtype.str,
            "data": (a.ctypes.data, not a.flags.writeable),
            "strides": None if a.flags.c_contiguous and a.ndim else a.strides,
            "version": 3,
        }


def _wrap(x):
    if isinstance(x, list):
        return [None if a is None else FakeCuda(a) for a in x]
    return FakeCuda(x)


def _errors(call):
    """Run ``call(module, conv)`` on both bindings (conv: arrays as that binding takes them);
    return the (type, message) each raised."""
    out = []
    from fusedupdates import _cuda

    for module, conv in ((_cpu, lambda x: x), (_cuda, _wrap)):
        with pytest.raises((TypeError, ValueError)) as err:
            call(module, conv)
        out.append((err.type, str(err.value)))
    return out


def _f32(*shapes, dtype=np.float32):
    return [np.zeros(s, dtype) for s in shapes]
