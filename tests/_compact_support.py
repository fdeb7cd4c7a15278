"""Helpers of the compact-state tests: the reference quantizer (from the source tree) and a
reference runner that checks one step of an updater with compact state at a time.

Teacher forcing: before every step the runner reads the updater's own stored state (decoded
exactly as the kernel decodes it) and params, runs the float64 reference rule from there and
stores the result the way the kernel stores it (the reference quantizer, or bfloat16 rounding).
So each step is compared like with like: the float math may differ in the last float32 bit,
which moves a value across a rounding boundary only rarely and then by one code.
"""

from __future__ import annotations

import importlib

import numpy as np
from _support import REF, STATE_NAMES, STEP_RULES, _peak, assert_close

RC = importlib.import_module("_fusedupdates_source.reference_compact")
RM = importlib.import_module("_fusedupdates_source.reference_mixed")
SIGNED = {"m", "velocity"}
STATE_DTYPES = ["bfloat16", "int8"]


def signed_ordinal(codes: np.ndarray, signed: bool) -> np.ndarray:
    """Codes as integers in value order (adjacent codes differ by 1)."""
    c = np.asarray(codes).astype(np.int64)
    if not signed:
        return c
    return np.where(c & 0x80, -(c & 0x7F), c & 0x7F)


def decode(state: dict, name: str, i: int) -> np.ndarray:
    """The float32 values the kernel sees for state ``name`` of param ``i``."""
    a = state[name][i]
    if a is None:
        return None
    if a.dtype == np.uint8:
        return RC.dequantize_blockwise(a, state[name + "_absmax"][i], name in SIGNED)
    return np.asarray(a).astype(np.float32)


def encode_like(stored: np.ndarray, values: np.ndarray, name: str, stream=None):
    """``values`` (float64) stored the way ``stored`` is: (codes or bits, absmax or None);
    ``stream`` (t, param index, state index): rounded stochastically as the kernel rounds that
    state (``state_rounding="stochastic"``; float32 state is stored as it is)."""
    v32 = np.asarray(values, np.float32)
    if stored.dtype == np.uint8:
        random16 = None if stream is None else RM.state_random_bits(v32.size, *stream)
        return RC.quantize_blockwise(v32, name in SIGNED, random16)
    if stream is not None and stored.dtype != np.float32:  # bfloat16
        return RM.stochastic_round_state(values, *stream).astype(np.float32).astype(
            stored.dtype
        ), None
    return v32.astype(stored.dtype), None


def compare_stored(got, got_absmax, want, want_absmax, name, what, max_fraction=0.01):
    """Stored state against the reference's: bit-equal but for a few elements one code (or
    one bfloat16 ulp) apart, or apart by float32 rounding where the value cancelled to about
    zero (1e-5 of the tensor's largest value); block scales to float32 rounding."""
    signed = name in SIGNED
    if got.dtype == np.float32:  # small tensors under int8 stay float32
        assert_close(got, want, 1e-5, what)
        return
    if got.dtype == np.uint8:
        nan = 0x80 if signed else 0xFF
        np.testing.assert_array_equal(got == nan, want == nan, err_msg=f"{what}: NaN codes")
        np.testing.assert_allclose(got_absmax, want_absmax, rtol=1e-5, err_msg=what)
        steps = np.abs(signed_ordinal(got, signed) - signed_ordinal(want, signed))
        got_v = RC.dequantize_blockwise(got, got_absmax, signed)
        want_v = RC.dequantize_blockwise(want, want_absmax, signed)
    else:  # bfloat16: adjacent values of one sign are adjacent bit patterns
        steps = np.abs(got.view(np.uint16).astype(np.int64) - want.view(np.uint16))
        got_v, want_v = got.astype(np.float32), want.astype(np.float32)
    finite = np.isfinite(want_v)
    peak = float(np.max(np.abs(want_v[finite]), initial=0.0))
    near = np.abs(got_v - want_v) <= 1e-5 * peak
    ok = (steps <= 1) | near | (~finite & (got_v.view(np.uint32) == want_v.view(np.uint32)))
    assert ok.all(), f"{what}: {np.count_nonzero(~ok)} values more than one code apart"
    assert (steps != 0).mean() <= max_fraction, f"{what}: {(steps != 0).mean():.3%} differ"


def reference_step(upd, rule, modifier, grads, hyper, mu, t, storage=np.float32, max_norm=None):
    """Run the reference from the updater's stored state for the step it is about to take
    (``max_norm``: with the total-norm clip); returns (params, {name: list of float64 arrays})
    after the step."""
    state = upd.state
    params = [np.asarray(p).astype(np.float64) for p in upd.params]
    names = STATE_NAMES[rule] + (["velocity"] if modifier != "none" else [])
    work = {}
    for name in names:
        work[name] = [
            None if state[name][i] is None else decode(state, name, i).astype(np.float64)
            for i in range(len(params))
        ]
    kw = dict(hyper)
    if rule in STEP_RULES:
        kw["step"] = t
    if modifier != "none":
        kw.update(velocity=work["velocity"], momentum=mu, nesterov=modifier == "nesterov")
    g64 = [np.asarray(g).astype(np.float64) for g in grads]
    getattr(REF, rule)(params, g64, *[work[n] for n in STATE_NAMES[rule]], max_norm=max_norm, **kw)
    if np.dtype(storage) != np.float32:
        params = [p.astype(np.float32).astype(storage).astype(np.float64) for p in params]
    return params, work


def check_step(
    upd,
    rule,
    modifier,
    grads,
    hyper,
    mu,
    t,
    what,
    storage=np.float32,
    ptol=1e-5,
    stochastic=False,
    max_fraction=0.01,
    max_norm=None,
):
    """One updater step against the teacher-forced reference (``stochastic``: its new states
    rounded with the kernel's generator, for ``state_rounding="stochastic"``; ``max_norm``:
    the step's total-norm clip)."""
    params, work = reference_step(upd, rule, modifier, grads, hyper, mu, t, storage, max_norm)
    scale = [_peak(p) for p in params]
    upd.step(grads, max_norm=max_norm)
    state = upd.state
    for i, (p, r) in enumerate(zip(upd.params, params)):
        assert_close(np.asarray(p).astype(np.float64), r, ptol, f"{what} params[{i}]", scale[i])
    for j, (name, arrays) in enumerate(work.items()):  # j: the state's index in its slot
        for i, want in enumerate(arrays):
            got = state[name][i]
            if want is None:
                assert got is None
                continue
            codes, absmax = encode_like(got, want, name, (t, i, j) if stochastic else None)
            got_absmax = state.get(name + "_absmax", [None] * len(arrays))[i]
            what_state = f"{what} {name}[{i}] t={t}"
            compare_stored(got, got_absmax, codes, absmax, name, what_state, max_fraction)
