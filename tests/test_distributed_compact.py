"""fusedupdates.distributed with compact state (state_dtype="int8" / "bfloat16"): the layout
that keeps every 8-bit block inside one param, the sharded step against a single process bit
for bit, checkpoints in the single-process format, and the errors. In process over a one-rank
loopback transport, and under mpiexec on 2 and 3 ranks (tests/mpi_scripts/compact.py).
"""

from __future__ import annotations

import fusedupdates as fu
import fusedupdates.distributed as fud
import numpy as np
import pytest
from _mpi import Loopback, run_mpi
from fusedupdates.distributed._layout import plan_buckets

pytest.importorskip("ml_dtypes")

QB = fu.reference_compact.QUANT_BLOCK
# 8-bit blocks: 4489 and 4290 elements end in partial blocks; the small ones keep float32 state
SHAPES = [(67, 67), (5,), (4096,), (1,), (0,), (33, 130)]
COMPACT_CASES = 60  # tests/mpi_scripts/compact.py: 7 rules x 2 storages x 2 layouts x 2 kinds + 4


def _params(seed=0, dtypes=None):
    rng = np.random.default_rng(seed)
    dtypes = dtypes or [np.float32] * len(SHAPES)
    return [rng.standard_normal(s).astype(d) for s, d in zip(SHAPES, dtypes)]


def _grads(params, step):
    rng = np.random.default_rng([step, 11])
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def _assert_state_dicts_equal(mine, theirs):
    assert {k: v for k, v in mine.items() if k != "state"} == {
        k: v for k, v in theirs.items() if k != "state"
    }
    assert set(mine["state"]) == set(theirs["state"])
    for name, arrays in theirs["state"].items():
        for i, (a, b) in enumerate(zip(mine["state"][name], arrays)):
            assert (a is None) == (b is None), (name, i)
            if a is not None:
                assert a.dtype == b.dtype and a.shape == b.shape, (name, i)
                np.testing.assert_array_equal(
                    a.view(np.uint8), b.view(np.uint8), err_msg=f"{name}[{i}]"
                )


