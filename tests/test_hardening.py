"""Odd inputs at the boundary: each raises TypeError/ValueError with nothing changed, or works
exactly as documented. One test per defect found by the hardening review."""

from __future__ import annotations

import math

import fusedupdates as fu
import numpy as np
import pytest
from _support import HYPER, RefRunner, check_matches
from fusedupdates import _cpu

HUGE = 10**400  # a Python int no double can hold


def _misaligned(n: int, dtype=np.float64) -> np.ndarray:
    item = np.dtype(dtype).itemsize
    a = np.zeros(item * n + 1, np.uint8)[1:].view(dtype)
    assert not a.flags.aligned
    return a


def _snapshot(upd):
    return (
        upd.t,
        [p.copy() for p in upd.params],
        {k: [None if s is None else s.copy() for s in v] for k, v in upd.state.items()},
    )


def _assert_unchanged(upd, snap):
    t, params, states = snap
    assert upd.t == t
    for p, want in zip(upd.params, params):
        np.testing.assert_array_equal(p, want)
    for k, v in states.items():
        for s, want in zip(upd.state[k], v):
            if want is not None:
                np.testing.assert_array_equal(s, want)


# ---- misaligned arrays --------------------------------------------------------------------


def test_misaligned_param_is_rejected():
    with pytest.raises(ValueError, match=r"params\[1\].*not aligned"):
        fu.adam([np.zeros(3), _misaligned(4)])


def test_misaligned_grad_is_rejected_before_anything_is_written():
    upd = fu.apply_momentum(fu.adam([np.ones(4), np.ones(5)]))
    upd.step([np.ones(4), np.ones(5)])
    snap = _snapshot(upd)
    g = _misaligned(5)
    g[:] = 0.5
    with pytest.raises(ValueError, match=r"grads\[1\].*not aligned"):
        upd.step([np.ones(4), g])
    _assert_unchanged(upd, snap)


def test_misaligned_state_is_rejected_by_functional():
    m = _misaligned(4)
    with pytest.raises(ValueError, match="not aligned"):
        fu.functional.adam(np.ones(4), np.ones(4), m, np.zeros(4), step=1)


# ---- arrays changed after the updater was built --------------------------------------------


def test_param_made_read_only_after_construction_is_not_written():
    p = np.ones(6)
    upd = fu.sgd([p], learning_rate=0.1)
    p.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\].*read-only"):
        upd.step([np.ones(6)])
    np.testing.assert_array_equal(p, np.ones(6))
    assert upd.t == 0


# ---- hyperparameters: 0-d arrays, huge ints, wrong types -----------------------------------


def test_zero_d_array_hyperparameter_is_read_at_assignment():
    lr = np.array(0.1)
    p = np.ones(3)
    upd = fu.sgd([p], learning_rate=lr)
    lr[...] = 0.0  # not a live link: the value was read when it was given
    assert upd.learning_rate == 0.1 and type(upd.learning_rate) is float
    upd.step([np.ones(3)])
    np.testing.assert_allclose(p, 0.9)
    upd.learning_rate = np.float32(0.5)
    assert type(upd.learning_rate) is float
    upd.step([np.ones(3)])
    np.testing.assert_allclose(p, 0.4)


@pytest.mark.parametrize("name", ["learning_rate", "epsilon"])
def test_huge_int_hyperparameter_is_a_value_error(name):
    with pytest.raises(ValueError, match="too large"):
        fu.adam([np.ones(3)], **{name: HUGE})
    upd = fu.adam([np.ones(3)])
    before = upd.hyperparameters
    with pytest.raises(ValueError, match="too large"):
        setattr(upd, name, HUGE)
    assert upd.hyperparameters == before  # not stored before raising
    upd.step([np.ones(3)])


def test_huge_max_norm_and_step():
    upd = fu.adam([np.ones(3)])
    with pytest.raises(ValueError):
        upd.step([np.ones(3)], max_norm=HUGE)
    with pytest.raises(ValueError, match="step"):
        fu.functional.adam(np.ones(3), np.ones(3), np.zeros(3), np.zeros(3), step=HUGE)
    with pytest.raises(ValueError, match="step"):
        fu.functional.adam(np.ones(3), np.ones(3), np.zeros(3), np.zeros(3), step=2**53)
    assert upd.t == 0


@pytest.mark.parametrize("value", ["0.1", b"0.1", None, [0.1], np.ones(2), True])
def test_non_number_hyperparameter_is_a_type_error(value):
    upd = fu.rmsprop([np.ones(3)])
    with pytest.raises(TypeError):
        upd.learning_rate = value
    assert upd.learning_rate == 1.0


# ---- load_state_dict validates everything before changing anything -------------------------


def _trained():
    upd = fu.apply_nesterov_momentum(fu.adam([np.ones(4), np.ones((2, 3))]), momentum=0.5)
    upd.step([np.full(4, 0.3), np.full((2, 3), -0.2)])
    return upd


def _bad_dicts():
    good = _trained().state_dict()

    def edit(**changes):
        d = {**good, **changes}
        return d

    hyper_str = {**good["hyperparameters"], "learning_rate": "0.1"}
    hyper_big = {**good["hyperparameters"], "beta1": HUGE}
    state_bad = {**good["state"], "m": [good["state"]["m"][0], "oops"]}
    return [
        (None, TypeError),
        ([1, 2], TypeError),
        ("state", TypeError),
        ({"rule": good["rule"]}, ValueError),
        (edit(t=HUGE), ValueError),
        (edit(t=-1), ValueError),
        (edit(t=2.5), TypeError),
        (edit(t="3"), TypeError),
        (edit(hyperparameters=hyper_str), TypeError),
        (edit(hyperparameters=hyper_big), ValueError),
        (edit(hyperparameters=None), TypeError),
        (edit(state=state_bad), TypeError),
        (edit(state=None), TypeError),
        (edit(rule="sgd"), ValueError),
    ]


