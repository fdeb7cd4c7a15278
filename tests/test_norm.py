"""norm_constraint, total_norm_constraint and ``Updater.step(grads, max_norm=...)``."""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import REF, RefRunner, assert_close, check_matches, random_grads, random_params

FLOATS = [np.float64, np.float32]
NORM_TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5), (3, 4, 2, 5), (2, 3, 2, 3, 4)])
def test_norm_constraint_default_axes(xp, rng, shape, dtype):
    x0 = rng.standard_normal(shape).astype(dtype)
    x = xp.asarray(x0)
    out = fu.norm_constraint(x, 1.5)
    assert out.dtype == np.dtype(dtype) and out.shape == shape
    assert_close(
        xp.get(out), REF.norm_constraint(x0.astype(np.float64), 1.5), NORM_TOL[np.dtype(dtype)]
    )
    np.testing.assert_array_equal(xp.get(x), x0)  # input not modified


@pytest.mark.parametrize(
    "shape, axes",
    [
        ((10, 20, 30, 4), (0, 2)),
        ((6, 7, 8), (0, 2)),
        ((6, 7), (1,)),
        ((5,), (0,)),
        ((4, 5, 6), (0, 1, 2)),
        ((3, 4, 5), (1,)),
        ((3, 4, 2, 5, 2, 3), (1, 3, 5)),
    ],
)
def test_norm_constraint_explicit_axes(xp, rng, shape, axes):
    x0 = rng.standard_normal(shape)
    out = fu.norm_constraint(xp.asarray(x0), 0.8, norm_axes=axes)
    assert_close(xp.get(out), REF.norm_constraint(x0, 0.8, norm_axes=axes), 1e-12)
    norms = np.sqrt(np.sum(xp.get(out) ** 2, axis=axes))
    assert norms.max() <= 0.8 * (1 + 1e-12)


def test_norm_constraint_negative_axes(xp, rng):
    x0 = rng.standard_normal((4, 5, 6))
    out = fu.norm_constraint(xp.asarray(x0), 0.5, norm_axes=(-1,))
    assert_close(xp.get(out), REF.norm_constraint(x0, 0.5, norm_axes=(2,)), 1e-12)


def test_norm_constraint_non_contiguous_input(xp, rng):
    x0 = rng.standard_normal((8, 6))
    x = xp.asarray(x0).T  # (6, 8), Fortran-ordered view
    out = fu.norm_constraint(x, 1.0)
    assert_close(xp.get(out), REF.norm_constraint(x0.T, 1.0), 1e-12)


def test_norm_constraint_small_norms_scaled_slightly(xp):
    x0 = np.array([[0.6, 0.0], [0.8, 0.1]])  # column norms 1 and 0.1, both < max_norm
    out = xp.get(fu.norm_constraint(xp.asarray(x0), 10.0))
    np.testing.assert_allclose(out, x0 * [1 / (1 + 1e-7), 0.1 / (0.1 + 1e-7)], rtol=1e-14)
    assert not np.array_equal(out, x0)


def test_norm_constraint_epsilon(xp, rng):
    x0 = rng.standard_normal((5, 4))
    out = fu.norm_constraint(xp.asarray(x0), 0.5, epsilon=0.3)
    assert_close(xp.get(out), REF.norm_constraint(x0, 0.5, epsilon=0.3), 1e-12)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_norm_constraint_out_in_place(xp, rng, dtype):
    x0 = rng.standard_normal((3, 4, 5)).astype(dtype)
    x = xp.asarray(x0)
    res = fu.norm_constraint(x, 0.7, out=x)
    assert res is x
    assert_close(
        xp.get(x), REF.norm_constraint(x0.astype(np.float64), 0.7), NORM_TOL[np.dtype(dtype)]
    )


@pytest.mark.parametrize("shape", [(), (7,), (1, 2, 3, 4, 5, 6)])
def test_norm_constraint_unsupported_dimensionality(xp, shape):
    x0 = np.ones(shape)
    x = xp.asarray(x0)
    with pytest.raises(ValueError, match="Unsupported tensor dimensionality"):
        fu.norm_constraint(x, 1.0)
    with pytest.raises(ValueError, match="Unsupported tensor dimensionality"):
        fu.norm_constraint(x, 1.0, out=x)
    np.testing.assert_array_equal(xp.get(x), x0)


