"""``fu.functional``: stateless fused steps on single arrays and lists, against the reference."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import (
    BASE_RULES,
    HYPER,
    REF,
    STATE_DTYPE,
    STATE_NAMES,
    STEP_RULES,
    TOL,
    assert_close,
    random_grads,
    random_params,
)

DTYPES = [np.float64, np.float32, np.float16]


def call(module, rule, params, grads, states, t, **kw):
    """``module.<rule>(params, grads, *states, [step=t], **HYPER[rule], **kw)``."""
    if rule in STEP_RULES:
        kw["step"] = t
    return getattr(module, rule)(params, grads, *states, **HYPER[rule], **kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_single_arrays(xp, rng, rule, dtype):
    (p0,) = random_params(rng, [(7, 3)], dtype)
    sdt = STATE_DTYPE[np.dtype(dtype)]
    p = xp.asarray(p0)
    states = [xp.zeros((7, 3), sdt) for _ in STATE_NAMES[rule]]
    ref_p = p0.astype(np.float64)
    ref_states = [np.zeros((7, 3)) for _ in STATE_NAMES[rule]]
    for t in range(1, 21):
        (g,) = random_grads(rng, [(7, 3)], dtype)
        assert call(fu.functional, rule, p, xp.asarray(g), states, t) is None
        call(REF, rule, ref_p, g.astype(np.float64), ref_states, t)
        ref_p[...] = ref_p.astype(dtype)  # storage rounding of the params
    ptol, stol = TOL[np.dtype(dtype)]
    assert p.dtype == np.dtype(dtype)
    assert_close(xp.get(p), ref_p, ptol, "param")
    for name, s, r in zip(STATE_NAMES[rule], states, ref_states):
        assert s.dtype == sdt
        assert_close(xp.get(s), r, stol, name)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("rule", BASE_RULES)
def test_lists_with_velocity_subset_and_max_norm(xp, rng, rule, nesterov):
    shapes = [(5,), (), (4, 6)]
    init = random_params(rng, shapes, np.float64)
    params = [xp.asarray(p) for p in init]
    states = [[xp.zeros(s, np.float64) for s in shapes] for _ in STATE_NAMES[rule]]
    vel = [xp.zeros((5,), np.float64), None, xp.zeros((4, 6), np.float64)]
    ref_p = [p.copy() for p in init]
    ref_s = [[np.zeros(s) for s in shapes] for _ in STATE_NAMES[rule]]
    ref_v = [np.zeros(5), None, np.zeros((4, 6))]
    for t in range(1, 21):
        grads = random_grads(rng, shapes, np.float64)
        kw = {"momentum": 0.6, "nesterov": nesterov, "max_norm": 2.0}
        got = call(
            fu.functional,
            rule,
            params,
            [xp.asarray(g) for g in grads],
            states,
            t,
            velocity=vel,
            **kw,
        )
        want = call(REF, rule, ref_p, grads, ref_s, t, velocity=ref_v, **kw)
        assert float(got) == pytest.approx(want, rel=1e-12)
    for i in range(3):
        assert_close(xp.get(params[i]), ref_p[i], 1e-12, f"params[{i}]")
        for s, r in zip(states, ref_s):
            assert_close(xp.get(s[i]), r[i], 1e-12, f"state[{i}]")
    assert_close(xp.get(vel[0]), ref_v[0], 1e-12, "velocity[0]")
    assert_close(xp.get(vel[2]), ref_v[2], 1e-12, "velocity[2]")


@pytest.mark.parametrize("name", ["momentum", "nesterov_momentum"])
def test_momentum_functions(xp, rng, name):
    (p0,) = random_params(rng, [(9,)], np.float32)
    p, v = xp.asarray(p0), xp.zeros((9,), np.float32)
    ref_p, ref_v = p0.astype(np.float64), np.zeros(9)
    for _ in range(20):
        (g,) = random_grads(rng, [(9,)], np.float32)
        getattr(fu.functional, name)(p, xp.asarray(g), v, learning_rate=0.05, momentum=0.8)
        getattr(REF, name)(ref_p, g.astype(np.float64), ref_v, learning_rate=0.05, momentum=0.8)
    assert_close(xp.get(p), ref_p, 1e-5, "param")
    assert_close(xp.get(v), ref_v, 1e-5, "velocity")


def test_sgd_single_array_and_list_give_the_same(xp, rng):
    (p0,) = random_params(rng, [(11,)], np.float64)
    (g,) = random_grads(rng, [(11,)], np.float64)
    a, b = xp.asarray(p0), xp.asarray(p0)
    fu.functional.sgd(a, xp.asarray(g), learning_rate=0.1)
    fu.functional.sgd([b], [xp.asarray(g)], learning_rate=0.1)
    np.testing.assert_array_equal(xp.get(a), xp.get(b))
    assert_close(xp.get(a), p0 - 0.1 * g, 1e-15)


@pytest.mark.parametrize("rule", ["adam", "rmsprop"])
def test_functional_matches_updater(xp, rng, rule):
    shapes = [(13,), (3, 5)]
    init = random_params(rng, shapes, np.float64)
    upd_params = [xp.asarray(p) for p in init]
    fn_params = [xp.asarray(p) for p in init]
    upd = fu.apply_momentum(getattr(fu, rule)(upd_params, **HYPER[rule]), momentum=0.5)
    states = [[xp.zeros(s, np.float64) for s in shapes] for _ in STATE_NAMES[rule]]
    vel = [xp.zeros(s, np.float64) for s in shapes]
    for t in range(1, 21):
        grads = [xp.asarray(g) for g in random_grads(rng, shapes, np.float64)]
        upd.step(grads)
        call(fu.functional, rule, fn_params, grads, states, t, velocity=vel, momentum=0.5)
    for a, b in zip(upd_params, fn_params):
        assert_close(xp.get(a), xp.get(b), 1e-14)


def test_zero_size_is_a_noop(xp):
    p = xp.zeros((0, 3), np.float32)
    m, v = xp.zeros((0, 3), np.float32), xp.zeros((0, 3), np.float32)
    assert fu.functional.adam(p, xp.zeros((0, 3), np.float32), m, v, step=1) is None
    assert p.shape == (0, 3)


@pytest.mark.parametrize("rule", sorted(STEP_RULES))
def test_step_is_required_and_one_based(xp, rule):
    p0 = np.linspace(-1, 1, 6)
    p = xp.asarray(p0)
    states = [xp.zeros((6,), np.float64) for _ in STATE_NAMES[rule]]
    g = xp.asarray(np.full(6, 0.5))
    with pytest.raises((TypeError, ValueError)):
        getattr(fu.functional, rule)(p, g, *states)
    with pytest.raises(ValueError):
        getattr(fu.functional, rule)(p, g, *states, step=0)
    np.testing.assert_array_equal(xp.get(p), p0)
    for s in states:
        assert not xp.get(s).any()


def test_bad_state_leaves_everything_unchanged(xp):
    p0 = [np.linspace(-1, 1, 6), np.linspace(1, 2, 4)]
    params = [xp.asarray(p) for p in p0]
    grads = [xp.asarray(np.full(6, 0.5)), xp.asarray(np.full(4, 0.5))]
    m = [xp.zeros((6,), np.float64), xp.zeros((4,), np.float64)]
    v_bad_shape = [xp.zeros((6,), np.float64), xp.zeros((5,), np.float64)]
    v_bad_dtype = [xp.zeros((6,), np.float64), xp.zeros((4,), np.float32)]
    with pytest.raises(ValueError):
        fu.functional.adam(params, grads, m, v_bad_shape, step=1)
    with pytest.raises(TypeError):
        fu.functional.adam(params, grads, m, v_bad_dtype, step=1)
    with pytest.raises(ValueError):
        fu.functional.adam(params, grads, m[:1], v_bad_shape, step=1)
    with pytest.raises(ValueError):  # velocity list too short
        fu.functional.sgd(params, grads, learning_rate=0.1, velocity=[m[0]])
    with pytest.raises(ValueError):
        fu.functional.adam(params, grads, m, m, step=1)  # m passed as v too: aliasing
    for p, want in zip(params, p0):
        np.testing.assert_array_equal(xp.get(p), want)
    for s in m + v_bad_shape + v_bad_dtype:
        assert not xp.get(s).any()
