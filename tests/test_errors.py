"""Bad inputs raise before anything is written: params, state and ``t`` stay unchanged."""

from __future__ import annotations

import math

import fusedupdates as fu
import numpy as np
import pytest
from _support import HYPER, RefRunner, check_matches, make_updater

SHAPES = [(4,), (3, 2), (4,)]


def _init():
    return [np.linspace(-1.0, 1.0, 4), np.arange(6.0).reshape(3, 2) / 7, np.linspace(2, 3, 4)]


def _grads(xp, dtype=np.float64):
    return [xp.asarray(np.full(s, 0.25, dtype=dtype)) for s in SHAPES]


@pytest.fixture
def setup(xp):
    """An adam updater with Nesterov momentum that has taken two steps."""
    init = _init()
    params = [xp.asarray(p) for p in init]
    upd = make_updater(fu, "adam", params, "nesterov", **HYPER["adam"])
    runner = RefRunner("adam", init, "nesterov", **HYPER["adam"])
    for _ in range(2):
        upd.step(_grads(xp))
        runner.step([xp.get(g) for g in _grads(xp)])
    return xp, upd, runner


def snapshot(xp, upd):
    states = {k: [None if s is None else xp.get(s) for s in v] for k, v in upd.state.items()}
    return upd.t, [xp.get(p) for p in upd.params], states


def assert_unchanged(xp, upd, snap):
    t, params, states = snap
    assert upd.t == t
    for p, want in zip(upd.params, params):
        np.testing.assert_array_equal(xp.get(p), want)
    for k, v in states.items():
        for s, want in zip(upd.state[k], v):
            if want is not None:
                np.testing.assert_array_equal(xp.get(s), want)


def assert_step_raises(setup, grads, exc, match=None, **kw):
    """The bad step raises ``exc``, changes nothing, and the updater still works afterwards."""
    xp, upd, runner = setup
    snap = snapshot(xp, upd)
    with pytest.raises(exc, match=match):
        upd.step(grads, **kw)
    assert_unchanged(xp, upd, snap)
    upd.step(_grads(xp))
    runner.step([xp.get(g) for g in _grads(xp)])
    check_matches(upd, runner, xp, np.float64, "after a rejected step")


def test_too_few_grads(setup):
    assert_step_raises(setup, _grads(setup[0])[:2], ValueError)


def test_too_many_grads(setup):
    xp = setup[0]
    assert_step_raises(setup, [*_grads(xp), xp.asarray(np.ones(4))], ValueError)


def test_shape_mismatch_in_last_grad_names_it(setup):
    xp = setup[0]
    grads = _grads(xp)
    grads[2] = xp.asarray(np.ones((2, 2)))
    assert_step_raises(setup, grads, ValueError, match=r"grads\[2\]")


def test_transposed_shape_mismatch(setup):
    xp = setup[0]
    grads = _grads(xp)
    grads[1] = xp.asarray(np.ones((2, 3)))
    assert_step_raises(setup, grads, ValueError, match=r"grads\[1\]")


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.complex128])
def test_grad_dtype_mismatch_in_last(setup, dtype):
    xp = setup[0]
    grads = _grads(xp)
    grads[2] = xp.asarray(np.ones(4, dtype=dtype))
    assert_step_raises(setup, grads, TypeError)


def test_grad_as_python_list(setup):
    xp = setup[0]
    grads = _grads(xp)
    grads[2] = [0.1, 0.2, 0.3, 0.4]
    assert_step_raises(setup, grads, TypeError)


def test_grads_as_tuple_of_floats(setup):
    assert_step_raises(setup, (0.1, 0.2, 0.3), TypeError)


@pytest.mark.parametrize("i, j", [(0, 0), (2, 0), (2, 2), (1, 1)])
def test_grad_aliasing_a_param(setup, i, j):
    _, upd, _ = setup
    grads = _grads(setup[0])
    grads[i] = upd.params[j]
    assert_step_raises(setup, grads, ValueError)


@pytest.mark.parametrize("name, i, j", [("m", 0, 0), ("v", 2, 2), ("velocity", 2, 0), ("m", 1, 1)])
def test_grad_aliasing_a_state_buffer(setup, name, i, j):
    _, upd, _ = setup
    grads = _grads(setup[0])
    grads[i] = upd.state[name][j]
    assert_step_raises(setup, grads, ValueError)


def test_grad_aliasing_through_a_view(setup):
    _, upd, _ = setup
    grads = _grads(setup[0])
    grads[2] = upd.state["m"][0].reshape(4)[:]  # a different object on the same memory
    assert_step_raises(setup, grads, ValueError)


def test_non_contiguous_grad_is_rejected_or_handled(setup):
    xp, upd, runner = setup
    grads = _grads(xp)
    base = np.arange(8.0) / 10
    grads[0] = xp.asarray(base)[::2]
    snap = snapshot(xp, upd)
    try:
        upd.step(grads)
    except ValueError:
        assert_unchanged(xp, upd, snap)
        return
    runner.step([base[::2], *[xp.get(g) for g in grads[1:]]])
    check_matches(upd, runner, xp, np.float64, "non-contiguous grad")


