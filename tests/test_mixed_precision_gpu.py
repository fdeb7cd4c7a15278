"""16-bit params on the GPU: bfloat16 and float16 with and without master weights, every rule
and modifier, against the CPU updater stepping the same data (both compute in float32, so they
agree to float32 rounding; a 16-bit param may differ by a rounding tie, one unit in the last
place). Needs CuPy, a GPU, fusedupdates' CUDA module and ml_dtypes; skipped otherwise."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import BASE_RULES, HYPER, MODIFIERS, MU, require_cuda_module

cupy = require_cuda_module()
ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SHAPES = [(7,), (33, 65), (4097,)]
MODES = {
    "bfloat16": (BF16, False),
    "bfloat16+master": (BF16, True),
    "float16+master": (np.dtype(np.float16), True),
}
ULP = {BF16: 2.0**-7, np.dtype(np.float16): 2.0**-10}


def _build(rule, modifier, params, master):
    options = {"master_weights": True} if master else {}
    upd = getattr(fu, rule)(params, **HYPER[rule], **options)
    if modifier == "momentum":
        upd = fu.apply_momentum(upd, momentum=MU)
    elif modifier == "nesterov":
        upd = fu.apply_nesterov_momentum(upd, momentum=MU)
    return upd


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_gpu_matches_cpu(rng, rule, modifier, mode):
    dtype, master = MODES[mode]
    init = [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in SHAPES]
    cpu = _build(rule, modifier, [p.copy() for p in init], master)
    gpu = _build(rule, modifier, [cupy.asarray(p) for p in init], master)
    for step in range(8):
        grads = [rng.uniform(-2, 2, s).astype(np.float32).astype(dtype) for s in SHAPES]
        max_norm = 3.0 if step % 3 == 2 else None
        cpu.step([g.copy() for g in grads], max_norm=max_norm)
        gpu.step([cupy.asarray(g) for g in grads], max_norm=max_norm)
    assert gpu.t == cpu.t == 8
    for p_cpu, p_gpu in zip(cpu.params, gpu.params):
        want = p_cpu.astype(np.float32)
        got = cupy.asnumpy(p_gpu).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=2 * ULP[dtype], atol=1e-6)
    for name, arrays in cpu.state.items():
        for a_cpu, a_gpu in zip(arrays, gpu.state[name]):
            if a_cpu is not None:
                got = cupy.asnumpy(a_gpu)
                np.testing.assert_allclose(got, a_cpu, rtol=1e-4, atol=1e-6, err_msg=name)


def test_loss_scaled_bfloat16_step_skips_on_the_device(rng):
    init = [rng.standard_normal(64).astype(np.float32).astype(BF16)]
    upd = fu.adam([cupy.asarray(init[0])], master_weights=True)
    scaler = fu.LossScaler(init_scale=1024.0)
    bad = np.full(64, np.inf, np.float32).astype(BF16)
    scaler.step(upd, [cupy.asarray(bad)])
    assert not bool(upd.last_step_applied) and upd.t == 0 and scaler.scale == 512.0
    good = (rng.standard_normal(64) * 512).astype(np.float32).astype(BF16)
    scaler.step(upd, [cupy.asarray(good)])
    assert bool(upd.last_step_applied) and upd.t == 1
    master = cupy.asnumpy(upd.state["master"][0])
    np.testing.assert_array_equal(
        cupy.asnumpy(upd.params[0]).view(np.uint16), master.astype(BF16).view(np.uint16)
    )


def test_stochastic_rounding_is_cpu_only():
    with pytest.raises(ValueError, match="not supported for CuPy"):
        fu.adam([cupy.zeros(4, dtype=BF16)], rounding="stochastic")
