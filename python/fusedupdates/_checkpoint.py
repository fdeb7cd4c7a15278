"""A state dict as flat NumPy arrays, so that ``np.savez`` stores no pickled objects and
``np.load(..., allow_pickle=False)`` reads it back.

Keys: ``rule`` (0-d str), ``t`` (0-d int64), ``decoupled_weight_decay`` (0-d bool),
``hyperparameters/<name>`` (0-d float64), ``param_groups/<g>/params`` (int64 indices) and
``param_groups/<g>/<name>`` (0-d float64), and ``state/<name>/<index>`` (the buffers; absent
velocity entries are simply missing, and ``state_count/<name>`` records each list's length).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._compact import bfloat16_dtype
from ._hyper import check_count, check_hyper
from ._precision import is_bfloat16

_HYPER, _STATE, _COUNT, _GROUP = "hyperparameters/", "state/", "state_count/", "param_groups/"


def flatten_state_dict(state_dict: dict[str, Any]) -> dict[str, np.ndarray]:
    flat = {
        "rule": np.array(state_dict["rule"]),
        "t": np.array(state_dict["t"], dtype=np.int64),
        "decoupled_weight_decay": np.array(bool(state_dict.get("decoupled_weight_decay"))),
    }
    if state_dict.get("state_dtype") is not None:
        flat["state_dtype"] = np.array(state_dict["state_dtype"])
    for name, value in state_dict["hyperparameters"].items():
        flat[_HYPER + name] = np.array(value, dtype=np.float64)
    for g, group in enumerate(state_dict.get("param_groups", [])):
        for name, value in group.items():
            dtype = np.int64 if name == "params" else np.float64
            flat[f"{_GROUP}{g}/{name}"] = np.array(value, dtype=dtype)
    for name, arrays in state_dict["state"].items():
        flat[_COUNT + name] = np.array(len(arrays), dtype=np.int64)
        for i, a in enumerate(arrays):
            if a is not None:
                a = np.asarray(a)
                if is_bfloat16(a.dtype):  # .npz has no bfloat16: its bits, read back below
                    a = a.view(np.uint16)
                flat[f"{_STATE}{name}/{i}"] = a
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
        if "state_dtype" in flat:
            out["state_dtype"] = str(flat["state_dtype"].item())
    except (KeyError, ValueError) as err:
        raise ValueError(f"not a fusedupdates checkpoint: missing or bad entry {err}") from None
    for key, value in flat.items():
        if key.startswith(_HYPER):
            out["hyperparameters"][key[len(_HYPER) :]] = value
        elif key.startswith(_COUNT):
            out["state"][key[len(_COUNT) :]] = [None] * int(value)
        elif key.startswith(_GROUP):
            index, _, name = key[len(_GROUP) :].partition("/")
            if not index.isdigit() or not name:
                raise ValueError(f"not a fusedupdates checkpoint: unexpected entry {key!r}")
            out.setdefault("param_groups", {}).setdefault(int(index), {})[name] = value
    if "param_groups" in out:
        groups = out["param_groups"]
        if sorted(groups) != list(range(len(groups))):
            raise ValueError("not a fusedupdates checkpoint: parameter groups are not 0..n-1")
        out["param_groups"] = [groups[g] for g in range(len(groups))]
    for key, value in flat.items():
        if key.startswith(_STATE):
            name, _, index = key[len(_STATE) :].rpartition("/")
            arrays = out["state"].get(name)
            if arrays is None or not index.isdigit() or int(index) >= len(arrays):
                raise ValueError(f"not a fusedupdates checkpoint: unexpected entry {key!r}")
            if out.get("state_dtype") == "bfloat16" and name != "master":
                value = value.view(bfloat16_dtype()) if value.dtype == np.uint16 else value
            arrays[int(index)] = value
    return out


def check_state_dict(upd: Any, state_dict: Any) -> tuple[int, list[dict], dict]:
    """Validate a state dict completely; return (t, values per parameter group, arrays by
    state name)."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    missing = {"rule", "t", "hyperparameters", "state"} - set(state_dict)
    if missing:
        raise ValueError(f"state_dict is missing {sorted(missing)}")
    rule = state_dict["rule"]
    if isinstance(rule, np.ndarray) and rule.ndim == 0:
        rule = rule.item()
    if rule != upd.rule:
        raise ValueError(f"state_dict is for rule {rule!r}, not {upd.rule!r}")
    t = check_count("state_dict['t']", state_dict["t"], 0)
    decoupled = state_dict.get("decoupled_weight_decay", False)  # absent: saved before 0.2
    if bool(decoupled) != upd.decoupled_weight_decay:
        raise ValueError(
            f"state_dict has decoupled_weight_decay={bool(decoupled)}, this updater "
            f"{upd.decoupled_weight_decay}"
        )
    check_saved_state_dtype(upd, state_dict)
    groups = _check_groups(upd, state_dict)
    saved_in, mine = state_dict["state"], upd.state
    if not isinstance(saved_in, dict):
        raise TypeError("state_dict['state'] must be a dict")
    if set(saved_in) != set(mine):
        raise ValueError(f"state_dict state {sorted(saved_in)} does not match {sorted(mine)}")
    saved: dict[str, list] = {}
    for name, arrays in mine.items():
        src = saved_in[name]
        if not isinstance(src, (list, tuple)) or len(src) != len(arrays):
            raise ValueError(f"state_dict state '{name}' must be a list of {len(arrays)} arrays")
        saved[name] = []
        for i, (dst, s) in enumerate(zip(arrays, src)):
            where = f"state_dict state '{name}'[{i}]"
            if (dst is None) != (s is None):
                raise ValueError(f"{where}: presence differs (None where an array is expected)")
            if dst is None:
                saved[name].append(None)
                continue
            if not isinstance(s, np.ndarray) and not hasattr(s, "__array__"):
                raise TypeError(f"{where}: expected an array, got {type(s).__name__}")
            s = np.asarray(s)
            if s.dtype != np.dtype(dst.dtype):
                raise TypeError(f"{where}: dtype {s.dtype} does not match {np.dtype(dst.dtype)}")
            if s.shape != tuple(dst.shape):
                raise ValueError(
                    f"{where}: {s.dtype}{s.shape} does not match {np.dtype(dst.dtype)}"
                    f"{tuple(dst.shape)}"
                )
            saved[name].append(s)
    return t, groups, saved


