"""A state dict as flat NumPy arrays, so that ``np.savez`` stores no pickled objects and
``np.load(..., allow_pickle=False)`` reads it back.

Keys: ``rule`` (0-d str), ``t`` (0-d int64), ``decoupled_weight_decay`` (0-d bool),
``hyperparameters/<name>`` (0-d float64) and ``state/<name>/<index>`` (the buffers; absent
velocity entries are simply missing, and ``state_count/<name>`` records each list's length).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_HYPER, _STATE, _COUNT = "hyperparameters/", "state/", "state_count/"


def flatten_state_dict(state_dict: dict[str, Any]) -> dict[str, np.ndarray]:
    flat = {
        "rule": np.array(state_dict["rule"]),
        "t": np.array(state_dict["t"], dtype=np.int64),
        "decoupled_weight_decay": np.array(bool(state_dict.get("decoupled_weight_decay"))),
    }
    for name, value in state_dict["hyperparameters"].items():
        flat[_HYPER + name] = np.array(value, dtype=np.float64)
    for name, arrays in state_dict["state"].items():
        flat[_COUNT + name] = np.array(len(arrays), dtype=np.int64)
        for i, a in enumerate(arrays):
            if a is not None:
                flat[f"{_STATE}{name}/{i}"] = np.asarray(a)
    return flat


def unflatten_state_dict(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of :func:`flatten_state_dict`; ValueError for a file it did not write."""
    try:
        out: dict[str, Any] = {
            "rule": str(flat["rule"].item()),
            "t": flat["t"],
            "decoupled_weight_decay": bool(flat["decoupled_weight_decay"].item()),
            "hyperparameters": {},
            "state": {},
        }
    except (KeyError, ValueError) as err:
        raise ValueError(f"not a fusedupdates checkpoint: missing or bad entry {err}") from None
    for key, value in flat.items():
        if key.startswith(_HYPER):
            out["hyperparameters"][key[len(_HYPER) :]] = value
        elif key.startswith(_COUNT):
            out["state"][key[len(_COUNT) :]] = [None] * int(value)
    for key, value in flat.items():
        if key.startswith(_STATE):
            name, _, index = key[len(_STATE) :].rpartition("/")
            arrays = out["state"].get(name)
            if arrays is None or not index.isdigit() or int(index) >= len(arrays):
                raise ValueError(f"not a fusedupdates checkpoint: unexpected entry {key!r}")
            arrays[int(index)] = value
    return out
