"""The engine under every stateless step of :mod:`fusedupdates.functional`: one throwaway
native stepper per call (split from functional.py to keep each file small)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

from . import _hyper
from ._dispatch import as_list, backend_for
from ._rules import RuleSpec

ArrayOrList = Union[Any, Sequence[Any]]
Norm = Optional[Any]


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
