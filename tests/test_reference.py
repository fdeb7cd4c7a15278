"""The NumPy reference against hand-computed values and Lasagne's toy problem.

Needs no compiled core: the reference is loaded from the source tree by path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _support import (
    HYPER,
    REF,
    STATE_NAMES,
    TOY_KWARGS,
    TOY_VALUES,
    eps_outside_sqrt,
    random_grads,
    split_rule,
    toy_grad,
)


def a(*values):
    return np.array(values, dtype=np.float64)


def test_sgd_by_hand():
    p = a(1.0, -1.0)
    assert REF.sgd(p, a(2.0, -4.0), learning_rate=0.25) is None
    np.testing.assert_array_equal(p, a(0.5, 0.0))


def test_momentum_and_nesterov_by_hand():
    p, v = a(1.0), a(0.0)
    REF.momentum(p, a(2.0), v, learning_rate=0.25, momentum=0.5)  # v=-0.5, p=0.5
    REF.momentum(p, a(2.0), v, learning_rate=0.25, momentum=0.5)  # v=-0.75, p=-0.25
    np.testing.assert_array_equal([p[0], v[0]], [-0.25, -0.75])
    p, v = a(1.0), a(0.0)
    REF.nesterov_momentum(p, a(2.0), v, learning_rate=0.25, momentum=0.5)  # p=1-0.25-0.5
    np.testing.assert_array_equal([p[0], v[0]], [0.25, -0.5])
    REF.nesterov_momentum(p, a(2.0), v, learning_rate=0.25, momentum=0.5)  # 0.25-0.375-0.5
    np.testing.assert_array_equal([p[0], v[0]], [-0.625, -0.75])


def test_adagrad_by_hand():
    p, accu = a(1.0), a(0.0)
    REF.adagrad(p, a(3.0), accu, learning_rate=0.5, epsilon=7.0)  # a=9, 1 - 0.5*3/4
    np.testing.assert_array_equal([p[0], accu[0]], [0.625, 9.0])
    REF.adagrad(p, a(3.0), accu, learning_rate=0.5, epsilon=7.0)  # a=18, -0.5*3/5
    np.testing.assert_allclose([p[0], accu[0]], [0.325, 18.0], rtol=1e-15)


@pytest.mark.parametrize(
    "nesterov, expected", [(False, [0.625, 0.1375]), (True, [0.4375, -0.10625])]
)
def test_modifier_on_adagrad_by_hand(nesterov, expected):
    # inner deltas: -0.375 then -0.3; velocity: -0.375 then 0.5*-0.375 - 0.3 = -0.4875
    p, accu, vel = a(1.0), a(0.0), a(0.0)
    for want in expected:
        REF.adagrad(
            p,
            a(3.0),
            accu,
            learning_rate=0.5,
            epsilon=7.0,
            velocity=[vel],
            momentum=0.5,
            nesterov=nesterov,
        )
        assert p[0] == pytest.approx(want, rel=1e-15)
    assert vel[0] == pytest.approx(-0.4875, rel=1e-15)


def test_rmsprop_by_hand():
    p, accu = a(2.0), a(0.0)
    REF.rmsprop(p, a(4.0), accu, learning_rate=0.75, rho=0.5, epsilon=1.0)  # a=8, 2-0.75*4/3
    np.testing.assert_array_equal([p[0], accu[0]], [1.0, 8.0])
    REF.rmsprop(p, a(2.0), accu, learning_rate=0.75, rho=0.5, epsilon=1.0)  # a=6
    assert p[0] == pytest.approx(1.0 - 0.75 * 2 / math.sqrt(7.0), rel=1e-15)


def test_adadelta_by_hand():
    p, accu, d = a(1.0), a(0.0), a(0.0)
    REF.adadelta(p, a(4.0), accu, d, learning_rate=1.0, rho=0.5, epsilon=1.0)
    # a=8, u=4*sqrt(1)/sqrt(9)=4/3 (old d), d=0.5*16/9
    np.testing.assert_allclose([p[0], accu[0], d[0]], [1 - 4 / 3, 8.0, 8 / 9], rtol=1e-15)
    REF.adadelta(p, a(2.0), accu, d, learning_rate=0.5, rho=0.5, epsilon=1.0)
    u = 2 * math.sqrt(8 / 9 + 1) / math.sqrt(6 + 1)
    np.testing.assert_allclose(
        [p[0], accu[0], d[0]], [1 - 4 / 3 - 0.5 * u, 6.0, 4 / 9 + u * u / 2], rtol=1e-15
    )


def test_adam_by_hand():
    p, m, v = a(1.0), a(0.0), a(0.0)
    kw = {"learning_rate": 1.0, "beta1": 0.5, "beta2": 0.75, "epsilon": 0.5}
    REF.adam(p, a(2.0), m, v, step=1, **kw)  # m=1, v=1, a_t=sqrt(.25)/.5=1, step=1/1.5
    np.testing.assert_allclose([p[0], m[0], v[0]], [1 / 3, 1.0, 1.0], rtol=1e-15)
    REF.adam(p, a(-2.0), m, v, step=2, **kw)  # m=-0.5, v=1.75
    a_t = math.sqrt(1 - 0.75**2) / (1 - 0.5**2)
    want = 1 / 3 + a_t * 0.5 / (math.sqrt(1.75) + 0.5)
    np.testing.assert_allclose([p[0], m[0], v[0]], [want, -0.5, 1.75], rtol=1e-15)


def test_adam_default_hyperparameters_one_step():
    p, m, v = a(1.0), a(0.0), a(0.0)
    REF.adam(p, a(0.5), m, v, step=1, learning_rate=0.1)
    # m=0.05, v=0.001*0.25, a_t=0.1*sqrt(0.001)/0.1; step=a_t*m/(sqrt(v)+1e-8)
    want = 1 - math.sqrt(0.001) * 0.05 / (math.sqrt(0.00025) + 1e-8)
    assert p[0] == pytest.approx(want, rel=1e-15)
    assert p[0] == pytest.approx(0.9000000632, abs=1e-10)


def test_adamax_by_hand():
    p, m, u = a(1.0), a(0.0), a(0.0)
    kw = {"learning_rate": 1.0, "beta1": 0.5, "beta2": 0.75, "epsilon": 0.5}
    REF.adamax(p, a(2.0), m, u, step=1, **kw)  # m=1, u=2, a_t=2, step=2/2.5
    np.testing.assert_allclose([p[0], m[0], u[0]], [0.2, 1.0, 2.0], rtol=1e-15)
    REF.adamax(p, a(1.0), m, u, step=2, **kw)  # m=1, u=max(1.5, 1), a_t=4/3, step=(4/3)/2
    np.testing.assert_allclose([p[0], m[0], u[0]], [0.2 - 2 / 3, 1.0, 1.5], rtol=1e-15)


def test_amsgrad_by_hand():
    p, m, v, vh = a(1.0), a(0.0), a(0.0), a(0.0)
    kw = {"learning_rate": 1.0, "beta1": 0.5, "beta2": 0.75, "epsilon": 0.5}
    REF.amsgrad(p, a(2.0), m, v, vh, step=1, **kw)  # as adam: p=1/3, v_hat=1
    np.testing.assert_allclose([p[0], vh[0]], [1 / 3, 1.0], rtol=1e-15)
    REF.amsgrad(p, a(0.5), m, v, vh, step=2, **kw)  # m=.75, v=.8125 < v_hat=1
    a_t = math.sqrt(1 - 0.75**2) / (1 - 0.5**2)
    np.testing.assert_allclose(
        [p[0], m[0], v[0], vh[0]], [1 / 3 - a_t * 0.75 / 1.5, 0.75, 0.8125, 1.0], rtol=1e-15
    )


def test_max_norm_by_hand():
    p1, p2 = a(0.0), a(0.0, 0.0)
    g1, g2 = a(3.0), a(0.0, 4.0)
    norm = REF.sgd([p1, p2], [g1, g2], learning_rate=1.0, max_norm=1.0)
    assert norm == 5.0
    np.testing.assert_allclose(p2, [0.0, -4.0 / (5.0 + 1e-7)], rtol=1e-15)
    np.testing.assert_array_equal(g2, [0.0, 4.0])  # caller's grads untouched
    REF.sgd([p1, p2], [g1, g2], learning_rate=1.0, max_norm=100.0)  # multiplier 5/(5+1e-7) < 1
    assert p1[0] == pytest.approx(-3.0 / (5 + 1e-7) - 3.0 * 5 / (5 + 1e-7), rel=1e-15)


def test_single_arrays_and_lists_agree():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(5)
    g = rng.standard_normal(5)
    p1, m1, v1 = p.copy(), np.zeros(5), np.zeros(5)
    p2, m2, v2 = p.copy(), np.zeros(5), np.zeros(5)
    REF.adam(p1, g, m1, v1, step=1)
    REF.adam([p2], [g], [m2], [v2], step=1)
    np.testing.assert_array_equal(p1, p2)
    with pytest.raises(ValueError):
        REF.adam([p1, p2], [g], [m1, m2], [v1, v2], step=2)
    with pytest.raises(ValueError):
        REF.adam(p1, g, m1, v1, step=0)


def test_dtype_is_kept():
    p = np.ones(4, dtype=np.float32)
    accu = np.zeros(4, dtype=np.float32)
    REF.rmsprop(p, np.full(4, 0.5, dtype=np.float32), accu, learning_rate=0.1)
    assert p.dtype == np.float32 and accu.dtype == np.float32


@pytest.mark.parametrize("name", list(TOY_VALUES))
def test_lasagne_toy_problem(name):
    """f(X) = sum([0.1, 0.2, 0.3] * X**2) on two params, 10 steps (Lasagne's test_updates)."""
    rule, modifier = split_rule(name)
    kwargs = dict(TOY_KWARGS[name])
    mu = kwargs.pop("momentum", 0.9)
    A, B = np.ones(3), np.ones((1, 3))
    states = [[np.zeros(3), np.zeros((1, 3))] for _ in STATE_NAMES[rule]]
    vel = [np.zeros(3), np.zeros((1, 3))] if modifier != "none" else None
    for t in range(1, 11):
        extra = {"step": t} if rule in ("adam", "adamax", "amsgrad") else {}
        getattr(REF, rule)(
            [A, B],
            [toy_grad(A), toy_grad(B)],
            *states,
            velocity=vel,
            momentum=mu,
            nesterov=modifier == "nesterov",
            **extra,
            **kwargs,
        )
    np.testing.assert_allclose(A, B[0], rtol=1e-15)
    assert np.allclose(A, TOY_VALUES[name])


@pytest.mark.parametrize("rule", ["adagrad", "rmsprop", "adadelta", "adam"])
def test_epsilon_placement_is_visible(rule):
    """With the suite's epsilon=0.1 the two placements differ far beyond every tolerance."""
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(64)
    grads = random_grads(rng, [(64,)] * 20, np.float64)
    p = p0.copy()
    states = [np.zeros(64) for _ in STATE_NAMES[rule]]
    for t, g in enumerate(grads, start=1):
        extra = {"step": t} if rule == "adam" else {}
        getattr(REF, rule)(p, g, *states, **extra, **HYPER[rule])
    wrong = eps_outside_sqrt(rule, p0, grads, HYPER[rule])
    rel = np.max(np.abs(p - wrong)) / np.max(np.abs(p))
    assert rel > 1e-3


def test_norm_constraint_by_hand():
    x = np.array([[3.0, 0.0], [4.0, 1.0]])  # column norms 5 and 1
    out = REF.norm_constraint(x, 2.0)
    np.testing.assert_allclose(out, x * [2 / (5 + 1e-7), 1 / (1 + 1e-7)], rtol=1e-15)
    assert x[0, 0] == 3.0  # input untouched
    out3 = REF.norm_constraint(np.ones((2, 3, 4)), 1.0)  # 3-D: norms over axes (1, 2)
    np.testing.assert_allclose(out3, 1 / (math.sqrt(12) + 1e-7), rtol=1e-15)
    out_axes = REF.norm_constraint(np.ones((2, 3, 4, 5)), 1.0, norm_axes=(0, 2))
    np.testing.assert_allclose(out_axes, 1 / (math.sqrt(8) + 1e-7), rtol=1e-15)


@pytest.mark.parametrize("shape", [(), (5,), (1, 2, 3, 4, 5, 6)])
def test_norm_constraint_unsupported_dimensionality(shape):
    with pytest.raises(ValueError, match="Unsupported tensor dimensionality"):
        REF.norm_constraint(np.ones(shape), 1.0)


def test_total_norm_constraint_lasagne_example():
    x = np.arange(10, dtype=np.float32)
    x1, x2 = x[-1], x[:9].reshape(3, 3)
    scaled, norm = REF.total_norm_constraint([np.asarray(x1), x2], 5.0, return_norm=True)
    assert norm == pytest.approx(np.linalg.norm(x), rel=1e-7)
    assert isinstance(scaled[0], np.ndarray) and scaled[0].shape == ()
    assert scaled[1].dtype == np.float32
    flat = np.concatenate([scaled[0].ravel(), scaled[1].ravel()])
    assert np.linalg.norm(flat) == pytest.approx(5.0, rel=1e-6)
    plain = REF.total_norm_constraint([np.asarray(x1), x2], 5.0)
    np.testing.assert_array_equal(plain[1], scaled[1])


def test_total_norm_multiplier_below_one():
    x = np.array([0.6, 0.8])  # N = 1 < max_norm
    (out,) = REF.total_norm_constraint([x], 10.0)
    np.testing.assert_allclose(out, x / (1 + 1e-7), rtol=1e-15)
    assert not np.array_equal(out, x)
