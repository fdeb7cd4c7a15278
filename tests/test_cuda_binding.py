"""The CUDA binding without a GPU: ``_cuda.Stepper`` on stand-in arrays.

Stand-ins expose host memory through ``__cuda_array_interface__`` (and ``.device.id``), so the
binding's describe + validate path runs on machines without a GPU or driver. The CUDA stepper
makes no CUDA call before a launch is needed, so building, validating, the hyperparameters, t
and the host part of a step all run here; every rejected call must raise exactly what the CPU
stepper raises on the same arrays. Only calls that fail (or stop before launching) are made:
a valid step would launch kernels on host pointers. Skipped when the CUDA module was not built.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_cuda = pytest.importorskip("fusedupdates._cuda", reason="built without the CUDA backend")
from _fake_cuda import FakeCuda, _errors, _f32, _wrap  # noqa: E402
from fusedupdates import _cpu  # noqa: E402

ADAM, SGD, ADAGRAD = 4, 0, 1
NO_DRIVER = _cuda.driver_version() < _cuda.RUNTIME_VERSION


def _misaligned(n, dtype=np.float32):
    a = np.zeros(np.dtype(dtype).itemsize * n + 1, np.uint8)[1:].view(dtype)
    assert not a.flags.aligned
    return a


def _adam(module, conv, p, m, v):
    return module.Stepper(ADAM, conv(p), [conv(m), conv(v)], ["m", "v"])


# ---- the module -------------------------------------------------------------------------


def test_module_surface():
    for name in ("with_momentum", "step", "prepare_step", "set_hyperparameters", "hyperparameters"):
        assert callable(getattr(_cuda.Stepper, name))
    for name in ("t", "has_momentum", "__len__"):
        assert hasattr(_cuda.Stepper, name)
    for name in ("sum_squares", "total_norm_constraint", "norm_constraint", "bandwidth_probe"):
        assert callable(getattr(_cuda, name))
    assert callable(_cuda.copy_probe) and _cuda.NORM_BUFFER_DOUBLES == _cuda.NORM_PARTIALS + 3
    assert _cuda.HYPER_FIELDS == _cpu.HYPER_FIELDS and _cuda.CLIP_EPSILON == _cpu.CLIP_EPSILON
    # Removed: the per-call step, its Python-side graph bookkeeping, dead code, old probe names.
    for gone in ("step", "hyper_changed", "scale", "CHUNK_ELEMENTS", "stream", "copy"):
        assert not hasattr(_cuda, gone), gone
    for gone in ("TableCache", "ControlBlock", "check_params", "CONTROL_BYTES"):
        assert not hasattr(_cuda, gone), gone


# ---- the same errors as the CPU stepper -------------------------------------------------

BUILD_CASES = {
    "unknown rule": lambda m, c: m.Stepper(9, c(_f32(3)), [], []),
    "states vs names": lambda m, c: m.Stepper(ADAM, c(_f32(3)), [c(_f32(3))], ["m", "v"]),
    "params not a list": lambda m, c: m.Stepper(SGD, "abc", [], []),
    "state count": lambda m, c: _adam(m, c, _f32(3, 4), _f32(3), _f32(3, 4)),
    "state dtype": lambda m, c: _adam(m, c, _f32(3), _f32(3), _f32(3, dtype=np.float64)),
    "state shape": lambda m, c: _adam(m, c, _f32((3, 4)), _f32((4, 3)), _f32((3, 4))),
    "float16 state": lambda m, c: m.Stepper(
        ADAGRAD, c(_f32(3, dtype=np.float16)), [c(_f32(3, dtype=np.float16))], ["accu"]
    ),
    "non contiguous": lambda m, c: m.Stepper(
        SGD, c([np.zeros((4, 4), np.float32)[:, ::2]]), [], []
    ),
    "unsupported dtype": lambda m, c: m.Stepper(SGD, c([np.zeros(3, np.int32)]), [], []),
    "big endian": lambda m, c: m.Stepper(SGD, c([np.zeros(3, np.dtype(">f4"))]), [], []),
    "misaligned": lambda m, c: m.Stepper(SGD, c([np.zeros(2, np.float32), _misaligned(3)]), [], []),
}


def _readonly_case(m, c):
    a = np.zeros(3, np.float32)
    a.flags.writeable = False
    return m.Stepper(SGD, c([a]), [], [])


def _same_param_twice(m, c):
    a = np.zeros(3, np.float32)
    return m.Stepper(SGD, c([a, a]), [], [])


def _overlapping_params(m, c):
    a = np.zeros(10, np.float32)
    return m.Stepper(SGD, c([a[:6], a[4:]]), [], [])


def _state_is_a_param(m, c):
    p = _f32(3, 5)
    return _adam(m, c, p, [p[0], np.zeros(5, np.float32)], _f32(3, 5))


BUILD_CASES.update(
    {
        "read only": _readonly_case,
        "same param twice": _same_param_twice,
        "overlapping params": _overlapping_params,
        "state is a param": _state_is_a_param,
    }
)


@pytest.mark.parametrize("case", sorted(BUILD_CASES))
def test_build_errors_match_the_cpu(case):
    cpu, cuda = _errors(BUILD_CASES[case])
    assert cpu == cuda


def _step_errors(grads_of, max_norm=None, momentum=False, method="step"):
    """Errors of a step of an adam stepper over params (3, 4) and (5,) on both bindings."""

    def call(module, conv):
        p, m, v = _f32((3, 4), 5), _f32((3, 4), 5), _f32((3, 4), 5)
        s = _adam(module, conv, p, m, v)
        if momentum:
            s = s.with_momentum(conv([None, np.zeros(5, np.float32)]), False)
        grads = grads_of(p, m, v)
        grads = conv(grads) if isinstance(grads, list) else grads
        if method == "prepare_step" and module is _cpu:
            return s.step(grads, max_norm)  # the CPU has no separate host part
        return getattr(s, method)(grads) if method == "prepare_step" else s.step(grads, max_norm)

    return _errors(call)


STEP_CASES = {
    "count": lambda p, m, v: _f32((3, 4)),
    "not a list": lambda p, m, v: 3,
    "shape": lambda p, m, v: _f32((3, 4), 6),
    "dtype": lambda p, m, v: [np.zeros((3, 4), np.float64), np.zeros(5, np.float32)],
    "unsupported dtype": lambda p, m, v: [np.zeros((3, 4), np.int16), np.zeros(5, np.float32)],
    "alias param": lambda p, m, v: [np.zeros((3, 4), np.float32), p[1]],
    "alias state": lambda p, m, v: [m[0], np.zeros(5, np.float32)],
    "overlap state": lambda p, m, v: [np.zeros((3, 4), np.float32), v[0].reshape(-1)[:5]],
    "non contiguous": lambda p, m, v: [
        np.zeros((3, 8), np.float32)[:, ::2],
        np.zeros(5, np.float32),
    ],
    "misaligned": lambda p, m, v: [np.zeros((3, 4), np.float32), _misaligned(5)],
}


@pytest.mark.parametrize("method", ["step", "prepare_step"])
@pytest.mark.parametrize("case", sorted(STEP_CASES))
def test_step_errors_match_the_cpu(case, method):
    cpu, cuda = _step_errors(STEP_CASES[case], method=method)
    assert cpu == cuda


@pytest.mark.parametrize("max_norm", ["big", -1.0, math.inf, math.nan])
def test_bad_max_norm_matches_the_cpu(max_norm):
    def grads(p, m, v):
        return _f32((3, 4), 5)

    cpu, cuda = _step_errors(grads, max_norm=max_norm)
    assert cpu == cuda


def test_velocity_errors_match_the_cpu():
    def wrong_length(module, conv):
        s = _adam(module, conv, _f32(3, 5), _f32(3, 5), _f32(3, 5))
        s.with_momentum(conv(_f32(3)), True)

    def aliases_state(module, conv):
        m = _f32(3, 5)
        s = _adam(module, conv, _f32(3, 5), m, _f32(3, 5))
        s.with_momentum(conv([np.zeros(3, np.float32), m[1]]), False)

    def stacked(module, conv):
        s = _adam(module, conv, _f32(3), _f32(3), _f32(3))
        s.with_momentum(conv(_f32(3)), False).with_momentum(conv(_f32(3)), False)

    for call in (wrong_length, aliases_state, stacked):
        cpu, cuda = _errors(call)
        assert cpu == cuda, call.__name__
    cpu, cuda = _step_errors(lambda p, m, v: [np.zeros((3, 4), np.float32), p[1]], momentum=True)
    assert cpu == cuda


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.1},
        {"learning_rate": "x"},
        {"learning_rate": True},
        {"epsilon": math.nan},
        {"beta1": 10**400},
        {"momentum": 0.5},
    ],
)
def test_hyperparameter_errors_match_the_cpu(kwargs):
    cpu, cuda = _errors(
        lambda m, c: m.Stepper(SGD, c(_f32(3)), [], []).set_hyperparameters(**kwargs)
    )
    assert cpu == cuda


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, "2", None])
def test_bad_grad_scale_matches_the_cpu(scale):
    """A host loss scale is checked before any CUDA call, with the CPU's messages."""
    if scale is None:
        scale = 10**400

    def call(module, conv):
        module.Stepper(SGD, conv(_f32(3)), [], []).step(conv(_f32(3)), None, scale)

    cpu, cuda = _errors(call)
    assert cpu == cuda


