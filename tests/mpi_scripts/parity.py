"""Under mpiexec: the sharded step equals a single-process updater stepping on the averaged
grads, for every rule, modifier, dtype and max_norm; views and copies agree; NaN propagates.

Usage: mpiexec -n N python parity.py OUT_DIR
"""

from __future__ import annotations

import fusedupdates.distributed as fud
import numpy as np
from _common import (
    COMM,
    RULES,
    SIZE,
    Recorder,
    assert_close,
    averaged,
    initial_params,
    rank_grads,
    run,
    same_everywhere,
)

DTYPES = {
    "float16": [np.float16] * 5,
    "float32": [np.float32] * 5,
    "float64": [np.float64] * 5,
    "mixed": [np.float32, np.float64, np.float32, np.float16, np.float64],
}
STEPS = 3


def expect_exact(dtypes: list, max_norm: float | None, kind: str, rule: str) -> bool:
    """Bit for bit when every step's mean is computed exactly as the kernel scales it: no
    max_norm (whose norm sums in another order), sums that do not round (2 ranks, or dyadic
    grads), and 1/size exact in float16 or no float16 (the reference rounds sum * 1/3 to
    float16, the kernel keeps it in float). With L2 decay on 3 ranks the kernel may fuse the
    scale and the decay into one multiply-add, which rounds once instead of twice."""
    if max_norm is not None:
        return False
    if SIZE > 2 and (kind != "dyadic" or np.float16 in dtypes or rule == "sgd+l2"):
        return False
    return True


def run_case(rec: Recorder, rule: str, dtype_name: str, max_norm, kind: str, views: bool):
    factory, hyper = RULES[rule]
    dtypes = DTYPES[dtype_name]
    params = initial_params(dtypes)
    ref_params = [p.copy() for p in params]
    if views:
        params = fud.allocate_params(params, COMM)
    upd = fud.sharded(factory, params, COMM, **hyper)
    assert upd.uses_views == views
    pointers = [p.__array_interface__["data"][0] for p in params]
    ref = factory(ref_params, **hyper)
    exact = expect_exact(dtypes, max_norm, kind, rule)
    case = f"{rule}/{dtype_name}/max_norm={max_norm}/{kind}/views={views}"
    rtol = 2e-3 if np.float16 in dtypes else 1e-6  # float16 params: one ulp is ~1e-3
    for step in range(STEPS):
        if step == 2:  # a schedule: set on every rank, read by the next step
            upd.learning_rate = ref.learning_rate = ref.learning_rate / 2
        norm = upd.step(rank_grads(params, step, COMM.rank, kind), max_norm=max_norm)
        ref_norm = ref.step(averaged(params, step, SIZE, kind), max_norm=max_norm)
        if max_norm is None:
            assert norm is None
        else:
            assert abs(norm - ref_norm) <= rtol * ref_norm, (case, norm, ref_norm)

    assert upd.t == ref.t == STEPS
    assert same_everywhere(params), f"{case}: params differ between ranks"
    assert_close(params, ref_params, exact, f"{case} params", rtol)
    assert [p.__array_interface__["data"][0] for p in params] == pointers  # updated in place
    mine, theirs = upd.state_dict(), ref.state_dict()
    assert {k: v for k, v in mine.items() if k != "state"} == {
        k: v for k, v in theirs.items() if k != "state"
    }, case
    assert set(mine["state"]) == set(theirs["state"]), case
    for name in theirs["state"]:
        assert_close(mine["state"][name], theirs["state"][name], exact, f"{case} {name}", rtol)
    rec.passed(case)


def run_nan_case(rec: Recorder, max_norm) -> None:
    """A NaN in one rank's grad propagates into the params as in one process (the kernel's
    non-finite skip must not make ranks diverge); max_norm=0 zeroes every gradient."""
    factory, hyper = RULES["adam"]
    params = initial_params([np.float32] * 5)
    ref_params = [p.copy() for p in params]
    upd, ref = fud.sharded(factory, params, COMM, **hyper), factory(ref_params, **hyper)
    grads = rank_grads(params, 0, COMM.rank, "dyadic")
    if COMM.rank == SIZE - 1:
        grads[0][2, 1] = np.nan
    every = [rank_grads(params, 0, r, "dyadic") for r in range(SIZE)]
    every[-1][0][2, 1] = np.nan
    avg = [sum(g[i] for g in every[1:]) + every[0][i] for i in range(5)]
    avg = [a * np.float32(1.0 / SIZE) for a in avg]
    upd.step(grads, max_norm=max_norm)
    ref.step(avg, max_norm=max_norm)
    assert same_everywhere(params)
    tol = max_norm is not None and max_norm > 0
    assert_close(params, ref_params, not tol and SIZE <= 2, f"nan/max_norm={max_norm}", 1e-6)
    assert np.isnan(params[0][2, 1])
    rec.passed(f"nan/max_norm={max_norm}")


def run_grad_buffers_case(rec: Recorder, dtype_name: str) -> None:
    """Grads written into grad_buffers() (no pack) step exactly as grads passed in."""
    factory, hyper = RULES["rmsprop+momentum"]
    params = fud.allocate_params(initial_params(DTYPES[dtype_name]), COMM)
    ref_params = [p.copy() for p in params]
    upd, ref = (
        fud.sharded(factory, params, COMM, **hyper),
        fud.sharded(factory, ref_params, COMM, **hyper),
    )
    buffers = upd.grad_buffers()
    assert all(a is b for a, b in zip(buffers, upd.grad_buffers()))
    for step in range(STEPS):
        grads = rank_grads(params, step, COMM.rank, "normal")
        for buf, g in zip(buffers, grads):
            buf[...] = g  # what a backward pass writing in place would do
        upd.step(buffers, max_norm=1.0)
        ref.step(grads, max_norm=1.0)
    assert_close(params, ref_params, True, f"grad_buffers/{dtype_name}", 0.0)
    rec.passed(f"grad_buffers/{dtype_name}")


def run_zero_clip_case(rec: Recorder) -> None:
    factory, hyper = RULES["momentum"]
    params = initial_params([np.float64] * 5)
    before = [p.copy() for p in params]
    upd = fud.sharded(factory, params, COMM, **hyper)
    norm = upd.step(rank_grads(params, 0, COMM.rank, "normal"), max_norm=0.0)
    assert norm > 0
    assert_close(params, before, True, "max_norm=0", 0.0)  # every gradient scaled to zero
    rec.passed("max_norm=0")


def main() -> None:
    rec = Recorder()
    for rule in RULES:
        for dtype_name in DTYPES:
            for max_norm in (None, 2.0):
                run_case(rec, rule, dtype_name, max_norm, "dyadic", views=False)
    for rule in ("adam", "rmsprop+momentum", "sgd"):
        for dtype_name in ("float32", "mixed"):
            run_case(rec, rule, dtype_name, None, "normal", views=False)
            run_case(rec, rule, dtype_name, None, "dyadic", views=True)
            run_case(rec, rule, dtype_name, 1e3, "normal", views=True)
    run_nan_case(rec, None)
    run_nan_case(rec, 1.0)
    run_zero_clip_case(rec)
    run_grad_buffers_case(rec, "float32")
    run_grad_buffers_case(rec, "mixed")
    rec.write()


if __name__ == "__main__":
    run(main)
