"""Every rule x modifier x dtype x size against the NumPy reference (params and all state)."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import (
    BASE_RULES,
    HYPER,
    MODIFIERS,
    MU,
    TOL,
    TOY_KWARGS,
    TOY_VALUES,
    RefRunner,
    assert_close,
    check_matches,
    eps_outside_sqrt,
    random_grads,
    random_params,
    run_and_compare,
    split_rule,
    toy_grad,
)

DTYPES = [np.float64, np.float32, np.float16]


@pytest.mark.parametrize("size", [1, 7, 4097])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_rule_matches_reference(xp, rng, rule, modifier, dtype, size):
    run_and_compare(fu, xp, rng, rule, modifier, dtype, [(size,)], steps=20)


# >= 1M elements (about 1.5 s each): every rule x modifier in float32, and every rule once in
# float16 and in float64 with the modifiers in turn.
BIG = [(rule, mod, np.float32) for rule in BASE_RULES for mod in MODIFIERS]
BIG += [(rule, MODIFIERS[i % 3], np.float16) for i, rule in enumerate(BASE_RULES)]
BIG += [(rule, MODIFIERS[(i + 1) % 3], np.float64) for i, rule in enumerate(BASE_RULES)]


@pytest.mark.parametrize(
    "rule, modifier, dtype", BIG, ids=[f"{r}-{m}-{np.dtype(d).name}" for r, m, d in BIG]
)
def test_rule_matches_reference_1m(xp, rng, rule, modifier, dtype):
    run_and_compare(fu, xp, rng, rule, modifier, dtype, [(1 << 20,), (3,)], steps=20)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_many_params_of_mixed_shapes(xp, rng, rule, modifier, dtype):
    shapes = [(), (1,), (7,), (33, 65), (2, 3, 4, 5), (4097,)]
    run_and_compare(fu, xp, rng, rule, modifier, dtype, shapes, steps=20)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_rule_with_max_norm(xp, rng, rule, modifier, dtype):
    """Clipping active at max_norm=3 (N ~ 40); the returned norms match the reference."""
    _, _, norms = run_and_compare(
        fu, xp, rng, rule, modifier, dtype, [(7,), (25, 40)], steps=20, max_norm=3.0
    )
    for got, want in norms:
        assert float(got) == pytest.approx(want, rel=TOL[np.dtype(dtype)][1])


@pytest.mark.parametrize("rule", BASE_RULES)
def test_max_norm_above_norm_still_scales_slightly(xp, rng, rule):
    """Lasagne's multiplier N / (N + 1e-7) < 1 must be applied even without clipping."""
    run_and_compare(fu, xp, rng, rule, "none", np.float64, [(5,)], steps=20, max_norm=1e6)


@pytest.mark.parametrize("name", ["momentum", "nesterov_momentum"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_momentum_factories_are_sgd_plus_modifier(xp, rng, name, dtype):
    shapes = [(7,), (4097,)]
    init = random_params(rng, shapes, dtype)
    params = [xp.asarray(p) for p in init]
    upd = getattr(fu, name)(params, learning_rate=0.05, momentum=MU)
    modifier = split_rule(name)[1]
    runner = RefRunner("sgd", init, modifier, round_to=dtype, learning_rate=0.05)
    for _ in range(20):
        grads = random_grads(rng, shapes, dtype)
        upd.step([xp.asarray(g) for g in grads])
        runner.step(grads)
        check_matches(upd, runner, xp, dtype, name)


@pytest.mark.parametrize("name", list(TOY_KWARGS))
def test_lasagne_toy_problem(xp, name):
    """Lasagne's test_updates: f(X) = sum([0.1, 0.2, 0.3] * X**2), two params, 10 steps."""
    kwargs = dict(TOY_KWARGS[name])
    A, B = xp.asarray(np.ones(3)), xp.asarray(np.ones((1, 3)))
    upd = getattr(fu, name)([A, B], **kwargs)
    rule, modifier = split_rule(name)
    mu = kwargs.pop("momentum", 0.9)
    runner = RefRunner(rule, [np.ones(3), np.ones((1, 3))], modifier, mu=mu, **kwargs)
    for _ in range(10):
        upd.step([xp.asarray(toy_grad(xp.get(A))), xp.asarray(toy_grad(xp.get(B)))])
        runner.step([toy_grad(runner.params[0]), toy_grad(runner.params[1])])
    check_matches(upd, runner, xp, np.float64, name)
    np.testing.assert_allclose(xp.get(A), xp.get(B)[0], rtol=1e-12)
    if name in TOY_VALUES:
        assert np.allclose(xp.get(A), TOY_VALUES[name])


@pytest.mark.parametrize("rule", ["adagrad", "rmsprop", "adadelta", "adam"])
def test_pytorch_epsilon_placement_would_be_detected(xp, rng, rule):
    """The library matches Lasagne's placement and is far (> tolerance) from PyTorch's."""
    init = random_params(rng, [(256,)], np.float32)
    grads = [random_grads(rng, [(256,)], np.float32)[0] for _ in range(20)]
    p = xp.asarray(init[0])
    upd = getattr(fu, rule)([p], **HYPER[rule])
    runner = RefRunner(rule, init, round_to=np.float32, **HYPER[rule])
    for g in grads:
        upd.step([xp.asarray(g)])
        runner.step([g])
    got = xp.get(p)
    assert_close(got, runner.params[0], TOL[np.dtype(np.float32)][0])
    wrong = eps_outside_sqrt(rule, init[0].astype(np.float64), grads, HYPER[rule])
    with pytest.raises(AssertionError):
        assert_close(got, wrong, TOL[np.dtype(np.float32)][0])
    assert np.max(np.abs(got - wrong)) > 100 * TOL[np.dtype(np.float32)][0]