def test_bad_device_grad_scale():
    """A device scale must be one aligned float32/float64 element on the params' device."""
    s = _cuda.Stepper(SGD, _wrap(_f32(3)), [], [])
    grads = _wrap(_f32(3))
    with pytest.raises(TypeError, match="one float32 or float64 element"):
        s.step(grads, None, FakeCuda(np.ones(2, np.float32)))
    with pytest.raises(TypeError, match="one float32 or float64 element"):
        s.step(grads, None, FakeCuda(np.ones((), np.float16)))
    with pytest.raises(ValueError, match="misaligned"):
        s.step(grads, None, FakeCuda(_misaligned(1)))
    with pytest.raises(ValueError, match="device 1 but the params are on device 0"):
        s.step(grads, None, FakeCuda(np.ones((), np.float32), device=1))
    f = _cuda.Stepper(SGD, _wrap(_f32(3)), [], [], functional=True)
    with pytest.raises(ValueError, match="never skips"):
        f.step(grads, None, None, True)
    assert s.last_step_applied is True and s.t == 0


@pytest.mark.parametrize("t", [-1, 2**53])
def test_t_range_matches_the_cpu(t):
    def call(module, conv):
        module.Stepper(SGD, conv(_f32(3)), [], []).t = t

    cpu, cuda = _errors(call)
    assert cpu == cuda


