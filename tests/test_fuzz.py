"""Property-based fuzzing of the public API with hypothesis.

Random rules, modifiers, dtypes, shapes (0-size and 1 included), hyperparameters (valid and
invalid), max_norm and corruptions of the inputs (wrong dtype or shape, aliasing, strided,
read-only and misaligned arrays, wrong list lengths, wrong types). Every call must either
succeed and match ``fusedupdates.reference`` (through ``_support.RefRunner``), or raise
TypeError / ValueError leaving every param and state buffer bit for bit as it was and ``t``
unchanged. Inputs that are always wrong must be refused; a corruption that leaves nothing wrong
(a "strided" view of one element, a read-only grad) must be accepted or refused consistently
with that.

The examples are derandomised (the same ones every run, so CI never flakes); set
``FU_FUZZ_RANDOM=1`` to explore new ones and ``FU_FUZZ_EXAMPLES=n`` to run n times as many.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import fusedupdates as fu
import numpy as np
import pytest
from _support import MU, STATE_DTYPE, STATE_NAMES, STEP_RULES, TOL, RefRunner, assert_close

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
try:  # hypothesis caches what it learns in ./.hypothesis even without a database: not here
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "fusedupdates-hypothesis")
except ImportError:  # an older hypothesis: it writes .hypothesis, which it git-ignores itself
    pass

SCALE = int(os.environ.get("FU_FUZZ_EXAMPLES", "1"))
SETTINGS = dict(
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    derandomize=not os.environ.get("FU_FUZZ_RANDOM"),
    suppress_health_check=list(hypothesis.HealthCheck),
)
DTYPES = [np.float16, np.float32, np.float64]
RHO_LIKE = {"rho", "beta1", "beta2", "momentum"}
MODIFIER_FACTORIES = {"momentum": "momentum", "nesterov_momentum": "nesterov"}
ALWAYS_REFUSED = {
    "wrong dtype",
    "wrong shape",
    "wrong type",
    "grads too short",
    "grads too long",
    "invalid",
    "state dtype",
    "state shape",
    "state too short",
}


# ---- strategies --------------------------------------------------------------------------


def valid_value(data, name):
    if name in RHO_LIKE:
        return data.draw(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0.0, 0.95), label=name)
    if name == "epsilon":
        return data.draw(st.sampled_from([1e-6, 0.1]) | st.floats(1e-6, 0.5), label=name)
    return data.draw(st.sampled_from([0.0, 0.01, 0.1]) | st.floats(1e-3, 0.5), label=name)


def invalid_value(data, name):
    bad = [float("nan"), float("inf"), float("-inf"), "0.1", None, True]
    bad += [1.0, 1.5, -0.1] if name in RHO_LIKE else [-1e-3]  # lr and epsilon are >= 0
    return data.draw(st.sampled_from(bad), label=f"invalid {name}")


def draw_max_norm(data):
    # Not below 1e-3: a multiplier of 1e-80 is 0 in float32, which the float64 reference
    # would count as a mismatch.
    return data.draw(
        st.sampled_from([None, None, 0.0, 0.5, 1e3]) | st.floats(1e-3, 10.0), label="max_norm"
    )


def hyper_names(rule):
    if rule in ("rmsprop", "adadelta"):
        return ["learning_rate", "rho", "epsilon"]
    if rule == "adagrad":
        return ["learning_rate", "epsilon"]
    if rule in STEP_RULES:
        return ["learning_rate", "beta1", "beta2", "epsilon"]
    return ["learning_rate"]


def draw_problem(data, rules):
    """(rule, modifier, dtype, params, hyperparameters, momentum subset, rng)."""
    rule = data.draw(st.sampled_from(rules), label="rule")
    if rule in MODIFIER_FACTORIES:
        modifier = MODIFIER_FACTORIES[rule]
    else:
        modifier = data.draw(st.sampled_from(["none", "momentum", "nesterov"]), label="modifier")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    shape = st.lists(st.sampled_from([0, 1, 1, 2, 3, 5]), max_size=3).map(tuple)
    shapes = data.draw(st.lists(shape, min_size=1, max_size=3), label="shapes")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    params = [random_array(rng, s, dtype) for s in shapes]
    base = "sgd" if rule in MODIFIER_FACTORIES else rule
    hyper = {n: valid_value(data, n) for n in hyper_names(base)}
    subset = None
    if modifier != "none" and rule not in MODIFIER_FACTORIES:
        subset = data.draw(st.none() | st.sets(st.integers(0, len(params) - 1), min_size=1))
    return rule, modifier, dtype, params, hyper, subset, rng


# ---- corrupted copies ----------------------------------------------------------------------


def random_array(rng, shape, dtype, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale).astype(dtype)  # 0-d stays an array


def strided(a):
    big = np.zeros(a.shape + (2,), a.dtype)
    big[..., 0] = a
    return big[..., 0]


def misaligned(a):
    buffer = np.zeros(a.nbytes + a.itemsize, np.uint8)
    out = np.ndarray(a.shape, a.dtype, buffer=buffer, offset=1)
    out[...] = a
    return out


def read_only(a):
    b = a.copy()
    b.flags.writeable = False
    return b


def other_shape(a):
    return np.zeros(a.shape + (2,) if a.size else (1,), a.dtype)


def broken_layout(a):
    """True when an array can never be a kernel operand (strided or misaligned memory)."""
    return isinstance(a, np.ndarray) and not (a.flags.c_contiguous and a.flags.aligned)


def draw_grad_corruption(data, grads, aliasable):
    """At most one corruption of the grads list: (kind or None, the list to pass)."""
    kinds = [None] * 3 + ["wrong dtype", "wrong shape", "wrong type", "strided", "misaligned"]
    kinds += ["read-only grad", "grads too short", "grads too long", "alias"]
    kind = data.draw(st.sampled_from(kinds), label="grad corruption")
    out = list(grads)
    i = data.draw(st.integers(0, len(grads) - 1), label="corrupted index")
    if kind == "wrong dtype":
        others = [d for d in (np.float16, np.float32, np.float64, np.int32) if d != grads[i].dtype]
        out[i] = grads[i].astype(data.draw(st.sampled_from(others)))
    elif kind == "wrong shape":
        out[i] = other_shape(grads[i])
    elif kind == "wrong type":
        out[i] = grads[i].tolist()
    elif kind in ("strided", "misaligned", "read-only grad"):
        out[i] = {"strided": strided, "misaligned": misaligned}.get(kind, read_only)(grads[i])
    elif kind == "grads too short":
        out = out[:-1]
    elif kind == "grads too long":
        out.append(grads[0].copy())
    elif kind == "alias":  # the grad IS a param or a state buffer
        out[i] = data.draw(st.sampled_from([a for a in aliasable if a is not None]))
    return kind, out


# ---- checks --------------------------------------------------------------------------------


def bits(arrays):
    return [None if a is None else (a.dtype.str, a.shape, a.tobytes()) for a in arrays]


def all_bits(params, states, t=None):
    return bits(params), {n: bits(v) for n, v in states.items()}, t


def assert_acceptable(kind, passed, owned):
    """A call that succeeded: nothing it got may have been wrong."""
    assert kind not in ALWAYS_REFUSED, f"{kind} was accepted"
    assert not any(broken_layout(g) for g in passed), f"{kind}: a strided/misaligned grad"
    if kind == "alias":
        assert not any(g.size and any(g is a for a in owned) for g in passed), (
            "a grad aliasing a param or a state buffer was accepted"
        )


def assert_same_as_reference(norm, want_norm, params, states, runner, dtype):
    if want_norm is None:
        assert norm is None
    else:
        assert float(norm) == pytest.approx(want_norm, rel=1e-9, abs=1e-300)
    ptol, stol = TOL[np.dtype(dtype)]
    for i, (p, r) in enumerate(zip(params, runner.params)):
        assert_close(p, r, ptol, f"params[{i}] t={runner.t}", runner.peaks[("params", i)])
    for name, refs in runner.states.items():
        for i, (s, r) in enumerate(zip(states[name], refs)):
            if r is None:
                assert s is None
                continue
            assert s.dtype == STATE_DTYPE[np.dtype(dtype)]
            assert_close(s, r, stol, f"{name}[{i}] t={runner.t}", runner.peaks[(name, i)])


# ---- the properties --------------------------------------------------------------------------


def build_updater(data, rule, modifier, params, hyper, subset):
    """The updater, maybe from a corrupted recipe: (corruption, updater or None if refused)."""
    kinds = [None] * 4 + ["invalid", "read-only", "strided", "duplicate"]
    kind = data.draw(st.sampled_from(kinds), label="construction corruption")
    kwargs, given = dict(hyper), list(params)
    if kind == "invalid":
        name = data.draw(st.sampled_from(sorted(kwargs)))
        kwargs[name] = invalid_value(data, name)
    elif kind in ("read-only", "strided"):
        given[0] = read_only(params[0]) if kind == "read-only" else strided(params[0])
    elif kind == "duplicate":
        given.append(params[0])
    try:
        if rule in MODIFIER_FACTORIES:
            return kind, getattr(fu, rule)(given, momentum=MU, **kwargs)
        upd = getattr(fu, rule)(given, **kwargs)
        if modifier == "none":
            return kind, upd
        wrap = fu.apply_momentum if modifier == "momentum" else fu.apply_nesterov_momentum
        chosen = None if subset is None else [given[i] for i in sorted(subset)]
        return kind, wrap(upd, params=chosen, momentum=MU)
    except (TypeError, ValueError) as err:
        hypothesis.event(f"construction refused: {kind}")
        assert kind is not None, f"a valid construction failed: {err}"
        return kind, None


@hypothesis.settings(max_examples=90 * SCALE, **SETTINGS)
@hypothesis.given(st.data())
def test_fuzz_updater(data):
    rule, modifier, dtype, params, hyper, subset, rng = draw_problem(
        data, [*STATE_NAMES, *MODIFIER_FACTORIES]
    )
    init = bits(params)
    build, upd = build_updater(data, rule, modifier, params, hyper, subset)
    if upd is None:
        assert bits(params) == init
        return
    # A corrupted recipe may only be accepted when nothing is actually wrong: a read-only or
    # duplicated 0-size array (no memory to write), a "strided" view of at most one element.
    size = params[0].size
    assert (
        build is None
        or {"read-only": size == 0, "strided": size <= 1}.get(build, False)
        or (build == "duplicate" and size == 0)
    ), f"construction with a {build} parameter list was accepted"
    if build == "duplicate":
        return  # which entry a modifier's params= picks then is moot
    params = list(upd.params)  # the accepted copy, for read-only / strided
    base = "sgd" if rule in MODIFIER_FACTORIES else rule
    runner = RefRunner(base, params, modifier, MU, subset, round_to=dtype, **hyper)

    for _ in range(data.draw(st.integers(1, 3), label="steps")):
        grads = [random_array(rng, p.shape, dtype, 2.0) for p in params]
        max_norm = draw_max_norm(data)
        owned = params + [a for arrays in upd.state.values() for a in arrays if a is not None]
        kind, passed = draw_grad_corruption(data, grads, owned)
        restore = None
        if kind is None and data.draw(st.booleans(), label="invalid scalar"):
            kind = "invalid"
            names = sorted(hyper) + ["momentum"] * (modifier != "none")
            name = data.draw(st.sampled_from([*names, "max_norm"]))
            if name == "max_norm":
                max_norm = data.draw(st.sampled_from([-1.0, float("nan"), float("inf"), "1"]))
            else:
                restore = (name, getattr(upd, name))
                try:
                    setattr(upd, name, invalid_value(data, name))
                except (TypeError, ValueError):  # refused when set: the step is valid
                    restore, kind = None, None
        seen = [np.array(g, copy=True) for g in passed] if kind == "alias" else grads
        before = all_bits(upd.params, upd.state, upd.t)
        try:
            norm = upd.step(passed, max_norm=max_norm)
        except (TypeError, ValueError) as err:
            hypothesis.event(f"refused: {kind}")
            assert kind not in (None, "read-only grad"), f"a valid step failed ({kind}): {err}"
            assert all_bits(upd.params, upd.state, upd.t) == before, f"{kind}: it wrote"
        else:
            hypothesis.event(f"stepped: {kind}")
            assert_acceptable(kind, passed, owned)
            want = runner.step(seen, max_norm=max_norm)
            assert upd.t == runner.t
            assert_same_as_reference(norm, want, upd.params, upd.state, runner, dtype)
        if restore is not None:
            setattr(upd, *restore)


STATE_CORRUPTIONS = {
    "state dtype": lambda a: a.astype(np.float16),  # never a state dtype for float16 params
    "state shape": other_shape,
    "read-only state": read_only,
    "missing state": lambda a: None,
}


def corrupt_call(data, kind, rule, kwargs, params, states):
    """A corruption of the call other than of the grads: returns (kind, params, states)."""
    params, states = list(params), {n: list(v) for n, v in states.items()}
    if kind == "invalid":
        names = [n for n in kwargs if n not in ("velocity", "nesterov")]
        name = data.draw(st.sampled_from(sorted(names)))
        if name == "step":
            kwargs["step"] = data.draw(st.sampled_from([0, -1, 1.5, None, True]))
        elif name == "max_norm":
            kwargs["max_norm"] = data.draw(st.sampled_from([-1.0, float("nan"), "1"]))
        else:
            kwargs[name] = invalid_value(data, name)
    elif kind in ("read-only param", "misaligned param"):
        params[0] = read_only(params[0]) if kind == "read-only param" else misaligned(params[0])
    elif kind in STATE_CORRUPTIONS or kind == "state too short":
        if not STATE_NAMES[rule]:
            kind = None  # sgd has no state to corrupt
        else:
            name = data.draw(st.sampled_from(STATE_NAMES[rule]), label="corrupted state")
            if kind == "state too short":
                states[name] = states[name][:-1]
            else:
                states[name][0] = STATE_CORRUPTIONS[kind](states[name][0])
    if "velocity" in states:
        kwargs["velocity"] = states["velocity"]
    return kind, params, states


@hypothesis.settings(max_examples=60 * SCALE, **SETTINGS)
@hypothesis.given(st.data())
def test_fuzz_functional(data):
    rule, modifier, dtype, params, hyper, subset, rng = draw_problem(data, list(STATE_NAMES))
    state_dtype = STATE_DTYPE[np.dtype(dtype)]
    states = {n: [np.zeros(p.shape, state_dtype) for p in params] for n in STATE_NAMES[rule]}
    if modifier != "none":
        states["velocity"] = [
            np.zeros(p.shape, state_dtype) if subset is None or i in subset else None
            for i, p in enumerate(params)
        ]
    runner = RefRunner(rule, params, modifier, MU, subset, round_to=dtype, **hyper)
    other_kinds = [None, None, "invalid", "read-only param", "misaligned param"]
    other_kinds += [*STATE_CORRUPTIONS, "state too short"]

    for _ in range(data.draw(st.integers(1, 3), label="steps")):
        grads = [random_array(rng, p.shape, dtype, 2.0) for p in params]
        max_norm = draw_max_norm(data)
        kwargs = dict(hyper, max_norm=max_norm)
        if rule in STEP_RULES:
            kwargs["step"] = runner.t + 1
        if modifier != "none":
            kwargs.update(momentum=MU, nesterov=modifier == "nesterov")
        owned = params + [a for arrays in states.values() for a in arrays if a is not None]
        kind, passed = draw_grad_corruption(data, grads, owned)
        if kind is None:
            kind = data.draw(st.sampled_from(other_kinds), label="call corruption")
        kind, call_params, call_states = corrupt_call(data, kind, rule, kwargs, params, states)
        ordered = [call_states[n] for n in STATE_NAMES[rule]]
        seen = [np.array(g, copy=True) for g in passed] if kind == "alias" else grads
        before = all_bits(params, states)
        try:
            norm = getattr(fu.functional, rule)(call_params, passed, *ordered, **kwargs)
        except (TypeError, ValueError) as err:
            hypothesis.event(f"refused: {kind}")
            assert kind not in (None, "read-only grad"), f"a valid call failed ({kind}): {err}"
            assert all_bits(params, states) == before, f"{kind}: the failed call wrote"
            continue
        hypothesis.event(f"stepped: {kind}")
        assert_acceptable(kind, passed, owned)
        # A replaced param or state was accepted: only harmless when it holds no memory (the
        # originals, which the reference follows, then do not change either).
        replaced = [(a, b) for a, b in zip(call_params, params) if a is not b]
        replaced += [
            (a, b)
            for n in states
            for a, b in zip(call_states[n], states[n])
            if a is not b and b is not None
        ]
        assert all(b.size == 0 for _, b in replaced), f"{kind} was accepted"
        want = runner.step(seen, max_norm=max_norm)
        assert_same_as_reference(norm, want, params, states, runner, dtype)
