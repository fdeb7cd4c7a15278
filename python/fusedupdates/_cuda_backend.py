"""The CUDA backend for CuPy arrays: a thin shim over the native ``_cuda`` module.

Same interface as ``_cpu_backend.py``. Imported only when CUDA arrays are seen
(``_dispatch.backend_for``), so ``import fusedupdates`` never needs CuPy, a GPU or a driver.

Everything here is asynchronous on CuPy's current stream of the arrays' device: no function
waits for the GPU (except ``to_numpy`` / ``copy_from_numpy``, which move data to or from the
host), so an updater step can be captured into a CUDA graph:

* Device tables (per-tensor pointers, sizes, chunk map) are cached per device, keyed by their
  exact contents: a step uploads nothing while its arrays stay the same, and only the small
  grad-pointer table when new grad arrays arrive.
* An updater's hyperparameters and step counter ``t`` live in a small device block (in the
  updater's ``cache``); each step reads them there and advances ``t`` on the device, so a
  replayed graph advances ``t`` by itself and sees a learning rate changed between replays
  (``hyper_changed`` writes it). The updater's Python ``t`` counts ``step()`` calls only.
* ``step(..., max_norm=...)`` returns the norm as a 0-d float64 CuPy array.

The first step of an updater should run eagerly before a capture, as CUDA graphs need anyway;
a step captured first still works (its one-time setup runs outside the graph).
"""

from __future__ import annotations

from typing import Any

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

_cuda.set_array_type(cupy.ndarray)

_CONTROL_KEY = "cuda_control"  # the updater's device control block, in its cache dict
_KEEP_KEY = "cuda_graph_buffers"  # norm buffers written by captured graphs
_TABLES: dict[int, Any] = {}  # device id -> _cuda.TableCache
_CAPTURED: list = []  # norm buffers of functional calls captured into graphs: kept forever


def _alloc(nbytes: int):
    return cupy.empty(nbytes, dtype=cupy.uint8)


def _tables(device: int):
    tables = _TABLES.get(device)
    if tables is None:
        tables = _TABLES[device] = _cuda.TableCache(_alloc, device)
    return tables


def _device_of(arrays: list, what: str) -> int:
    if not arrays:
        return cupy.cuda.Device().id  # nothing to validate: the current device
    first = arrays[0]
    try:
        return int(first.device.id)
    except AttributeError:
        raise TypeError(f"{what}[0]: expected a cupy.ndarray, got {type(first).__name__}") from None


def _norm_buffer():
    return cupy.empty(_cuda.NORM_BUFFER_DOUBLES, dtype=cupy.float64)


def _keep_if_captured(stream, buffer, cache: dict | None) -> None:
    """A captured graph writes into ``buffer`` at every replay: keep it alive as long as the
    graph may run (the updater's lifetime; forever for functional calls)."""
    if stream.is_capturing():
        if cache is None:
            _CAPTURED.append(buffer)
        else:
            cache.setdefault(_KEEP_KEY, []).append(buffer)


def zeros_like(param, dtype: np.dtype):
    with cupy.cuda.Device(param.device.id):
        return cupy.zeros(param.shape, dtype=dtype)


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


def check_params(params: list) -> None:
    _cuda.check_params(params)


def step(
    rule_id: int,
    nesterov: bool,
    params: list,
    grads: list,
    states: list,
    state_names: list,
    velocity: list | None,
    hyper: tuple,
    max_norm: float | None,
    clip_epsilon: float,
    cache: dict | None = None,
):
    """One fused step (one update launch, plus one reduction launch with ``max_norm``).

    ``cache`` is the updater's scratch dict: it holds the device control block, so that t and
    the hyperparameters come from device memory. ``None`` (functional API): t and the
    hyperparameters are the given ones, baked into the launch.

    Returns None, or with ``max_norm`` the total gradient norm as a 0-d float64 CuPy array.
    """
    device = _device_of(params, "params")
    with cupy.cuda.Device(device):
        stream = cupy.cuda.get_current_stream()
        control = None
        if cache is not None:
            control = cache.get(_CONTROL_KEY)
            if control is None:
                buffer = cupy.empty(_cuda.CONTROL_BYTES, dtype=cupy.uint8)
                control = cache[_CONTROL_KEY] = _cuda.ControlBlock(buffer, device)
                cache[_CONTROL_KEY + "_buffer"] = buffer
        norm = None if max_norm is None else _norm_buffer()
        _cuda.step(
            _tables(device),
            control,
            stream.ptr,
            rule_id,
            nesterov,
            params,
            grads,
            states,
            state_names,
            velocity,
            hyper,
            max_norm,
            clip_epsilon,
            norm,
        )
        if norm is None:
            return None
        _keep_if_captured(stream, norm, cache)
        return norm[0]


