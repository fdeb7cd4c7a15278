"""Under mpiexec: the sharded step with compact state (state_dtype="int8" / "bfloat16")
equals a single-process updater with the same state_dtype stepping on the averaged grads, and
its checkpoints are the single-process ones, codes and block scales included.

Bit for bit where the mean is exact (2 ranks, or dyadic grads; see parity.py); otherwise the
params within a few 8-bit code steps of the update.

Usage: mpiexec -n N python compact.py OUT_DIR
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import fusedupdates as fu
import fusedupdates.distributed as fud
import numpy as np
from _common import (
    COMM,
    RANK,
    RULES,
    SIZE,
    Recorder,
    assert_close,
    averaged,
    rank_grads,
    run,
    same_everywhere,
)

# the large ones end in partial 8-bit blocks; the small ones keep float32 state
SHAPES = [(67, 67), (5,), (4096,), (1,), (0,), (33, 130)]
CASE_RULES = ["adam", "adamax", "amsgrad", "adadelta", "rmsprop+momentum", "momentum", "adagrad"]
STEPS = 3


def params_of(dtypes: list) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(d) for s, d in zip(SHAPES, dtypes)]


def compare(upd, ref, params, ref_params, exact: bool, case: str) -> None:
    assert upd.t == ref.t, case
    assert same_everywhere(params), f"{case}: params differ between ranks"
    assert_close(params, ref_params, exact, f"{case} params", 2e-3)
    mine, theirs = upd.state_dict(), ref.state_dict()
    assert {k: v for k, v in mine.items() if k != "state"} == {
        k: v for k, v in theirs.items() if k != "state"
    }, case
    assert set(mine["state"]) == set(theirs["state"]), case
    if exact:
        for name, arrays in theirs["state"].items():
            for i, (a, b) in enumerate(zip(mine["state"][name], arrays)):
                assert (a is None) == (b is None), (case, name, i)
                if a is not None:
                    assert a.dtype == b.dtype and a.shape == b.shape, (case, name, i)
                    np.testing.assert_array_equal(
                        a.view(np.uint8), b.view(np.uint8), err_msg=f"{case} {name}[{i}]"
                    )
    else:  # a mean one ulp off may move a value to the next code: compare decoded
        mine32, theirs32 = fu.convert_state_dict(mine, None), fu.convert_state_dict(theirs, None)
        for name, arrays in theirs32["state"].items():
            assert_close(mine32["state"][name], arrays, False, f"{case} {name}", 0.15)


def run_case(rec: Recorder, rule: str, storage: str, views: bool, kind: str, dtypes=None):
    factory, hyper = RULES[rule]
    dtypes = dtypes or [np.float32] * len(SHAPES)
    params = params_of(dtypes)
    ref_params = [p.copy() for p in params]
    if views:
        params = fud.allocate_params(params, COMM, state_dtype=storage)
    upd = fud.sharded(factory, params, COMM, state_dtype=storage, **hyper)
    assert upd.uses_views == views
    ref = factory(ref_params, state_dtype=storage, **hyper)
    for step in range(STEPS):
        upd.step(rank_grads(params, step, RANK, kind))
        ref.step(averaged(params, step, SIZE, kind))
    exact = SIZE <= 2 or (kind == "dyadic" and np.float16 not in dtypes)
    case = f"{rule}/{storage}/views={views}/{kind}"
    compare(upd, ref, params, ref_params, exact, case)
    rec.passed(case if len(set(dtypes)) == 1 else f"mixed/{storage}")


def run_resume_case(rec: Recorder, storage: str) -> None:
    """A single process's checkpoint loads into the sharded updater (each rank its shard),
    and both go on alike."""
    factory, hyper = RULES["adam"]
    ref_params = params_of([np.float32] * len(SHAPES))
    ref = factory(ref_params, state_dtype=storage, **hyper)
    for step in range(2):
        ref.step(averaged(ref_params, step, SIZE, "dyadic"))
    params = fud.allocate_params(ref_params, COMM, state_dtype=storage)
    upd = fud.sharded(factory, params, COMM, state_dtype=storage, **hyper)
    upd.load_state_dict(ref.state_dict())
    for step in range(2, 4):
        upd.step(rank_grads(params, step, RANK, "dyadic"))
        ref.step(averaged(ref_params, step, SIZE, "dyadic"))
    compare(upd, ref, params, ref_params, True, f"resume/{storage}")
    rec.passed(f"resume/{storage}/from-one-process")


def run_file_case(rec: Recorder) -> None:
    """``save`` from N ranks writes the single-process file: one process loads it."""
    factory, hyper = RULES["amsgrad"]
    params = params_of([np.float32] * len(SHAPES))
    upd = fud.sharded(factory, params, COMM, state_dtype="int8", **hyper)
    for step in range(2):
        upd.step(rank_grads(params, step, RANK, "dyadic"))
    folder = COMM.bcast(tempfile.mkdtemp() if RANK == 0 else None)
    path = Path(folder) / "amsgrad-int8.npz"
    upd.save(path)
    COMM.Barrier()  # written by rank 0 before anyone reads
    one = factory([p.copy() for p in params], state_dtype="int8", **hyper)
    one.load(path)
    again = fud.sharded(factory, [p.copy() for p in params], COMM, state_dtype="int8", **hyper)
    again.load(path)
    for a, b in ((one.state_dict(), upd.state_dict()), (again.state_dict(), upd.state_dict())):
        for name, arrays in b["state"].items():
            assert_close(a["state"][name], arrays, True, f"file {name}", 0.0)
    COMM.Barrier()
    rec.passed("file/int8")


def main() -> None:
    rec = Recorder()
    for rule in CASE_RULES:
        for storage in ("int8", "bfloat16"):
            for views in (False, True):
                for kind in ("dyadic", "normal"):
                    run_case(rec, rule, storage, views, kind)
    mixed = [np.float32, np.float16, np.float16, np.float32, np.float16, np.float32]
    run_case(rec, "adam", "int8", True, "dyadic", mixed)
    run_resume_case(rec, "int8")
    run_resume_case(rec, "bfloat16")
    run_file_case(rec)
    rec.write()


if __name__ == "__main__":
    run(main)
