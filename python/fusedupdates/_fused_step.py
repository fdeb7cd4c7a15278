"""The engine under every stateless step of :mod:`fusedupdates.functional`: one throwaway
native stepper per call (split from functional.py to keep each file small)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from . import _hyper
from ._dispatch import as_list, backend_for
from ._precision import state_dtype
from ._rules import RuleSpec

ArrayOrList = Union[Any, Sequence[Any]]
Norm = Optional[Any]


def _check_full_state(params: list, states: list, name: str) -> None:
    """Functional steps take full-precision state only (compact state needs an updater's
    block scales): a clear TypeError for any other dtype. Arrays of other kinds are left to
    the native checks."""
    for i, (p, s) in enumerate(zip(params, states)):
        if s is None or not hasattr(s, "dtype") or not hasattr(p, "dtype"):
            continue
        want = state_dtype(p)
        if np.dtype(s.dtype) != want:
            raise TypeError(
                f"state '{name}'[{i}]: dtype {np.dtype(s.dtype)} but {np.dtype(p.dtype)} params "
                f"need {want} state (compact state is for updaters: state_dtype=)"
            )


def fused_step(
    spec: RuleSpec,
    params: ArrayOrList,
    grads: ArrayOrList,
    states: Sequence[ArrayOrList],
    hyper: dict[str, Any],
    *,
    step: int | None = None,
    velocity: ArrayOrList | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    max_norm: float | None = None,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> Norm:
    """Apply rule ``spec`` once to every parameter (the engine under every public step).

    Builds a throwaway native stepper over the given arrays. Everything is validated
    (hyperparameters here, arrays natively) before any array is written, so an error leaves
    every parameter and state unchanged.
    """
    params = as_list(params, "params")
    grads = as_list(grads, "grads")
    if len(states) != len(spec.state_names):
        raise ValueError(
            f"{spec.name} needs {len(spec.state_names)} state arrays "
            f"{list(spec.state_names)}, got {len(states)}"
        )
    state_lists = [as_list(s, f"state '{n}'") for s, n in zip(states, spec.state_names)]
    velocity_list = None if velocity is None else as_list(velocity, "velocity")
    for name, arrays in zip((*spec.state_names, "velocity"), (*state_lists, velocity_list or [])):
        _check_full_state(params, arrays, name)
    if spec.uses_step:
        if step is None:
            raise TypeError(f"{spec.name} needs step=t, the 1-based update count")
        t = _hyper.check_step(step)
    else:
        t = 1 if step is None else _hyper.check_step(step)
    values = {name: _hyper.check_hyper(name, hyper[name]) for name in spec.defaults}
    values["weight_decay"] = _hyper.check_hyper("weight_decay", weight_decay)
    if velocity_list is not None:
        values["momentum"] = _hyper.check_hyper("momentum", momentum)
    clip = _hyper.check_max_norm(max_norm)
    backend = backend_for(params)
    # functional: a captured CUDA graph replays this call's t and values (no device copy).
    stepper = backend.make_stepper(
        spec.rule_id, params, state_lists, list(spec.state_names), functional=True
    )
    if velocity_list is not None:
        stepper = stepper.with_momentum(velocity_list, bool(nesterov))
    stepper.set_hyperparameters(**_hyper.native_fields(values, bool(decoupled_weight_decay)))
    stepper.t = t - 1
    return stepper.step(grads, clip)