def test_cuda_only_errors():
    with pytest.raises(
        TypeError, match=r"params\[1\]: expected a cupy.ndarray .*got numpy.ndarray"
    ):
        _cuda.Stepper(SGD, [FakeCuda(np.zeros(3, np.float32)), np.zeros(3, np.float32)], [], [])
    p = [FakeCuda(np.zeros(3, np.float32)), FakeCuda(np.zeros(4, np.float32), device=1)]
    with pytest.raises(
        ValueError, match=r"params\[1\]: is on device 1 but params\[0\] is on device 0"
    ):
        _cuda.Stepper(SGD, p, [], [])
    s = _cuda.Stepper(SGD, _wrap(_f32(3, 4)), [], [])
    g = [FakeCuda(np.zeros(3, np.float32)), FakeCuda(np.zeros(4, np.float32), device=1)]
    with pytest.raises(
        ValueError, match=r"grads\[1\]: is on device 1 but params\[0\] is on device 0"
    ):
        s.step(g)
    fake = FakeCuda(np.zeros(3, np.float32))
    fake.__cuda_array_interface__ = {"shape": (3,)}
    with pytest.raises(TypeError, match=r"grads\[0\]: malformed __cuda_array_interface__"):
        _cuda.Stepper(SGD, _wrap(_f32(3)), [], []).step([fake])


