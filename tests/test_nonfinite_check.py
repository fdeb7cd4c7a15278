"""skip_nonfinite without max_norm: the CPU checks the grads' bits (no sum of squares). Every
storage dtype, every kind of non-finite value at the edges and inside of the vectorised
chunks and of each thread's stretch, and the largest finite values, which must not skip."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest

DTYPES = ["float16", "bfloat16", "float32", "float64"]
SIZES = [1, 7, 4097, (1 << 20) + 3]


def _dtype(name):
    if name == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _bad_values(dtype):
    """NaN with and without the sign bit, a signalling NaN, +Inf and -Inf, as raw bits."""
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[dtype.itemsize]
    inf = np.array([np.inf], np.float32).astype(dtype)
    quiet = np.array([np.nan], np.float32).astype(dtype).view(bits)[0]
    inf_bits = inf.view(bits)[0]
    sign = bits(1) << bits(8 * dtype.itemsize - 1)
    raw = [quiet, quiet | sign, inf_bits | bits(1), inf_bits, inf_bits | sign]
    return np.array(raw, bits).view(dtype)


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_every_nonfinite_value_anywhere_skips(rng, dtype_name, n):
    dtype = _dtype(dtype_name)
    params = [rng.standard_normal(n).astype(np.float32).astype(dtype) for _ in range(2)]
    upd = fu.adam(params, learning_rate=1e-3)
    before = [p.copy() for p in params]
    grads = [rng.standard_normal(n).astype(np.float32).astype(dtype) for _ in range(2)]
    positions = sorted({0, n - 1, n // 2, min(n - 1, 63), min(n - 1, 64)})
    for value in _bad_values(dtype):
        for which in range(2):
            for at in positions:
                bad = [g.copy() for g in grads]
                bad[which][at] = value
                upd.step(bad, skip_nonfinite=True)
                assert not upd.last_step_applied, (value, which, at)
    assert upd.t == 0
    for p, b in zip(params, before):
        assert p.tobytes() == b.tobytes()
    upd.step(grads, skip_nonfinite=True)
    assert upd.last_step_applied and upd.t == 1


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_largest_finite_values_do_not_skip(dtype_name):
    dtype = _dtype(dtype_name)
    n = 70001
    finfo = pytest.importorskip("ml_dtypes").finfo if dtype_name == "bfloat16" else np.finfo
    big = finfo(dtype).max
    grads = [np.zeros(n, dtype)]
    grads[0][::3] = np.array(big, dtype)
    grads[0][1::3] = -np.array(big, dtype)
    grads[0][2::3] = -0.0
    p = [np.zeros(n, dtype)]
    upd = fu.sgd(p, learning_rate=0.0)
    upd.step(grads, skip_nonfinite=True)
    assert upd.last_step_applied and upd.t == 1


def test_all_param_groups_and_dtypes_are_checked(rng):
    """A NaN in the last of several plans (float16 params beside float32 ones) still skips."""
    p32 = [rng.standard_normal(5000).astype(np.float32)]
    p16 = [rng.standard_normal(5000).astype(np.float16)]
    upd = fu.adam(p32 + p16)
    g16 = np.ones(5000, np.float16)
    g16[-1] = np.nan
    upd.step([np.ones(5000, np.float32), g16], skip_nonfinite=True)
    assert not upd.last_step_applied and upd.t == 0
