"""Helpers shared by the test modules: the reference, the rule table and a reference runner."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest

_REF_PATH = Path(__file__).resolve().parents[1] / "python" / "fusedupdates" / "reference.py"


def _load_reference():
    """Load ``reference.py`` (and the private modules it imports) from the source tree by path,
    as submodules of a stand-in package, so that the compiled package is not imported."""
    package = types.ModuleType("_fusedupdates_source")
    package.__path__ = [str(_REF_PATH.parent)]  # relative imports resolve in the source tree
    sys.modules.setdefault("_fusedupdates_source", package)
    return importlib.import_module("_fusedupdates_source.reference")


REF = _load_reference()

# Base rules, their state names (DESIGN.md order) and test hyperparameters. The epsilons are
# large (0.1) so that putting epsilon inside vs outside the square root changes the result far
# beyond every tolerance; betas/rho are small so that every branch (max, v_hat) is exercised.
STATE_NAMES = {
    "sgd": [],
    "adagrad": ["accu"],
    "rmsprop": ["accu"],
    "adadelta": ["accu", "delta_accu"],
    "adam": ["m", "v"],
    "adamax": ["m", "u"],
    "amsgrad": ["m", "v", "v_hat"],
}
BASE_RULES = list(STATE_NAMES)
STEP_RULES = {"adam", "adamax", "amsgrad"}
HYPER = {
    "sgd": {"learning_rate": 0.05},
    "adagrad": {"learning_rate": 0.1, "epsilon": 0.1},
    "rmsprop": {"learning_rate": 0.01, "rho": 0.8, "epsilon": 0.1},
    "adadelta": {"learning_rate": 0.5, "rho": 0.9, "epsilon": 0.1},
    "adam": {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.9, "epsilon": 0.1},
    "adamax": {"learning_rate": 0.02, "beta1": 0.8, "beta2": 0.9, "epsilon": 0.1},
    "amsgrad": {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.9, "epsilon": 0.1},
}
MODIFIERS = ["none", "momentum", "nesterov"]
MU = 0.7

# (param tolerance, state tolerance) per param dtype: float16 params keep float32 state.
TOL = {
    np.dtype(np.float64): (1e-12, 1e-12),
    np.dtype(np.float32): (1e-5, 1e-5),
    np.dtype(np.float16): (3e-3, 1e-5),
}
STATE_DTYPE = {
    np.dtype(np.float64): np.dtype(np.float64),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.float16): np.dtype(np.float32),
}

# Lasagne's toy problem (test_updates.py): values after 10 steps, computed with torch.optim.
TOY_KWARGS = {
    "sgd": {"learning_rate": 0.1},
    "momentum": {"learning_rate": 0.1, "momentum": 0.5},
    "nesterov_momentum": {"learning_rate": 0.1, "momentum": 0.5},
    "adagrad": {"learning_rate": 0.1},
    "rmsprop": {"learning_rate": 0.01},
    "adadelta": {},
    "adam": {"learning_rate": 0.01},
    "adamax": {"learning_rate": 0.01},
    "amsgrad": {"learning_rate": 0.01},
}
TOY_VALUES = {
    "sgd": [0.81707280688755, 0.6648326359915, 0.5386151140949],
    "momentum": [0.6848486952183, 0.44803321781003, 0.27431190123502],
    "nesterov_momentum": [0.67466543592725, 0.44108468114241, 0.2769002108997],
    "adagrad": [0.55373120047759, 0.55373120041518, 0.55373120039438],
    "rmsprop": [0.83205403985348, 0.83205322744821, 0.83205295664444],
    "adadelta": [0.95453237704725, 0.9545237471374, 0.95452214847397],
    "adam": [0.90034972009036, 0.90034967993061, 0.90034966654402],
    "adamax": [0.90211749000754, 0.90211748762402, 0.90211748682951],
}
TOY_COEF = np.array([0.1, 0.2, 0.3])


def toy_grad(x: np.ndarray) -> np.ndarray:
    """Gradient of Lasagne's toy loss ``sum([0.1, 0.2, 0.3] * x**2)``."""
    return 2 * TOY_COEF.astype(x.dtype) * x