def test_strides_equal_to_c_order_are_contiguous():
    fake = FakeCuda(np.zeros((4, 1, 3), np.float32))
    fake.__cuda_array_interface__["strides"] = (12, 999, 4)  # extent-1 axes do not count
    _cuda.Stepper(SGD, [fake], [], [])
    fake.__cuda_array_interface__["strides"] = (4, 12, 16)
    with pytest.raises(ValueError, match="not C-contiguous"):
        _cuda.Stepper(SGD, [fake], [], [])


# ---- the stepper's own state, without a GPU -----------------------------------------------


def test_everything_but_a_launch_works_without_a_driver():
    """No CUDA call happens before a launch: this runs on a machine without a driver."""
    p = _f32((3, 4), 5)
    s = _adam(_cuda, _wrap, p, _f32((3, 4), 5), _f32((3, 4), 5))
    w = s.with_momentum(_wrap([None, np.zeros(5, np.float32)]), True)
    s.set_hyperparameters(learning_rate=0.01, beta1=0.8, beta2=0.9, epsilon=1e-8)
    w.set_hyperparameters(momentum=0.7)
    s.t = 41
    assert (s.t, w.t, len(s), s.has_momentum, w.has_momentum) == (41, 41, 2, False, True)
    assert w.prepare_step(_wrap(_f32((3, 4), 5)))


def test_hyperparameters_and_t_like_the_cpu():
    """(3) A momentum wrapper and its inner stepper share t and the rule fields; the inner's
    changes never touch the wrapper's momentum, on both backends alike."""
    seen = []
    for module, conv in ((_cpu, lambda x: x), (_cuda, _wrap)):
        s = module.Stepper(ADAM, conv(_f32(3)), [conv(_f32(3)), conv(_f32(3))], ["m", "v"])
        s.set_hyperparameters(learning_rate=0.25, beta1=0.5, beta2=0.75, epsilon=0.125)
        w = s.with_momentum(conv(_f32(3)), False)
        w.set_hyperparameters(momentum=0.7)
        s.set_hyperparameters(learning_rate=0.5)  # the inner's change: the wrapper sees it...
        w.t = 12  # ...and they share t
        assert w.hyperparameters()["momentum"] == 0.7  # ...but keeps its own momentum
        seen.append((s.hyperparameters(), w.hyperparameters(), s.t, w.t))
    assert seen[0] == seen[1]
    assert seen[1][1]["learning_rate"] == 0.5 and seen[1][0]["momentum"] == 0.0