@pytest.mark.parametrize("max_norm", [math.nan, math.inf, -1.0])
def test_bad_max_norm(setup, max_norm):
    assert_step_raises(setup, _grads(setup[0]), ValueError, max_norm=max_norm)


# ---- hyperparameters ---------------------------------------------------------------------

BAD_HYPER = [
    (rule, name, value)
    for rule in HYPER
    for name in HYPER[rule]
    for value in (math.nan, math.inf, -math.inf)
]
BAD_HYPER += [
    (rule, name, value)
    for rule in ("rmsprop", "adadelta", "adam", "adamax", "amsgrad")
    for name in HYPER[rule]
    if name in ("rho", "beta1", "beta2")
    for value in (1.0, -0.1, 1.5)
]
BAD_HYPER += [(rule, "epsilon", -1e-3) for rule in HYPER if "epsilon" in HYPER[rule]]


@pytest.mark.parametrize("rule, name, value", BAD_HYPER)
def test_bad_hyperparameter_at_construction(xp, rule, name, value):
    params = [xp.asarray(p) for p in _init()]
    with pytest.raises(ValueError):
        getattr(fu, rule)(params, **{**HYPER[rule], name: value})
    for p, want in zip(params, _init()):
        np.testing.assert_array_equal(xp.get(p), want)


@pytest.mark.parametrize("modifier", ["none", "momentum"])
@pytest.mark.parametrize("rule, name, value", BAD_HYPER)
def test_bad_hyperparameter_as_attribute(xp, rule, name, value, modifier):
    init = _init()
    upd = make_updater(fu, rule, [xp.asarray(p) for p in init], modifier, **HYPER[rule])
    upd.step(_grads(xp))
    snap = snapshot(xp, upd)
    with pytest.raises(ValueError):  # at assignment or, at the latest, at the next step
        setattr(upd, name, value)
        upd.step(_grads(xp))
    assert_unchanged(xp, upd, snap)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_bad_momentum(xp, value):
    params = [xp.asarray(p) for p in _init()]
    with pytest.raises(ValueError):
        fu.momentum(params, learning_rate=0.1, momentum=value)
    with pytest.raises(ValueError):
        fu.apply_nesterov_momentum(fu.adam(params), momentum=value)
    upd = fu.apply_momentum(fu.rmsprop(params), momentum=0.5)
    snap = snapshot(xp, upd)
    with pytest.raises(ValueError):
        upd.momentum = value
        upd.step(_grads(xp))
    assert_unchanged(xp, upd, snap)


# ---- construction ------------------------------------------------------------------------


def test_non_contiguous_param(xp):
    with pytest.raises(ValueError):
        fu.adam([xp.asarray(np.zeros((4, 6)))[:, ::2]])


def test_read_only_param():
    p = np.zeros(5)
    p.flags.writeable = False
    with pytest.raises(ValueError):
        fu.adam([np.ones(3), p])


def test_same_param_twice(xp):
    p = xp.asarray(np.zeros(5))
    with pytest.raises(ValueError):
        fu.sgd([p, xp.asarray(np.ones(2)), p], learning_rate=0.1)
    empty = xp.asarray(np.zeros(0))  # no memory to overlap: caught by identity
    with pytest.raises(ValueError, match=r"params\[2\] is the same array as params\[0\]"):
        fu.adam([empty, xp.asarray(np.ones(2)), empty])


def test_overlapping_params(xp):
    base = xp.asarray(np.zeros(10))
    with pytest.raises(ValueError):
        fu.adam([base[:6], base[4:]])
    with pytest.raises(ValueError):
        fu.adam([base, base.reshape(2, 5)])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.complex128, np.complex64, bool])
def test_unsupported_param_dtype(xp, dtype):
    with pytest.raises(TypeError):
        fu.adam([xp.asarray(np.zeros(3)), xp.asarray(np.zeros(3, dtype=dtype))])


@pytest.mark.parametrize("params", [[[1.0, 2.0]], (1.0, 2.0), [1.0], [(1.0, 2.0)]])
def test_wrong_param_type(params):
    with pytest.raises(TypeError):
        fu.sgd(params, learning_rate=0.1)


def test_apply_momentum_to_unknown_param(xp):
    upd = fu.adam([xp.asarray(np.zeros(3))])
    with pytest.raises(ValueError):
        fu.apply_momentum(upd, params=[xp.asarray(np.zeros(3))])


def test_zero_size_params_are_noops(xp, rng):
    init = [np.zeros((0,)), rng.standard_normal(5), np.zeros((2, 0, 3))]
    params = [xp.asarray(p) for p in init]
    upd = make_updater(fu, "amsgrad", params, "momentum", **HYPER["amsgrad"])
    runner = RefRunner("amsgrad", init, "momentum", **HYPER["amsgrad"])
    for _ in range(3):
        grads = [np.zeros((0,)), rng.standard_normal(5), np.zeros((2, 0, 3))]
        assert upd.step([xp.asarray(g) for g in grads]) is None
        runner.step(grads)
        assert float(upd.step([xp.asarray(g) for g in grads], max_norm=1.0)) > 0
        runner.step(grads, max_norm=1.0)
    check_matches(upd, runner, xp, np.float64, "zero-size")
    assert upd.t == 6
