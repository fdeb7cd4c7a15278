"""Fused weight decay (L2 and decoupled/AdamW) for every rule, modifier and dtype, against the
reference; and its API: live edits, checkpoints, checks."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import BASE_RULES, HYPER, MODIFIERS, REF, STATE_NAMES, TOL, run_and_compare

DTYPES = [np.float64, np.float32, np.float16]
DECAYS = {"l2": False, "decoupled": True}


@pytest.mark.parametrize("size", [7, 4097])
@pytest.mark.parametrize("decay", list(DECAYS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_weight_decay_matches_reference(xp, rng, rule, modifier, dtype, decay, size, monkeypatch):
    # With decay the float16 param feeds back into the state (g + wd p): a param that rounds
    # to the neighbouring float16 (a float32-vs-float64 tie-break) moves the state by
    # wd * lr * ulp16(p), so the state gets the param's tolerance for float16.
    monkeypatch.setitem(TOL, np.dtype(np.float16), (3e-3, 3e-3))
    hyper = {**HYPER[rule], "weight_decay": 0.3, "decoupled_weight_decay": DECAYS[decay]}
    run_and_compare(fu, xp, rng, rule, modifier, dtype, [(size,), (3, 2)], hyper=hyper)


@pytest.mark.parametrize("decay", list(DECAYS))
@pytest.mark.parametrize("rule", ["adam", "rmsprop", "sgd"])
def test_weight_decay_with_clipping_1m(xp, rng, rule, decay):
    hyper = {**HYPER[rule], "weight_decay": 0.05, "decoupled_weight_decay": DECAYS[decay]}
    run_and_compare(
        fu, xp, rng, rule, "momentum", np.float32, [(1 << 20,)], steps=5, max_norm=2.0, hyper=hyper
    )


@pytest.mark.parametrize("rule", BASE_RULES)
def test_zero_weight_decay_is_bit_identical_to_none(xp, rng, rule):
    init = rng.standard_normal((5, 7))
    plain = getattr(fu, rule)([xp.asarray(init)], **HYPER[rule])
    zero_l2 = getattr(fu, rule)([xp.asarray(init)], **HYPER[rule], weight_decay=0.0)
    zero_dec = getattr(fu, rule)(
        [xp.asarray(init)], **HYPER[rule], weight_decay=0.0, decoupled_weight_decay=True
    )
    for _ in range(5):
        g = xp.asarray(rng.standard_normal((5, 7)))
        for upd in (plain, zero_l2, zero_dec):
            upd.step([g])
    want = xp.get(plain.params[0])
    np.testing.assert_array_equal(xp.get(zero_l2.params[0]), want)
    np.testing.assert_array_equal(xp.get(zero_dec.params[0]), want)


def test_decoupled_sgd_by_hand(xp):
    p = xp.asarray(np.full(4, 2.0))
    upd = fu.sgd([p], learning_rate=0.1, weight_decay=0.5, decoupled_weight_decay=True)
    upd.step([xp.asarray(np.full(4, 1.0))])
    # p (1 - lr wd) - lr g = 2 * 0.95 - 0.1
    np.testing.assert_allclose(xp.get(p), 1.8, rtol=0, atol=1e-15)
    l2 = xp.asarray(np.full(4, 2.0))
    fu.sgd([l2], learning_rate=0.1, weight_decay=0.5).step([xp.asarray(np.full(4, 1.0))])
    # p - lr (g + wd p) = 2 - 0.1 * 2
    np.testing.assert_allclose(xp.get(l2), 1.8, rtol=0, atol=1e-15)


def test_weight_decay_is_live_editable_and_checkpointed(xp, rng):
    init = [rng.standard_normal(6), rng.standard_normal((2, 2))]
    upd = fu.apply_momentum(fu.adam([xp.asarray(p) for p in init], weight_decay=0.1))
    assert upd.weight_decay == 0.1 and upd.hyperparameters["weight_decay"] == 0.1
    upd.weight_decay = 0.2
    ref_params = [p.copy() for p in init]
    m = [np.zeros_like(p) for p in init]
    v = [np.zeros_like(p) for p in init]
    vel = [np.zeros_like(p) for p in init]
    for t in range(1, 4):
        grads = [rng.standard_normal(6), rng.standard_normal((2, 2))]
        upd.step([xp.asarray(g) for g in grads])
        REF.adam(ref_params, grads, m, v, step=t, velocity=vel, weight_decay=0.2)
    for got, want in zip(upd.params, ref_params):
        np.testing.assert_allclose(xp.get(got), want, rtol=1e-12, atol=1e-12)
    saved = upd.state_dict()
    assert saved["hyperparameters"]["weight_decay"] == 0.2
    assert saved["decoupled_weight_decay"] is False
    other = fu.apply_momentum(fu.adam([xp.asarray(p) for p in init]))
    other.load_state_dict(saved)
    assert other.weight_decay == 0.2
    adamw = fu.apply_momentum(
        fu.adam([xp.asarray(p) for p in init], weight_decay=0.2, decoupled_weight_decay=True)
    )
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        adamw.load_state_dict(saved)


def test_checkpoint_without_weight_decay_loads_as_zero():
    upd = fu.adam([np.ones(3)])
    saved = upd.state_dict()
    del saved["hyperparameters"]["weight_decay"], saved["decoupled_weight_decay"]
    other = fu.adam([np.ones(3)], weight_decay=0.5)
    other.load_state_dict(saved)
    assert other.weight_decay == 0.0


@pytest.mark.parametrize("rule", BASE_RULES)
def test_functional_weight_decay_matches_reference(rng, rule):
    hyper = {**HYPER[rule], "weight_decay": 0.25, "decoupled_weight_decay": rule == "adam"}
    init = rng.standard_normal(9)
    grads = rng.standard_normal(9)
    got, want = init.copy(), init.copy()
    extra = {"step": 2} if rule in ("adam", "adamax", "amsgrad") else {}
    states_got = [np.full(9, 0.5) for _ in STATE_NAMES[rule]]
    states_want = [s.copy() for s in states_got]
    getattr(fu.functional, rule)(got, grads, *states_got, **hyper, **extra)
    getattr(REF, rule)(want, grads, *states_want, **hyper, **extra)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_bad_weight_decay():
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        fu.adam([np.ones(2)], weight_decay=-0.1)
    with pytest.raises(TypeError, match="decoupled_weight_decay"):
        fu.adam([np.ones(2)], decoupled_weight_decay="yes")
    upd = fu.sgd([np.ones(2)], learning_rate=0.1)
    with pytest.raises(ValueError):
        upd.weight_decay = float("nan")
    assert upd.weight_decay == 0.0
    with pytest.raises(AttributeError):
        upd.decoupled_weight_decay = True
