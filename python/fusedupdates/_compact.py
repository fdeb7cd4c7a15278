"""Compact optimizer state (``state_dtype=``): which tensors get which storage, their buffers,
and the conversion of state dicts between storages.

``state_dtype=None`` (default) keeps every state in the param's compute dtype (float32, or
float64 for float64 params). ``"bfloat16"`` stores every state as bfloat16 (ml_dtypes),
computed in float32 and rounded to nearest even after each step. ``"int8"`` stores each state
of a param with at least :data:`MIN_QUANTIZED_NUMEL` elements as 8-bit blockwise codes (uint8,
the param's shape) plus one float32 absmax per :data:`QUANT_BLOCK` elements, the state
``"<name>_absmax"``; smaller params keep float32 state (their ``_absmax`` entry is None), as in
Dettmers et al.'s 8-bit optimizers. The code itself is described in
:mod:`fusedupdates.reference_compact`. Either compact format can be rounded stochastically
instead of to nearest (``state_rounding="stochastic"``: ``_precision.check_state_rounding``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from ._precision import is_bfloat16
from .reference_compact import (
    MIN_QUANTIZED_NUMEL,
    QUANT_BLOCK,
    dequantize_blockwise,
    quantize_blockwise,
)

STATE_DTYPES = (None, "float32", "bfloat16", "int8")
SCALES = "_absmax"  # suffix of the block-scale state of an 8-bit state
# States that may be negative get the signed code (csrc/rules kSignedStates); the others
# (second moments, accumulators) are never negative.
SIGNED_STATES = frozenset({"m", "velocity"})


def check_state_dtype(state_dtype: Any, params: list, on_gpu: bool) -> str | None:
    """Validate ``state_dtype`` against the params; None for the default storage."""
    if state_dtype is not None and not isinstance(state_dtype, str):
        raise TypeError(
            f"state_dtype must be None, 'bfloat16' or 'int8', got {type(state_dtype).__name__}"
        )
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be None, 'bfloat16' or 'int8', got {state_dtype!r}")
    if state_dtype in (None, "float32"):
        for i, p in enumerate(params if state_dtype == "float32" else []):
            if np.dtype(p.dtype) == np.float64:
                raise ValueError(
                    f"params[{i}] is float64: its state is float64 (leave state_dtype=None)"
                )
        return None
    for i, p in enumerate(params):
        if np.dtype(p.dtype) == np.float64:
            raise ValueError(
                f"params[{i}]: state_dtype={state_dtype!r} is for float32, float16 and bfloat16 "
                "params, not float64"
            )
    if state_dtype == "bfloat16":
        bfloat16_dtype()  # a clear ImportError now rather than at the first buffer
    return state_dtype


def bfloat16_dtype() -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes is in the test extra
        raise ImportError(
            "state_dtype='bfloat16' needs the ml_dtypes package: pip install 'fusedupdates[bf16]'"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


# id(param) -> True (8-bit) or False (full) for the params of an updater built inside
# forced_int8_storage(); see there.
_FORCED_INT8: ContextVar[dict[int, bool] | None] = ContextVar("forced_int8", default=None)


@contextmanager
def forced_int8_storage(params: list, quantized: list[bool]) -> Iterator[None]:
    """Within the block, an updater built with ``state_dtype="int8"`` over (some of) ``params``
    stores the state of ``params[i]`` as 8-bit codes exactly where ``quantized[i]``, whatever
    its size. The sharded updater needs this: its local params are flat shards, each holding
    either only large params (8-bit, even when the shard is under MIN_QUANTIZED_NUMEL) or only
    small ones (full state, as a single process keeps them, even when the shard is larger).
    A context variable, so that the user's ``rule_factory`` in between needs no new keyword
    (and other threads are not affected)."""
    token = _FORCED_INT8.set({id(p): bool(q) for p, q in zip(params, quantized)})
    try:
        yield
    finally:
        _FORCED_INT8.reset(token)


def storage_of(numel: int, state_dtype: str | None, param: Any = None) -> str | None:
    """How a param of ``numel`` elements stores its state: None (full), bfloat16 or int8."""
    if state_dtype == "int8":
        forced = _FORCED_INT8.get()
        if forced is not None and id(param) in forced:
            return "int8" if forced[id(param)] else None
        if numel < MIN_QUANTIZED_NUMEL:
            return None
    return state_dtype


def allocate(backend: Any, param: Any, full_dtype: np.dtype, state_dtype: str | None):
    """Zeroed (state buffer, block scales or None) of one state of ``param``: zero codes and
    zero scales decode to 0, like a zero float buffer."""
    storage = storage_of(param.size, state_dtype, param)
    if storage is None:
        return backend.zeros_like(param, full_dtype), None
    if storage == "bfloat16":
        return backend.zeros_like(param, bfloat16_dtype()), None
    blocks = -(-param.size // QUANT_BLOCK)
    scales = backend.zeros_on((blocks,), np.dtype(np.float32), param)
    return backend.zeros_like(param, np.dtype(np.uint8)), scales


def _to_float32(name: str, array: Any, scales: Any) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype == np.uint8:
        if scales is None:
            raise ValueError(f"state '{name}': uint8 codes without their '{name}{SCALES}' scales")
        return dequantize_blockwise(a, scales, name in SIGNED_STATES)
    if is_bfloat16(a.dtype):
        return a.astype(np.float32)
    return a


def convert_state_dict(state_dict: dict[str, Any], state_dtype: str | None) -> dict[str, Any]:
    """A copy of an updater's :meth:`~fusedupdates.Updater.state_dict` with its states stored
    as ``state_dtype`` would store them (None: float32 for float16/32/bfloat16 params).

    Use it to load a float32 checkpoint into an updater built with ``state_dtype="int8"`` (or
    ``"bfloat16"``), or to read compact state as float32: ``convert_state_dict(sd, None)``
    decodes the 8-bit codes with their block scales exactly as the kernels do. Going to a
    compact storage rounds the state (to nearest); float64 state (of float64 params) cannot be
    made compact.

    Raises
    ------
    ValueError
        For a state dict that is not an updater's, or float64 state asked to be compact.
    """
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("state"), dict):
        raise ValueError("convert_state_dict needs an updater's state_dict (with 'state')")
    target = check_state_dtype(state_dtype, [], on_gpu=False)
    states = state_dict["state"]
    out_states: dict[str, list] = {}
    for name, arrays in states.items():
        if name.endswith(SCALES) or name == "master":
            if name == "master":
                out_states[name] = [None if a is None else np.array(a) for a in arrays]
            continue
        scales = states.get(name + SCALES, [None] * len(arrays))
        converted, new_scales = [], []
        for i, (a, s) in enumerate(zip(arrays, scales)):
            if a is None:
                converted.append(None)
                new_scales.append(None)
                continue
            x = _to_float32(name, a, s)
            if x.dtype == np.float64 and target is not None:
                raise ValueError(f"state '{name}'[{i}] is float64: float64 state stays float64")
            storage = storage_of(x.size, target)
            if storage == "int8":
                codes, absmax = quantize_blockwise(x, name in SIGNED_STATES)
                converted.append(codes)
                new_scales.append(absmax)
            else:
                kind = bfloat16_dtype() if storage == "bfloat16" else x.dtype
                converted.append(np.array(x, dtype=kind))
                new_scales.append(None)
        out_states[name] = converted
        if target == "int8":
            out_states[name + SCALES] = new_scales
    out = dict(state_dict)
    out["state"] = out_states
    out.pop("state_dtype", None)
    if target is not None:
        out["state_dtype"] = target
    return out
