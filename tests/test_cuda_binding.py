"""CUDA binding without a GPU: describing ``__cuda_array_interface__`` arrays and validating.

Validation runs before any CUDA call, so stand-in arrays (host memory exposed through the CUDA
array interface) check the binding's describe + validate path on machines without a GPU, and
that every error matches the CPU binding's exactly. Only invalid calls are made: a valid step
would launch kernels on host pointers. Skipped when the CUDA module was not built.
"""

from __future__ import annotations

import numpy as np
import pytest

_cuda = pytest.importorskip("fusedupdates._cuda", reason="built without the CUDA backend")
from fusedupdates import _cpu  # noqa: E402


class _Device:
    def __init__(self, index):
        self.id = index


class FakeCuda:
    """A NumPy array seen through the CUDA array interface (v3), on CUDA device ``device``."""

    def __init__(self, a: np.ndarray, device: int = 0, readonly: bool = False):
        self.a = a
        self.device = _Device(device)
        self.__cuda_array_interface__ = {
            "shape": a.shape,
            "typestr": a.dtype.str,
            "data": (a.ctypes.data, readonly),
            "strides": None if a.flags.c_contiguous and a.ndim else a.strides,
            "version": 3,
        }


def _never_called(nbytes):
    raise AssertionError("a rejected call must not allocate")


TABLES = _cuda.TableCache(_never_called, 0)
HYPER = (0.1, 0.9, 0.999, 1e-8, 0.9, 1.0)


def _both(params, grads, states=(), names=(), velocity=None, max_norm=None, wrap=None):
    """Run the same step through both bindings; return (type, message) of each error."""
    wrap = wrap or (lambda a: FakeCuda(a))
    out = []
    for backend in ("cpu", "cuda"):
        conv = (lambda a: a) if backend == "cpu" else wrap

        def w(xs, conv=conv):
            return [None if x is None else conv(x) for x in xs]

        args = (
            4,
            False,
            w(params),
            w(grads),
            [w(s) for s in states],
            list(names),
            None if velocity is None else w(velocity),
            HYPER,
            max_norm,
            1e-7,
        )
        with pytest.raises((TypeError, ValueError)) as err:
            if backend == "cpu":
                _cpu.step(*args)
            else:
                _cuda.step(TABLES, None, 0, *args, None)
        out.append((err.type, str(err.value)))
    return out


def _p(*shapes, dtype=np.float32):
    return [np.zeros(s, dtype) for s in shapes]


def test_module_loads_without_a_gpu():
    assert _cuda.NORM_BUFFER_DOUBLES == _cuda.NORM_PARTIALS + 2
    assert _cuda.CONTROL_BYTES == 64 and _cuda.CONTROL_STEP_INDEX == 5
    for name in (
        "step",
        "hyper_changed",
        "sum_squares",
        "scale",
        "total_norm_constraint",
        "norm_constraint",
        "stream",
        "copy",
        "check_params",
    ):
        assert callable(getattr(_cuda, name))


@pytest.mark.parametrize(
    "case",
    [
        "shape",
        "dtype",
        "count",
        "alias",
        "state_dtype",
        "state_size",
        "velocity_alias",
        "non_contiguous",
    ],
)
def test_step_errors_match_the_cpu(case):
    p = _p((3, 4), (5,))
    g = _p((3, 4), (5,))
    m, v = _p((3, 4), (5,)), _p((3, 4), (5,))
    kw = {}
    if case == "shape":
        g[1] = np.zeros(6, np.float32)
    elif case == "dtype":
        g[0] = np.zeros((3, 4), np.float64)
    elif case == "count":
        g = g[:1]
    elif case == "alias":
        g[1] = p[1]
    elif case == "state_dtype":
        v[1] = np.zeros(5, np.float64)
    elif case == "state_size":
        m[0] = np.zeros(11, np.float32)
    elif case == "velocity_alias":
        kw["velocity"] = [None, m[1]]
    elif case == "non_contiguous":
        g[0] = np.zeros((3, 8), np.float32)[:, ::2]
    cpu, cuda = _both(p, g, (m, v), ("m", "v"), **kw)
    assert cpu == cuda


def test_read_only_param_is_rejected():
    p = FakeCuda(np.zeros(3, np.float32), readonly=True)
    with pytest.raises(ValueError, match=r"params\[0\]: array is read-only"):
        _cuda.check_params([p])


def test_unsupported_and_foreign_arrays():
    with pytest.raises(TypeError, match=r"params\[0\]: unsupported dtype int32"):
        _cuda.check_params([FakeCuda(np.zeros(3, np.int32))])
    with pytest.raises(TypeError, match=r"params\[1\]: expected a cupy.ndarray .*got ndarray"):
        _cuda.check_params([FakeCuda(np.zeros(3, np.float32)), np.zeros(3, np.float32)])
    big_endian = np.zeros(3, np.dtype(">f4"))
    with pytest.raises(TypeError, match="unsupported dtype"):
        _cuda.check_params([FakeCuda(big_endian)])


def test_strides_equal_to_c_order_are_contiguous():
    a = np.zeros((4, 1, 3), np.float32)
    fake = FakeCuda(a)
    fake.__cuda_array_interface__["strides"] = (12, 999, 4)  # extent-1 axes do not count
    _cuda.check_params([fake])
    fake.__cuda_array_interface__["strides"] = (4, 12, 16)
    with pytest.raises(ValueError, match="not C-contiguous"):
        _cuda.check_params([fake])


def test_same_array_twice_and_overlap():
    a = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="every parameter must appear once"):
        _cuda.check_params([FakeCuda(a), FakeCuda(a)])
    with pytest.raises(ValueError, match="shares memory"):
        _cuda.check_params([FakeCuda(a[:6]), FakeCuda(a[4:])])


def test_devices_must_match():
    p = _p((3,), (4,))
    g = [FakeCuda(np.zeros(3, np.float32)), FakeCuda(np.zeros(4, np.float32), device=1)]
    message = r"grads\[1\]: is on device 1 but params\[0\] is on device 0"
    with pytest.raises(ValueError, match=message):
        _cuda.step(
            TABLES,
            None,
            0,
            0,
            False,
            [FakeCuda(x) for x in p],
            g,
            [],
            [],
            None,
            HYPER,
            None,
            1e-7,
            None,
        )
    with pytest.raises(ValueError, match=r"params\[1\]: is on device 2 but params\[0\]"):
        _cuda.check_params([FakeCuda(p[0]), FakeCuda(p[1], device=2)])


def test_table_cache_is_per_device():
    p = [FakeCuda(np.zeros(3, np.float32), device=1)]
    g = [FakeCuda(np.zeros(3, np.float32), device=1)]
    with pytest.raises(ValueError, match="table cache is for device 0"):
        _cuda.step(TABLES, None, 0, 0, False, p, g, [], [], None, HYPER, None, 1e-7, None)


def test_bad_rule_and_hyper():
    p, g = [FakeCuda(np.zeros(3, np.float32))], [FakeCuda(np.zeros(3, np.float32))]
    with pytest.raises(ValueError, match="unknown rule id 9"):
        _cuda.step(TABLES, None, 0, 9, False, p, g, [], [], None, HYPER, None, 1e-7, None)
    with pytest.raises(ValueError, match="hyper must hold"):
        _cuda.step(TABLES, None, 0, 0, False, p, g, [], [], None, HYPER[:5], None, 1e-7, None)
