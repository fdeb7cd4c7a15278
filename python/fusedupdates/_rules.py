"""The rule table shared by the functional API, the updaters and the tests.

Rule ids and state order must match ``csrc/rules/common.h`` and ``docs/DESIGN.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Each user-facing hyperparameter name -> the field of the native HyperParams it sets
# (FU_HYPER_FIELDS in csrc/rules/common.h). rho is stored in beta1's field.
FIELD_OF = {
    "learning_rate": "learning_rate",
    "rho": "beta1",
    "beta1": "beta1",
    "beta2": "beta2",
    "epsilon": "epsilon",
    "momentum": "momentum",
}


@dataclass(frozen=True)
class RuleSpec:
    """Static description of one base update rule."""

    name: str
    rule_id: int
    state_names: tuple[str, ...]
    defaults: dict[str, float | None]  # None: required (no default)
    uses_step: bool  # needs the 1-based step counter t (bias corrections)


SGD = RuleSpec("sgd", 0, (), {"learning_rate": None}, False)
ADAGRAD = RuleSpec("adagrad", 1, ("accu",), {"learning_rate": 1.0, "epsilon": 1e-6}, False)
RMSPROP = RuleSpec(
    "rmsprop", 2, ("accu",), {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6}, False
)
ADADELTA = RuleSpec(
    "adadelta",
    3,
    ("accu", "delta_accu"),
    {"learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-6},
    False,
)
_ADAM_DEFAULTS = {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
ADAM = RuleSpec("adam", 4, ("m", "v"), dict(_ADAM_DEFAULTS), True)
ADAMAX = RuleSpec("adamax", 5, ("m", "u"), {**_ADAM_DEFAULTS, "learning_rate": 0.002}, True)
AMSGRAD = RuleSpec("amsgrad", 6, ("m", "v", "v_hat"), dict(_ADAM_DEFAULTS), True)

# By name, to rebuild a pickled updater.
SPECS = {r.name: r for r in (SGD, ADAGRAD, RMSPROP, ADADELTA, ADAM, ADAMAX, AMSGRAD)}

VELOCITY = "velocity"
