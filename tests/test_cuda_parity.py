"""CUDA backend: the GPU gives the CPU's results on identical inputs (GPU only).

Every rule x modifier x dtype through the updaters, the functional API with max_norm, mixed
dtypes, misaligned arrays (scalar path), tensors spanning several chunks, and the norm kernels.
Skipped without CuPy and a GPU.
"""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import (
    BASE_RULES,
    HYPER,
    MODIFIERS,
    STATE_NAMES,
    STEP_RULES,
    TOL,
    make_updater,
    random_grads,
    random_params,
    require_cuda_module,
)

cupy = require_cuda_module()

DTYPES = [np.float64, np.float32, np.float16]
# Odd sizes (vector packs plus scalar tails), a 0-d and a tensor spanning three chunks.
SHAPES = [(5,), (3, 7), (), (70_001,)]


def assert_parity(gpu, cpu, dtype, what, state=False):
    """GPU and CPU differ only by FMA contraction and last-bit libm differences."""
    ptol, stol = TOL[np.dtype(dtype)]
    tol = stol if state else ptol
    got, want = cupy.asnumpy(gpu).astype(np.float64), np.asarray(cpu, dtype=np.float64)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale + 1e-300, err_msg=what)


def run_both(rule, modifier, dtype, shapes, steps, rng, max_norm=None, subset=None, views=False):
    """Step a CPU and a GPU updater on the same grads; return both and the norms."""
    init = random_params(rng, shapes, dtype)
    cpu_params = [p.copy() for p in init]
    gpu_params = []
    for p in init:
        if views:  # misaligned by one element: exercises the scalar path
            base = cupy.empty(p.size + 1, dtype=p.dtype)
            view = base[1:].reshape(p.shape)
            view[...] = cupy.asarray(p)
            gpu_params.append(view)
        else:
            gpu_params.append(cupy.asarray(p))
    # subset: indices of the params the momentum modifier covers, as each backend's arrays.
    cpu_subset = None if subset is None else [cpu_params[i] for i in subset]
    gpu_subset = None if subset is None else [gpu_params[i] for i in subset]
    cpu = make_updater(fu, rule, cpu_params, modifier, subset=cpu_subset, **HYPER[rule])
    gpu = make_updater(fu, rule, gpu_params, modifier, subset=gpu_subset, **HYPER[rule])
    norms = []
    for _ in range(steps):
        grads = random_grads(rng, shapes, dtype)
        n_cpu = cpu.step(grads, max_norm=max_norm)
        n_gpu = gpu.step([cupy.asarray(g) for g in grads], max_norm=max_norm)
        norms.append((n_cpu, n_gpu))
    return cpu, gpu, norms


