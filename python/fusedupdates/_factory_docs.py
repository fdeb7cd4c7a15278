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
        per 256 elements (state ``<name>_absmax``) for params of 4096 elements or more,
        float32 below: ~16 B per element for adam and 25.4% of the float32 state memory. See
        :mod:`fusedupdates.reference_compact` for the code and
        :func:`fusedupdates.convert_state_dict` for float32 checkpoints.
    state_rounding : {"nearest", "stochastic"}, optional
        With ``state_dtype="bfloat16"`` or ``"int8"`` (NumPy only): how the new state is
        rounded after each step, to nearest (default) or stochastically (up with probability
        equal to the distance from the value below, the random bits a hash of (t, param
        index, state, element index): reproducible, whatever the thread count). Rounded to
        nearest, a second moment drifts up when its steps are small against the storage's
        place: a step lowers ``v`` by at most ``(1 - beta2) v``, under half a bfloat16 place
        (``2^-9 v``) at ``beta2 > 0.998``, so decreases are lost while large ``g^2`` still
        raise it (adam's ``v`` ended 2x its float32 value after 10000 steps of N(0, 1) grads
        at beta2 = 0.999; 1.2x with 8-bit codes, whose half place is 2^-5..2^-4 of the value).
        Stochastic rounding keeps it right on average, for the cost of a hash per state
        element; with ``"int8"`` it is unbiased down to the code's floor (2^-15 of the
        block's absmax for first moments, 2^-31 for second moments), and the params under
        4096 elements, whose state stays float32, are not rounded at all
        (``bench/state_rounding.py``)."""


def _doc(text: str) -> Any:
    """Fill the shared parameter text into a factory's docstring."""

    def apply(fn: Any) -> Any:
        fn.__doc__ = text.replace("{decay}", _DECAY_DOC)
        return fn

    return apply
