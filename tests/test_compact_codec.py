"""The 8-bit blockwise code: the kernels' quantizer against the reference bit for bit, round-trip
error bounds per block, and the edge cases (zero blocks, one huge value, NaN and Inf, values
too small for a scale, partial blocks)."""

from __future__ import annotations

import importlib

import fusedupdates as fu
import numpy as np
import pytest
from _compact_support import RC

RM = importlib.import_module("_fusedupdates_source.reference_mixed")

_cpu = fu._cpu
BLOCK = RC.QUANT_BLOCK


def native(x, signed):
    x = np.ascontiguousarray(x, np.float32)
    codes = np.empty(x.shape, np.uint8)
    absmax = np.empty(-(-x.size // BLOCK), np.float32)
    _cpu.quantize_blockwise(x, codes, absmax, signed)
    back = np.empty(x.shape, np.float32)
    _cpu.dequantize_blockwise(codes, absmax, back, signed)
    return codes, absmax, back


def wide_range(rng, n, signed):
    x = rng.standard_normal(n) * np.exp(rng.uniform(-40, 40, n))
    return (x if signed else np.abs(x)).astype(np.float32)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("n", [1, 7, 255, 256, 257, 4097, (1 << 20) + 5])
def test_kernel_quantizer_equals_reference_bit_for_bit(rng, n, signed):
    x = wide_range(rng, n, signed)
    if n > 300:
        x[rng.integers(0, n, 5)] = np.nan
        x[rng.integers(0, n, 3)] = np.inf
        x[rng.integers(0, n, 3)] = -np.inf if signed else np.inf
        x[256:300] = 0.0
        x[:20] = 1e-41  # a subnormal block start
    codes, absmax, back = native(x, signed)
    want_codes, want_absmax = RC.quantize_blockwise(x, signed)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(absmax.view(np.uint32), want_absmax.view(np.uint32))
    want_back = RC.dequantize_blockwise(want_codes, want_absmax, signed)
    np.testing.assert_array_equal(back.view(np.uint32), want_back.view(np.uint32))


@pytest.mark.parametrize("signed", [True, False])
def test_round_trip_error_bound_per_block(rng, signed):
    x = (rng.standard_normal(64 * BLOCK) * np.exp(rng.uniform(-3, 3, 64 * BLOCK))).astype(
        np.float32
    )
    x = x if signed else np.abs(x)
    _, absmax, back = native(x, signed)
    blocks = x.reshape(-1, BLOCK)
    np.testing.assert_array_equal(absmax, np.abs(blocks).max(axis=1))
    # 3 mantissa bits: to nearest is within 1/16 relative above the smallest code
    floor = absmax[:, None] * (2.0**-15 if signed else 2.0**-31) * 1.125
    err = np.abs(back.reshape(-1, BLOCK) - blocks)
    normal = np.abs(blocks) >= floor
    assert np.all(err[normal] <= np.abs(blocks[normal]) / 16 * (1 + 1e-6))
    floor_each = np.broadcast_to(floor, blocks.shape)
    assert np.all(err[~normal] <= floor_each[~normal])  # below the smallest code: flushed
    # the block's absmax element is exact, and signs are kept
    top = np.abs(blocks).argmax(axis=1)
    rows = np.arange(blocks.shape[0])
    np.testing.assert_array_equal(back.reshape(-1, BLOCK)[rows, top], blocks[rows, top])
    assert np.all(np.sign(back.reshape(-1, BLOCK)[normal]) == np.sign(blocks[normal]))


@pytest.mark.parametrize("signed", [True, False])
def test_edge_blocks(signed):
    x = np.zeros(5 * BLOCK, np.float32)
    x[BLOCK] = 3e38  # one huge value: the rest of that block flushes to zero
    x[BLOCK + 1] = 1.0
    x[2 * BLOCK : 3 * BLOCK] = 2e-39  # absmax below FLT_MIN: scale 0, values 0
    x[3 * BLOCK] = np.nan  # NaN stays in its element only
    x[3 * BLOCK + 1 : 4 * BLOCK] = 0.5
    x[4 * BLOCK] = np.inf
    x[4 * BLOCK + 1] = 2.0
    codes, absmax, back = native(x, signed)
    assert absmax[0] == 0 and np.all(back[:BLOCK] == 0) and np.all(codes[:BLOCK] == 0)
    assert absmax[1] == np.float32(3e38) and back[BLOCK] == np.float32(3e38)
    assert back[BLOCK + 1] == 0.0
    assert absmax[2] == 0 and np.all(back[2 * BLOCK : 3 * BLOCK] == 0)
    assert np.isnan(back[3 * BLOCK]) and absmax[3] == 0.5
    np.testing.assert_array_equal(back[3 * BLOCK + 1 : 4 * BLOCK], 0.5)
    assert np.isnan(back[4 * BLOCK])  # +Inf has no code: it is stored as NaN
    assert absmax[4] == 2.0 and back[4 * BLOCK + 1] == 2.0
    assert codes[3 * BLOCK] == (RC.SIGNED_NAN if signed else RC.UNSIGNED_NAN)


def test_signed_code_keeps_negative_values_and_never_makes_nan():
    x = np.array([-1.0, -1e-30, -0.0, 0.0, 1.0], np.float32)
    codes, absmax, back = native(x, True)
    assert back[0] == -1.0 and back[4] == 1.0
    assert back[1] == 0.0 and back[2] == 0.0  # flushed to zero, not to the NaN code 0x80
    assert RC.SIGNED_NAN not in codes


def test_quantize_function_rejects_bad_arrays():
    x = np.ones(300, np.float32)
    blocks = -(-300 // BLOCK)
    codes, absmax = np.empty(300, np.uint8), np.empty(blocks, np.float32)
    with pytest.raises(TypeError, match="codes: dtype"):
        _cpu.quantize_blockwise(x, np.empty(300, np.int16), absmax, True)
    with pytest.raises(ValueError, match=f"absmax: 1 elements, expected {blocks}"):
        _cpu.quantize_blockwise(x, codes, np.empty(1, np.float32), True)
    with pytest.raises(TypeError, match="expected a numpy.ndarray"):
        _cpu.quantize_blockwise(list(x), codes, absmax, True)
    frozen = codes.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _cpu.quantize_blockwise(x, frozen, absmax, True)
    with pytest.raises(ValueError, match="must not overlap"):
        both = np.empty(296 + 4 * blocks, np.uint8)  # absmax overlaps the last 4 codes
        _cpu.quantize_blockwise(x, both[:300], both[296:].view(np.float32), True)


_ISA_SCRIPT = r"""
import json, sys
import numpy as np
import fusedupdates as fu
from fusedupdates import _cpu
data = json.load(sys.stdin)
out = {"simd": fu.build_info()["simd"], "codes": {}, "absmax": {}, "back": {}, "stochastic": {}}
for signed in (True, False):
    key = str(signed)
    x = np.array(data["x"][key], np.float32)
    codes = np.empty(x.size, np.uint8)
    absmax = np.empty(-(-x.size // _cpu.QUANT_BLOCK), np.float32)
    _cpu.quantize_blockwise(x, codes, absmax, signed)
    rounded = np.empty(x.size, np.uint8)
    _cpu.quantize_blockwise(x, rounded, absmax, signed, stochastic=(9, 4, 2))
    out["stochastic"][key] = rounded.tolist()
    any_codes = np.array(data["any_codes"], np.uint8)
    scales = np.array(data["scales"], np.float32)
    back = np.empty(any_codes.size, np.float32)
    _cpu.dequantize_blockwise(any_codes, scales, back, signed)
    out["codes"][key] = codes.tolist()
    out["absmax"][key] = absmax.view(np.uint32).tolist()
    out["back"][key] = back.view(np.uint32).tolist()
json.dump(out, sys.stdout)
"""


def _isa_inputs(rng):
    """Full blocks of every kind the AVX-512 codec sees, and the ones it hands back to the
    element-wise loop: wide-range values, exact rounding ties, values below the smallest
    code, -0, zero and subnormal blocks, a NaN or an Inf in a block; for decoding, every byte
    (the NaN codes and the never-produced codes above the top included) under scales of
    every size."""
    x = {}
    for signed in (True, False):
        blocks = [wide_range(rng, 40 * BLOCK, signed)]
        # ties halfway between codes, in blocks whose absmax is 1 (so the scaled value is x)
        f = rng.integers(0, 8, 4 * BLOCK)
        e = rng.integers(-14 if signed else -30, 0, 4 * BLOCK)
        tie = np.ldexp(1.0 + (2 * f + 1) / 16.0, e).astype(np.float32)
        tie = tie * (rng.choice([-1, 1], tie.size) if signed else 1)
        tie[::BLOCK] = 1.0
        blocks.append(tie)
        tiny = np.full(BLOCK, 1e-20 * (-1 if signed else 1), np.float32)
        tiny[0], tiny[1] = 1.0, -0.0
        special = np.zeros(4 * BLOCK, np.float32)
        special[BLOCK : 2 * BLOCK] = 5e-39
        special[2 * BLOCK : 3 * BLOCK] = 0.25
        special[2 * BLOCK + 7] = np.nan
        special[3 * BLOCK : 4 * BLOCK] = 0.75
        special[4 * BLOCK - 1] = np.inf
        blocks += [tiny, special]
        x[str(signed)] = np.concatenate(blocks).tolist()
    any_codes = np.concatenate([np.arange(256)] * 6 + [rng.integers(0, 256, 16 * BLOCK)])
    chosen = [1.0, 0.0, 3e38, 1e-39, 2.5e-10, 7.0]  # 3e38: codes above the top overflow to Inf
    scales = np.resize(
        np.concatenate([chosen, rng.uniform(0, 100, 16)]), -(-any_codes.size // BLOCK)
    )
    return {"x": x, "any_codes": any_codes.tolist(), "scales": scales.tolist()}


@pytest.mark.parametrize("simd", ["baseline", "avx2", "avx512", "avx512_bf16"])
def test_every_instruction_set_codes_like_the_reference(rng, simd):
    """The AVX-512 and AVX2 block codecs and the element-wise loops give the reference's
    bytes, rounded to nearest and stochastically."""
    import json
    import os
    import subprocess
    import sys

    inputs = _isa_inputs(rng)
    res = subprocess.run(
        [sys.executable, "-c", _ISA_SCRIPT],
        input=json.dumps(inputs),
        env=dict(os.environ, FUSEDUPDATES_SIMD=simd),
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(res.stdout)
    if out["simd"] != simd:
        pytest.skip(f"this CPU has no {simd} path (runs {out['simd']})")
    any_codes = np.array(inputs["any_codes"], np.uint8)
    scales = np.array(inputs["scales"])
    for signed in (True, False):
        key = str(signed)
        want_codes, want_absmax = RC.quantize_blockwise(
            np.array(inputs["x"][key], np.float32), signed
        )
        np.testing.assert_array_equal(np.array(out["codes"][key], np.uint8), want_codes)
        x = np.array(inputs["x"][key], np.float32)
        want_rounded, _ = RC.quantize_blockwise(x, signed, RM.state_random_bits(x.size, 9, 4, 2))
        np.testing.assert_array_equal(np.array(out["stochastic"][key], np.uint8), want_rounded)
        np.testing.assert_array_equal(
            np.array(out["absmax"][key], np.uint32), want_absmax.view(np.uint32)
        )
        with np.errstate(over="ignore"):
            want_back = RC.dequantize_blockwise(any_codes, scales.astype(np.float32), signed)
        np.testing.assert_array_equal(
            np.array(out["back"][key], np.uint32), want_back.view(np.uint32)
        )
