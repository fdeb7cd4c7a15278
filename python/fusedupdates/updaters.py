"""Updaters: a rule, its hyperparameters, its state buffers and a step counter.

An updater owns one state buffer per parameter and state kind, allocated once, and applies
one fused native step per call to :meth:`Updater.step`. Hyperparameters are plain attributes
read at every step: Lasagne's "change without recompiling".
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._dispatch import as_list, backend_for
from ._hyper import check_hyper, check_max_norm, pack
from ._rules import CLIP_EPSILON, VELOCITY, RuleSpec


class _Shared:
    """What a rule updater and the momentum updaters wrapping it have in common."""

    def __init__(self, spec: RuleSpec, params: list, hyper: dict[str, float]):
        self.spec = spec
        self.params = params
        self.hyper = hyper
        self.backend = backend_for(params)
        self.backend.check_params(params)
        self.state = {
            name: [self.backend.zeros_like(p, _state_dtype(p)) for p in params]
            for name in spec.state_names
        }
        self.t = 0
        self.version = 0  # bumped on every hyperparameter change: re-validate at next step
        self.cache: dict = {}  # backend scratch (device pointer tables on the GPU)
        bind = getattr(self.backend, "bind_step", None)
        # The native step as one callable, so a step costs a single Python-level call.
        self.native_step = (
            bind(self.cache) if bind else functools.partial(self.backend.step, cache=self.cache)
        )


def _state_dtype(param: Any) -> np.dtype:
    dtype = np.dtype(param.dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)  # float16 params keep float32 state
    return dtype


class Updater:
    """Applies one update rule, optionally with a fused momentum modifier, to a parameter list.

    Do not construct directly: use :func:`fusedupdates.adam` and the other rule factories,
    and :func:`fusedupdates.apply_momentum` / :func:`fusedupdates.apply_nesterov_momentum`.

    Attributes
    ----------
    params : list of arrays
        The parameters, updated in place by :meth:`step`.
    t : int
        Number of steps taken (Lasagne's ``t``; the next step uses ``t + 1``).
    state : dict of str to list
        Every state buffer by name (``velocity`` entries are None for parameters the
        momentum modifier does not cover).
    hyperparameters : dict of str to float
        Current hyperparameters; each is also an attribute (``upd.learning_rate = 1e-4``).
    """

    def __init__(
        self,
        shared: _Shared,
        velocity: list | None = None,
        momentum: float = 0.9,
        nesterov: bool = False,
    ):
        object.__setattr__(self, "_shared", shared)
        object.__setattr__(self, "_velocity", velocity)
        object.__setattr__(self, "_nesterov", nesterov)
        object.__setattr__(self, "_momentum", momentum)
        object.__setattr__(self, "_packed", None)  # (version, validated 5-tuple)
        object.__setattr__(self, "_states", [shared.state[n] for n in shared.spec.state_names])
        object.__setattr__(self, "_state_names", list(shared.spec.state_names))

    # --- hyperparameters as attributes -------------------------------------------------
    def _hyper_names(self) -> tuple[str, ...]:
        names = tuple(self._shared.spec.defaults)
        return names + ("momentum",) if self._velocity is not None else names

    def __getattr__(self, name: str) -> Any:
        shared = self.__dict__.get("_shared")
        if shared is not None:
            if name in shared.hyper:
                return shared.hyper[name]
            if name == "momentum" and self.__dict__.get("_velocity") is not None:
                return self.__dict__["_momentum"]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        shared = self._shared
        if name in shared.hyper:
            shared.hyper[name] = value  # validated at the next step, like every value
        elif name == "momentum" and self._velocity is not None:
            object.__setattr__(self, "_momentum", value)
            object.__setattr__(self, "_packed", None)  # momentum is this wrapper's own
        else:
            raise AttributeError(
                f"cannot set {name!r}: hyperparameters are {list(self._hyper_names())}"
            )
        shared.version += 1
        try:
            shared.backend.hyper_changed(shared.cache, self._packed_hyper(shared.t + 1))
        except (TypeError, ValueError):
            pass  # invalid values never reach the device; step() raises for them

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._hyper_names()))

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"<fusedupdates {self.rule} updater, {len(self.params)} params, t={self.t}, {hyper}>"

    # --- read-only views -----------------------------------------------------------------
    @property
    def rule(self) -> str:
        """Rule name, with the modifier: e.g. ``"rmsprop+momentum"``."""
        base = self._shared.spec.name
        if self._velocity is None:
            return base
        return base + ("+nesterov_momentum" if self._nesterov else "+momentum")

    @property
    def params(self) -> list:
        return self._shared.params

    @property
    def t(self) -> int:
        """Steps taken. On the GPU, replays of a captured step advance the device's count
        only; reading ``t`` then synchronises once to fetch it."""
        shared = self._shared
        device_t = shared.backend.device_step(shared.cache)
        if device_t is not None:
            shared.t = int(device_t)
        return shared.t

    @property
    def state(self) -> dict[str, list]:
        state = dict(self._shared.state)
        if self._velocity is not None:
            state[VELOCITY] = self._velocity
        return state

    @property
    def hyperparameters(self) -> dict[str, float]:
        hyper = dict(self._shared.hyper)
        if self._velocity is not None:
            hyper["momentum"] = self._momentum
        return hyper

    def _packed_hyper(self, t: int) -> tuple:
        return pack(
            self._shared.spec,
            self._shared.hyper,
            self._momentum if self._velocity is not None else 0.0,
            t,
        )

    # --- stepping --------------------------------------------------------------------------
    def step(self, grads: Sequence[Any] | Any, max_norm: float | None = None) -> Any:
        """Apply one fused update to every parameter, in place, and advance ``t``.

        Parameters
        ----------
        grads : list of arrays (or one array for a one-parameter updater)
            One gradient per parameter, same shape and dtype; not modified.
        max_norm : float, optional
            Apply Lasagne's ``total_norm_constraint(grads, max_norm)`` inside the step.

        Returns
        -------
        float, 0-d device array or None
            The total gradient norm before clipping when ``max_norm`` is given, else None.

        Raises
        ------
        TypeError, ValueError
            For bad arrays or hyperparameters; nothing is modified then.
        """
        # The hot path (a 4K-element step costs a few microseconds in all): hyperparameters
        # are re-validated only after they change; arrays are validated natively.
        shared = self._shared
        packed = self._packed
        if packed is None or packed[0] != shared.version:
            packed = (shared.version, self._packed_hyper(1)[:5])
            object.__setattr__(self, "_packed", packed)
        t = shared.t + 1
        if type(grads) is not list:
            grads = as_list(grads, "grads")
        if max_norm is not None:
            max_norm = check_max_norm(max_norm)
        norm = shared.native_step(
            shared.spec.rule_id,
            self._nesterov,
            shared.params,
            grads,
            self._states,
            self._state_names,
            self._velocity,
            packed[1] + (float(t),),
            max_norm,
            CLIP_EPSILON,
        )
        shared.t = t
        return norm

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit for bit, as plain NumPy arrays and Python values.

        Returns
        -------
        dict
            ``{"rule", "t", "hyperparameters", "state"}``; ``state`` maps each state name to
            a list of NumPy copies (None for parameters without velocity).
        """
        to_numpy = self._shared.backend.to_numpy
        return {
            "rule": self.rule,
            "t": self.t,
            "hyperparameters": dict(self.hyperparameters),
            "state": {
                name: [None if a is None else to_numpy(a) for a in arrays]
                for name, arrays in self.state.items()
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (copied into the existing buffers).

        Everything is checked before anything is copied, so a mismatching dict leaves the
        updater unchanged.
        """
        if state_dict.get("rule") != self.rule:
            raise ValueError(
                f"state_dict is for rule {state_dict.get('rule')!r}, not {self.rule!r}"
            )
        t = state_dict["t"]
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"state_dict['t'] must be an integer >= 0, got {t!r}")
        hyper = dict(state_dict["hyperparameters"])
        if set(hyper) != set(self.hyperparameters):
            raise ValueError(
                f"state_dict hyperparameters {sorted(hyper)} do not match "
                f"{sorted(self.hyperparameters)}"
            )
        for name, value in hyper.items():
            check_hyper(name, value)
        saved, mine = state_dict["state"], self.state
        if set(saved) != set(mine):
            raise ValueError(f"state_dict state {sorted(saved)} does not match {sorted(mine)}")
        for name, arrays in mine.items():
            src = saved[name]
            if len(src) != len(arrays):
                raise ValueError(
                    f"state_dict state '{name}' has {len(src)} arrays, expected {len(arrays)}"
                )
            for i, (dst, s) in enumerate(zip(arrays, src)):
                if (dst is None) != (s is None):
                    raise ValueError(f"state_dict state '{name}'[{i}]: presence differs")
                if dst is not None and np.dtype(s.dtype) != np.dtype(dst.dtype):
                    raise TypeError(
                        f"state_dict state '{name}'[{i}]: dtype {np.dtype(s.dtype)} does not "
                        f"match {np.dtype(dst.dtype)}"
                    )
                if dst is not None and tuple(np.shape(s)) != tuple(dst.shape):
                    raise ValueError(
                        f"state_dict state '{name}'[{i}]: {np.dtype(s.dtype)}{tuple(np.shape(s))}"
                        f" does not match {np.dtype(dst.dtype)}{tuple(dst.shape)}"
                    )
        for name, arrays in mine.items():
            for dst, s in zip(arrays, saved[name]):
                if dst is not None:
                    self._shared.backend.copy_from_numpy(dst, np.asarray(s))
        for name, value in hyper.items():
            setattr(self, name, value)
        self._shared.t = int(t)
        self._shared.backend.hyper_changed(
            self._shared.cache, self._packed_hyper(int(t) + 1), reset_step=True
        )


def make_updater(spec: RuleSpec, params: Any, hyper: dict[str, Any]) -> Updater:
    """Build a rule updater after checking its hyperparameters and parameters."""
    for name, value in hyper.items():
        if value is None:
            raise TypeError(f"{spec.name}() missing required hyperparameter {name!r}")
        check_hyper(name, value)
    return Updater(_Shared(spec, as_list(params, "params"), dict(hyper)))


def with_momentum(updater: Updater, params: Any, momentum: float, nesterov: bool) -> Updater:
    """Wrap ``updater`` with Lasagne's (Nesterov) momentum, fused into the same pass."""
    if not isinstance(updater, Updater):
        raise TypeError(f"expected a fusedupdates updater, got {type(updater).__name__}")
    if updater._velocity is not None:
        raise ValueError(
            f"the {updater.rule} updater already has a momentum modifier; stacking two is "
            "not supported by the fused kernels"
        )
    check_hyper("momentum", momentum)
    shared = updater._shared
    covered = range(len(shared.params))
    if params is not None:
        chosen = as_list(params, "params")
        ids = {id(p): i for i, p in enumerate(shared.params)}
        for j, p in enumerate(chosen):
            if id(p) not in ids:
                raise ValueError(f"params[{j}] is not one of the updater's parameters")
        covered = {ids[id(p)] for p in chosen}
    velocity = [
        shared.backend.zeros_like(p, _state_dtype(p)) if i in covered else None
        for i, p in enumerate(shared.params)
    ]
    return Updater(shared, velocity, momentum, nesterov)
