"""Checkpoints of a sharded updater in the single-process format.

``state_dict`` all-gathers every state buffer's shards into the padded flat buffer and cuts it
back into one array per parameter, so the dict is what a single-process updater over the same
params returns. ``load_state_dict`` does the reverse with no communication but one handshake:
each rank lays the full buffers end to end and keeps its own shard, so a run checkpointed on
any number of ranks resumes on any other number (the rules are element-wise, so the layout
does not change a single bit). 8-bit state moves as its codes and block scales: every block
belongs to one param (see ``_layout.py``), so a param's codes and scales are cut out as a
single process stores them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checkpoint import (
    check_saved_state_dtype,
    check_state_dict,
    flatten_state_dict,
    unflatten_state_dict,
)
from .._compact import QUANT_BLOCK, SCALES
from ._agree import agree_on_setup


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.get()


def _unit(name: str) -> int:
    """Elements of the flat buffer per entry of state ``name``: QUANT_BLOCK for block scales
    (one float32 per 8-bit block), else 1."""
    return QUANT_BLOCK if name.endswith(SCALES) else 1


def _gathered(upd: Any, shard: Any, length: int) -> np.ndarray:
    """Every rank's ``shard`` end to end (``length`` entries in all), on the host. Moved as
    bytes: the transports need no bfloat16 or other state type of their own."""
    tr, xp = upd._transport, upd._transport.xp
    full = xp.zeros(length, dtype=shard.dtype)
    own = full[tr.rank * shard.size : (tr.rank + 1) * shard.size]
    own.view(np.uint8)[...] = shard.view(np.uint8)
    tr.allgather_inplace(full.view(np.uint8))
    return _to_numpy(full)


def full_state_dict(upd: Any) -> dict[str, Any]:
    """The unsharded state dict (collective: one in-place all-gather per state buffer)."""
    local = upd._local.state_dict()
    n = len(upd._params)
    state: dict[str, list] = {}
    for name, shards in upd._local.state.items():
        unit = _unit(name)
        per_param: list = [None] * n
        for b, shard in zip(upd._buckets, shards):
            if shard is None:
                continue
            host = _gathered(upd, shard, b.padded // unit)
            for i, offset, count, shape in zip(b.indices, b.offsets, b.counts, b.shapes):
                if unit == 1:
                    per_param[i] = host[offset : offset + count].reshape(shape).copy()
                else:  # the param's own blocks: it starts on a block boundary
                    first = offset // unit
                    per_param[i] = host[first : first - (-count // unit)].copy()
        state[name] = per_param
    groups = [{**g, "params": list(range(n))} for g in local["param_groups"]]
    return {**local, "param_groups": groups, "state": state}


def _shard_of(upd: Any, name: str, k: int, arrays: list) -> np.ndarray | None:
    """This rank's shard of state ``name`` of bucket ``k``, from the full dict's per-param
    ``arrays`` (laid out as the bucket lays out its params, zero between them)."""
    b, rank = upd._buckets[k], upd._transport.rank
    mine = [arrays[i] for i in b.indices]
    present = [a is not None for a in mine]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(
            f"state_dict state '{name}': present for some {b.dtype} parameters and not "
            "others; a sharded updater needs all or none per dtype"
        )
    unit = _unit(name)
    ours = upd._local.state.get(name, [None] * len(upd._buckets))[k]
    dtype = np.dtype(ours.dtype) if ours is not None else np.asarray(mine[0]).dtype
    padded = np.zeros(b.padded // unit, dtype=dtype)
    for i, a, offset, count in zip(b.indices, mine, b.offsets, b.counts):
        a = np.asarray(a)
        shape = tuple(upd._shapes[i]) if unit == 1 else (-(-count // unit),)
        if a.shape != shape:
            what = f"params[{i}] shape" if unit == 1 else f"the {shape[0]} blocks of params[{i}]:"
            raise ValueError(
                f"state_dict state '{name}'[{i}]: shape {a.shape} does not match {what} {shape}"
            )
        if a.dtype != dtype:
            raise TypeError(
                f"state_dict state '{name}'[{i}]: dtype {a.dtype} does not match {dtype}"
            )
        padded[offset // unit : offset // unit + a.size] = a.ravel()
    per_rank = b.shard // unit
    return padded[rank * per_rank : (rank + 1) * per_rank].copy()


def _shard_state_dict(upd: Any, full: Any) -> dict[str, Any]:
    """This rank's slice of a full (single-process format) state dict, as the state dict of
    the local updater; TypeError/ValueError for anything that does not match."""
    if not isinstance(full, dict):
        raise TypeError(f"state_dict must be a dict, got {type(full).__name__}")
    if not isinstance(full.get("state"), dict):
        raise TypeError("state_dict['state'] must be a dict")
    check_saved_state_dtype(upd._local, full)  # before the codes' dtypes are compared
    n = len(upd._params)
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
        state[name] = [_shard_of(upd, name, k, arrays) for k in range(len(upd._buckets))]
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
