"""bfloat16 params and grads (float32 state) and float32 master weights for float16 and
bfloat16 params: every rule and modifier against the mixed-precision reference."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _mixed_support import (
    BF16,
    FLOAT32_TOL,
    MODES,
    bits,
    build_pair,
    check_mixed,
    random_grads16,
)
from _support import BASE_RULES, HYPER, MODIFIERS

SHAPES = [(1,), (7,), (4097,)]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_matches_reference(rng, rule, modifier, mode):
    upd, runner = build_pair(rng, rule, modifier, mode, SHAPES, HYPER[rule])
    for _ in range(20):
        grads = random_grads16(rng, SHAPES, runner.storage)
        assert upd.step(grads) is None
        runner.step(grads)
        check_mixed(upd, runner, f"{rule}/{modifier}/{mode}")
    assert upd.t == 20


@pytest.mark.parametrize("mode", list(MODES))
def test_large_tensor_matches_reference(rng, mode):
    """Over a million elements: the threaded path, thread boundaries inside tiles."""
    shapes = [((1 << 20) + 37,), (5,)]
    upd, runner = build_pair(rng, "adam", "nesterov", mode, shapes, HYPER["adam"])
    for _ in range(20):
        grads = random_grads16(rng, shapes, runner.storage)
        upd.step(grads)
        runner.step(grads)
    check_mixed(upd, runner, f"adam/nesterov/{mode} 1M")


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("mode", ["bfloat16", "bfloat16+master"])
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_weight_decay_clipping_and_loss_scaling(rng, rule, modifier, mode, decoupled):
    """Weight decay, max_norm and grad_scale together: the grads are the loss-scaled ones
    (times 1024, exact in bfloat16), the reference sees them divided back."""
    hyper = {**HYPER[rule], "weight_decay": 0.05, "decoupled_weight_decay": decoupled}
    upd, runner = build_pair(rng, rule, modifier, mode, SHAPES, hyper)
    scale = 1024.0
    for _ in range(20):
        grads = [
            (g.astype(np.float32) * scale).astype(BF16) for g in random_grads16(rng, SHAPES, BF16)
        ]
        got = upd.step(grads, max_norm=20.0, grad_scale=scale)
        want = runner.step(grads, max_norm=20.0, grad_scale=scale)
        assert got == pytest.approx(want, rel=1e-6)
        assert upd.last_step_applied
        # L2 decay feeds the 16-bit param into the state: its rounding shows there too
        check_mixed(upd, runner, f"{rule}/{modifier}/{mode}", state_tol=1e-3)


@pytest.mark.parametrize("where", [0, 1, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("rule", BASE_RULES)
def test_nonfinite_grad_skips_bit_identically(rng, rule, mode, bad, where):
    upd, runner = build_pair(rng, rule, "momentum", mode, SHAPES, HYPER[rule])
    for _ in range(3):
        upd.step(random_grads16(rng, SHAPES, runner.storage))
    before_t = upd.t
    params = [bits(p).copy() for p in upd.params]
    state = {k: [bits(a).copy() for a in v] for k, v in upd.state.items()}
    grads = random_grads16(rng, SHAPES, runner.storage)
    grads[where][-1] = bad
    assert upd.step(grads, skip_nonfinite=True) is None
    assert not upd.last_step_applied
    assert upd.t == before_t
    for p, want in zip(upd.params, params):
        np.testing.assert_array_equal(bits(p), want)
    for k, v in state.items():
        for a, want in zip(upd.state[k], v):
            np.testing.assert_array_equal(bits(a), want)
    upd.step(random_grads16(rng, SHAPES, runner.storage), skip_nonfinite=True)
    assert upd.last_step_applied and upd.t == before_t + 1


def test_functional_api_takes_bfloat16(rng):
    storage = BF16
    p = rng.standard_normal(300).astype(np.float32).astype(storage)
    g = random_grads16(rng, [(300,)], storage)[0]
    m, v, vel = (np.zeros(300, np.float32) for _ in range(3))
    ref_p = p.astype(np.float64)
    want_m, want_v, want_vel = (np.zeros(300) for _ in range(3))
    norm = fu.functional.adam(
        p, g, m, v, step=1, learning_rate=0.01, velocity=vel, nesterov=True, max_norm=5.0
    )
    from _mixed_support import MIXED
    from _support import REF

    want = MIXED.storage_step(
        REF.adam, [ref_p], [g], [[want_m], [want_v]], storage=storage, step=1,
        learning_rate=0.01, velocity=[want_vel], nesterov=True, max_norm=5.0,
    )  # fmt: skip
    assert norm == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(p.astype(np.float64), ref_p, rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(m, want_m, rtol=FLOAT32_TOL, atol=1e-7)
    np.testing.assert_allclose(vel, want_vel, rtol=FLOAT32_TOL, atol=1e-7)
    with pytest.raises(TypeError, match="float32 state"):
        fu.functional.adam(p, g, m.astype(storage), v, step=2)


@pytest.mark.parametrize("shape, axes", [((300, 70), None), ((5, 9, 300), (0, 2))])
def test_norm_constraints_take_bfloat16(rng, shape, axes):
    x = rng.standard_normal(shape).astype(np.float32).astype(BF16)
    from _support import REF

    got = fu.norm_constraint(x, 3.0, norm_axes=axes)
    want = REF.norm_constraint(x.astype(np.float64), 3.0, norm_axes=axes)
    assert got.dtype == BF16
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-2, atol=1e-2)
    xs = [x, x[:3].copy()]
    out, norm = fu.total_norm_constraint(xs, 2.0, return_norm=True)
    want_out, want_norm = REF.total_norm_constraint(
        [a.astype(np.float64) for a in xs], 2.0, return_norm=True
    )
    assert norm == pytest.approx(want_norm, rel=1e-9)
    for a, b in zip(out, want_out):
        assert a.dtype == BF16
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=1e-2, atol=1e-4)


def test_mixed_storage_dtypes_in_one_updater(rng):
    """float16, bfloat16 and float32 params side by side: one plan per dtype, one call."""
    params = [rng.standard_normal(50).astype(dt) for dt in (np.float16, BF16, np.float32, BF16)]
    alone = [p.copy() for p in params]
    upd = fu.rmsprop(params, learning_rate=0.01)
    singles = [fu.rmsprop([p], learning_rate=0.01) for p in alone]
    for _ in range(5):
        grads = [rng.standard_normal(50).astype(p.dtype) for p in params]
        upd.step(grads)
        for s, g in zip(singles, grads):
            s.step([g])
    for p, q in zip(params, alone):
        np.testing.assert_array_equal(bits(p), bits(q))


def _sync_runner(upd, runner):
    """Start the reference's next step from exactly the library's stored values."""
    for r, p in zip(runner.params, upd.params):
        r[...] = p.astype(np.float64)
    if runner.master is not None:
        for r, m in zip(runner.master, upd.state["master"]):
            r[...] = m
    for name, refs in runner.states.items():
        for r, s in zip(refs, upd.state[name]):
            if r is not None:
                r[...] = s


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("rule", ["sgd", "adagrad", "adam", "amsgrad"])
def test_each_step_rounds_to_nearest_even(rng, rule, mode):
    """Step by step from the same values, the stored 16-bit params are the reference's
    round-to-nearest-even result: bit for bit except where float32 and float64 arithmetic
    land on different sides of a rounding boundary (rare; then one unit in the last place)."""
    shapes = [(20000,)]
    upd, runner = build_pair(rng, rule, "nesterov", mode, shapes, HYPER[rule])
    # explicit mantissa bits, and the spacing of the subnormals
    mantissa_bits, subnormal_ulp = (7, 2.0**-133) if runner.storage == BF16 else (10, 2.0**-24)
    for _ in range(10):
        _sync_runner(upd, runner)
        grads = random_grads16(rng, shapes, runner.storage)
        upd.step(grads)
        runner.step(grads)
        got, want = upd.params[0].astype(np.float64), runner.params[0]
        exact = np.mean(got == want)
        assert exact > 0.999, f"only {exact:.4%} of the params rounded like the reference"
        ulp = np.maximum(np.abs(want) * 2.0**-mantissa_bits, subnormal_ulp)
        off = np.abs(got - want) > ulp
        assert not off.any(), f"more than one ulp off: {got[off][:3]} vs {want[off][:3]}"
