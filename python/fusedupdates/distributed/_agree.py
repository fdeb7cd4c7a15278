"""Making every rank agree before any data moves, and raise together when they do not.

A rank that raised on its own would leave the others blocked in the next collective, so each
check is local and never raises: its outcome (an error, or a description of what this rank
has) is exchanged with one small all-gather, and then every rank raises the same error.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ._transport import Transport

# Error kinds carried through the exchange, so that every rank raises the same type.
_KINDS = {TypeError: 1, ValueError: 2}
_TYPES = {1: TypeError, 2: ValueError, 3: RuntimeError}


def kind_of(error: BaseException | None) -> int:
    """0 for no error, else the code of its type (RuntimeError for anything unexpected)."""
    if error is None:
        return 0
    for cls, code in _KINDS.items():
        if isinstance(error, cls):
            return code
    return 3


def agree_on_setup(
    transport: Transport, what: str, description: dict[str, Any], error: BaseException | None
) -> None:
    """Exchange every rank's ``description`` (or local ``error``); raise on every rank if any
    rank failed or the descriptions differ.

    Raises
    ------
    TypeError, ValueError
        The same type and message on every rank (the type of the first failing rank's error;
        ValueError for ranks that disagree).
    """
    mine = {"kind": kind_of(error), "error": None if error is None else str(error)}
    mine["description"] = description if error is None else None
    blobs = transport.allgather_bytes(json.dumps(mine).encode())
    every = [json.loads(b) for b in blobs]
    failed = [r for r, d in enumerate(every) if d["kind"]]
    if failed:
        cls = _TYPES[every[failed[0]]["kind"]]
        lines = "; ".join(f"rank {r}: {every[r]['error']}" for r in failed)
        raise cls(f"{what} failed on rank(s) {failed} (every rank raises): {lines}") from error
    reference = every[0]["description"]
    for rank, d in enumerate(every[1:], start=1):
        for key in reference:
            if d["description"].get(key) != reference[key]:
                raise ValueError(
                    f"{what}: ranks disagree on {key}: rank 0 has {reference[key]!r}, "
                    f"rank {rank} has {d['description'].get(key)!r} (every rank raises)"
                )


def agree_on_step(
    transport: Transport, error: BaseException | None, values: list[float], names: list[str]
) -> None:
    """The per-step handshake: one all-gather of a few floats (this rank's error kind and the
    values every rank must share: max_norm, t, hyperparameters). Raises on every rank."""
    rows = transport.allgather_floats([float(kind_of(error)), *values])
    kinds = rows[:, 0]
    if kinds.any():
        # every rank knows now that one failed: a second exchange shares the messages
        messages = transport.allgather_bytes(b"" if error is None else str(error).encode())
        failed = [int(r) for r in kinds.nonzero()[0]]
        cls = _TYPES[int(kinds[failed[0]])]
        lines = "; ".join(f"rank {r}: {messages[r].decode()}" for r in failed)
        raise cls(f"step failed on rank(s) {failed} (every rank raises): {lines}") from error
    for column, name in enumerate(names, start=1):
        col = rows[:, column]
        same = all(_same(x, col[0]) for x in col)
        if not same:
            shown = ", ".join(f"rank {r}: {_show(x)}" for r, x in enumerate(col))
            raise ValueError(f"step: ranks disagree on {name} ({shown}; every rank raises)")


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _show(x: float) -> str:
    return "None" if math.isnan(x) else repr(float(x))