def test_int8_layout_aligns_every_large_param_to_the_blocks():
    dtypes = [np.float32, np.float32, np.float16, np.float32, np.float32, np.float32]
    for size in (1, 2, 3, 5):
        buckets = plan_buckets(SHAPES, dtypes, size, "int8")
        kinds = [(np.dtype(b.dtype).name, b.quantized) for b in buckets]
        assert kinds == [("float32", True), ("float32", False), ("float16", True)]
        big32, small32, big16 = buckets
        assert big32.indices == (0, 5) and small32.indices == (1, 3, 4) and big16.indices == (2,)
        for b in (big32, big16):
            assert all(o % QB == 0 for o in b.offsets)
            assert b.shard % QB == 0 and b.padded >= b.numel
            assert sum(b.counts) + sum(b.gaps) == b.numel
        assert big32.offsets == (0, 4608) and big32.gaps == (4608 - 4489, 0)
        assert big32.numel == 4608 + 4290 and big32.shard == -(-(4608 + 4352) // (QB * size)) * QB
        assert small32.offsets == (0, 5, 6) and small32.gaps == (0, 0, 0)
        assert small32.shard == -(-6 // size)
    # float32 and bfloat16 state: one bucket per dtype, end to end, as before
    plain = plan_buckets(SHAPES, [np.float32] * 6, 3, "bfloat16")
    assert len(plain) == 1 and plain[0].offsets == (0, 4489, 4494, 8590, 8591, 8591)


@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize(
    "rule",
    [
        "adam",
        "adamax",
        "amsgrad",
        "adadelta",
        "adagrad",
        "rmsprop+momentum",
        "momentum",
    ],
)
def test_one_rank_equals_the_single_process_updater(rule, views, state_dtype):
    factory, hyper = {
        "adam": (fu.adam, {"learning_rate": 0.01}),
        "adamax": (fu.adamax, {}),
        "amsgrad": (fu.amsgrad, {"learning_rate": 0.01}),
        "adadelta": (fu.adadelta, {}),
        "adagrad": (fu.adagrad, {"learning_rate": 0.1}),
        "rmsprop+momentum": (
            lambda ps, **kw: fu.apply_momentum(fu.rmsprop(ps, **kw), momentum=0.8),
            {"learning_rate": 0.01},
        ),
        "momentum": (fu.momentum, {"learning_rate": 0.1, "momentum": 0.9}),
    }[rule]
    params = _params()
    ref_params = [p.copy() for p in params]
    if views:
        params = fud.allocate_params(params, Loopback(), state_dtype=state_dtype)
    upd = fud.sharded(factory, params, Loopback(), state_dtype=state_dtype, **hyper)
    ref = factory(ref_params, state_dtype=state_dtype, **hyper)
    assert upd.uses_views == views and upd.local.state_dtype == state_dtype
    for step in range(4):
        grads = _grads(params, step)
        upd.step(grads)
        ref.step(grads)
    for a, b in zip(params, ref_params):
        np.testing.assert_array_equal(a, b)
    _assert_state_dicts_equal(upd.state_dict(), ref.state_dict())
    # the single-process dict loads into the sharded updater, and both go on alike
    upd.load_state_dict(ref.state_dict())
    grads = _grads(params, 9)
    upd.step(grads)
    ref.step(grads)
    for a, b in zip(params, ref_params):
        np.testing.assert_array_equal(a, b)


def test_int8_state_is_codes_and_scales_of_the_large_params_only():
    params = fud.allocate_params(_params(), Loopback(), state_dtype="int8")
    upd = fud.sharded(fu.adam, params, Loopback(), state_dtype="int8")
    ref = fu.adam(_params(), state_dtype="int8")
    upd.step(_grads(params, 0))
    state = upd.state_dict()["state"]
    assert [None if a is None else a.dtype.name for a in state["m"]] == [
        "uint8",
        "float32",
        "uint8",
        "float32",
        "float32",
        "uint8",
    ]
    assert [None if s is None else s.shape for s in state["m_absmax"]] == [
        (18,),  # 4489 elements in blocks of 256
        None,
        (16,),
        None,
        None,
        (17,),
    ]
    full = sum(p.size for p in params) * 4 * 2
    assert upd.state_bytes <= 0.27 * full  # codes + scales of 8-bit state, as on one process
    assert upd.state_bytes >= sum(a.nbytes for g in ref.state.values() for a in g if a is not None)


def test_compact_errors_are_clear_and_change_nothing():
    params = _params()
    with pytest.raises(ValueError, match="pass state_dtype to sharded"):
        fud.sharded(lambda ps, **kw: fu.adam(ps, state_dtype="int8", **kw), params, Loopback())
    with pytest.raises(ValueError, match="state_dtype must be"):
        fud.sharded(fu.adam, params, Loopback(), state_dtype="int4")
    with pytest.raises(ValueError, match="float64"):
        fud.sharded(fu.adam, [np.zeros(5000)], Loopback(), state_dtype="int8")
    with pytest.raises(ValueError, match="state_dtype must be"):
        fud.allocate_params(params, Loopback(), state_dtype="fp8")
    # bfloat16 set inside the factory is fine: its layout is the float32 one
    upd = fud.sharded(
        lambda ps, **kw: fu.adam(ps, state_dtype="bfloat16", **kw), params, Loopback()
    )
    assert upd.local.state_dtype == "bfloat16"

    upd = fud.sharded(fu.adam, params, Loopback(), state_dtype="int8")
    upd.step(_grads(params, 0))
    good = upd.state_dict()
    before = [p.copy() for p in params]
    bad_scales = {**good, "state": {**good["state"]}}
    bad_scales["state"]["m_absmax"] = list(good["state"]["m_absmax"])
    bad_scales["state"]["m_absmax"][0] = np.zeros(17, np.float32)
    with pytest.raises(ValueError, match=r"'m_absmax'\[0\]: shape \(17,\).*18 blocks"):
        upd.load_state_dict(bad_scales)
    bad_codes = {**good, "state": {**good["state"]}}
    bad_codes["state"]["v"] = list(good["state"]["v"])
    bad_codes["state"]["v"][5] = good["state"]["v"][5].astype(np.float32)
    with pytest.raises(TypeError, match=r"'v'\[5\]: dtype float32 does not match uint8"):
        upd.load_state_dict(bad_codes)
    with pytest.raises(ValueError, match="convert_state_dict"):
        upd.load_state_dict(fu.convert_state_dict(good, None))
    _assert_state_dicts_equal(upd.state_dict(), good)
    for a, b in zip(params, before):
        np.testing.assert_array_equal(a, b)
    # converted back from float32 state, the dict loads (what convert_state_dict is for)
    upd.load_state_dict(fu.convert_state_dict(fu.convert_state_dict(good, None), "int8"))
    assert upd.t == 1


@pytest.mark.parametrize("ranks", [2, 3])
def test_sharded_compact_state_matches_one_process(tmp_path, ranks):
    passed = run_mpi("compact.py", ranks, tmp_path, timeout=120)
    assert all(p == passed[0] for p in passed), "ranks ran different cases"
    assert len(passed[0]) == COMPACT_CASES
    assert "adam/int8/views=True/dyadic" in passed[0]
    assert "resume/int8/from-one-process" in passed[0]
