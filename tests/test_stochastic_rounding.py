"""rounding="stochastic" for float16 / bfloat16 params: the kernel's counter-based rounding
against the reference's copy of it, reproducibility, unbiasedness, errors, checkpoints."""

from __future__ import annotations

import pickle

import fusedupdates as fu
import numpy as np
import pytest
from _mixed_support import BF16, MIXED, MixedRunner, bits, random_grads16
from _support import HYPER, make_updater

STORAGES = {"float16": np.dtype(np.float16), "bfloat16": BF16}


def _stochastic_pair(rng, rule, storage, shapes, modifier="none", **hyper):
    init = [rng.standard_normal(s).astype(np.float32).astype(storage) for s in shapes]
    hyper = {**HYPER[rule], **hyper}
    upd = make_updater(fu, rule, [p.copy() for p in init], modifier, rounding="stochastic", **hyper)
    runner = MixedRunner(rule, init, modifier, storage, False, stochastic=True, **hyper)
    return upd, runner


@pytest.mark.parametrize("storage", list(STORAGES))
@pytest.mark.parametrize(
    "rule, modifier", [("sgd", "none"), ("adam", "nesterov"), ("adadelta", "momentum")]
)
def test_matches_the_reference_rounding(rng, rule, modifier, storage):
    """From the same values each step, the kernel's stochastic rounding is the reference's:
    bit for bit, except where float32 and float64 arithmetic land on different sides of a
    random boundary (rare)."""
    dtype = STORAGES[storage]
    shapes = [(20000,), (7,)]
    upd, runner = _stochastic_pair(rng, rule, dtype, shapes, modifier)
    assert upd.rounding == "stochastic"
    for _ in range(8):
        for r, p in zip(runner.params, upd.params):
            r[...] = p.astype(np.float64)
        for name, refs in runner.states.items():
            for r, s in zip(refs, upd.state[name]):
                r[...] = s
        grads = random_grads16(rng, shapes, dtype)
        upd.step(grads)
        runner.step(grads)
        got, want = upd.params[0].astype(np.float64), runner.params[0]
        assert np.mean(got == want) > 0.999
        np.testing.assert_allclose(got, want, rtol=2.0**-6 if dtype == BF16 else 2.0**-9)


@pytest.mark.parametrize("storage", list(STORAGES))
def test_values_of_every_magnitude_round_like_the_reference(rng, storage):
    """Decoupled decay scales each param by 0.7: values from 2^-30 (below float16's smallest
    subnormal) to 2^15, and every special value, through the kernel and the reference."""
    dtype = STORAGES[storage]
    mags = 2.0 ** rng.uniform(-30, 15, size=30000) * rng.choice([-1, 1], size=30000)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, -65504.0])
    init = np.concatenate([special, mags]).astype(np.float32).astype(dtype)
    p = init.copy()
    upd = fu.sgd([p], 1.0, weight_decay=0.3, decoupled_weight_decay=True, rounding="stochastic")
    upd.step([np.zeros(p.shape, dtype)])
    keep = np.float32(1.0) - np.float32(0.3)  # the kernel's float32 factor, exactly
    want = MIXED.stochastic_round(init.astype(np.float32) * keep, dtype, 1, 0)
    got = p.astype(np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~both_nan], want[~both_nan])


@pytest.mark.parametrize("storage", list(STORAGES))
def test_small_updates_survive_on_average(storage):
    """Each step moves 1e-3, below half a unit in the last place at 1 (bfloat16: 3.9e-3,
    float16: 4.9e-4 is above, so float16 gets 2e-4): rounding to nearest loses every one of
    them, stochastic rounding keeps them on average."""
    dtype = STORAGES[storage]
    lr = 1e-3 if dtype == BF16 else 2e-4
    n, steps = 20000, 100
    p, q = np.ones(n, dtype), np.ones(n, dtype)
    stochastic = fu.sgd([p], lr, rounding="stochastic")
    nearest = fu.sgd([q], lr)
    g = np.ones(n, dtype)
    for _ in range(steps):
        stochastic.step([g])
        nearest.step([g])
    np.testing.assert_array_equal(q.astype(np.float32), 1.0)
    mean = float(p.astype(np.float64).mean())
    assert mean == pytest.approx(1.0 - steps * lr, abs=2e-4)


@pytest.mark.parametrize("storage", list(STORAGES))
def test_reproducible_and_independent_of_the_thread_count(rng, storage):
    dtype = STORAGES[storage]
    init = rng.standard_normal(100_003).astype(np.float32).astype(dtype)
    grads = random_grads16(rng, [(100_003,)] * 3, dtype)
    results = []
    before = fu.get_num_threads()
    try:
        for threads in (1, 2, 3, 2):
            fu.set_num_threads(threads)
            p = init.copy()
            upd = fu.apply_momentum(fu.adam([p], rounding="stochastic"))
            for g in grads:
                upd.step([g])
            results.append(bits(p).copy())
    finally:
        fu.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_checkpoints_continue_bit_for_bit(rng, tmp_path):
    params = [rng.standard_normal(s).astype(BF16) for s in [(50,), (3, 4)]]
    upd = fu.rmsprop(params, learning_rate=0.01, rounding="stochastic")
    grads = [random_grads16(rng, [(50,), (3, 4)], BF16) for _ in range(6)]
    for g in grads[:3]:
        upd.step(g)
    copied = pickle.loads(pickle.dumps(upd))
    assert copied.rounding == "stochastic"
    upd.save(tmp_path / "opt.npz")
    loaded = fu.rmsprop([p.copy() for p in upd.params], rounding="stochastic")
    loaded.load(tmp_path / "opt.npz")
    for g in grads[3:]:
        for u in (upd, copied, loaded):
            u.step(g)
    for u in (copied, loaded):
        for a, b in zip(u.params, upd.params):
            np.testing.assert_array_equal(bits(a), bits(b))


def test_bad_rounding_arguments_are_refused():
    with pytest.raises(TypeError, match="rounding must be a str"):
        fu.adam([np.ones(3, BF16)], rounding=1)
    with pytest.raises(ValueError, match="rounding must be one of"):
        fu.adam([np.ones(3, BF16)], rounding="up")
    with pytest.raises(ValueError, match="instead of master weights"):
        fu.adam([np.ones(3, BF16)], rounding="stochastic", master_weights=True)
    with pytest.raises(ValueError, match=r"params\[1\]: rounding='stochastic' is for float16"):
        fu.adam([np.ones(3, np.float16), np.ones(3, np.float32)], rounding="stochastic")
    assert fu.adam([np.ones(3, np.float32)], rounding="nearest").rounding == "nearest"


def test_reference_keeps_representable_values(rng):
    x = rng.standard_normal(1000).astype(np.float16)
    np.testing.assert_array_equal(MIXED.stochastic_round(x, np.float16, 5, 2), x)
