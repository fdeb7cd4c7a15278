"""``out=`` of the norm constraints is checked once, the same way on every kernel path, before
anything is written; errors name the arguments the user passed (``tensor_var``,
``tensor_vars[i]``, ``out``), never the native module's internal ``x`` / ``xs``."""

from __future__ import annotations

import re

import fusedupdates as fu
import numpy as np
import pytest

# One case per path of fu.norm_constraint: reduced axes adjacent (one native call on the
# array) and interleaved with kept ones (the transposed-copy fallback).
PATHS = {
    "adjacent": ((4, 6), (0,)),
    "default axes": ((3, 4, 5), None),
    "interleaved": ((3, 4, 5), (0, 2)),
}
INTERNAL_NAMES = re.compile(r"\b(x|xs)\[")


def _bad_outs(module, shape):
    """name -> (bad out array, exception type, message pattern)."""
    wrong = tuple(reversed(shape))
    broadcastable = (1,) + shape[1:]
    cases = {
        "int64": (module.zeros(shape, np.int64), TypeError, "out: dtype int64"),
        "float16": (module.zeros(shape, np.float16), TypeError, "out: dtype float16"),
        "float64": (module.zeros(shape, np.float64), TypeError, "out: dtype float64"),
        "transposed shape": (module.zeros(wrong, np.float32), ValueError, "out: shape"),
        "broadcastable shape": (module.zeros(broadcastable, np.float32), ValueError, "out: shape"),
        "fewer dims": (module.zeros(shape[1:], np.float32), ValueError, "out: shape"),
        "fortran order": (
            module.zeros(shape, np.float32, order="F"),
            ValueError,
            "out: array is not C-contiguous",
        ),
        "strided": (
            module.zeros(shape[:-1] + (2 * shape[-1],), np.float32)[..., ::2],
            ValueError,
            "out: array is not C-contiguous",
        ),
        "a list": ([[0.0]], TypeError, "out: expected an array"),
    }
    if module is np:
        read_only = np.zeros(shape, np.float32)
        read_only.flags.writeable = False
        cases["read-only"] = (read_only, ValueError, "out: array is read-only")
    return cases


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "bad",
    [
        "int64",
        "float16",
        "float64",
        "transposed shape",
        "broadcastable shape",
        "fewer dims",
        "fortran order",
        "strided",
        "a list",
        "read-only",
    ],
)
def test_bad_out_is_rejected_before_writing(xp, rng, path, bad):
    shape, axes = PATHS[path]
    cases = _bad_outs(xp.module, shape)
    if bad not in cases:
        pytest.skip(f"{bad}: not expressible on {xp.name}")
    out, error, message = cases[bad]
    x0 = rng.standard_normal(shape).astype(np.float32) * 10  # norms above max_norm
    x = xp.asarray(x0)
    before = None if isinstance(out, list) else xp.get(out).copy()
    with pytest.raises(error, match=re.escape(message)) as info:
        fu.norm_constraint(x, 1.0, norm_axes=axes, out=out)
    assert not INTERNAL_NAMES.search(str(info.value)), str(info.value)
    if before is not None:
        np.testing.assert_array_equal(xp.get(out), before)  # bit for bit: nothing written
    np.testing.assert_array_equal(xp.get(x), x0)


@pytest.mark.parametrize("path", PATHS)
def test_out_overlapping_the_input_is_rejected(rng, path):
    shape, axes = PATHS[path]
    n = int(np.prod(shape))
    buffer = rng.standard_normal(n + 1).astype(np.float32) * 10
    before = buffer.copy()
    x, out = buffer[:n].reshape(shape), buffer[1:].reshape(shape)
    with pytest.raises(ValueError, match="out: shares memory with tensor_var"):
        fu.norm_constraint(x, 1.0, norm_axes=axes, out=out)
    np.testing.assert_array_equal(buffer, before)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("path", PATHS)
def test_good_out_on_every_path(xp, rng, path, dtype):
    """A correct out (a separate array, or tensor_var itself) gets the same result as none."""
    shape, axes = PATHS[path]
    x0 = (rng.standard_normal(shape) * 10).astype(dtype)
    fresh = xp.get(fu.norm_constraint(xp.asarray(x0), 1.0, norm_axes=axes))
    out = xp.zeros(shape, dtype)
    assert fu.norm_constraint(xp.asarray(x0), 1.0, norm_axes=axes, out=out) is out
    np.testing.assert_array_equal(xp.get(out), fresh)
    x = xp.asarray(x0)
    assert fu.norm_constraint(x, 1.0, norm_axes=axes, out=x) is x
    np.testing.assert_array_equal(xp.get(x), fresh)


@pytest.mark.parametrize("path", PATHS)
def test_tensor_var_errors_name_tensor_var(xp, path):
    shape, axes = PATHS[path]
    with pytest.raises(TypeError, match=r"^tensor_var: unsupported dtype int64"):
        fu.norm_constraint(xp.asarray(np.ones(shape, np.int64)), 1.0, norm_axes=axes)
    with pytest.raises(TypeError, match=r"^tensor_var: expected a numpy.ndarray"):
        fu.norm_constraint([[1.0, 2.0]], 1.0, norm_axes=axes)


def test_total_norm_constraint_errors_name_tensor_vars_and_out(xp):
    f32 = [xp.asarray(np.ones(3, np.float32)), xp.asarray(np.ones(4, np.float32))]
    cases = [
        (dict(tensor_vars=[f32[0], xp.asarray(np.ones(3))]), TypeError, r"^tensor_vars\[1\]: "),
        (dict(tensor_vars=[xp.asarray(np.ones(3, np.int32))]), TypeError, r"^tensor_vars\[0\]: "),
        (dict(tensor_vars=f32, out=[f32[0], xp.asarray(np.ones(4))]), TypeError, r"^out\[1\]: "),
        (dict(tensor_vars=f32, out=[f32[0], xp.zeros(5, np.float32)]), ValueError, r"^out\[1\]: "),
        (dict(tensor_vars=f32, out=[f32[0]]), ValueError, r"^out: got 1 arrays for 2"),
    ]
    for kwargs, error, pattern in cases:
        snapshot = [xp.get(a).copy() for a in kwargs.get("out", [])]
        with pytest.raises(error, match=pattern) as info:
            fu.total_norm_constraint(max_norm=1e-3, **kwargs)
        assert not INTERNAL_NAMES.search(str(info.value)), str(info.value)
        for a, s in zip(kwargs.get("out", []), snapshot):
            np.testing.assert_array_equal(xp.get(a), s)
