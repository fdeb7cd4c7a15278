"""Demo: train a hand-written NumPy MLP on scikit-learn's digits with every update rule.

Run ``python -m fusedupdates.demo [--out DIR] [--device cpu|cuda] [--epochs N]``, or call
:func:`run_demo`. Needs the ``demo`` extra (scikit-learn, matplotlib, tqdm); ``--device cuda``
also needs CuPy.
"""

from __future__ import annotations

from .rules import RULES, RuleSpec
from .train import DemoError, RuleResult, format_table, get_array_module, run_demo, train_rule

__all__ = [
    "DemoError",
    "RULES",
    "RuleResult",
    "RuleSpec",
    "format_table",
    "get_array_module",
    "run_demo",
    "train_rule",
]
