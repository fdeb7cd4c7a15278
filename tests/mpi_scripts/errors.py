"""Under mpiexec: ranks that disagree, or one rank's bad input, raise the same error on EVERY
rank, and nobody is left blocked in a collective (pytest runs this with a timeout).

Usage: mpiexec -n N python errors.py OUT_DIR     (N >= 2; the last rank is the odd one out)
"""

from __future__ import annotations

import fusedupdates as fu
import fusedupdates.distributed as fud
import numpy as np
from _common import COMM, RANK, SHAPES, SIZE, Recorder, initial_params, rank_grads, run

ODD = RANK == SIZE - 1  # the rank that differs


def expect(rec: Recorder, case: str, error: type, words: str, fn) -> None:
    try:
        fn()
    except error as err:
        assert words in str(err), f"{case}: {err}"
        assert "every rank raises" in str(err), f"{case}: {err}"
    else:
        raise AssertionError(f"{case}: no {error.__name__} on rank {RANK}")
    rec.passed(case)


def setup_cases(rec: Recorder) -> None:
    params = initial_params([np.float32] * 5)
    odd_shape = [np.zeros((3, 7), np.float32)] + params[1:]
    expect(
        rec,
        "shapes",
        ValueError,
        "disagree on shapes",
        lambda: fud.sharded(fu.adam, odd_shape if ODD else params, COMM),
    )
    odd_dtype = [params[0].astype(np.float64)] + params[1:]
    expect(
        rec,
        "dtypes",
        ValueError,
        "disagree on dtypes",
        lambda: fud.sharded(fu.adam, odd_dtype if ODD else params, COMM),
    )
    expect(
        rec,
        "rule",
        ValueError,
        "disagree on rule",
        lambda: fud.sharded(fu.rmsprop if ODD else fu.adam, params, COMM),
    )
    expect(
        rec,
        "hyperparameters",
        ValueError,
        "disagree on hyperparameters",
        lambda: fud.sharded(fu.adam, params, COMM, learning_rate=0.1 if ODD else 0.2),
    )
    bad = params[:1] + [[1.0, 2.0]] + params[2:]
    expect(
        rec,
        "bad param type",
        TypeError,
        "params[1]",
        lambda: fud.sharded(fu.adam, bad if ODD else params, COMM),
    )
    expect(
        rec,
        "factory raises",
        ValueError,
        "learning_rate must be >= 0",
        lambda: fud.sharded(fu.adam, params, COMM, learning_rate=-1.0 if ODD else 0.1),
    )
    try:
        fud.sharded(fu.adam, params, "not a communicator")
    except TypeError as err:
        assert "mpi4py communicator" in str(err)
    rec.passed("not a communicator")


def step_cases(rec: Recorder) -> None:
    params = initial_params([np.float32] * 5)
    upd = fud.sharded(fu.adam, params, COMM)
    before = [p.copy() for p in params]
    good = rank_grads(params, 0, RANK, "normal")
    wrong_shape = good[:4] + [np.zeros((2, 16, 2), np.float32)]
    expect(
        rec, "grad shape", ValueError, "grads[4]", lambda: upd.step(wrong_shape if ODD else good)
    )
    wrong_dtype = good[:2] + [good[2].astype(np.float64)] + good[3:]
    expect(rec, "grad dtype", TypeError, "grads[2]", lambda: upd.step(wrong_dtype if ODD else good))
    frozen = good[:1] + [None] + good[2:]
    expect(rec, "None grad", TypeError, "frozen", lambda: upd.step(frozen if ODD else good))
    expect(rec, "grad count", ValueError, "4 grads", lambda: upd.step(good[:4] if ODD else good))
    expect(
        rec,
        "max_norm",
        ValueError,
        "disagree on max_norm",
        lambda: upd.step(good, max_norm=1.0 if ODD else None),
    )
    expect(
        rec,
        "bad max_norm",
        ValueError,
        "max_norm must be >= 0",
        lambda: upd.step(good, max_norm=-1.0 if ODD else 1.0),
    )
    if ODD:
        upd.learning_rate = 0.5
    expect(
        rec,
        "changed hyperparameter",
        ValueError,
        "disagree on learning_rate",
        lambda: upd.step(good),
    )
    if ODD:
        upd.learning_rate = 0.001
    assert upd.t == 0 and all(np.array_equal(a, b) for a, b in zip(params, before))
    upd.step(good)  # nothing is stuck: a good step still works
    assert upd.t == 1
    rec.passed("step after errors")
    ckpt = upd.state_dict()
    broken = dict(ckpt, state={**ckpt["state"], "m": ckpt["state"]["m"][:4]})
    expect(
        rec,
        "load_state_dict",
        ValueError,
        "rank(s)",
        lambda: upd.load_state_dict(broken if ODD else ckpt),
    )
    assert upd.t == 1
    rec.passed("load left unchanged")


def main() -> None:
    assert SIZE >= 2 and len(SHAPES) == 5
    rec = Recorder()
    setup_cases(rec)
    step_cases(rec)
    rec.write()


if __name__ == "__main__":
    run(main)
