"""Under mpiexec: checkpoint on one rank count, resume on another, bit for bit.

Usage: mpiexec -n N python checkpoint.py OUT_DIR save|resume CKPT_DIR

``save`` runs two steps of each rule and writes the params and the sharded updater's
checkpoint (rank 0 writes). ``resume`` loads them on N ranks, runs two more steps and compares
with a single-process updater that loads the same file and steps on the averaged grads.
Dyadic grads make every sum exact, and the mean on 1 and 2 ranks is exact, so resuming there
must match bit for bit.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    initial_params,
    rank_grads,
    run,
    same_everywhere,
)

CASES = {  # rule -> params dtypes
    "adam": [np.float32] * 5,
    "rmsprop+momentum": [np.float32, np.float64, np.float32, np.float16, np.float64],
    "adadelta": [np.float64] * 5,
    "amsgrad": [np.float16] * 5,
}


def save(rec: Recorder, folder: Path) -> None:
    for rule, dtypes in CASES.items():
        factory, hyper = RULES[rule]
        params = initial_params(dtypes)
        upd = fud.sharded(factory, params, COMM, **hyper)
        for step in range(2):
            upd.step(rank_grads(params, step, RANK, "dyadic"), max_norm=5.0)
        upd.save(folder / f"{rule}.npz")
        if RANK == 0:
            np.savez(folder / f"{rule}-params.npz", *params)
        rec.passed(f"save/{rule}")
    COMM.Barrier()  # the files are complete before any rank exits


def resume(rec: Recorder, folder: Path) -> None:
    for rule, dtypes in CASES.items():
        factory, hyper = RULES[rule]
        with np.load(folder / f"{rule}-params.npz") as saved:
            params = [saved[f"arr_{i}"] for i in range(len(dtypes))]
        ref_params = [p.copy() for p in params]
        upd = fud.sharded(factory, params, COMM, **hyper)
        upd.load(folder / f"{rule}.npz")
        ref = factory(ref_params, **hyper)
        ref.load(folder / f"{rule}.npz")
        assert upd.t == ref.t == 2
        for step in range(2, 4):
            upd.step(rank_grads(params, step, RANK, "dyadic"))
            ref.step(averaged(params, step, SIZE, "dyadic"))
        assert same_everywhere(params)
        assert_close(params, ref_params, True, f"resume/{rule} params", 0.0)
        mine, theirs = upd.state_dict(), ref.state_dict()
        for name in theirs["state"]:
            assert_close(mine["state"][name], theirs["state"][name], True, name, 0.0)
        rec.passed(f"resume/{rule}")
    # A checkpoint that does not fit raises on every rank and changes nothing.
    factory, hyper = RULES["adam"]
    params = initial_params([np.float64] * 5)  # the file holds float32 state
    upd = fud.sharded(factory, params, COMM, **hyper)
    try:
        upd.load(folder / "adam.npz")
    except TypeError as err:
        assert "every rank raises" in str(err), err
    else:
        raise AssertionError("loading a float32 checkpoint into float64 params did not raise")
    assert upd.t == 0
    rec.passed("resume/mismatch")


def main() -> None:
    rec = Recorder()
    mode, folder = sys.argv[2], Path(sys.argv[3])
    save(rec, folder) if mode == "save" else resume(rec, folder)
    rec.write()


if __name__ == "__main__":
    run(main)
