"""The update rules the demo compares, each with a learning rate that suits the problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fusedupdates as fu

__all__ = ["RULES", "RuleSpec"]


@dataclass(frozen=True)
class RuleSpec:
    """One contender of the demo.

    Attributes
    ----------
    name : str
        Label in the table and the plot.
    make : callable
        ``make(params)`` returns the updater for the list of parameters.
    max_norm : float or None
        Passed to ``Updater.step`` (total gradient-norm clipping), or None.
    """

    name: str
    make: Callable[[list[Any]], Any]
    max_norm: float | None = None


# Learning rates from a sweep (factors of ~3) on this problem: 64-128-10 ReLU network,
# standardised digits, batch 64, 30 epochs. Each is the largest that still trains smoothly,
# or the rule's customary default where that already does well (adadelta).
RULES: tuple[RuleSpec, ...] = (
    RuleSpec("sgd", lambda p: fu.sgd(p, learning_rate=0.3)),
    RuleSpec("momentum", lambda p: fu.momentum(p, learning_rate=0.03, momentum=0.9)),
    RuleSpec(
        "nesterov_momentum",
        lambda p: fu.nesterov_momentum(p, learning_rate=0.03, momentum=0.9),
    ),
    RuleSpec("adagrad", lambda p: fu.adagrad(p, learning_rate=0.05)),
    RuleSpec("rmsprop", lambda p: fu.rmsprop(p, learning_rate=2e-3, rho=0.9)),
    RuleSpec("adadelta", lambda p: fu.adadelta(p, learning_rate=1.0, rho=0.95)),
    RuleSpec("adam", lambda p: fu.adam(p, learning_rate=3e-3)),
    RuleSpec("adamax", lambda p: fu.adamax(p, learning_rate=5e-3)),
    RuleSpec("amsgrad", lambda p: fu.amsgrad(p, learning_rate=3e-3)),
    RuleSpec(
        "rmsprop+momentum",
        lambda p: fu.apply_momentum(fu.rmsprop(p, learning_rate=2e-4, rho=0.9), momentum=0.9),
    ),
    # the gradient norm is ~1.4 at the start and ~0.25 after 5 epochs, so this clips early on
    RuleSpec("adam, max_norm=0.5", lambda p: fu.adam(p, learning_rate=3e-3), max_norm=0.5),
)