@pytest.mark.parametrize("index", range(14))
def test_bad_state_dict_changes_nothing(index):
    bad, exc = _bad_dicts()[index]
    upd = _trained()
    snap = _snapshot(upd)
    hyper = upd.hyperparameters
    with pytest.raises(exc):
        upd.load_state_dict(bad)
    _assert_unchanged(upd, snap)
    assert upd.hyperparameters == hyper
    upd.step([np.full(4, 0.3), np.full((2, 3), -0.2)])  # still usable
    assert upd.t == 2


def test_state_dict_accepts_numpy_scalars_and_0d_arrays():
    src = _trained()
    d = src.state_dict()
    d["t"] = np.array(d["t"])
    d["hyperparameters"] = {k: np.float64(v) for k, v in d["hyperparameters"].items()}
    upd = _trained()
    upd.load_state_dict(d)
    assert upd.t == 1 and all(type(v) is float for v in upd.hyperparameters.values())


# ---- threads, sizes and the wrapper's own momentum ----------------------------------------


@pytest.mark.parametrize("n", [50000, 100000, -1])
def test_set_num_threads_is_bounded(n):
    before = fu.get_num_threads()
    with pytest.raises(ValueError, match="set_num_threads"):
        fu.set_num_threads(n)
    assert fu.get_num_threads() == before


def test_private_norm_constraint_checks_sizes_without_overflow():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="does not cover"):
        _cpu.norm_constraint(x, np.empty_like(x), 2**62, 2**62, 4, 1.0, 1e-7)
    with pytest.raises(ValueError, match="does not cover"):
        _cpu.norm_constraint(x, np.empty_like(x), -2, -2, 1, 1.0, 1e-7)


def test_setting_inner_hyperparameters_keeps_the_wrappers_momentum(rng):
    init = [rng.standard_normal(5), rng.standard_normal((2, 3))]
    params = [p.copy() for p in init]
    inner = fu.rmsprop(params, **HYPER["rmsprop"])
    upd = fu.apply_momentum(inner, momentum=0.7)
    runner = RefRunner("rmsprop", init, "momentum", **HYPER["rmsprop"])
    for step in range(6):
        if step == 3:
            inner.learning_rate = 0.02  # the rule's value, shared; momentum is the wrapper's
            runner.hyper["learning_rate"] = 0.02
        grads = [rng.standard_normal(5), rng.standard_normal((2, 3))]
        upd.step(grads)
        runner.step(grads)
    assert upd.momentum == 0.7 and inner.learning_rate == upd.learning_rate == 0.02
    host = type("Host", (), {"get": staticmethod(np.asarray)})
    check_matches(upd, runner, host, np.float64, "inner learning rate changed")


def test_empty_parameter_list_is_an_error():
    with pytest.raises(ValueError, match="empty parameter list"):
        fu.adam([])


# ---- the native stepper itself ------------------------------------------------------------


def test_stepper_rejects_unknown_and_misplaced_fields():
    s = _cpu.Stepper(0, [np.ones(3)], [], [])
    with pytest.raises(TypeError, match="unknown hyperparameter 'lr'"):
        s.set_hyperparameters(lr=0.1)
    with pytest.raises(TypeError, match="no momentum modifier"):
        s.set_hyperparameters(momentum=0.5)
    with pytest.raises(ValueError, match="finite"):
        s.set_hyperparameters(learning_rate=math.nan)
    with pytest.raises(ValueError):
        s.t = 2**53
    s.set_hyperparameters(learning_rate=0.25)
    assert s.hyperparameters()["learning_rate"] == 0.25 and s.t == 0
    w = s.with_momentum([np.zeros(3)], False)
    w.set_hyperparameters(momentum=0.5)
    assert w.hyperparameters()["momentum"] == 0.5 and s.hyperparameters()["momentum"] == 0.0
    w.step([np.ones(3)])
    assert s.t == w.t == 1


# ---- messages a user hits -----------------------------------------------------------------


def test_functional_state_is_checked_by_shape_not_element_count():
    with pytest.raises(ValueError, match=r"state 'm'\[0\]: shape \(2, 2\) does not match"):
        fu.functional.adam(np.ones(4), np.ones(4), np.zeros((2, 2)), np.zeros(4), step=1)


def test_grad_dtype_mismatch_says_how_to_fix_it():
    upd = fu.adam([np.ones(3, np.float32)])
    with pytest.raises(TypeError, match=r"g\.astype\(p\.dtype\)"):
        upd.step([np.ones(3)])  # float64 grads from float64 data, the common mistake


def test_documented_keyword_names_work():
    x = np.ones((3, 2))
    fu.norm_constraint(tensor_var=x, max_norm=1.0, norm_axes=(0,))
    fu.total_norm_constraint(tensor_vars=[x], max_norm=1.0)
    inner = fu.adam([np.ones(3)])
    assert fu.apply_momentum(updater=inner).rule == "adam+momentum"
    assert fu.apply_nesterov_momentum(updates=inner).rule == "adam+nesterov_momentum"
    with pytest.raises(TypeError, match="once"):
        fu.apply_momentum(inner, updates=inner)
