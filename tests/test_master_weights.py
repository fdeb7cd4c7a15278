"""Master weights and bfloat16 beyond the numbers: checkpoints, errors, parameter groups,
every instruction-set path's conversions, and importing without ml_dtypes."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys

import fusedupdates as fu
import numpy as np
import pytest
from _mixed_support import BF16, MODES, bits, build_pair, random_grads16
from _support import HYPER

SHAPES = [(3, 4), (7,)]


def _assert_identical(a, b):
    assert a.t == b.t
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(bits(p), bits(q))
    assert set(a.state) == set(b.state)
    for name in a.state:
        for x, y in zip(a.state[name], b.state[name]):
            if x is None:
                assert y is None
            else:
                np.testing.assert_array_equal(bits(x), bits(y))


@pytest.mark.parametrize("how", ["state_dict", "npz", "pickle", "deepcopy"])
@pytest.mark.parametrize("mode", ["float16+master", "bfloat16+master"])
def test_checkpoint_round_trip_continues_bit_for_bit(rng, tmp_path, mode, how):
    upd, runner = build_pair(rng, "adam", "momentum", mode, SHAPES, HYPER["adam"])
    storage = runner.storage
    grads = [random_grads16(rng, SHAPES, storage) for _ in range(6)]
    for g in grads[:3]:
        upd.step(g)
    sd = upd.state_dict()
    assert sd["state"]["master"][0].dtype == np.float32
    if how == "state_dict":
        resumed = fu.apply_momentum(
            fu.adam([p.copy() for p in upd.params], master_weights=True), momentum=0.0
        )
        resumed.load_state_dict(sd)
    elif how == "npz":
        upd.save(tmp_path / "opt.npz")
        resumed = fu.apply_momentum(
            fu.adam([p.copy() for p in upd.params], master_weights=True), momentum=0.0
        )
        resumed.load(tmp_path / "opt.npz")
    elif how == "pickle":
        resumed = pickle.loads(pickle.dumps(upd))
    else:
        resumed = copy.deepcopy(upd)
    assert resumed.master_weights
    # the master copy is restored, not re-derived from the rounded params
    for m, want in zip(resumed.state["master"], sd["state"]["master"]):
        np.testing.assert_array_equal(m, want)
    for g in grads[3:]:
        upd.step(g)
        resumed.step(g)
    _assert_identical(upd, resumed)


def test_checkpoint_without_master_does_not_load_into_a_master_updater(rng):
    params = [rng.standard_normal(5).astype(BF16)]
    plain = fu.adam([p.copy() for p in params])
    with_master = fu.adam([p.copy() for p in params], master_weights=True)
    with pytest.raises(ValueError, match="master"):
        with_master.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="master"):
        plain.load_state_dict(with_master.state_dict())


def test_master_starts_as_the_param_and_keeps_the_small_updates(rng):
    """The point of master weights: updates below half an ulp of the 16-bit param add up."""
    p = np.full(1000, 1.0, BF16)
    plain = np.full(1000, 1.0, BF16)
    upd = fu.sgd([p], learning_rate=1e-3, master_weights=True)
    lone = fu.sgd([plain], learning_rate=1e-3)
    np.testing.assert_array_equal(upd.state["master"][0], np.ones(1000, np.float32))
    g = np.full(1000, 1.0, BF16)  # each step moves 1e-3, a quarter of bfloat16's ulp at 1
    for _ in range(100):
        upd.step([g])
        lone.step([g])
    np.testing.assert_allclose(upd.state["master"][0], 0.9, rtol=1e-5)
    np.testing.assert_allclose(p.astype(np.float32), 0.9, rtol=4e-3)
    np.testing.assert_array_equal(plain.astype(np.float32), 1.0)  # every step rounded away


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factory", ["sgd", "momentum", "adam", "amsgrad", "adadelta"])
def test_master_weights_need_16bit_params(factory, dtype):
    params = [np.ones(3, np.float16), np.ones(3, dtype)]
    kw = {"learning_rate": 0.1} if factory in ("sgd", "momentum") else {}
    with pytest.raises(ValueError, match=r"params\[1\]: master_weights=True is for float16"):
        getattr(fu, factory)(params, master_weights=True, **kw)


def test_master_weights_must_be_a_bool():
    with pytest.raises(TypeError, match="master_weights must be a bool"):
        fu.adam([np.ones(3, BF16)], master_weights="yes")


_GRAD_MISMATCHES = [(BF16, np.float16), (np.float16, BF16), (BF16, np.float32), (np.float32, BF16)]


@pytest.mark.parametrize(
    "param, grad, master",
    [(p, g, False) for p, g in _GRAD_MISMATCHES]
    + [(p, g, True) for p, g in _GRAD_MISMATCHES if p != np.float32],  # no master for float32
)
def test_grad_dtype_must_match_the_16bit_param(param, grad, master):
    p = np.ones(4, param)
    upd = fu.adam([p], master_weights=master)
    before = upd.state_dict()
    with pytest.raises(TypeError, match=r"grads\[0\]: dtype .* does not match params\[0\]"):
        upd.step([np.ones(4, grad)])
    np.testing.assert_array_equal(bits(p), bits(np.ones(4, param)))
    assert upd.t == 0
    for name, arrays in before["state"].items():
        np.testing.assert_array_equal(arrays[0], upd.state[name][0])


def test_bfloat16_needs_float32_state_in_the_functional_api():
    p, g = np.ones(4, BF16), np.ones(4, BF16)
    with pytest.raises(TypeError, match="bfloat16 params need float32 state"):
        fu.functional.adagrad(p, g, np.zeros(4, BF16))
    with pytest.raises(TypeError, match="bfloat16 params need float32 state"):
        fu.functional.adagrad(p, g, np.zeros(4, np.float64))


def test_parameter_groups_and_a_momentum_subset_with_master_weights(rng):
    """Groups with their own learning rates and a momentum modifier on some params: each
    param evolves exactly as in an updater of its own."""
    init = [rng.standard_normal(s).astype(BF16) for s in [(5,), (6,), (7,)]]
    params = [p.copy() for p in init]
    groups = [{"params": params[:2], "learning_rate": 0.05}, {"params": params[2:]}]
    upd = fu.apply_nesterov_momentum(
        fu.rmsprop(groups, learning_rate=0.01, master_weights=True), params=params[1:]
    )
    singles = []
    for i, p in enumerate(init):
        lone = fu.rmsprop([p.copy()], learning_rate=0.05 if i < 2 else 0.01, master_weights=True)
        singles.append(fu.apply_nesterov_momentum(lone) if i > 0 else lone)
    for _ in range(10):
        grads = [rng.standard_normal(p.shape).astype(BF16) for p in params]
        upd.step(grads)
        for s, g in zip(singles, grads):
            s.step([g])
    for i, s in enumerate(singles):
        np.testing.assert_array_equal(bits(upd.params[i]), bits(s.params[0]))
        np.testing.assert_array_equal(upd.state["master"][i], s.state["master"][0])
    assert upd.state["velocity"][0] is None


def test_frozen_params_keep_their_master(rng):
    params = [rng.standard_normal(9).astype(np.float16) for _ in range(2)]
    upd = fu.adam(params, master_weights=True)
    upd.step([np.ones(9, np.float16), np.ones(9, np.float16)])
    frozen_param, frozen_master = params[1].copy(), upd.state["master"][1].copy()
    upd.step([np.ones(9, np.float16), None])
    np.testing.assert_array_equal(bits(params[1]), bits(frozen_param))
    np.testing.assert_array_equal(upd.state["master"][1], frozen_master)


_CONVERSION_SCRIPT = r"""
import json, sys
import numpy as np, ml_dtypes
import fusedupdates as fu
bf16 = ml_dtypes.bfloat16
rng = np.random.default_rng(3)
special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 3.4e38, -3.4e38,
                    3.3961514e38, 1.00390625, 1.01171875, 1e-39, -1e-40, 2.0**-126], np.float32)
