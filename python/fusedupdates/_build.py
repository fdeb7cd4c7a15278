"""Building updaters: the state they share, a rule updater over a parameter list, and the
momentum wrapper. (Split from ``updaters.py``, which holds the :class:`Updater` itself.)"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ._compact import SCALES, allocate, check_state_dtype
from ._dispatch import as_list, backend_for
from ._groups import parse_param_groups
from ._hyper import check_hyper, native_fields
from ._precision import (
    MASTER,
    check_master_weights,
    check_rounding,
    check_state_rounding,
    state_dtype,
)
from ._rules import RuleSpec
from .updaters import Updater


def _check_listed_once(params: list) -> None:
    """The native check finds a param listed twice by its memory; a zero-size array has none,
    so repeated objects are caught here too (at build time only)."""
    first: dict[int, int] = {}
    for i, p in enumerate(params):
        j = first.setdefault(id(p), i)
        if j != i:
            raise ValueError(
                f"params[{i}] is the same array as params[{j}]: every parameter must appear once"
            )


class _Shared:
    """What a rule updater and the momentum updaters wrapping it share: the rule, the params,
    their parameter groups, the state buffers, each group's rule hyperparameters and the lock.
    (Their native steppers share ``t`` and the hyperparameters the same way.)"""

    def __init__(
        self,
        spec: RuleSpec,
        params: list,
        group_of: list[int],
        groups: list[dict[str, float]],
        decoupled: bool,
        master_weights: Any = False,
        rounding: Any = "nearest",
        compact: Any = None,
        state_rounding: Any = "nearest",
    ):
        if not params:
            raise ValueError(
                f"{spec.name}() got an empty parameter list: pass the arrays to update"
            )
        _check_listed_once(params)
        self.spec = spec
        self.params = tuple(params)
        self.group_of = tuple(group_of)
        self.groups = [dict(g) for g in groups]  # rule hyperparameters + weight_decay
        self.decoupled = decoupled  # weight_decay is AdamW-style (fixed for the updater's life)
        self.backend = backend_for(params)
        on_gpu = self.backend.__name__.endswith("_cuda_backend")
        self.master_weights = check_master_weights(master_weights, params)
        stochastic = check_rounding(rounding, params, self.master_weights, on_gpu)
        self.rounding = rounding
        self.state_dtype = check_state_dtype(compact, params, on_gpu)
        # (given the keyword as passed, valid by now: its errors name "float32" as "float32")
        stochastic_state = check_state_rounding(state_rounding, compact, on_gpu)
        self.state_rounding = state_rounding
        self.state, self.scales = {}, {}
        for name in spec.state_names:
            self.state[name], self.scales[name] = self.allocate()
        state_names = list(spec.state_names)
        if self.master_weights:  # the last state: the native stepper knows it by name
            self.state[MASTER] = tuple(_master_copy(self.backend, p) for p in params)
            state_names.append(MASTER)
        self.lock = threading.Lock()
        extra = {"groups": list(group_of)} if len(groups) > 1 else {}
        if stochastic:  # keyword only when used: the CUDA stepper does not take it
            extra["stochastic_rounding"] = True
        if stochastic_state:  # likewise
            extra["stochastic_state_rounding"] = True
        if self.state_dtype == "int8":
            extra["scales"] = [list(self.scales[n]) for n in spec.state_names]
        self.stepper = self.backend.make_stepper(
            spec.rule_id,
            list(params),
            [list(self.state[n]) for n in state_names],
            state_names,
            **extra,
        )
        for index, values in enumerate(self.groups):
            self.stepper.set_hyperparameters(group=index, **native_fields(values, decoupled))

    def allocate(self, covered: Any = None) -> tuple[tuple, tuple]:
        """Zeroed buffers of one state for every param (those in ``covered`` when given, None
        for the others), in the updater's state storage, and their block scales (None where
        the storage has none)."""
        buffers, scales = [], []
        for i, p in enumerate(self.params):
            if covered is not None and i not in covered:
                buffers.append(None)
                scales.append(None)
                continue
            buffer, scale = allocate(self.backend, p, state_dtype(p), self.state_dtype)
            buffers.append(buffer)
            scales.append(scale)
        return tuple(buffers), tuple(scales)

    def scale_states(self) -> dict[str, list]:
        """The block scales of 8-bit states as states named ``<name>_absmax`` (none unless
        state_dtype is int8)."""
        if self.state_dtype != "int8":
            return {}
        return {name + SCALES: list(arrays) for name, arrays in self.scales.items()}


def _master_copy(backend: Any, param: Any) -> Any:
    """The float32 master weights of a 16-bit param (NumPy or CuPy): exactly its current
    values, in a C-contiguous buffer on the param's device."""
    master = backend.zeros_like(param, np.dtype(np.float32))
    master[...] = param
    return master


def make_updater(
    spec: RuleSpec,
    params: Any,
    hyper: dict[str, Any],
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    master_weights: bool = False,
    rounding: str = "nearest",
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> Updater:
    """Build a rule updater after checking its hyperparameters and parameters."""
    if not isinstance(decoupled_weight_decay, (bool, np.bool_)):
        raise TypeError("decoupled_weight_decay must be a bool")
    allowed = (*spec.defaults, "weight_decay")
    flat, group_of, overrides = parse_param_groups(params, allowed, f"{spec.name}() params")
    values = {}
    for name, value in hyper.items():
        if value is None:
            if all(name in o for o in overrides):
                continue  # every group sets it (e.g. sgd's learning_rate)
            raise TypeError(f"{spec.name}() missing required hyperparameter {name!r}")
        values[name] = check_hyper(name, value)
    values["weight_decay"] = check_hyper("weight_decay", weight_decay)
    groups = [{**values, **o} for o in overrides]
    if not flat and not isinstance(params, (list, tuple)):
        flat = as_list(params, "params")  # a single array, or a clear TypeError
    shared = _Shared(
        spec,
        flat,
        group_of or [0] * len(flat),
        groups,
        bool(decoupled_weight_decay),
        master_weights,
        rounding,
        state_dtype,
        state_rounding,
    )
    return Updater(shared, shared.stepper, None)


def with_momentum(updater: Updater, params: Any, momentum: float, nesterov: bool) -> Updater:
    """Wrap ``updater`` with Lasagne's (Nesterov) momentum, fused into the same pass."""
    if not isinstance(updater, Updater):
        raise TypeError(f"expected a fusedupdates updater, got {type(updater).__name__}")
    if updater._velocity is not None:
        raise ValueError(
            f"the {updater.rule} updater already has a momentum modifier; stacking two is "
            "not supported by the fused kernels"
        )
    mu = check_hyper("momentum", momentum)
    shared = updater._shared
    covered = range(len(shared.params))
    if params is not None:
        chosen = as_list(params, "params")
        ids = {id(p): i for i, p in enumerate(shared.params)}
        for j, p in enumerate(chosen):
            if id(p) not in ids:
                raise ValueError(f"params[{j}] is not one of the updater's parameters")
        covered = {ids[id(p)] for p in chosen}
    velocity, velocity_scales = shared.allocate(set(covered))
    extra = {"velocity_scales": list(velocity_scales)} if shared.state_dtype == "int8" else {}
    stepper = updater._stepper.with_momentum(list(velocity), bool(nesterov), **extra)
    stepper.set_hyperparameters(momentum=mu)
    wrapped = Updater(shared, stepper, velocity, bool(nesterov), velocity_scales)
    object.__setattr__(wrapped, "_momentum", [mu] * len(shared.groups))
    return wrapped