def check_saved_state_dtype(upd: Any, state_dict: dict) -> None:
    """ValueError unless ``state_dict`` stores its state as ``upd`` does (``state_dtype``)."""
    saved_dtype = state_dict.get("state_dtype")
    if isinstance(saved_dtype, np.ndarray) and saved_dtype.ndim == 0:
        saved_dtype = saved_dtype.item()
    if saved_dtype != upd.state_dtype:
        raise ValueError(
            f"state_dict has state_dtype={saved_dtype!r}, this updater {upd.state_dtype!r}: "
            f"convert it first with fusedupdates.convert_state_dict(state_dict, "
            f"{upd.state_dtype!r})"
        )


def _check_values(upd: Any, values: Any, where: str) -> dict[str, float]:
    """One complete, validated set of hyperparameters (weight_decay may be absent: saved
    before weight decay existed, when none was applied)."""
    if not isinstance(values, dict):
        raise TypeError(f"{where} must be a dict")
    values = {k: v for k, v in values.items() if k != "params"}
    values.setdefault("weight_decay", 0.0)
    names = set(upd._hyper_names())
    if set(values) != names:
        raise ValueError(f"{where}: hyperparameters {sorted(values)} do not match {sorted(names)}")
    return {name: check_hyper(name, value) for name, value in values.items()}


def _check_groups(upd: Any, state_dict: dict) -> list[dict[str, float]]:
    """The values of each of the updater's parameter groups. Without ``param_groups`` (a
    checkpoint from before groups existed), ``hyperparameters`` applies to every group."""
    hyper_in = state_dict["hyperparameters"]
    if not isinstance(hyper_in, dict):
        raise TypeError("state_dict['hyperparameters'] must be a dict")
    mine = upd._group_indices()
    if "param_groups" not in state_dict:
        values = _check_values(upd, hyper_in, "state_dict['hyperparameters']")
        return [values] * len(mine)
    groups_in = state_dict["param_groups"]
    if not isinstance(groups_in, (list, tuple)) or len(groups_in) != len(mine):
        raise ValueError(f"state_dict['param_groups'] must be a list of {len(mine)} groups")
    groups = []
    for g, (group, indices) in enumerate(zip(groups_in, mine)):
        where = f"state_dict['param_groups'][{g}]"
        if not isinstance(group, dict):
            raise TypeError(f"{where} must be a dict")
        saved_indices = [int(i) for i in np.asarray(group.get("params", []), dtype=np.int64)]
        if saved_indices != indices:
            raise ValueError(f"{where}: params {saved_indices} do not match {indices}")
        groups.append(_check_values(upd, group, where))
    for name, value in hyper_in.items():  # the shared values, as saved: must agree
        if not all(name in v and v[name] == check_hyper(name, value) for v in groups):
            raise ValueError(
                f"state_dict['hyperparameters'][{name!r}] disagrees with its param_groups"
            )
    return groups