def compare_updaters(cpu, gpu, dtype, what):
    for i, (pc, pg) in enumerate(zip(cpu.params, gpu.params)):
        assert pg.dtype == np.dtype(dtype)
        assert_parity(pg, pc, dtype, f"{what} params[{i}]")
    assert set(cpu.state) == set(gpu.state)
    for name in cpu.state:
        for i, (sc, sg) in enumerate(zip(cpu.state[name], gpu.state[name])):
            assert (sc is None) == (sg is None)
            if sc is not None:
                assert sg.dtype == sc.dtype
                assert_parity(sg, sc, dtype, f"{what} state[{name!r}][{i}]", state=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_updater_parity(rng, rule, modifier, dtype):
    cpu, gpu, _ = run_both(rule, modifier, dtype, SHAPES, 12, rng)
    compare_updaters(cpu, gpu, dtype, f"{rule}/{modifier}/{np.dtype(dtype).name}")
    assert gpu.t == cpu.t == 12


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("rule", ["sgd", "adam", "adadelta", "amsgrad"])
def test_updater_parity_with_max_norm(rng, rule, dtype):
    cpu, gpu, norms = run_both(rule, "momentum", dtype, SHAPES, 6, rng, max_norm=3.0)
    compare_updaters(cpu, gpu, dtype, f"{rule} clipped")
    for n_cpu, n_gpu in norms:
        assert isinstance(n_gpu, cupy.ndarray) and n_gpu.shape == () and n_gpu.dtype == np.float64
        assert float(n_gpu) == pytest.approx(n_cpu, rel=1e-12)


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", ["rmsprop", "adamax"])
def test_misaligned_views_take_the_scalar_path(rng, rule, modifier):
    cpu, gpu, _ = run_both(rule, modifier, np.float32, SHAPES, 5, rng, views=True)
    compare_updaters(cpu, gpu, np.float32, f"{rule}/{modifier} misaligned")


def test_momentum_subset_parity(rng):
    cpu, gpu, _ = run_both("adam", "nesterov", np.float32, SHAPES, 5, rng, subset=[0, 3])
    compare_updaters(cpu, gpu, np.float32, "adam+nesterov subset")
    assert [v is None for v in gpu.state["velocity"]] == [False, True, True, False]


def test_frozen_params_parity(rng):
    """A None grad leaves its param and state untouched (and out of the norm) on both."""
    shapes = [(5,), (3, 7), (70_001,)]
    init = random_params(rng, shapes, np.float32)
    cpu = fu.apply_momentum(fu.adam([p.copy() for p in init], **HYPER["adam"]), momentum=0.7)
    gpu = fu.apply_momentum(fu.adam([cupy.asarray(p) for p in init], **HYPER["adam"]), momentum=0.7)
    for k in range(4):
        grads = random_grads(rng, shapes, np.float32)
        frozen = [None if i == k % 3 else g for i, g in enumerate(grads)]
        n_cpu = cpu.step(frozen, max_norm=2.0)
        n_gpu = gpu.step([None if g is None else cupy.asarray(g) for g in frozen], max_norm=2.0)
        assert float(n_gpu) == pytest.approx(n_cpu, rel=1e-12)
    compare_updaters(cpu, gpu, np.float32, "frozen params")
    assert gpu.t == cpu.t == 4


def test_mixed_dtypes_in_one_updater(rng):
    init = [random_params(rng, [(9,)], dt)[0] for dt in (np.float64, np.float16, np.float32)]
    cpu = fu.adam([p.copy() for p in init], **HYPER["adam"])
    gpu = fu.adam([cupy.asarray(p) for p in init], **HYPER["adam"])
    for _ in range(4):
        grads = [random_grads(rng, [(9,)], p.dtype)[0] for p in init]
        assert float(gpu.step([cupy.asarray(g) for g in grads], max_norm=2.0)) == pytest.approx(
            cpu.step(grads, max_norm=2.0), rel=1e-12
        )
    for pc, pg in zip(cpu.params, gpu.params):
        assert_parity(pg, pc, pc.dtype, f"mixed {pc.dtype}")


@pytest.mark.parametrize("rule", BASE_RULES)
def test_functional_parity(rng, rule):
    shapes = [(33,), (4, 4)]
    init = random_params(rng, shapes, np.float32)
    cpu_p = [p.copy() for p in init]
    gpu_p = [cupy.asarray(p) for p in init]
    cpu_s = [[np.zeros(s, np.float32) for s in shapes] for _ in STATE_NAMES[rule]]
    gpu_s = [[cupy.zeros(s, np.float32) for s in shapes] for _ in STATE_NAMES[rule]]
    for t in range(1, 6):
        grads = random_grads(rng, shapes, np.float32)
        kw = dict(HYPER[rule], max_norm=1.5)
        if rule in STEP_RULES:
            kw["step"] = t
        n_cpu = getattr(fu.functional, rule)(cpu_p, grads, *cpu_s, **kw)
        n_gpu = getattr(fu.functional, rule)(gpu_p, [cupy.asarray(g) for g in grads], *gpu_s, **kw)
        assert float(n_gpu) == pytest.approx(n_cpu, rel=1e-12)
    for pc, pg in zip(cpu_p, gpu_p):
        assert_parity(pg, pc, np.float32, f"functional {rule}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "shape,axes", [((40, 300), None), ((8, 3, 5, 5), None), ((6, 70, 3), (1,)), ((2, 3, 4), (0, 2))]
)
def test_norm_constraint_parity(rng, shape, axes, dtype):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    want = fu.norm_constraint(x, 2.0, norm_axes=axes)
    got = fu.norm_constraint(cupy.asarray(x), 2.0, norm_axes=axes)
    assert_parity(got, want, dtype, f"norm_constraint {shape} {axes}")
    xg = cupy.asarray(x)
    fu.norm_constraint(xg, 2.0, norm_axes=axes, out=xg)  # in place
    assert_parity(xg, want, dtype, "norm_constraint in place")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_total_norm_constraint_parity(rng, dtype):
    xs = [(rng.standard_normal(s) * 2).astype(dtype) for s in [(3, 4), (70_000,), ()]]
    outs, norm = fu.total_norm_constraint(xs, 5.0, return_norm=True)
    gouts, gnorm = fu.total_norm_constraint([cupy.asarray(x) for x in xs], 5.0, return_norm=True)
    assert float(gnorm) == pytest.approx(norm, rel=1e-12)
    for o, g in zip(outs, gouts):
        assert_parity(g, o, dtype, "total_norm_constraint")


def test_sum_of_squares_is_deterministic_and_alignment_independent(rng):
    from fusedupdates import _cuda_backend as cb

    xs = [rng.standard_normal(n).astype(np.float32) for n in (100_003, 7, 65_536)]
    aligned = [cupy.asarray(x) for x in xs]
    shifted = []
    for x in xs:
        base = cupy.empty(x.size + 1, np.float32)
        base[1:] = cupy.asarray(x)
        shifted.append(base[1:])
    first = cb.sum_squares(aligned)
    again = cb.sum_squares(aligned)
    moved = cb.sum_squares(shifted)
    assert float(first) == float(again) == float(moved)  # the same bits
    assert float(first) == pytest.approx(
        sum(float(np.sum(x.astype(np.float64) ** 2)) for x in xs), rel=1e-12
    )


def test_bandwidth_probes(rng):
    from fusedupdates import _cuda_backend as cb

    w = [cupy.ones(1001, np.float32) for _ in range(2)]
    r = [cupy.full(1001, 2.0, np.float32)]
    cb.bandwidth_probe(w, r)
    np.testing.assert_allclose(cupy.asnumpy(w[0]), np.float32(1) + np.float32(1e-7) * 2, rtol=0)
    dst = cupy.zeros(1001, np.float32)
    cb.copy_probe(dst, r[0])
    assert float(dst.sum()) == 2002.0
