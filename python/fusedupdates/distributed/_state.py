"""Checkpoints of a sharded updater in the single-process format.

``state_dict`` all-gathers every state buffer's shards into the padded flat buffer and cuts it
back into one array per parameter, so the dict is what a single-process updater over the same
params returns. ``load_state_dict`` does the reverse with no communication but one handshake:
each rank lays the full buffers end to end and keeps its own shard, so a run checkpointed on
any number of ranks resumes on any other number (the rules are element-wise, so the layout
does not change a single bit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checkpoint import check_state_dict, flatten_state_dict, unflatten_state_dict
from ._agree import agree_on_setup


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.get()


def full_state_dict(upd: Any) -> dict[str, Any]:
    """The unsharded state dict (collective: one in-place all-gather per state buffer)."""
    tr, xp = upd._transport, upd._transport.xp
    local = upd._local.state_dict()
    n = len(upd._params)
    state: dict[str, list] = {}
    for name, shards in upd._local.state.items():
        per_param: list = [None] * n
        for b, shard in zip(upd._buckets, shards):
            if shard is None:
                continue
            full = xp.zeros(b.padded, dtype=shard.dtype)
            full[tr.rank * b.shard : (tr.rank + 1) * b.shard] = shard
            tr.allgather_inplace(full)
            host = _to_numpy(full)
            for i, offset, shape in zip(b.indices, b.offsets, b.shapes):
                count = int(np.prod(shape, dtype=np.int64))
                per_param[i] = host[offset : offset + count].reshape(shape).copy()
        state[name] = per_param
    groups = [{**g, "params": list(range(n))} for g in local["param_groups"]]
    return {**local, "param_groups": groups, "state": state}


def _shard_state_dict(upd: Any, full: Any) -> dict[str, Any]:
    """This rank's slice of a full (single-process format) state dict, as the state dict of
    the local updater; TypeError/ValueError for anything that does not match."""
    if not isinstance(full, dict):
        raise TypeError(f"state_dict must be a dict, got {type(full).__name__}")
    if not isinstance(full.get("state"), dict):
        raise TypeError("state_dict['state'] must be a dict")
    n, rank = len(upd._params), upd._transport.rank
    out = dict(full)
    groups = full.get("param_groups")
    if groups is not None:
        if not isinstance(groups, (list, tuple)) or len(groups) != 1:
            raise ValueError(
                "state_dict['param_groups'] must hold one group (no groups when sharded)"
            )
        indices = [int(i) for i in np.asarray(groups[0].get("params", []), dtype=np.int64)]
        if indices != list(range(n)):
            raise ValueError(f"state_dict['param_groups'][0]: params must be 0..{n - 1}")
        out["param_groups"] = [{**groups[0], "params": list(range(len(upd._buckets)))}]
    state = {}
    for name, arrays in full["state"].items():
        if not isinstance(arrays, (list, tuple)) or len(arrays) != n:
            raise ValueError(f"state_dict state '{name}' must be a list of {n} arrays")
        shards = []
        for b in upd._buckets:
            mine = [arrays[i] for i in b.indices]
            present = [a is not None for a in mine]
            if not any(present):
                shards.append(None)
                continue
            if not all(present):
                raise ValueError(
                    f"state_dict state '{name}': present for some {b.dtype} parameters and not "
                    "others; a sharded updater needs all or none per dtype"
                )
            for i, a in zip(b.indices, mine):
                a = np.asarray(a)
                if a.shape != tuple(upd._shapes[i]):
                    raise ValueError(
                        f"state_dict state '{name}'[{i}]: shape {a.shape} does not match "
                        f"params[{i}] shape {tuple(upd._shapes[i])}"
                    )
            flat = np.concatenate([np.asarray(a) for a in mine], axis=None)
            padded = np.zeros(b.padded, dtype=flat.dtype)
            padded[: flat.size] = flat
            shards.append(padded[rank * b.shard : (rank + 1) * b.shard].copy())
        state[name] = shards
    out["state"] = state
    return out


def load_full_state_dict(upd: Any, full: Any) -> None:
    """Validate everywhere, agree, then load this rank's shard (changes nothing on error)."""
    error, local_dict, description = None, None, {}
    try:
        local_dict = _shard_state_dict(upd, full)
        t, _, _ = check_state_dict(upd._local, local_dict)  # the complete check, no change
        description = {"t": t, "rule": str(full["rule"])}
    except Exception as err:  # reported through the exchange: every rank raises below
        error = err
    agree_on_setup(upd._transport, "load_state_dict()", description, error)
    upd._local.load_state_dict(local_dict)


def write_checkpoint(upd: Any, file: Any) -> None:
    """``np.savez`` of the full state dict from rank 0 (collective: every rank gathers)."""
    full = full_state_dict(upd)
    if upd._transport.rank == 0:
        np.savez(file, **flatten_state_dict(full))


def read_checkpoint(upd: Any, file: Any) -> None:
    with np.load(file, allow_pickle=False) as archive:
        flat = {key: archive[key] for key in archive.files}
    load_full_state_dict(upd, unflatten_state_dict(flat))
