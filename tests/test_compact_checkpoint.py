"""Compact state in checkpoints (resume bit for bit, conversion to and from float32 state
dicts) and its errors (bad state_dtype, float64 or CuPy params, bad native arrays)."""

from __future__ import annotations

import copy
import pickle

import fusedupdates as fu
import numpy as np
import pytest
from _compact_support import RC, STATE_DTYPES
from _support import random_grads

SHAPES = [(5000,), (3, 7)]


def _build(params, state_dtype, momentum=True):
    upd = fu.adam(params, learning_rate=0.01, state_dtype=state_dtype)
    return fu.apply_momentum(upd, momentum=0.5) if momentum else upd


def _same(a, b):
    assert a.t == b.t and set(a.state) == set(b.state)
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)
    for name in a.state:
        for x, y in zip(a.state[name], b.state[name]):
            assert (x is None) == (y is None)
            if x is not None:
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


@pytest.mark.parametrize("how", ["state_dict", "npz", "pickle", "deepcopy"])
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_resume_bit_for_bit(rng, tmp_path, state_dtype, how):
    if state_dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    upd = _build(params, state_dtype)
    grads = [random_grads(rng, SHAPES, np.float32) for _ in range(6)]
    for g in grads[:3]:
        upd.step(g)
    sd = upd.state_dict()
    assert sd["state_dtype"] == state_dtype
    if how in ("state_dict", "npz"):
        resumed = _build([p.copy() for p in params], state_dtype)
        if how == "npz":
            upd.save(tmp_path / "opt.npz")
            resumed.load(tmp_path / "opt.npz")
        else:
            resumed.load_state_dict(sd)
    elif how == "pickle":
        resumed = pickle.loads(pickle.dumps(upd))
    else:
        resumed = copy.deepcopy(upd)
    assert resumed.state_dtype == state_dtype
    _same(upd, resumed)
    for g in grads[3:]:
        upd.step(g)
        resumed.step(g)
    _same(upd, resumed)


