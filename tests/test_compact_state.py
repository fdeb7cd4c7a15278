"""Compact optimizer state (state_dtype="bfloat16" / "int8"): every rule and momentum mode
against the reference's compact path for 20 steps, 16-bit params, thread-count independence
and a tensor over a million elements."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _compact_support import RC, STATE_DTYPES, check_step
from _support import BASE_RULES, HYPER, MODIFIERS, MU, STATE_NAMES, make_updater, random_grads

# 1 and 7 stay float32 under int8 (< 4096 elements); 4097 and 5120 are quantized, with a
# partial last block (4097 = 16 blocks + 1 element).
SHAPES = [(4097,), (1,), (7,), (64, 80)]


def _params(rng, shapes, dtype=np.float32):
    return [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_every_rule_matches_reference_compact_path(rng, rule, modifier, state_dtype):
    if rule == "sgd" and modifier == "none":
        pytest.skip("sgd keeps no state")
    params = _params(rng, SHAPES)
    upd = make_updater(fu, rule, params, modifier, state_dtype=state_dtype, **HYPER[rule])
    assert upd.state_dtype == state_dtype
    for t in range(1, 21):
        grads = random_grads(rng, SHAPES, np.float32)
        check_step(upd, rule, modifier, grads, HYPER[rule], MU, t, f"{rule}+{modifier}")


# The terms update_element adds around the rule, with compact state: the total-norm clip's
# multiplier (these grads' norm is ~100), L2 decay and decoupled decay.
GRADIENT_TERMS = {
    "clipped": ({}, 10.0),
    "l2": ({"weight_decay": 0.3}, None),
    "decoupled": ({"weight_decay": 0.3, "decoupled_weight_decay": True}, None),
}


@pytest.mark.parametrize("terms", list(GRADIENT_TERMS))
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize("rule", [r for r in BASE_RULES if r != "sgd"])
def test_gradient_terms_match_reference_compact_path(rng, rule, state_dtype, terms):
    extra, max_norm = GRADIENT_TERMS[terms]
    hyper = {**HYPER[rule], **extra}
    params = _params(rng, SHAPES)
    upd = make_updater(fu, rule, params, "none", state_dtype=state_dtype, **hyper)
    for t in range(1, 11):
        grads = random_grads(rng, SHAPES, np.float32)
        what = f"{rule}+{terms}"
        check_step(upd, rule, "none", grads, hyper, MU, t, what, max_norm=max_norm)


def test_storage_layout(rng):
    params = _params(rng, SHAPES)
    upd = fu.apply_momentum(fu.adam(params, state_dtype="int8"), params=params[:2])
    st = upd.state
    assert set(st) == {"m", "v", "velocity", "m_absmax", "v_absmax", "velocity_absmax"}
    for name in ("m", "v"):
        assert [a.dtype for a in st[name]] == [np.uint8, np.float32, np.float32, np.uint8]
        assert [a.shape for a in st[name]] == [p.shape for p in params]
        blocks = [-(-4097 // RC.QUANT_BLOCK), None, None, -(-5120 // RC.QUANT_BLOCK)]
        assert [None if a is None else a.shape[0] for a in st[name + "_absmax"]] == blocks
    assert st["velocity"][2] is None and st["velocity"][0].dtype == np.uint8
    assert st["velocity_absmax"][1] is None and st["velocity_absmax"][2] is None
    bf = fu.rmsprop(params, state_dtype="bfloat16")
    assert [a.dtype.name for a in bf.state["accu"]] == ["bfloat16"] * 4


def test_state_memory_int8_is_at_most_26_percent(rng):
    params = _params(rng, [(1 << 16,), (300, 700)])
    full = fu.adam([p.copy() for p in params])
    small = fu.adam(params, state_dtype="int8")
    bf = fu.adam([p.copy() for p in params], state_dtype="bfloat16")

    def nbytes(u):
        return sum(a.nbytes for arrays in u.state.values() for a in arrays if a is not None)

    assert nbytes(small) / nbytes(full) <= 0.26
    assert nbytes(bf) / nbytes(full) == 0.5


@pytest.mark.parametrize("mode", ["bfloat16", "float16", "bfloat16+master"])
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_16bit_params_with_compact_state(rng, mode, state_dtype):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    storage = np.dtype(ml_dtypes.bfloat16) if mode.startswith("bfloat16") else np.float16
    master = mode.endswith("+master")
    shapes = [(4500,), (5,)]
    params = _params(rng, shapes, storage)
    upd = fu.apply_nesterov_momentum(
        fu.adam(params, master_weights=master, state_dtype=state_dtype, **HYPER["adam"]),
        momentum=MU,
    )
    tol = 2e-2 if storage != np.float16 else 3e-3
    for t in range(1, 11):
        grads = [g.astype(storage) for g in random_grads(rng, shapes, np.float32)]
        if master:  # the reference starts from the master copy, the param is its rounding
            _check_master_step(upd, grads, t)
        else:
            check_step(upd, "adam", "nesterov", grads, HYPER["adam"], MU, t, mode, storage, tol)


def _check_master_step(upd, grads, t):
    from _compact_support import compare_stored, encode_like, reference_step

    masters = [m.copy() for m in upd.state["master"]]
    # reference_step reads upd.params; with master weights the rule runs on the master copy
    fake = _MasterView(upd, masters)
    params, work = reference_step(fake, "adam", "nesterov", grads, HYPER["adam"], MU, t)
    upd.step(grads)
    for i, (m, r) in enumerate(zip(upd.state["master"], params)):
        np.testing.assert_allclose(m, r, rtol=1e-5, atol=1e-6, err_msg=f"master[{i}]")
        np.testing.assert_array_equal(
            upd.params[i].view(np.uint16), m.astype(upd.params[i].dtype).view(np.uint16)
        )
    state = upd.state
    for name, arrays in work.items():
        for i, want in enumerate(arrays):
            codes, absmax = encode_like(state[name][i], want, name)
            scales = state.get(name + "_absmax", [None] * len(arrays))[i]
            compare_stored(state[name][i], scales, codes, absmax, name, f"master {name}[{i}]")


class _MasterView:
    def __init__(self, upd, masters):
        self.state, self.params = upd.state, masters


def test_result_does_not_depend_on_thread_count(rng):
    shapes = [(70001,), (4096,), (3,)]
    base = _params(rng, shapes)
    grads = [random_grads(rng, shapes, np.float32) for _ in range(3)]
    results = []
    for threads in (1, 2, 3):
        fu.set_num_threads(threads)
        try:
            params = [p.copy() for p in base]
            upd = fu.apply_momentum(fu.adam(params, state_dtype="int8"), momentum=0.9)
            for g in grads:
                upd.step(g)
            results.append((params, upd.state))
        finally:
            fu.set_num_threads(0)
    for params, state in results[1:]:
        for a, b in zip(params, results[0][0]):
            np.testing.assert_array_equal(a, b)
        for name in state:
            for a, b in zip(state[name], results[0][1][name]):
                if a is not None:
                    np.testing.assert_array_equal(a, b)


def test_over_a_million_elements(rng):
    shapes = [((1 << 20) + 3,)]
    params = _params(rng, shapes)
    upd = fu.apply_momentum(fu.adam(params, state_dtype="int8", **HYPER["adam"]), momentum=MU)
    for t in range(1, 4):
        check_step(upd, "adam", "momentum", random_grads(rng, shapes, np.float32),
                   HYPER["adam"], MU, t, "1M")  # fmt: skip


def test_frozen_param_keeps_its_compact_state(rng):
    params = _params(rng, [(5000,), (5000,)])
    upd = fu.adam(params, state_dtype="int8")
    upd.step(random_grads(rng, [(5000,), (5000,)], np.float32))
    before = {k: [None if a is None else a.copy() for a in v] for k, v in upd.state.items()}
    p1 = params[1].copy()
    upd.step([random_grads(rng, [(5000,)], np.float32)[0], None])
    np.testing.assert_array_equal(params[1], p1)
    for name in ("m", "v", "m_absmax", "v_absmax"):
        np.testing.assert_array_equal(upd.state[name][1], before[name][1])
        assert not np.array_equal(upd.state[name][0], before[name][0])


def test_skipped_step_leaves_compact_state_bit_identical(rng):
    params = _params(rng, [(5000,)])
    upd = fu.adam(params, state_dtype="int8")
    upd.step(random_grads(rng, [(5000,)], np.float32))
    before = {k: [a.copy() for a in v] for k, v in upd.state.items()}
    p0 = params[0].copy()
    g = random_grads(rng, [(5000,)], np.float32)[0]
    g[4321] = np.nan
    upd.step([g], skip_nonfinite=True)
    assert not upd.last_step_applied and upd.t == 1
    np.testing.assert_array_equal(params[0], p0)
    for name, arrays in upd.state.items():
        np.testing.assert_array_equal(arrays[0], before[name][0])


def test_state_names_cover_every_rule():
    for rule, names in STATE_NAMES.items():
        if not names:
            continue
        upd = getattr(fu, rule)([np.zeros(5000, np.float32)], state_dtype="int8")
        assert set(upd.state) == set(names) | {n + "_absmax" for n in names}
    assert RC.QUANT_BLOCK == fu._cpu.QUANT_BLOCK


@pytest.mark.parametrize("rule", ["adam", "rmsprop", "adagrad", "amsgrad"])
def test_nonfinite_grads_stay_in_their_own_element(rng, rule):
    """Without skip_nonfinite a NaN or an Inf grad enters the state: its element holds the
    NaN code and the rest of its block keeps a finite scale and codes, like the reference."""
    b = RC.QUANT_BLOCK
    shape = [(20 * b + 37,)]  # >= 4096 elements: 8-bit state
    params = _params(rng, shape)
    upd = make_updater(fu, rule, params, "momentum", state_dtype="int8", **HYPER[rule])
    for t in range(1, 4):
        grads = random_grads(rng, shape, np.float32)
        grads[0][b + 5] = np.nan
        grads[0][3 * b] = np.inf
        grads[0][6 * b - 1] = -np.inf
        grads[0][20 * b + 3] = np.nan  # the partial last block
        with np.errstate(invalid="ignore", over="ignore"):
            check_step(upd, rule, "momentum", grads, HYPER[rule], MU, t, f"{rule} t={t}")
    for name in STATE_NAMES[rule]:
        codes, absmax = upd.state[name][0], upd.state[name + "_absmax"][0]
        assert codes.dtype == np.uint8 and np.all(np.isfinite(absmax)) and np.all(absmax > 0)
        nan_code = RC.SIGNED_NAN if name == "m" else RC.UNSIGNED_NAN
        assert codes[b + 5] == nan_code and codes[20 * b + 3] == nan_code, name