def split_rule(name: str) -> tuple[str, str]:
    """Map a factory name to (base rule, modifier): ``momentum`` is sgd + apply_momentum."""
    return {"momentum": ("sgd", "momentum"), "nesterov_momentum": ("sgd", "nesterov")}.get(
        name, (name, "none")
    )


def random_grads(rng, shapes, dtype) -> list[np.ndarray]:
    """Fresh random gradients with no zero entries (|g| in [0.05, 2), random sign)."""
    out = []
    for shape in shapes:
        mag = rng.uniform(0.05, 2.0, size=shape)
        out.append(np.asarray(mag * rng.choice([-1.0, 1.0], size=shape)).astype(dtype))
    return out


def random_params(rng, shapes, dtype) -> list[np.ndarray]:
    return [np.asarray(rng.standard_normal(shape)).astype(dtype) for shape in shapes]


def _peak(a) -> float:
    """The largest finite magnitude (0 for none): NaN and Inf elements are compared as such."""
    if a is None or not np.size(a):
        return 0.0
    m = np.abs(np.asarray(a, dtype=np.float64))
    return float(np.max(m, where=np.isfinite(m), initial=0.0))


def assert_close(got, want, tol: float, what: str = "", scale: float = 0.0) -> None:
    """Element-wise closeness with an absolute floor ``tol * max(scale, max|want|)``.

    ``scale`` is the largest magnitude the value has had: rounding errors accumulated while it
    was large must not fail the test when it later passes close to zero.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(scale, _peak(want))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale + 1e-300, err_msg=what)


def make_updater(
    fu, rule: str, params, modifier: str = "none", mu: float = MU, subset=None, **hyper
):
    """Build ``fu.<rule>(params, **hyper)`` wrapped with the requested momentum modifier."""
    upd = getattr(fu, rule)(params, **hyper)
    if modifier == "momentum":
        upd = fu.apply_momentum(upd, params=subset, momentum=mu)
    elif modifier == "nesterov":
        upd = fu.apply_nesterov_momentum(upd, params=subset, momentum=mu)
    return upd


class RefRunner:
    """The reference on float64 copies, with its own state buffers and step counter.

    ``round_to`` rounds the reference params through that dtype after every step, modelling
    float16 parameter storage (the state stays float64).
    """

    def __init__(self, rule, params, modifier="none", mu=MU, subset=None, round_to=None, **hyper):
        self.rule, self.modifier, self.mu, self.hyper = rule, modifier, mu, dict(hyper)
        self.round_to = None if round_to in (None, np.float64) else round_to
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.states = {n: [np.zeros_like(p) for p in self.params] for n in STATE_NAMES[rule]}
        if modifier != "none":
            self.states["velocity"] = [
                np.zeros_like(p) if subset is None or i in subset else None
                for i, p in enumerate(self.params)
            ]
        self.t = 0
        self.peaks = {}  # (name, i) -> largest magnitude so far, for the absolute tolerance
        self._track()

    def _track(self):
        for name, arrays in [("params", self.params), *self.states.items()]:
            for i, a in enumerate(arrays):
                key = (name, i)
                self.peaks[key] = max(self.peaks.get(key, 0.0), _peak(a))

    def step(self, grads, max_norm=None):
        self.t += 1
        kw = dict(self.hyper)
        if self.rule in STEP_RULES:
            kw["step"] = self.t
        if self.modifier != "none":
            kw.update(
                velocity=self.states["velocity"],
                momentum=self.mu,
                nesterov=self.modifier == "nesterov",
            )
        g64 = [None if g is None else np.array(g, dtype=np.float64) for g in grads]
        states = [self.states[n] for n in STATE_NAMES[self.rule]]
        norm = getattr(REF, self.rule)(self.params, g64, *states, max_norm=max_norm, **kw)
        if self.round_to is not None:
            for p in self.params:
                p[...] = p.astype(self.round_to).astype(np.float64)
        self._track()
        return norm


def check_matches(upd, runner: RefRunner, xp, dtype, what: str = "") -> None:
    """Compare the updater's params and EVERY state buffer against the reference runner."""
    ptol, stol = TOL[np.dtype(dtype)]
    assert len(upd.params) == len(runner.params)
    for i, (p, r) in enumerate(zip(upd.params, runner.params)):
        assert p.dtype == np.dtype(dtype), f"params[{i}] dtype changed to {p.dtype}"
        assert_close(
            xp.get(p), r, ptol, f"{what} params[{i}] at t={runner.t}", runner.peaks[("params", i)]
        )
    assert set(upd.state) == set(runner.states), f"state names {sorted(upd.state)}"
    for name, refs in runner.states.items():
        gots = upd.state[name]
        assert len(gots) == len(refs), f"state[{name!r}] has {len(gots)} entries"
        for i, (s, r) in enumerate(zip(gots, refs)):
            if r is None:
                assert s is None, f"state[{name!r}][{i}] should be None"
                continue
            assert s.dtype == STATE_DTYPE[np.dtype(dtype)], f"state[{name!r}][{i}] {s.dtype}"
            assert_close(
                xp.get(s),
                r,
                stol,
                f"{what} state[{name!r}][{i}] at t={runner.t}",
                runner.peaks[(name, i)],
            )


