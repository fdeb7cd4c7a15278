"""The rule table shared by the functional API, the updaters and the reference tests.

Rule ids and state order must match ``csrc/rules/common.h`` and ``docs/DESIGN.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Slot of each hyperparameter in the (lr, beta1, beta2, epsilon, momentum, step) tuple
# that the native backends receive. rho shares beta1's slot.
HYPER_SLOTS = {"learning_rate": 0, "rho": 1, "beta1": 1, "beta2": 2, "epsilon": 3}


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

RULES = {r.name: r for r in (SGD, ADAGRAD, RMSPROP, ADADELTA, ADAM, ADAMAX, AMSGRAD)}

VELOCITY = "velocity"
DEFAULT_MOMENTUM = 0.9
# Lasagne's total_norm_constraint epsilon, used by step(grads, max_norm=...).
CLIP_EPSILON = 1e-7
