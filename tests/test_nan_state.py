"""NaN and Inf, already in the state or arriving in the grads, end up exactly where the NumPy
reference puts them. The reference's np.maximum keeps a NaN in either operand, so adamax's u and
amsgrad's v_hat must keep a NaN they already hold (a plain ``a > b ? a : b`` drops it)."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import HYPER, MU, REF, STATE_DTYPE, STATE_NAMES, STEP_RULES, assert_close

DTYPES = [np.float64, np.float32, np.float16]
N = 67  # vector loops plus a scalar tail on every instruction set
POISONED = [0, 17, 66]  # first element, a middle lane, the tail
STEP = 3


def _poisons():
    """(what, value): a state buffer or the grads, poisoned at POISONED."""
    out = []
    for rule, names in STATE_NAMES.items():
        out += [(rule, f"state:{name}", np.nan) for name in names]
        out += [(rule, "grads", v) for v in (np.nan, np.inf, -np.inf)]
        out.append((rule, "state:velocity", np.nan))
    return out


def _make(rng, rule, modifier, dtype, target, value):
    state_dtype = STATE_DTYPE[np.dtype(dtype)]
    params = rng.standard_normal(N).astype(dtype)
    grads = (rng.uniform(0.05, 2.0, N) * rng.choice([-1.0, 1.0], N)).astype(dtype)
    # Positive state values are valid for every buffer (accu, v, u and v_hat are >= 0).
    states = {name: rng.uniform(0.1, 1.0, N).astype(state_dtype) for name in STATE_NAMES[rule]}
    if modifier != "none" or target == "state:velocity":
        states["velocity"] = rng.standard_normal(N).astype(state_dtype)
    if target == "grads":
        grads[POISONED] = value
    else:
        states[target.split(":", 1)[1]][POISONED] = value
    return params, grads, states


def _call(module, rule, params, grads, states, modifier, max_norm):
    kwargs = dict(HYPER[rule], max_norm=max_norm)
    if rule in STEP_RULES:
        kwargs["step"] = STEP
    if "velocity" in states:
        kwargs.update(velocity=states["velocity"], momentum=MU, nesterov=modifier == "nesterov")
    ordered = [states[name] for name in STATE_NAMES[rule]]
    return getattr(module, rule)(params, grads, *ordered, **kwargs)


def assert_same_specials(got, want, tol, what):
    """NaN and +-Inf at exactly the same positions, finite values within ``tol``."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(
        np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +Inf positions"
    )
    np.testing.assert_array_equal(
        np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -Inf positions"
    )
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite], tol, what)


@pytest.mark.parametrize("max_norm", [None, 5.0], ids=["plain", "clipped"])
@pytest.mark.parametrize("modifier", ["none", "momentum", "nesterov"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("rule, target, value", _poisons())
def test_nan_and_inf_propagate_like_reference(
    xp, rng, rule, target, value, dtype, modifier, max_norm
):
    if target == "state:velocity" and modifier == "none":
        modifier = "momentum"
    params, grads, states = _make(rng, rule, modifier, dtype, target, value)
    ref_params = params.astype(np.float64)
    ref_states = {k: v.astype(np.float64) for k, v in states.items()}
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, inf / inf: expected here
        want_norm = _call(
            REF, rule, ref_params, grads.astype(np.float64), ref_states, modifier, max_norm
        )
    if np.dtype(dtype) == np.float16:  # the fused step stores float16 params
        ref_params = ref_params.astype(np.float16).astype(np.float64)

    dev_params = xp.asarray(params)
    dev_states = {k: xp.asarray(v) for k, v in states.items()}
    got_norm = _call(
        fu.functional, rule, dev_params, xp.asarray(grads), dev_states, modifier, max_norm
    )

    what = f"{rule}/{modifier}/{np.dtype(dtype).name} {target}={value}"
    tol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5, np.dtype(np.float16): 3e-3}
    assert_same_specials(xp.get(dev_params), ref_params, tol[np.dtype(dtype)], f"{what} params")
    for name, ref in ref_states.items():
        state_tol = 1e-12 if np.dtype(dtype) == np.float64 else 1e-5
        assert_same_specials(xp.get(dev_states[name]), ref, state_tol, f"{what} {name}")
    if max_norm is not None:
        assert_same_specials(np.array([float(got_norm)]), np.array([want_norm]), 1e-6, "norm")


@pytest.mark.parametrize("rule, name", [("adamax", "u"), ("amsgrad", "v_hat")])
def test_updater_keeps_a_nan_in_its_running_maximum(xp, rule, name):
    """Through the public Updater: a NaN loaded into u / v_hat stays NaN step after step, as
    np.maximum keeps it, instead of being replaced by the other operand."""
    params = [xp.asarray(np.linspace(-1, 1, N))]
    upd = getattr(fu, rule)(params, **HYPER[rule])
    upd.step([xp.asarray(np.full(N, 0.5))])
    checkpoint = upd.state_dict()
    checkpoint["state"][name][0][POISONED] = np.nan
    upd.load_state_dict(checkpoint)
    for _ in range(3):
        upd.step([xp.asarray(np.full(N, 0.5))])
    state = xp.get(upd.state[name][0])
    expected = np.zeros(N, bool)
    expected[POISONED] = True
    np.testing.assert_array_equal(np.isnan(state), expected)
    np.testing.assert_array_equal(np.isnan(xp.get(upd.params[0])), expected)
