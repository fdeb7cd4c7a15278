"""The CUDA backend for CuPy arrays: a thin shim over the native ``_cuda`` module.

Same interface as ``_cpu_backend.py``. Imported only when CUDA arrays are seen
(``_dispatch.backend_for``), so ``import fusedupdates`` never needs CuPy, a GPU or a driver.

Everything is asynchronous on CuPy's current stream of the arrays' device: no step waits for
the GPU, so an updater step can be captured into a CUDA graph. The native ``Stepper`` owns
every device resource of an updater (its tables, and once a step has been captured, the device
copy of ``t`` and the hyperparameters, which replays advance and read); this module only
registers how to allocate device memory and find the current stream with CuPy
(``_cuda.set_cupy_hooks``). ``step(..., max_norm=...)`` returns the norm as a 0-d float64
CuPy array.
"""

from __future__ import annotations

import numpy as np

try:
    import cupy
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fusedupdates: CUDA arrays need CuPy (pip install cupy-cuda13x, or the cupy package "
        "matching your CUDA version)"
    ) from err

try:
    from . import _cuda
except ImportError as err:  # pragma: no cover - depends on the build
    raise ImportError(
        "fusedupdates was built without its CUDA backend (fusedupdates._cuda is missing): "
        "reinstall with a CUDA compiler on PATH, e.g. FUSEDUPDATES_CUDA=ON pip install ."
    ) from err

name = "cuda"


def _alloc(nbytes: int, device: int, stream_ptr: int):
    """Device memory for tables and control blocks, from CuPy's pool for the backend's setup
    stream (so that its reuse is ordered on that stream, never on a stream being captured)."""
    with cupy.cuda.Device(device), cupy.cuda.ExternalStream(stream_ptr, device):
        return cupy.empty(nbytes, dtype=cupy.uint8)


def _norm_buffer(device: int):
    """A step's [norm, multiplier, flags, partials...] buffer: its pointer, the 0-d view of the
    norm that a clipped step returns and the 0-d bool view of the applied flag that a step with
    ``skip_nonfinite`` writes (first byte of ``flags``); each view keeps the buffer alive."""
    with cupy.cuda.Device(device):
        buffer = cupy.empty(_cuda.NORM_BUFFER_DOUBLES, dtype=cupy.float64)
        applied = buffer[2:3].view(cupy.bool_)[0]
    return buffer.data.ptr, buffer[0], applied


_cuda.set_cupy_hooks(cupy.ndarray, _alloc, cupy.cuda.get_current_stream, _norm_buffer)


def make_stepper(
    rule_id: int,
    params: list,
    states: list,
    state_names: list,
    groups: list | None = None,
    *,
    functional: bool = False,
    scales: list | None = None,
) -> _cuda.Stepper:
    """The native stepper of one updater: validates params and states once, owns ``t``, each
    parameter group's hyperparameters (``groups``: the group index of each param) and every
    device resource. ``functional=True`` (the functional API): a captured step bakes its ``t``
    and hyperparameters into the graph instead of reading and advancing a device copy.
    ``scales`` holds the block scales of 8-bit (uint8) states, as on the CPU."""
    return _cuda.Stepper(
        rule_id, params, states, state_names, groups, functional=functional, scales=scales
    )


def zeros_like(param, dtype: np.dtype):
    with cupy.cuda.Device(param.device.id):
        return cupy.zeros(param.shape, dtype=dtype)


def zeros_on(shape: tuple, dtype: np.dtype, like):
    """Zeros of ``shape`` on the device of ``like`` (the block scales of 8-bit state)."""
    with cupy.cuda.Device(like.device.id):
        return cupy.zeros(shape, dtype=dtype)


def empty_like(x):
    with cupy.cuda.Device(x.device.id):
        return cupy.empty(x.shape, dtype=x.dtype)


def to_numpy(x) -> np.ndarray:
    return cupy.asnumpy(x)


def copy_from_numpy(dst, src: np.ndarray) -> None:
    src = np.asarray(src)
    if src.dtype != dst.dtype or src.shape != dst.shape:
        raise ValueError(f"cannot copy {src.dtype}{src.shape} into {dst.dtype}{dst.shape}")
    with cupy.cuda.Device(dst.device.id):
        dst.set(np.ascontiguousarray(src))


def sum_squares(xs: list):
    """Sum of squares of every element of ``xs`` (deterministic), as a 0-d float64 array."""
    return _cuda.sum_squares(xs)


def total_norm_constraint(xs: list, out: list, max_norm: float, epsilon: float):
    """Scale every array by Lasagne's total-norm multiplier into ``out``; return the norm as a
    0-d float64 CuPy array (no host synchronisation)."""
    return _cuda.total_norm_constraint(xs, out, max_norm, epsilon)


def norm_constraint(x, out, outer: int, reduce: int, inner: int, max_norm: float, eps: float):
    _cuda.norm_constraint(x, out, outer, reduce, inner, max_norm, eps)


def bandwidth_probe(rw: list, ro: list) -> None:
    """Benchmark probe: ``rw[k] += 1e-7 * sum(ro)``, the memory streams of a rule."""
    _cuda.bandwidth_probe(rw, ro)


def copy_probe(dst, src) -> None:
    """Benchmark probe: a device-to-device memcpy of ``src`` into ``dst``."""
    _cuda.copy_probe(dst, src)