def run_and_compare(
    fu, xp, rng, rule, modifier, dtype, shapes, steps=20, max_norm=None, subset=None, hyper=None
):
    """Step a library updater and the reference on the same random grads and compare them.

    Returns the updater, the runner and the norms returned by both (when ``max_norm``).
    """
    hyper = HYPER[rule] if hyper is None else hyper
    init = random_params(rng, shapes, dtype)
    params = [xp.asarray(p) for p in init]
    upd = make_updater(fu, rule, params, modifier, subset=subset, **hyper)
    runner = RefRunner(rule, init, modifier, subset=subset, round_to=dtype, **hyper)
    norms = []
    every_step = sum(int(np.prod(s)) for s in shapes) < 100_000  # big cases: check at the end
    what = f"{rule}/{modifier}/{np.dtype(dtype).name}"
    for k in range(steps):
        grads = random_grads(rng, shapes, dtype)
        got = upd.step([xp.asarray(g) for g in grads], max_norm=max_norm)
        want = runner.step(grads, max_norm=max_norm)
        norms.append((got, want))
        if every_step or k == steps - 1:
            check_matches(upd, runner, xp, dtype, what)
    assert upd.t == steps
    return upd, runner, norms


def eps_outside_sqrt(rule, p, grads, hp):
    """The WRONG (PyTorch-style) placement: epsilon outside the sqrt, bias-corrected adam.

    Used to show that the suite's tolerances would catch a library doing this.
    """
    p = np.array(p, dtype=np.float64)
    s1, s2 = np.zeros_like(p), np.zeros_like(p)
    lr, eps, rho = hp["learning_rate"], hp["epsilon"], hp.get("rho", 0.0)
    for t, g in enumerate(grads, start=1):
        if rule == "adagrad":
            s1 += g * g
            p -= lr * g / (np.sqrt(s1) + eps)
        elif rule == "rmsprop":
            s1[...] = rho * s1 + (1 - rho) * g * g
            p -= lr * g / (np.sqrt(s1) + eps)
        elif rule == "adadelta":
            s1[...] = rho * s1 + (1 - rho) * g * g
            u = g * (np.sqrt(s2) + eps) / (np.sqrt(s1) + eps)
            p -= lr * u
            s2[...] = rho * s2 + (1 - rho) * u * u
        else:  # adam as in PyTorch
            b1, b2 = hp["beta1"], hp["beta2"]
            s1[...] = b1 * s1 + (1 - b1) * g
            s2[...] = b2 * s2 + (1 - b2) * g * g
            p -= lr * (s1 / (1 - b1**t)) / (np.sqrt(s2 / (1 - b2**t)) + eps)
    return p


def require_cuda_module():
    """Skip the calling test module unless CuPy, a GPU and fusedupdates' CUDA module are all
    present; return the cupy module. Call at module level, before importing _cuda_backend."""
    cupy = pytest.importorskip("cupy")
    try:
        have_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver
        have_gpu = False
    if not have_gpu:
        pytest.skip("needs CuPy and a GPU", allow_module_level=True)
    import fusedupdates

    if not fusedupdates.build_info()["cuda"]:
        pytest.skip("fusedupdates was built without CUDA", allow_module_level=True)
    return cupy
