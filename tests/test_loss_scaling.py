"""Loss scaling: grads divided by grad_scale in the kernel, a non-finite grad skips the whole
step (params, state and t bit-identical), and LossScaler follows torch.amp.GradScaler."""

from __future__ import annotations

import math

import fusedupdates as fu
import numpy as np
import pytest
from _support import BASE_RULES, HYPER, MODIFIERS, RefRunner, check_matches, make_updater

SHAPES = [(5,), (3, 4), (7,)]
# torch.amp.GradScaler("cpu", init_scale=1024, growth_factor=3, backoff_factor=0.3,
# growth_interval=4) scales after each step with found_inf = (i * 7) % 11 in (3, 9), recorded
# from torch 2.13.0 (a non-power-of-two factor, so float32 rounding has to match too).
TORCH_FLAGS = [(i * 7) % 11 in (3, 9) for i in range(60)]
TORCH_SCALES = [
    1024.0, 1024.0, 307.20001220703125, 307.20001220703125, 307.20001220703125,
    307.20001220703125, 92.16000366210938, 92.16000366210938, 92.16000366210938,
    92.16000366210938, 276.4800109863281, 276.4800109863281, 276.4800109863281,
    82.94400024414062, 82.94400024414062, 82.94400024414062, 82.94400024414062,
    24.88319969177246, 24.88319969177246, 24.88319969177246, 24.88319969177246,
    74.64959716796875, 74.64959716796875, 74.64959716796875, 22.394878387451172,
    22.394878387451172, 22.394878387451172, 22.394878387451172, 6.71846342086792,
    6.71846342086792, 6.71846342086792, 6.71846342086792, 20.1553897857666, 20.1553897857666,
    20.1553897857666, 6.046617031097412, 6.046617031097412, 6.046617031097412,
    6.046617031097412, 1.8139851093292236, 1.8139851093292236, 1.8139851093292236,
    1.8139851093292236, 5.44195556640625, 5.44195556640625, 5.44195556640625,
    1.6325867176055908, 1.6325867176055908, 1.6325867176055908, 1.6325867176055908,
    0.48977601528167725, 0.48977601528167725, 0.48977601528167725, 0.48977601528167725,
    1.4693280458450317, 1.4693280458450317, 1.4693280458450317, 0.44079840183258057,
    0.44079840183258057, 0.44079840183258057,
]  # fmt: skip


def _snapshot(xp, upd):
    return (
        upd.t,
        [xp.get(p) for p in upd.params],
        {k: [None if a is None else xp.get(a) for a in v] for k, v in upd.state.items()},
    )


def _assert_same(xp, upd, snap):
    t, params, state = snap
    assert upd.t == t
    for p, want in zip(upd.params, params):
        np.testing.assert_array_equal(xp.get(p), want)
    for k, v in state.items():
        for a, want in zip(upd.state[k], v):
            if want is not None:
                np.testing.assert_array_equal(xp.get(a), want)


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_scaled_steps_match_reference_and_bad_ones_change_nothing(xp, rng, rule, modifier):
    init = [rng.standard_normal(s) for s in SHAPES]
    upd = make_updater(fu, rule, [xp.asarray(p) for p in init], modifier, **HYPER[rule])
    runner = RefRunner(rule, init, modifier, **HYPER[rule])
    scale = 1024.0
    cases = [(None, 0), (math.nan, 0), (math.inf, 2), (None, 1), (-math.inf, 1), (math.nan, 2)]
    for bad, where in cases:
        grads = [rng.standard_normal(s) for s in SHAPES]
        max_norm = 3.0 if where == 1 else None
        if bad is None:
            got = upd.step([xp.asarray(g * scale) for g in grads], max_norm, grad_scale=scale)
            want = runner.step(grads, max_norm=max_norm)
            assert bool(upd.last_step_applied)
            if max_norm is not None:
                np.testing.assert_allclose(float(got), want, rtol=1e-12)
            check_matches(upd, runner, xp, np.float64, f"scaled step {rule}")
        else:
            grads[where].flat[grads[where].size // 2] = bad
            snap = _snapshot(xp, upd)
            upd.step([xp.asarray(g * scale) for g in grads], max_norm, grad_scale=scale)
            assert not bool(upd.last_step_applied)
            _assert_same(xp, upd, snap)


def test_skip_nonfinite_without_scaling(xp):
    upd = fu.apply_momentum(fu.adam([xp.asarray(np.ones(4)), xp.asarray(np.ones(2))]))
    upd.step([xp.asarray(np.ones(4)), xp.asarray(np.array([1.0, np.inf]))], skip_nonfinite=True)
    assert upd.t == 0 and not bool(upd.last_step_applied)
    upd.step([xp.asarray(np.ones(4)), xp.asarray(np.ones(2))], skip_nonfinite=True)
    assert upd.t == 1 and bool(upd.last_step_applied)
    # without the flag, a non-finite grad propagates, as in Lasagne
    upd.step([xp.asarray(np.ones(4)), xp.asarray(np.array([1.0, np.nan]))])
    assert upd.t == 2 and np.isnan(xp.get(upd.params[1])[1])


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, 10**400, "2"])
def test_bad_grad_scale(scale):
    upd = fu.sgd([np.ones(3)], learning_rate=0.1)
    with pytest.raises((TypeError, ValueError)):
        upd.step([np.ones(3)], grad_scale=scale)
    assert upd.t == 0 and np.array_equal(upd.params[0], np.ones(3))


def test_loss_scaler_matches_torch_grad_scaler(xp):
    scaler = fu.LossScaler(
        init_scale=1024.0, growth_factor=3.0, backoff_factor=0.3, growth_interval=4
    )
    if xp.name == "cupy":
        scaler._to_device(0)  # the device kernel must follow the same sequence
        assert scaler.device_scale.dtype == np.float32
    got = []
    for i, found_inf in enumerate(TORCH_FLAGS):
        if xp.name == "cupy" and i % 2:
            found_inf = xp.asarray(np.array(found_inf))  # a device flag, as a step writes
        scaler.update(found_inf)
        got.append(scaler.scale)
    assert got == TORCH_SCALES


def test_loss_scaler_drives_an_updater_and_checkpoints(xp):
    upd = fu.adam([xp.asarray(np.ones(3, np.float32))])
    scaler = fu.LossScaler(init_scale=2.0**15, growth_interval=2)
    scaler.step(upd, [xp.asarray(np.full(3, np.inf, np.float32))])  # skipped, scale halves
    assert scaler.scale == 2.0**14 and upd.t == 0
    assert (scaler.device_scale is None) == (xp.name == "numpy")
    for _ in range(2):
        scaler.step(upd, [xp.asarray(np.full(3, scaler.scale, np.float32))])  # unscales to 1
    assert scaler.scale == 2.0**15 and upd.t == 2
    want = fu.adam([np.ones(3, np.float32)])
    want.step([np.ones(3, np.float32)])
    want.step([np.ones(3, np.float32)])
    np.testing.assert_array_equal(xp.get(upd.params[0]), want.params[0])
    twin = fu.LossScaler()
    twin.load_state_dict(scaler.state_dict())
    assert twin.state_dict() == scaler.state_dict()
    with pytest.raises(ValueError):
        twin.load_state_dict({**scaler.state_dict(), "growth_tracker": 5})
    with pytest.raises(ValueError):
        fu.LossScaler(backoff_factor=1.5)


def test_loss_scaler_keeps_scale_when_growth_overflows():
    scaler = fu.LossScaler(init_scale=3.0e38, growth_interval=1)
    scaler.update(False)
    assert scaler.scale == np.float32(3.0e38)
