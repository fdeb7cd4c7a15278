"""The text every factory's docstring shares, and the decorator that fills it in (split
from _factories.py to keep each file small)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Params = Sequence[Any]

_DECAY_DOC = """weight_decay : float, optional
        Fused weight decay, default 0 (see :mod:`fusedupdates` and the README).
    decoupled_weight_decay : bool, optional
        AdamW-style decoupled decay instead of L2.
    master_weights : bool, optional
        float16 / bfloat16 params only (ValueError otherwise), NumPy or CuPy:
        keep a float32 copy of every param as the state buffer ``"master"`` (initialised
        from the param). The step updates the master copy in the same fused pass and writes
        it, rounded to nearest even, to the 16-bit param; the grads stay 16-bit. Costs 8
        more bytes per element per step (adam: 30 B instead of 22 B). Change the params
        through the updater only (``load_state_dict``): the master copy is what is updated.
    rounding : {"nearest", "stochastic"}, optional
        How float16 / bfloat16 params are rounded after each step (without master weights;
        NumPy only): to nearest even (default), or stochastically, up with probability equal
        to the distance from the value below, so small updates survive on average at no
        extra memory (22 B per element for adam). The random bits are a hash of (t, param
        index, element index): reproducible, whatever the thread count.
    state_dtype : {None, "bfloat16", "int8"}, optional
        How the optimizer state (the momentum velocity included) is stored, for float16 /
        float32 / bfloat16 params (NumPy; CuPy too, a GPU path not yet run on a GPU). None
        (default): float32 (float64 for float64 params). ``"bfloat16"``: bfloat16 buffers
        (needs ml_dtypes), computed in float32 and rounded to nearest even: adam moves 20 B
        per element instead of 28. ``"int8"``: 8-bit blockwise codes with one float32 absmax
        per 128 elements (state ``<name>_absmax``) for params of 4096 elements or more,
        float32 below: ~16 B per element for adam and 25.8% of the float32 state memory. See
        :mod:`fusedupdates.reference_compact` for the code and
        :func:`fusedupdates.convert_state_dict` for float32 checkpoints."""


def _doc(text: str) -> Any:
    """Fill the shared parameter text into a factory's docstring."""

    def apply(fn: Any) -> Any:
        fn.__doc__ = text.replace("{decay}", _DECAY_DOC)
        return fn

    return apply
