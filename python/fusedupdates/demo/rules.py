"""The update rules the demo compares, each with a learning rate that suits the problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fusedupdates as fu

__all__ = ["GROUPS", "RULES", "RuleSpec"]

# The panels of the loss-curve figure, in order: rules that are compared with each other.
SGD_FAMILY = "sgd and momentum"
ADAPTIVE = "per-parameter step sizes"
ADAM_FAMILY = "adam family"
MODIFIED = "momentum modifier, clipping"
GROUPS: tuple[str, ...] = (SGD_FAMILY, ADAPTIVE, ADAM_FAMILY, MODIFIED)


@dataclass(frozen=True)
class RuleSpec:
    """One contender of the demo.

    Attributes
    ----------
    name : str
        Label in the table and the plot.
    make : callable
        ``make(params, **options)`` returns the updater for the list of parameters; options
        are factory keywords such as ``master_weights=True``. The table reads the learning
        rate and momentum back from the updater, so they are written only here.
    max_norm : float or None
        Passed to ``Updater.step`` (total gradient-norm clipping), or None.
    group : str
        The panel of the loss-curve figure that shows the rule (one of :data:`GROUPS`).
    """

    name: str
    make: Callable[..., Any]
    max_norm: float | None = None
    group: str = SGD_FAMILY


# Learning rates from a sweep (factors of ~3) on this problem: 64-128-10 ReLU network,
# standardised digits, batch 64, 30 epochs; every rule reaches ~97-98% test accuracy.
#
# Rules that share a panel get settings whose curves do not coincide. Momentum moves the
# parameters lr / (1 - momentum) times the gradient per step once the velocity has built up,
# so sgd at 0.3 and momentum 0.9 at 0.03 trace the same curve: here sgd takes 0.1 and the two
# momentum rules effective steps of 0.3 and 1.0. Likewise amsgrad is adam until v's running
# maximum departs from v, so the two only separate with different learning rates.
RULES: tuple[RuleSpec, ...] = (
    RuleSpec("sgd", lambda p, **o: fu.sgd(p, learning_rate=0.1, **o)),
    RuleSpec("momentum", lambda p, **o: fu.momentum(p, learning_rate=0.03, momentum=0.9, **o)),
    RuleSpec(
        "nesterov_momentum",
        lambda p, **o: fu.nesterov_momentum(p, learning_rate=0.1, momentum=0.9, **o),
    ),
    RuleSpec("adagrad", lambda p, **o: fu.adagrad(p, learning_rate=0.05, **o), group=ADAPTIVE),
    RuleSpec(
        "rmsprop", lambda p, **o: fu.rmsprop(p, learning_rate=2e-3, rho=0.9, **o), group=ADAPTIVE
    ),
    RuleSpec(
        "adadelta", lambda p, **o: fu.adadelta(p, learning_rate=1.0, rho=0.95, **o), group=ADAPTIVE
    ),
    RuleSpec("adam", lambda p, **o: fu.adam(p, learning_rate=3e-3, **o), group=ADAM_FAMILY),
    RuleSpec("adamax", lambda p, **o: fu.adamax(p, learning_rate=5e-3, **o), group=ADAM_FAMILY),
    RuleSpec("amsgrad", lambda p, **o: fu.amsgrad(p, learning_rate=1e-2, **o), group=ADAM_FAMILY),
    RuleSpec(
        "rmsprop+momentum",
        lambda p, **o: fu.apply_momentum(
            fu.rmsprop(p, learning_rate=5e-4, rho=0.9, **o), momentum=0.9
        ),
        group=MODIFIED,
    ),
    # the gradient norm is ~2.8 at the first step, ~1.4 over the first epoch and ~0.2 from
    # the fifth on, so this clips early on only
    RuleSpec(
        "adam, max_norm=0.5",
        lambda p, **o: fu.adam(p, learning_rate=3e-3, **o),
        max_norm=0.5,
        group=MODIFIED,
    ),
)