def test_state_dict_stores_what_is_stored(rng):
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    upd = _build(params, "int8")
    upd.step(random_grads(rng, SHAPES, np.float32))
    sd = upd.state_dict()
    assert sd["state"]["m"][0].dtype == np.uint8 and sd["state"]["m"][1].dtype == np.float32
    assert sd["state"]["v_absmax"][0].shape == (-(-5000 // RC.QUANT_BLOCK),)
    assert sd["state"]["v_absmax"][1] is None
    np.testing.assert_array_equal(sd["state"]["velocity"][0], upd.state["velocity"][0])


@pytest.mark.parametrize("target", STATE_DTYPES)
def test_convert_from_and_to_float32(rng, target):
    if target == "bfloat16":
        pytest.importorskip("ml_dtypes")
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    full = _build([p.copy() for p in params], None)
    for _ in range(3):
        full.step(random_grads(rng, SHAPES, np.float32))
    sd = full.state_dict()
    compact = _build([p.copy() for p in params], target)
    with pytest.raises(ValueError, match="convert_state_dict"):
        compact.load_state_dict(sd)
    converted = fu.convert_state_dict(sd, target)
    compact.load_state_dict(converted)
    for name in ("m", "v", "velocity"):
        want = sd["state"][name][0]
        if target == "int8":
            got = RC.dequantize_blockwise(
                compact.state[name][0], compact.state[name + "_absmax"][0], name != "v"
            )
            rel = 1 / 16
        else:
            got = compact.state[name][0].astype(np.float32)
            rel = 2**-8
        peak = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=rel, atol=peak * 2**-15 * 1.2)
        np.testing.assert_array_equal(compact.state[name][1], sd["state"][name][1].astype(
            compact.state[name][1].dtype))  # fmt: skip
    back = fu.convert_state_dict(compact.state_dict(), None)
    assert "state_dtype" not in back and not any(k.endswith("_absmax") for k in back["state"])
    restored = _build([p.copy() for p in params], None)
    restored.load_state_dict(back)  # a float32 updater takes it as is
    # converting what is already compact changes nothing
    again = fu.convert_state_dict(compact.state_dict(), target)
    for name, arrays in compact.state_dict()["state"].items():
        for x, y in zip(arrays, again["state"][name]):
            if x is not None:
                np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


def test_bad_state_dtype_and_params():
    p = np.zeros(5000, np.float32)
    with pytest.raises(ValueError, match="state_dtype must be"):
        fu.adam([p], state_dtype="int4")
    with pytest.raises(TypeError, match="state_dtype must be"):
        fu.adam([p], state_dtype=np.int8)
    with pytest.raises(ValueError, match="not float64"):
        fu.adam([np.zeros(5000)], state_dtype="int8")
    with pytest.raises(ValueError, match="float64"):
        fu.adam([np.zeros(5000)], state_dtype="float32")
    assert fu.adam([p], state_dtype="float32").state_dtype is None  # the default, spelled out
    with pytest.raises(ValueError, match="float64 state stays float64"):
        sd = fu.adam([np.zeros(5000)]).state_dict()
        fu.convert_state_dict(sd, "int8")
    with pytest.raises(ValueError, match="needs an updater's state_dict"):
        fu.convert_state_dict({"t": 1}, "int8")


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_cupy_params_take_compact_state(state_dtype):
    # the check every factory runs once it knows the params are CuPy arrays: the same answers
    # as on the CPU (the GPU tests are tests/test_compact_state_gpu.py)
    from fusedupdates._compact import check_state_dtype

    assert check_state_dtype(state_dtype, [np.zeros(5000, np.float32)], on_gpu=True) == state_dtype
    assert check_state_dtype(None, [np.zeros(5000, np.float32)], on_gpu=True) is None
    with pytest.raises(ValueError, match="not float64"):
        check_state_dtype(state_dtype, [np.zeros(5000)], on_gpu=True)


def test_native_stepper_checks_compact_arrays():
    p = np.zeros(5000, np.float32)
    blocks = -(-5000 // RC.QUANT_BLOCK)
    m, v = np.zeros(5000, np.uint8), np.zeros(5000, np.uint8)
    scales = [[np.zeros(blocks, np.float32)], [np.zeros(blocks, np.float32)]]
    stepper = fu._cpu.Stepper(4, [p], [[m], [v]], ["m", "v"], scales=scales)
    assert len(stepper) == 1
    with pytest.raises(ValueError, match="missing block scales of uint8 state"):
        fu._cpu.Stepper(4, [p], [[m], [v]], ["m", "v"])
    with pytest.raises(ValueError, match="block scales for 5000 elements"):
        fu._cpu.Stepper(4, [p], [[m], [v]], ["m", "v"],
                        scales=[[np.zeros(3, np.float32)], scales[1]])  # fmt: skip
    with pytest.raises(TypeError, match="block scales are float32"):
        fu._cpu.Stepper(4, [p], [[m], [v]], ["m", "v"],
                        scales=[[np.zeros(blocks)], scales[1]])  # fmt: skip
    with pytest.raises(TypeError, match="share one storage"):
        fu._cpu.Stepper(4, [p], [[m], [np.zeros(5000, np.float32)]], ["m", "v"],
                        scales=[scales[0], [None]])  # fmt: skip
    with pytest.raises(ValueError, match="only for uint8"):
        fu._cpu.Stepper(4, [p], [[np.zeros(5000, np.float32)], [np.zeros(5000, np.float32)]],
                        ["m", "v"], scales=scales)  # fmt: skip
    with pytest.raises(ValueError, match="shares memory|overlap"):
        fu._cpu.Stepper(4, [p], [[m], [v]], ["m", "v"], scales=[scales[0], scales[0]])
    with pytest.raises(TypeError, match="unsupported dtype uint8"):
        fu._cpu.Stepper(4, [m], [[p], [p.copy()]], ["m", "v"])
    with pytest.raises(TypeError, match="float64 params need float64 state"):
        fu._cpu.Stepper(4, [np.zeros(5000)], [[m], [v]], ["m", "v"], scales=scales)


def test_scales_made_read_only_later_are_refused(rng):
    params = [rng.standard_normal(5000).astype(np.float32)]
    upd = fu.adam(params, state_dtype="int8")
    upd.state["v_absmax"][0].flags.writeable = False
    with pytest.raises(ValueError, match="v_absmax.*read-only"):
        upd.step(random_grads(rng, [(5000,)], np.float32))
    assert upd.t == 0


def test_functional_api_refuses_compact_state():
    p, g = np.zeros(10, np.float32), np.ones(10, np.float32)
    with pytest.raises(TypeError, match="compact state is for updaters"):
        fu.functional.adam(p, g, np.zeros(10, np.uint8), np.zeros(10, np.float32), step=1)
