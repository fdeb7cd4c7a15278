"""Helpers of the 16-bit tests: the storage modes, the mixed-precision reference runner."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from _support import _REF_PATH, REF, STATE_NAMES, STEP_RULES, assert_close, make_updater

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _load_mixed_reference():
    path = _REF_PATH.with_name("reference_mixed.py")
    spec = importlib.util.spec_from_file_location("_fusedupdates_reference_mixed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MIXED = _load_mixed_reference()

# (storage dtype, master weights): the modes the 16-bit paths add.
MODES = {
    "bfloat16": (BF16, False),
    "float16+master": (np.dtype(np.float16), True),
    "bfloat16+master": (BF16, True),
}
# Tolerance of the 16-bit params against the reference: a few units in the last place (a
# rounding tie decided differently in float32 than in float64 stays one ulp off).
PARAM_TOL = {BF16: 2e-2, np.dtype(np.float16): 3e-3}
FLOAT32_TOL = 1e-5  # states and master weights: float32 arithmetic against float64


def random_grads16(rng, shapes, dtype):
    """Fresh random non-zero grads, exactly representable in ``dtype``."""
    out = []
    for shape in shapes:
        mag = rng.uniform(0.05, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        out.append(mag.astype(np.float32).astype(dtype))
    return out


def bits(a):
    return np.asarray(a).view(np.uint16 if np.dtype(a.dtype).itemsize == 2 else np.uint32)


class MixedRunner:
    """The float64 reference of one 16-bit updater: stored params, master, states, t."""

    def __init__(
        self, rule, init, modifier, storage, master, subset=None, mu=0.7, stochastic=False, **hyper
    ):
        self.rule, self.modifier, self.mu, self.hyper = rule, modifier, mu, dict(hyper)
        self.stochastic = stochastic  # rounding="stochastic": the kernel's generator
        self.storage = np.dtype(storage)
        self.params = [np.asarray(p, dtype=np.float64).copy() for p in init]
        self.master = [p.copy() for p in self.params] if master else None
        self.states = {n: [np.zeros_like(p) for p in self.params] for n in STATE_NAMES[rule]}
        if modifier != "none":
            self.states["velocity"] = [
                np.zeros_like(p) if subset is None or i in subset else None
                for i, p in enumerate(self.params)
            ]
        self.t = 0
        self.peak = [float(np.max(np.abs(p))) for p in self.params]

    def step(self, grads, max_norm=None, grad_scale=None):
        self.t += 1
        kw = dict(self.hyper)
        if self.rule in STEP_RULES:
            kw["step"] = self.t
        if self.modifier != "none":
            kw.update(velocity=self.states["velocity"], momentum=self.mu)
            kw["nesterov"] = self.modifier == "nesterov"
        if grad_scale is not None:  # the library divides inside the kernel
            grads = [None if g is None else np.asarray(g, np.float64) / grad_scale for g in grads]
        states = [self.states[n] for n in STATE_NAMES[self.rule]]
        norm = MIXED.storage_step(
            getattr(REF, self.rule),
            self.params,
            grads,
            states,
            storage=self.storage,
            master=self.master,
            stochastic_step=self.t if self.stochastic else None,
            max_norm=max_norm,
            **kw,
        )
        self.peak = [max(a, float(np.max(np.abs(p)))) for a, p in zip(self.peak, self.params)]
        return norm


def check_mixed(upd, runner, what="", state_tol=FLOAT32_TOL):
    """The updater's 16-bit params, master weights and every state against the runner."""
    storage = runner.storage
    for i, (p, r) in enumerate(zip(upd.params, runner.params)):
        assert p.dtype == storage, f"params[{i}] dtype changed to {p.dtype}"
        where = f"{what} params[{i}] t={runner.t}"
        assert_close(p.astype(np.float64), r, PARAM_TOL[storage], where, runner.peak[i])
    names = set(runner.states) | ({"master"} if runner.master is not None else set())
    assert set(upd.state) == names
    if runner.master is not None:
        for i, (m, p, r) in enumerate(zip(upd.state["master"], upd.params, runner.master)):
            assert m.dtype == np.float32
            where = f"{what} master[{i}] t={runner.t}"
            assert_close(m, r, FLOAT32_TOL, where, runner.peak[i])
            # the param is exactly its master rounded to nearest even
            np.testing.assert_array_equal(bits(p), bits(m.astype(storage)), err_msg=where)
    for name, refs in runner.states.items():
        for i, (s, r) in enumerate(zip(upd.state[name], refs)):
            if r is None:
                assert s is None
                continue
            assert s.dtype == np.float32, f"state[{name!r}][{i}] is {s.dtype}"
            assert_close(s, r, state_tol, f"{what} state[{name!r}][{i}] t={runner.t}")


def build_pair(rng, rule, modifier, mode, shapes, hyper, subset=None):
    """An updater of ``mode`` over random params and its reference runner (``hyper`` may hold
    weight_decay and decoupled_weight_decay too)."""
    storage, master = MODES[mode]
    init = [rng.standard_normal(s).astype(np.float32).astype(storage) for s in shapes]
    params = [p.copy() for p in init]
    upd = make_updater(_fu(), rule, params, modifier, subset=subset, master_weights=master, **hyper)
    runner = MixedRunner(rule, init, modifier, storage, master, subset=subset, **hyper)
    return upd, runner


def _fu():
    import fusedupdates

    return fusedupdates