@pytest.mark.skipif(not NO_DRIVER, reason="a driver for this CUDA runtime is present")
def test_driver_too_old_is_a_clear_error():
    """(9) The first launch checks the driver against the runtime and names both."""
    s = _cuda.Stepper(SGD, _wrap(_f32(3)), [], [])
    with pytest.raises(RuntimeError) as err:
        s.step(_wrap(_f32(3)))
    major, minor = divmod(_cuda.RUNTIME_VERSION // 10, 100)
    message = str(err.value)
    assert f"CUDA {major}.{minor} runtime" in message and "cudaDriverGetVersion" in message
    assert f"CUDART_VERSION {_cuda.RUNTIME_VERSION}" in message and "driver" in message
    assert s.t == 0  # nothing happened
    with pytest.raises(ValueError, match="max_norm"):  # validation still comes first
        s.step(_wrap(_f32(3)), -1.0)


def test_launches_split_by_dtype_and_modifier():
    """(8) Plain and momentum tensors of one dtype run separate (smaller) kernels: one launch
    per (dtype, modifier) present, over contiguous chunk ranges covering every chunk."""
    shapes = [(70_000,), (3,), (5,), (40_000,), (7,)]
    dtypes = [np.float32, np.float16, np.float32, np.float64, np.float32]
    params = [np.zeros(s, d) for s, d in zip(shapes, dtypes)]
    states = [
        np.zeros(s, np.float64 if d == np.float64 else np.float32) for s, d in zip(shapes, dtypes)
    ]
    s = _cuda.Stepper(ADAGRAD, _wrap(params), [_wrap(states)], ["accu"])
    velocity = [np.zeros_like(x) if i in (0, 3) else None for i, x in enumerate(states)]
    w = s.with_momentum(_wrap(velocity), False)
    grads = _wrap([np.zeros(s, d) for s, d in zip(shapes, dtypes)])
    assert [x[:2] for x in s.prepare_step(grads)] == [
        ("float16", False),
        ("float32", False),
        ("float64", False),
    ]
    plan = w.prepare_step(grads)
    assert [x[:2] for x in plan] == [
        ("float16", False),
        ("float32", False),
        ("float32", True),
        ("float64", True),
    ]
    chunks = sum(-(-int(np.prod(x)) // 32768) for x in shapes)
    assert plan[0][2] == 0 and plan[-1][3] == chunks
    assert all(a[3] == b[2] for a, b in zip(plan, plan[1:]))
    assert plan[2][3] - plan[2][2] == 3  # the 70000-element float32 tensor: 3 chunks


def test_none_grads_freeze_their_param():
    s = _cuda.Stepper(SGD, _wrap(_f32(3, 4)), [], [])
    assert s.prepare_step([None, FakeCuda(np.zeros(4, np.float32))])


def test_functional_steppers_are_built_the_same():
    s = _cuda.Stepper(SGD, _wrap(_f32(3)), [], [], functional=True)
    s.t = 3
    assert s.t == 3 and len(s) == 1


def test_norm_functions_validate_before_any_cuda_call():
    x = _wrap(_f32(3))
    with pytest.raises(ValueError, match="does not cover"):
        _cuda.norm_constraint(x[0], x[0], 2**62, 2**62, 4, 1.0, 1e-7)
    with pytest.raises(ValueError, match="does not cover"):
        _cuda.norm_constraint(x[0], x[0], -2, -2, 1, 1.0, 1e-7)
    with pytest.raises(TypeError, match=r"xs\[1\]: dtype float64 differs"):
        _cuda.sum_squares(_wrap([np.zeros(3, np.float32), np.zeros(3, np.float64)]))
    with pytest.raises(ValueError, match="outputs"):
        _cuda.total_norm_constraint(x, [], 1.0, 1e-7)
    with pytest.raises(ValueError, match="bandwidth_probe"):
        _cuda.bandwidth_probe([], [])


def test_host_overhead_benchmark_runs():
    script = Path(__file__).resolve().parents[1] / "bench" / "cuda_host_overhead.py"
    run = subprocess.run(
        [sys.executable, str(script), "--rounds", "20", "--tensors", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "12 tensors" in run.stdout and "median" in run.stdout


def test_master_weights_need_16_bit_params_like_the_cpu():
    def call(module, conv):
        module.Stepper(SGD, conv(_f32(3)), [conv(_f32(3))], ["master"])

    cpu, cuda = _errors(call)
    assert cpu == cuda and "master weights are for float16 and bfloat16" in cpu[1]
    s = _cuda.Stepper(SGD, _wrap(_f32(3, dtype=np.float16)), [_wrap(_f32(3))], ["master"])
    assert len(s) == 1
