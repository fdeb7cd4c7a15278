"""CUDA backend: validation errors, devices and the build (GPU only, except the import test).

The CUDA binding uses the CPU's shared validator, so the same bad call raises the same
exception with the same message on both backends, before anything is launched.
"""

from __future__ import annotations

import subprocess
import sys

import fusedupdates as fu
import numpy as np
import pytest


def test_import_never_needs_cupy_or_a_gpu():
    code = (
        "import sys; sys.modules['cupy'] = None; import fusedupdates as fu; "
        "print(fu.build_info()['cuda'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("True", "False")


try:
    import cupy

    _NUM_GPUS = cupy.cuda.runtime.getDeviceCount()
except Exception:  # no CuPy, no driver
    cupy, _NUM_GPUS = None, 0
needs_gpu = pytest.mark.skipif(
    _NUM_GPUS == 0 or not fu.build_info()["cuda"], reason="needs CuPy, a GPU and the CUDA module"
)


def _message(fn, xp):
    with pytest.raises((TypeError, ValueError)) as err:
        fn(xp)
    return err.type, str(err.value)


def _bad_calls():
    def shape_mismatch(xp):
        upd = fu.adam([xp.zeros((3, 4), np.float32), xp.zeros(5, np.float32)])
        upd.step([xp.zeros((3, 4), np.float32), xp.zeros(6, np.float32)])

    def dtype_mismatch(xp):
        upd = fu.sgd([xp.zeros(3, np.float32)], learning_rate=0.1)
        upd.step([xp.zeros(3, np.float64)])

    def grad_aliases_param(xp):
        p = xp.zeros(3, np.float32)
        fu.sgd([p], learning_rate=0.1).step([p])

    def same_param_twice(xp):
        p = xp.zeros(3, np.float32)
        fu.sgd([p, p], learning_rate=0.1)

    def non_contiguous_param(xp):
        fu.sgd([xp.zeros((4, 4), np.float32)[:, ::2]], learning_rate=0.1)

    def unsupported_dtype(xp):
        fu.sgd([xp.zeros(3, np.int32)], learning_rate=0.1)

    def wrong_state_dtype(xp):
        p = xp.zeros(3, np.float16)
        fu.functional.adagrad(p, xp.zeros(3, np.float16), xp.zeros(3, np.float16))

    return [
        shape_mismatch,
        dtype_mismatch,
        grad_aliases_param,
        same_param_twice,
        non_contiguous_param,
        unsupported_dtype,
        wrong_state_dtype,
    ]


@needs_gpu
def test_build_info_reports_cuda():
    assert fu.build_info()["cuda"] is True


@needs_gpu
@pytest.mark.parametrize("call", _bad_calls(), ids=lambda f: f.__name__)
def test_same_errors_as_the_cpu(call):
    assert _message(call, cupy) == _message(call, np)


@needs_gpu
def test_numpy_grads_for_cupy_params_are_rejected():
    upd = fu.sgd([cupy.zeros(3, np.float32)], learning_rate=0.1)
    with pytest.raises(TypeError):
        upd.step([np.zeros(3, np.float32)])


class _OnOtherDevice:
    """A CUDA array view that claims another device (a second GPU without needing one)."""

    def __init__(self, array, device_id):
        self.__cuda_array_interface__ = array.__cuda_array_interface__
        self.device = type("Device", (), {"id": device_id})()
        self._keep = array


@needs_gpu
def test_device_mismatch_is_a_value_error_naming_the_array():
    p = [cupy.zeros(3, np.float32), cupy.zeros(4, np.float32)]
    grads = [cupy.ones(3, np.float32), _OnOtherDevice(cupy.ones(4, np.float32), 7)]
    upd = fu.sgd(p, learning_rate=0.1)
    message = r"grads\[1\]: is on device 7 but params\[0\] is on device"
    with pytest.raises(ValueError, match=message):
        upd.step(grads)
    assert float(cupy.abs(p[0]).sum()) == 0.0 and upd.t == 0  # nothing was launched


@pytest.mark.skipif(_NUM_GPUS < 2, reason="needs two GPUs")
def test_device_mismatch_on_two_gpus():
    with cupy.cuda.Device(0):
        p = cupy.zeros(3, np.float32)
    with cupy.cuda.Device(1):
        g = cupy.zeros(3, np.float32)
    upd = fu.sgd([p], learning_rate=0.1)
    message = r"grads\[0\]: is on device 1 but params\[0\] is on device 0"
    with pytest.raises(ValueError, match=message):
        upd.step([g])


@pytest.mark.skipif(_NUM_GPUS < 2, reason="needs two GPUs")
def test_updater_on_second_gpu(rng):
    with cupy.cuda.Device(1):
        p = cupy.asarray(rng.standard_normal(100).astype(np.float32))
        g = cupy.ones(100, np.float32)
    upd = fu.adam([p])
    norm = upd.step([g], max_norm=1.0)  # current device is 0: the backend switches
    assert cupy.cuda.Device().id == 0  # ...and switches back
    assert norm.device.id == 1 and upd.state["m"][0].device.id == 1
    assert float(norm) == pytest.approx(10.0)