def test_norm_constraint_axis_out_of_range(xp):
    with pytest.raises(ValueError):
        fu.norm_constraint(xp.asarray(np.ones((3, 4))), 1.0, norm_axes=(2,))


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_total_norm_constraint_lasagne_example(xp, dtype):
    x = np.arange(10, dtype=dtype)
    xs = [xp.asarray(x[-1]), xp.asarray(x[:9].reshape(3, 3))]  # a 0-d array and a matrix
    scaled, norm = fu.total_norm_constraint(xs, 5.0, return_norm=True)
    assert float(norm) == pytest.approx(np.linalg.norm(x.astype(np.float64)), rel=1e-6)
    assert scaled[0].shape == () and scaled[1].shape == (3, 3)
    assert scaled[0].dtype == np.dtype(dtype) and scaled[1].dtype == np.dtype(dtype)
    flat = np.concatenate([xp.get(s).ravel() for s in scaled]).astype(np.float64)
    assert np.linalg.norm(flat) == pytest.approx(5.0, rel=1e-6)
    plain = fu.total_norm_constraint(xs, 5.0)
    for a, b in zip(plain, scaled):
        np.testing.assert_array_equal(xp.get(a), xp.get(b))
    np.testing.assert_array_equal(xp.get(xs[1]), x[:9].reshape(3, 3))  # inputs untouched


def test_total_norm_constraint_matches_reference(xp, rng):
    xs0 = [rng.standard_normal(s) for s in [(), (7,), (4, 5), (2, 3, 4)]]
    got, n = fu.total_norm_constraint(
        [xp.asarray(x) for x in xs0], 2.0, epsilon=0.01, return_norm=True
    )
    want, n_ref = REF.total_norm_constraint(xs0, 2.0, epsilon=0.01, return_norm=True)
    assert float(n) == pytest.approx(n_ref, rel=1e-12)
    for g, w in zip(got, want):
        assert_close(xp.get(g), w, 1e-12)


def test_total_norm_multiplier_slightly_below_one(xp):
    x0 = [np.array([0.6]), np.array(0.8)]  # N = 1 < max_norm
    out = fu.total_norm_constraint([xp.asarray(x) for x in x0], 10.0)
    for o, x in zip(out, x0):
        np.testing.assert_allclose(xp.get(o), x / (1 + 1e-7), rtol=1e-15)
        assert not np.array_equal(xp.get(o), x)


def test_total_norm_constraint_out_in_place(xp, rng):
    xs0 = [rng.standard_normal((4, 3)), rng.standard_normal(())]
    xs = [xp.asarray(x) for x in xs0]
    res = fu.total_norm_constraint(xs, 0.5, out=xs)
    want = REF.total_norm_constraint(xs0, 0.5)
    for r, x, w in zip(res, xs, want):
        assert r is x
        assert_close(xp.get(x), w, 1e-12)


@pytest.mark.parametrize("modifier", ["none", "nesterov"])
@pytest.mark.parametrize("rule", ["sgd", "adam", "adadelta"])
def test_step_max_norm(xp, rng, rule, modifier):
    """step(grads, max_norm) clips, returns the norm and never modifies the caller's grads."""
    from _support import HYPER, make_updater

    shapes = [(3, 4), (), (50,)]
    init = random_params(rng, shapes, np.float64)
    params = [xp.asarray(p) for p in init]
    upd = make_updater(fu, rule, params, modifier, **HYPER[rule])
    runner = RefRunner(rule, init, modifier, **HYPER[rule])
    for i in range(20):
        grads = random_grads(rng, shapes, np.float64)
        dev = [xp.asarray(g) for g in grads]
        max_norm = 2.0 if i % 2 else 1e3  # clipping, then the slightly-below-one multiplier
        got = upd.step(dev, max_norm=max_norm)
        want = runner.step(grads, max_norm=max_norm)
        if xp.name == "numpy":
            assert isinstance(got, float)
        assert float(got) == pytest.approx(want, rel=1e-12)
        for d, g in zip(dev, grads):
            np.testing.assert_array_equal(xp.get(d), g)
        check_matches(upd, runner, xp, np.float64, f"{rule}/{modifier}")
    assert upd.step([xp.asarray(g) for g in random_grads(rng, shapes, np.float64)]) is None


def test_step_max_norm_float16(xp, rng):
    shapes = [(64,), (8, 8)]
    init = random_params(rng, shapes, np.float16)
    params = [xp.asarray(p) for p in init]
    upd = fu.rmsprop(params, learning_rate=0.01, epsilon=0.1)
    runner = RefRunner("rmsprop", init, round_to=np.float16, learning_rate=0.01, epsilon=0.1)
    for _ in range(20):
        grads = random_grads(rng, shapes, np.float16)
        got = upd.step([xp.asarray(g) for g in grads], max_norm=1.0)
        want = runner.step(grads, max_norm=1.0)
        assert float(got) == pytest.approx(want, rel=1e-5)
        check_matches(upd, runner, xp, np.float16, "rmsprop fp16 max_norm")


def test_total_norm_constraint_non_contiguous_inputs(xp, rng):
    x0 = rng.standard_normal((6, 8))
    x = xp.asarray(x0)
    got, n = fu.total_norm_constraint([x.T, x[:, ::2]], 1.0, return_norm=True)
    want, n_ref = REF.total_norm_constraint([x0.T, x0[:, ::2]], 1.0, return_norm=True)
    assert float(n) == pytest.approx(n_ref, rel=1e-12)
    for g, w in zip(got, want):
        assert_close(xp.get(g), w, 1e-12)


