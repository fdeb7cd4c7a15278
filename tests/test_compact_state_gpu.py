"""Compact optimizer state on the GPU (state_dtype="bfloat16" / "int8" with CuPy arrays):
every rule and momentum mode against the teacher-forced reference for 20 steps (the float math
within float32 rounding, the quantizer exactly: tests/_compact_support.py), CPU and GPU codes
bit for bit where the rule's float math is exact, 16-bit params, checkpoints across devices,
and sizes 1, 7 (float32 state under int8), 4097 (a partial last block) and over a million.
Needs CuPy, a GPU and fusedupdates' CUDA module; skipped otherwise."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _compact_support import RC, STATE_DTYPES, check_step, compare_stored
from _support import (
    BASE_RULES,
    HYPER,
    MODIFIERS,
    MU,
    make_updater,
    random_grads,
    require_cuda_module,
)

cupy = require_cuda_module()  # skips the module without CuPy, a GPU or the CUDA build

SHAPES = [(4097,), (1,), (7,), (64, 80)]


class _OnHost:
    """A GPU updater seen with NumPy arrays (what the CPU-side helpers read), stepping on the
    GPU: params and state copied to the host at each read, grads to the device."""

    def __init__(self, upd):
        self.upd = upd

    @property
    def params(self):
        return [cupy.asnumpy(p) for p in self.upd.params]

    @property
    def state(self):
        return {
            name: [None if a is None else cupy.asnumpy(a) for a in arrays]
            for name, arrays in self.upd.state.items()
        }

    def step(self, grads, **kw):
        return self.upd.step([cupy.asarray(g) for g in grads], **kw)


def _params(rng, shapes, dtype=np.float32):
    return [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_every_rule_matches_reference_on_gpu(rng, rule, modifier, state_dtype):
    if rule == "sgd" and modifier == "none":
        pytest.skip("sgd keeps no state")
    params = [cupy.asarray(p) for p in _params(rng, SHAPES)]
    upd = make_updater(fu, rule, params, modifier, state_dtype=state_dtype, **HYPER[rule])
    assert upd.state_dtype == state_dtype
    view = _OnHost(upd)
    for t in range(1, 21):
        grads = random_grads(rng, SHAPES, np.float32)
        check_step(view, rule, modifier, grads, HYPER[rule], MU, t, f"gpu {rule}+{modifier}")


def test_storage_layout_on_gpu(rng):
    params = [cupy.asarray(p) for p in _params(rng, SHAPES)]
    st = fu.adam(params, state_dtype="int8").state
    assert [a.dtype for a in st["m"]] == [np.uint8, np.float32, np.float32, np.uint8]
    assert all(isinstance(a, cupy.ndarray) for a in st["m_absmax"] if a is not None)
    assert [None if a is None else a.shape for a in st["v_absmax"]] == [(33,), None, None, (40,)]


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize("modifier", ["momentum", "nesterov"])
def test_cpu_and_gpu_store_the_same_bits(rng, modifier, state_dtype):
    """sgd with momentum 0.5 and a learning rate of 2^-4 on dyadic grads: every product of the
    rule is exact, so FMA contraction cannot change a bit and the two backends must store the
    same params, codes and block scales."""
    shapes = [(4097,), (7,), (1 << 20 | 5,)]
    init = [np.round(p * 64) / 64 for p in _params(rng, shapes)]
    hyper = {"learning_rate": 2.0**-4}
    cpu = make_updater(fu, "sgd", init, modifier, mu=0.5, state_dtype=state_dtype, **hyper)
    gpu = make_updater(
        fu, "sgd", [cupy.asarray(p) for p in init], modifier, mu=0.5, state_dtype=state_dtype,
        **hyper,
    )  # fmt: skip
    for _ in range(10):
        grads = [np.round(g * 32) / 32 for g in random_grads(rng, shapes, np.float32)]
        cpu.step(grads)
        gpu.step([cupy.asarray(g) for g in grads])
    for a, b in zip(cpu.params, gpu.params):
        np.testing.assert_array_equal(cupy.asnumpy(b).view(np.uint32), a.view(np.uint32))
    for name, arrays in cpu.state.items():
        for a, b in zip(arrays, gpu.state[name]):
            if a is not None:
                got = cupy.asnumpy(b)
                np.testing.assert_array_equal(got.view(np.uint8), a.view(np.uint8), err_msg=name)


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_cpu_and_gpu_agree_on_adam(rng, state_dtype):
    """Adam from the same stored state on both backends, step by step (the GPU's state loaded
    into the CPU updater before each step): codes at most one apart, almost all equal."""
    shapes = [(4097,), (300, 70)]
    init = _params(rng, shapes)
    cpu = fu.adam([p.copy() for p in init], state_dtype=state_dtype)
    gpu = fu.adam([cupy.asarray(p) for p in init], state_dtype=state_dtype)
    for t in range(1, 11):
        cpu.load_state_dict(gpu.state_dict())
        for dst, src in zip(cpu.params, gpu.params):
            dst[...] = cupy.asnumpy(src)
        grads = random_grads(rng, shapes, np.float32)
        cpu.step(grads)
        gpu.step([cupy.asarray(g) for g in grads])
        cs, gs = cpu.state, gpu.state
        for name in ("m", "v"):
            for i in range(len(shapes)):
                got = cupy.asnumpy(gs[name][i])
                g_abs = gs.get(name + "_absmax", [None] * 2)[i]
                c_abs = cs.get(name + "_absmax", [None] * 2)[i]
                compare_stored(
                    got, None if g_abs is None else cupy.asnumpy(g_abs), cs[name][i], c_abs,
                    name, f"{name}[{i}] t={t}", max_fraction=0.002,
                )  # fmt: skip


@pytest.mark.parametrize("mode", ["bfloat16", "float16+master", "bfloat16+master"])
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_16bit_params_with_compact_state_on_gpu(rng, mode, state_dtype):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    storage = np.dtype(ml_dtypes.bfloat16) if mode.startswith("bfloat16") else np.float16
    master = mode.endswith("+master")
    shapes = [(4500,), (5,)]
    init = _params(rng, shapes, storage)

    def build(params):
        upd = fu.adam(params, master_weights=master, state_dtype=state_dtype, **HYPER["adam"])
        return fu.apply_nesterov_momentum(upd, momentum=MU)

    cpu = build([p.copy() for p in init])
    gpu = build([cupy.asarray(p) for p in init])
    for _ in range(10):
        grads = [g.astype(storage) for g in random_grads(rng, shapes, np.float32)]
        cpu.step([g.copy() for g in grads])
        gpu.step([cupy.asarray(g) for g in grads])
    for a, b in zip(cpu.params, gpu.params):
        want = a.astype(np.float32)
        got = cupy.asnumpy(b).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=3e-2, atol=2e-3)


@pytest.mark.parametrize("n", [1, 7, 4097, (1 << 20) + 3])
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_sizes(rng, n, state_dtype):
    params = [cupy.asarray(p) for p in _params(rng, [(n,)])]
    upd = fu.apply_momentum(fu.adam(params, state_dtype=state_dtype, **HYPER["adam"]), momentum=MU)
    want = np.uint8 if state_dtype == "int8" and n >= RC.MIN_QUANTIZED_NUMEL else None
    if state_dtype == "int8":
        assert upd.state["m"][0].dtype == (want or np.float32)
        blocks = upd.state["m_absmax"][0]
        assert (blocks is None) == (want is None)
        if blocks is not None:
            assert blocks.shape == (-(-n // RC.QUANT_BLOCK),)
    view = _OnHost(upd)
    for t in range(1, 4):
        grads = random_grads(rng, [(n,)], np.float32)
        check_step(view, "adam", "momentum", grads, HYPER["adam"], MU, t, f"n={n}")


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_checkpoints_cross_devices(rng, state_dtype, tmp_path):
    shapes = [(4097,), (7,)]
    init = _params(rng, shapes)
    gpu = fu.apply_momentum(
        fu.adam([cupy.asarray(p) for p in init], state_dtype=state_dtype), momentum=MU
    )
    for _ in range(3):
        gpu.step([cupy.asarray(g) for g in random_grads(rng, shapes, np.float32)])
    sd = gpu.state_dict()
    assert sd["state_dtype"] == state_dtype
    assert all(isinstance(a, np.ndarray) for arrays in sd["state"].values() for a in arrays
               if a is not None)  # fmt: skip
    # GPU -> CPU -> GPU, through a file: both continue bit for bit like the original.
    cpu = fu.apply_momentum(
        fu.adam([cupy.asnumpy(p) for p in gpu.params], state_dtype=state_dtype), momentum=MU
    )
    cpu.load_state_dict(sd)
    gpu.save(tmp_path / "opt.npz")
    again = fu.apply_momentum(
        fu.adam([p.copy() for p in gpu.params], state_dtype=state_dtype), momentum=MU
    )
    again.load(tmp_path / "opt.npz")
    for name, arrays in sd["state"].items():
        for a, b, c in zip(
            arrays, again.state_dict()["state"][name], cpu.state_dict()["state"][name]
        ):
            if a is not None:
                np.testing.assert_array_equal(b.view(np.uint8), a.view(np.uint8))
                np.testing.assert_array_equal(c.view(np.uint8), a.view(np.uint8))
    grads = random_grads(rng, shapes, np.float32)
    gpu.step([cupy.asarray(g) for g in grads])
    again.step([cupy.asarray(g) for g in grads])
    for a, b in zip(gpu.params, again.params):
        np.testing.assert_array_equal(cupy.asnumpy(a), cupy.asnumpy(b))
    # float32 checkpoint into a compact GPU updater, and compact state read as float32.
    full = fu.convert_state_dict(sd, None)
    assert "state_dtype" not in full and full["state"]["m"][0].dtype == np.float32
    back = fu.convert_state_dict(full, state_dtype)
    fresh = fu.apply_momentum(
        fu.adam([cupy.asarray(p) for p in init], state_dtype=state_dtype), momentum=MU
    )
    fresh.load_state_dict(back)
    got = fresh.state_dict()["state"]
    for name, arrays in back["state"].items():
        for a, b in zip(arrays, got[name]):
            if a is not None:
                np.testing.assert_array_equal(b.view(np.uint8), np.asarray(a).view(np.uint8))
