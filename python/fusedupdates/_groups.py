"""Parameter groups, torch's convention: ``params`` may be a list of dicts
``{"params": [...], "learning_rate": ..., "weight_decay": ...}``; keys a group leaves out take
the factory's values. All groups still step in ONE native call (each group's hyperparameters
are set on the native stepper; the kernels run one plan per group and dtype).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from ._hyper import check_hyper


def parse_param_groups(
    params: Any, allowed: tuple[str, ...], what: str
) -> tuple[list, list[int], list[dict[str, float]]]:
    """Split ``params`` into (flat parameter list, group index per param, validated overrides
    per group). A plain list of arrays is one group with no overrides."""
    if isinstance(params, Mapping):
        params = [params]
    if not isinstance(params, (list, tuple)) or not params:
        return [], [], [{}]  # the caller reports the error with its usual message
    if not any(isinstance(g, Mapping) for g in params):
        return list(params), [0] * len(params), [{}]
    if not all(isinstance(g, Mapping) for g in params):
        raise TypeError(f"{what}: mix of arrays and parameter-group dicts; use one or the other")
    flat, group_of, overrides = [], [], []
    for index, group in enumerate(params):
        if "params" not in group:
            raise ValueError(f"{what} group {index}: missing the 'params' key")
        members = group["params"]
        if isinstance(members, np.ndarray) or hasattr(members, "__cuda_array_interface__"):
            members = [members]
        if not isinstance(members, (list, tuple)) or not members:
            raise ValueError(f"{what} group {index}: 'params' must be a non-empty list of arrays")
        unknown = sorted(set(group) - {"params"} - set(allowed))
        if unknown:
            raise ValueError(
                f"{what} group {index}: unknown hyperparameter(s) {unknown}; "
                f"this rule takes {list(allowed)}"
            )
        overrides.append({k: check_hyper(k, v) for k, v in group.items() if k != "params"})
        flat.extend(members)
        group_of.extend([index] * len(members))
    return flat, group_of, overrides


class ParamGroup(MutableMapping):
    """One parameter group of an updater, as a live mapping (torch's ``param_groups[i]``).

    ``group["learning_rate"] = 1e-4`` is validated and takes effect at the next step;
    reading always shows the value in use. ``"params"`` is read-only and keys cannot be
    added or removed.
    """

    def __init__(self, updater: Any, index: int):
        self._updater = updater
        self._index = index

    def _names(self) -> tuple[str, ...]:
        return ("params",) + self._updater._hyper_names()

    def __getitem__(self, key: str) -> Any:
        upd = self._updater
        if key == "params":
            shared = upd._shared
            return [p for p, g in zip(shared.params, shared.group_of) if g == self._index]
        if key not in upd._hyper_names():
            raise KeyError(key)
        return upd._group_value(key, self._index)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            raise TypeError("a parameter group's 'params' cannot be changed; build a new updater")
        if key not in self._updater._hyper_names():
            raise ValueError(
                f"unknown hyperparameter {key!r}; this updater takes "
                f"{list(self._updater._hyper_names())}"
            )
        self._updater._set_hyper(key, value, self._index)

    def __delitem__(self, key: str) -> None:
        raise TypeError("keys of a parameter group cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        values = {k: self[k] for k in self._names() if k != "params"}
        return f"ParamGroup({len(self['params'])} params, {values})"