def test_float16_norms_do_not_overflow(xp, rng):
    """Sums of squares exceed float16's range (65504): they must be accumulated wider."""
    x0 = rng.uniform(100, 300, (1000, 2)).astype(np.float16)
    out = fu.norm_constraint(xp.asarray(x0), 1.0)
    assert out.dtype == np.float16
    assert_close(xp.get(out), REF.norm_constraint(x0.astype(np.float64), 1.0), 2e-3)
    scaled, n = fu.total_norm_constraint([xp.asarray(x0)], 1.0, return_norm=True)
    want, n_ref = REF.total_norm_constraint([x0.astype(np.float64)], 1.0, return_norm=True)
    assert float(n) == pytest.approx(n_ref, rel=1e-5)
    assert_close(xp.get(scaled[0]), want[0], 2e-3)


# Shapes reaching every path of the CPU norm kernel (NormPanels in csrc/cpu/element_ranges.h):
# contiguous rows (inner == 1) short and long (more than 64K elements: summed in chunks), one
# norm over everything (outer = inner = 1), side-by-side columns narrower than, as wide as and
# wider than the 256-wide block, and long columns summed in chunks.
PANEL_CASES = [
    ((5, 1000), (1,)),
    ((3, 70_000), (1,)),
    ((200_000,), (0,)),
    ((300, 7), (0,)),
    ((1000, 256), (0,)),
    ((40, 300), (0,)),
    ((2, 600, 300), (1,)),
    ((2, 20_000, 5), (1,)),
]
ALL_FLOATS = [np.float64, np.float32, np.float16]
ALL_TOL = {**NORM_TOL, np.dtype(np.float16): 2e-3}


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape, axes", PANEL_CASES, ids=str)
def test_norm_constraint_every_kernel_path(xp, rng, shape, axes, dtype):
    x0 = (rng.standard_normal(shape) * 0.01).astype(dtype)  # some norms above, some below 1
    x0.reshape(-1)[::7] *= 100
    want = REF.norm_constraint(x0.astype(np.float64), 1.0, norm_axes=axes)
    got = fu.norm_constraint(xp.asarray(x0), 1.0, norm_axes=axes)
    assert got.dtype == np.dtype(dtype)
    assert_close(xp.get(got), want, ALL_TOL[np.dtype(dtype)])
    x = xp.asarray(x0)
    assert fu.norm_constraint(x, 1.0, norm_axes=axes, out=x) is x  # in place, same result
    np.testing.assert_array_equal(xp.get(x), xp.get(got))


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=lambda d: np.dtype(d).name)
def test_total_norm_constraint_float16_and_lists(xp, rng, dtype):
    shapes = [(70_000,), (3,), (), (257, 3)]
    xs0 = [(rng.standard_normal(s) * 0.01).astype(dtype) for s in shapes]
    got, norm = fu.total_norm_constraint([xp.asarray(x) for x in xs0], 0.5, return_norm=True)
    want, want_norm = REF.total_norm_constraint(
        [x.astype(np.float64) for x in xs0], 0.5, return_norm=True
    )
    assert float(norm) == pytest.approx(want_norm, rel=1e-12)  # summed in double: exact-ish
    for g, w in zip(got, want):
        assert g.dtype == np.dtype(dtype)
        assert_close(xp.get(g), w, ALL_TOL[np.dtype(dtype)])


def _with_threads(n, fn):
    old = fu.get_num_threads()
    fu.set_num_threads(n)
    try:
        return fn()
    finally:
        fu.set_num_threads(old)


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=lambda d: np.dtype(d).name)
def test_norms_do_not_depend_on_the_thread_count(rng, dtype):
    """Every reduction is cut by shape alone and added in a fixed order: 1, 2 and 3 threads
    give the same bits. These shapes have few long columns (one norm over a whole vector, long
    rows, long columns), so one thread sums each column in one task and several threads split
    the columns into panels: both schedules must agree."""
    x1 = rng.standard_normal(300_001).astype(dtype)
    x3 = rng.standard_normal((3, 70_001)).astype(dtype)
    xc = rng.standard_normal((1000, 300)).astype(dtype)

    def run():
        return [
            fu.norm_constraint(x1, 1.0, norm_axes=(0,)),
            fu.norm_constraint(x3, 1.0, norm_axes=(1,)),
            fu.norm_constraint(xc, 1.0),
            *fu.total_norm_constraint([x1, x3, xc], 1.0),
            np.array(fu.total_norm_constraint([x1, x3, xc], 1.0, return_norm=True)[1]),
        ]

    one = _with_threads(1, run)
    for n in (2, 3):
        for a, b in zip(one, _with_threads(n, run)):
            np.testing.assert_array_equal(a, b)
