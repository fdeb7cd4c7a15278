"""Frozen parameters: a None grad leaves that parameter and its state untouched, bit for bit,
while the others step (t counts the updater's steps, as Lasagne's single counter)."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import BASE_RULES, HYPER, MODIFIERS, RefRunner, check_matches, make_updater

SHAPES = [(5,), (3, 4), (7,)]


def _grads(rng, frozen):
    return [None if i in frozen else rng.standard_normal(s) for i, s in enumerate(SHAPES)]


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_none_grads_freeze_params_and_state(xp, rng, rule, modifier):
    init = [rng.standard_normal(s) for s in SHAPES]
    upd = make_updater(fu, rule, [xp.asarray(p) for p in init], modifier, **HYPER[rule])
    runner = RefRunner(rule, init, modifier, **HYPER[rule])
    pattern = [set(), {1}, {0, 2}, {1}, set(), {0, 1, 2}, {2}]
    for step, frozen in enumerate(pattern):
        before = {k: [None if a is None else xp.get(a) for a in v] for k, v in upd.state.items()}
        before_p = [xp.get(p) for p in upd.params]
        grads = _grads(rng, frozen)
        max_norm = 1.5 if step % 2 else None
        got = upd.step([None if g is None else xp.asarray(g) for g in grads], max_norm=max_norm)
        want = runner.step(grads, max_norm=max_norm)
        if max_norm is not None:
            np.testing.assert_allclose(float(got), want, rtol=1e-12)
        for i in frozen:
            np.testing.assert_array_equal(xp.get(upd.params[i]), before_p[i])
            for name, arrays in upd.state.items():
                if arrays[i] is not None:
                    np.testing.assert_array_equal(xp.get(arrays[i]), before[name][i])
        check_matches(upd, runner, xp, np.float64, f"frozen {sorted(frozen)}")
    assert upd.t == len(pattern)


def test_none_grad_in_functional(rng):
    p = [rng.standard_normal(4), rng.standard_normal(4)]
    m = [np.zeros(4), np.zeros(4)]
    v = [np.zeros(4), np.zeros(4)]
    keep = p[1].copy()
    fu.functional.adam(p, [rng.standard_normal(4), None], m, v, step=1)
    np.testing.assert_array_equal(p[1], keep)
    assert not m[1].any() and not v[1].any() and m[0].any()


def test_none_grad_is_still_checked_for_count(xp):
    upd = fu.adam([xp.asarray(np.ones(3)), xp.asarray(np.ones(2))])
    with pytest.raises(ValueError, match="1 grads for 2 params"):
        upd.step([None])
    assert upd.t == 0