def hyper_changed(cache: dict, hyper: tuple, reset_step: bool | None = None) -> None:
    """Write changed hyperparameters to the updater's device block (read by the next step and
    by every replay of a captured step). ``hyper[5]`` is the host's next t; it is written
    (the device t reset to ``hyper[5] - 1``) when ``reset_step`` is True, or when None and the
    host's count moved other than by stepping (``load_state_dict``)."""
    control = cache.get(_CONTROL_KEY) if cache is not None else None
    if control is None:
        return  # no step yet: the first step writes everything
    with cupy.cuda.Device(control.device):
        stream = cupy.cuda.get_current_stream()
        _cuda.hyper_changed(control, stream.ptr, hyper, reset_step)


def device_step(cache: dict):
    """The updater's t as the device counts it (advanced by graph replays too), as a 0-d
    float64 CuPy array, or None before the first step."""
    buffer = cache.get(_CONTROL_KEY + "_buffer") if cache is not None else None
    if buffer is None:
        return None
    return buffer.view(cupy.float64)[_cuda.CONTROL_STEP_INDEX]


def sum_squares(xs: list):
    """Sum of squares of every element of ``xs`` (deterministic), as a 0-d float64 array."""
    device = _device_of(xs, "xs")
    with cupy.cuda.Device(device):
        stream = cupy.cuda.get_current_stream()
        out = _norm_buffer()
        _cuda.sum_squares(_tables(device), stream.ptr, xs, out)
        _keep_if_captured(stream, out, None)
        return out[0]


def scale(xs: list, out: list, factor: float) -> None:
    device = _device_of(xs, "xs")
    with cupy.cuda.Device(device):
        _cuda.scale(_tables(device), cupy.cuda.get_current_stream().ptr, xs, out, factor)


def total_norm_constraint(xs: list, out: list, max_norm: float, epsilon: float):
    """Scale every array by Lasagne's total-norm multiplier into ``out``; return the norm as a
    0-d float64 CuPy array (no host synchronisation)."""
    device = _device_of(xs, "xs")
    with cupy.cuda.Device(device):
        stream = cupy.cuda.get_current_stream()
        norm = _norm_buffer()
        _cuda.total_norm_constraint(_tables(device), stream.ptr, xs, out, max_norm, epsilon, norm)
        _keep_if_captured(stream, norm, None)
        return norm[0]


def norm_constraint(x, out, outer: int, reduce: int, inner: int, max_norm: float, eps: float):
    with cupy.cuda.Device(x.device.id):
        _cuda.norm_constraint(
            cupy.cuda.get_current_stream().ptr, x, out, outer, reduce, inner, max_norm, eps
        )


def stream(rw: list, ro: list) -> None:
    """Bandwidth probe for benchmarks: ``rw[k] += 1e-7 * sum(ro)``, the streams of a rule."""
    with cupy.cuda.Device(_device_of(rw, "rw")):
        _cuda.stream(cupy.cuda.get_current_stream().ptr, rw, ro)


def copy(dst, src) -> None:
    """Bandwidth probe for benchmarks: a device-to-device memcpy of ``src`` into ``dst``."""
    with cupy.cuda.Device(dst.device.id):
        _cuda.copy(cupy.cuda.get_current_stream().ptr, dst, src)