values = np.concatenate([special, rng.standard_normal(5000).astype(np.float32),
                         (rng.standard_normal(3000) * 1e-38).astype(np.float32)])
# sgd with master weights and zero grads writes each master value, narrowed, to the param
p = np.zeros(values.size, bf16)
upd = fu.sgd([p], learning_rate=1.0, master_weights=True)
upd.state["master"][0][...] = values
upd.step([np.zeros(values.size, bf16)])
# without master weights a zero-grad sgd step widens and narrows back: bits must survive
q = values.astype(bf16)
fu.sgd([q], learning_rate=1.0).step([np.zeros(values.size, bf16)])
json.dump({"simd": fu.build_info()["simd"], "narrowed": p.view(np.uint16).tolist(),
           "round_trip": q.view(np.uint16).tolist(),
           "want": values.astype(bf16).view(np.uint16).tolist(),
           "subnormal": (np.abs(values) < 2.0**-126).tolist()}, sys.stdout)
"""


@pytest.mark.parametrize("simd", ["baseline", "avx2", "avx512", "avx512_bf16"])
def test_every_instruction_set_narrows_like_ml_dtypes(simd):
    """Round to nearest even with NaN kept NaN, on every compiled path; the AVX-512 BF16
    instruction differs only on bfloat16 subnormals, which it flushes to zero."""
    env = dict(os.environ, FUSEDUPDATES_SIMD=simd)
    res = subprocess.run(
        [sys.executable, "-c", _CONVERSION_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(res.stdout)
    if out["simd"] != simd:
        pytest.skip(f"this CPU has no {simd} path (runs {out['simd']})")
    got, want = np.array(out["narrowed"]), np.array(out["want"])
    subnormal = np.array(out["subnormal"])
    nan = (want & 0x7FFF) > 0x7F80
    assert np.all((got[nan] & 0x7FFF) > 0x7F80), "a NaN did not stay NaN"
    assert np.array_equal(got[nan] & 0x8000, want[nan] & 0x8000), "a NaN lost its sign"
    ok = ~nan & ~subnormal if simd == "avx512_bf16" else ~nan
    np.testing.assert_array_equal(got[ok], want[ok])
    if simd == "avx512_bf16":
        np.testing.assert_array_equal(got[subnormal & ~nan], want[subnormal & ~nan] & 0x8000)
    round_trip = np.array(out["round_trip"])
    keep = ~subnormal if simd == "avx512_bf16" else np.ones_like(subnormal)
    np.testing.assert_array_equal(round_trip[keep], want[keep])


def test_import_does_not_need_ml_dtypes():
    script = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import numpy as np, fusedupdates as fu\n"
        "p = np.ones(3, np.float16); fu.adam([p], master_weights=True).step([p.copy()])\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.parametrize("mode", list(MODES))
def test_updater_reports_master_weights(mode):
    storage, master = MODES[mode]
    upd = fu.adam([np.ones(2, storage)], master_weights=master)
    assert upd.master_weights is master
    assert ("master" in upd.state) is master
    assert all(s.dtype == np.float32 for v in upd.state.values() for s in v)


@pytest.mark.parametrize("mode", list(MODES))
def test_results_do_not_depend_on_the_thread_count(rng, mode):
    """Every element rounds on its own, wherever a thread's range or a tile starts."""
    storage, master = MODES[mode]
    init = rng.standard_normal(100_003).astype(np.float32).astype(storage)
    grads = random_grads16(rng, [(100_003,)] * 3, storage)
    results = []
    before = fu.get_num_threads()
    try:
        for threads in (1, 2, 3):
            fu.set_num_threads(threads)
            p = init.copy()
            upd = fu.apply_momentum(fu.adam([p], master_weights=master))
            for g in grads:
                upd.step([g], max_norm=100.0)
            results.append(bits(p).copy())
    finally:
        fu.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_an_updater_pickled_before_master_weights_existed_still_loads(rng):
    upd = fu.adam([rng.standard_normal(4).astype(np.float16)])
    rebuild, (groups, recipe, state_dict) = upd.__reduce__()
    old = rebuild(groups, recipe[:4], state_dict)  # the 4-item recipe of earlier versions
    assert not old.master_weights and old.t == upd.t
