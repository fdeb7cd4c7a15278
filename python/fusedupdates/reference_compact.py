"""NumPy reference of compact optimizer state (``state_dtype="int8"`` / ``"bfloat16"``).

The 8-bit blockwise code is the same bit arithmetic as ``csrc/rules/quantize.h``, in float32
and uint32 NumPy operations, so that it gives the kernels' bytes exactly:

* a block of :data:`QUANT_BLOCK` elements shares one float32 scale, its absmax ``A`` (the
  largest finite ``|x|``; 0 when that is below the smallest normal float32);
* each element is one byte of a tiny float code (no subnormals) whose largest used value, 1,
  stands for ``A`` (so the absmax element decodes exactly): the **signed** code (first
  moments, velocity) is a sign bit + E4M3 (3 mantissa bits, magnitude codes 0..120, values
  down to ``A * 2**-15 * 1.125``), the **unsigned** code (second moments and other
  never-negative states) is E5M3 (codes 0..248, down to ``A * 2**-31 * 1.125``); values are
  rounded to nearest (ties away from zero), or stochastically (``random16``: the state's
  random bits, :func:`fusedupdates.reference_mixed.state_random_bits`), and those below the
  smallest code flush to zero;
* NaN and +-Inf are stored as the code's NaN (0x80 signed, 0xff unsigned) and do not enter
  the block's absmax.

To check a kernel, decode its stored state with :func:`dequantize_blockwise`, run the rule of
:mod:`fusedupdates.reference` on it, and store the new state with :func:`quantize_blockwise`
(the tests' ``_compact_support.reference_step`` does this for every rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANT_BLOCK = 256  # csrc/rules/quantize.h kQuantBlock (tested equal to _cpu.QUANT_BLOCK)
MIN_QUANTIZED_NUMEL = 4096  # smaller tensors keep float32 state under state_dtype="int8"

_F32 = np.float32
_FLT_MIN = _F32(1.17549435e-38)
_FLT_MAX = _F32(3.40282347e38)


class _TinyFloat:
    """A magnitude code without subnormals: code c in 1..``top`` is
    ``2**(e - bias) * (1 + f / 2**mantissa)`` (e = c >> mantissa), code 0 is zero."""

    def __init__(self, mantissa: int, bias: int, top: int):
        self.top = top
        self.offset = (127 - bias) << mantissa
        self.shift = 23 - mantissa
        self.top_value = self.value(np.array([top], np.uint32))[0]

    def value(self, c: np.ndarray) -> np.ndarray:
        c = c.astype(np.uint32)
        v = ((c + np.uint32(self.offset)) << np.uint32(self.shift)).view(_F32)
        return np.where(c == 0, _F32(0), v).astype(_F32)

    def encode(self, y: np.ndarray, random16: np.ndarray | None = None) -> np.ndarray:
        """To nearest, ties away from zero, on float32's bits (or, given 16 random bits per
        element, stochastically: ``quantize.h`` stochastic_code_rounding); below the smallest
        code: 0."""
        u = np.asarray(y, _F32).view(np.uint32)
        if random16 is None:
            rounding = np.uint32(1 << (self.shift - 1))
        else:  # the midpoints of 2^16 equal steps across the code's last place (2^20 bits)
            rounding = (np.asarray(random16, np.uint32) << np.uint32(4)) | np.uint32(8)
        r = ((u + rounding) >> np.uint32(self.shift)).astype(np.int64)
        return np.clip(r - self.offset, 0, self.top).astype(np.uint32)


_SIGNED = _TinyFloat(3, 15, 120)
_UNSIGNED = _TinyFloat(3, 31, 248)
SIGNED_NAN, UNSIGNED_NAN = 0x80, 0xFF


def _block_view(x: np.ndarray) -> tuple[np.ndarray, int]:
    """x (flat) padded with zeros to whole blocks, as (blocks, QUANT_BLOCK)."""
    n = x.size
    blocks = -(-n // QUANT_BLOCK)
    padded = np.zeros(blocks * QUANT_BLOCK, x.dtype)
    padded[:n] = x.ravel()
    return padded.reshape(blocks, QUANT_BLOCK), n


def _scales(absmax: np.ndarray, top: np.float32) -> tuple[np.ndarray, ...]:
    usable = absmax >= _FLT_MIN
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        multiplier = np.where(usable, absmax / top, _F32(0)).astype(_F32)
        inverse = np.where(usable, top / absmax, _F32(0)).astype(_F32)
    return np.where(usable, absmax, _F32(0)).astype(_F32), multiplier, inverse


def quantize_blockwise(x: Any, signed: bool, random16: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 values -> (uint8 codes of x's shape, float32 absmax per block); rounded to
    nearest, or stochastically by ``random16`` (16 random bits per element of x, in x's
    flat order)."""
    x = np.asarray(x, _F32)
    blocks, n = _block_view(x)
    if random16 is not None:
        if np.size(random16) != n:
            raise ValueError(f"random16 has {np.size(random16)} elements for {n} values")
        random16 = _block_view(np.asarray(random16, np.uint32).reshape(-1))[0]
    code = _SIGNED if signed else _UNSIGNED
    magnitude = np.abs(blocks)
    finite = magnitude <= _FLT_MAX
    absmax = np.where(finite, magnitude, _F32(0)).max(axis=1)
    absmax, _, inverse = _scales(absmax, code.top_value)
    with np.errstate(invalid="ignore", over="ignore"):
        y = (np.where(finite, magnitude, _F32(0)) * inverse[:, None]).astype(_F32)
    c = code.encode(y, random16)
    if signed:
        c = c | np.where((blocks < 0) & (c != 0), np.uint32(0x80), np.uint32(0))
    c = np.where(finite, c, np.uint32(SIGNED_NAN if signed else UNSIGNED_NAN))
    return c.astype(np.uint8).ravel()[:n].reshape(x.shape), absmax


def dequantize_blockwise(codes: Any, absmax: Any, signed: bool) -> np.ndarray:
    """(uint8 codes, float32 absmax per block) -> float32 values of the codes' shape."""
    codes = np.asarray(codes, np.uint8)
    absmax = np.asarray(absmax, _F32).ravel()
    blocks, n = _block_view(codes)
    if absmax.size != blocks.shape[0]:
        raise ValueError(f"{absmax.size} block scales for {n} codes (need {blocks.shape[0]})")
    code = _SIGNED if signed else _UNSIGNED
    _, multiplier, _ = _scales(absmax, code.top_value)
    magnitude_code = blocks & np.uint8(0x7F) if signed else blocks
    m = (code.value(magnitude_code) * multiplier[:, None]).astype(_F32)
    if signed:
        m = np.where(blocks & np.uint8(0x80), -m, m)
        nan = blocks == SIGNED_NAN
    else:
        nan = blocks == UNSIGNED_NAN
    m = np.where(nan, _F32(np.nan), m).astype(_F32)
    return m.ravel()[:n].reshape(codes.shape)
