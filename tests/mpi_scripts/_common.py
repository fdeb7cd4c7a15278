"""Shared by the scripts that tests/test_distributed.py runs under mpiexec.

Each rank records one line per passed case in ``<out>/rank<r>.txt``; a failed check raises,
which makes the rank exit non-zero (and mpiexec with it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import fusedupdates as fu
import numpy as np
from mpi4py import MPI

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
SHAPES = [(7, 3), (5,), (1,), (0,), (4, 4, 2)]  # 59 elements: uneven shards for 2 and 3 ranks

# name -> (factory, hyperparameters); lambdas cover modifiers and weight decay
RULES = {
    "sgd": (fu.sgd, {"learning_rate": 0.1}),
    "momentum": (fu.momentum, {"learning_rate": 0.1, "momentum": 0.9}),
    "nesterov_momentum": (fu.nesterov_momentum, {"learning_rate": 0.1}),
    "adagrad": (fu.adagrad, {"learning_rate": 0.1}),
    "rmsprop": (fu.rmsprop, {"learning_rate": 0.01}),
    "adadelta": (fu.adadelta, {}),
    "adam": (fu.adam, {"learning_rate": 0.01}),
    "adamax": (fu.adamax, {}),
    "amsgrad": (fu.amsgrad, {"learning_rate": 0.01}),
    "rmsprop+momentum": (
        lambda ps, **kw: fu.apply_momentum(fu.rmsprop(ps, **kw), momentum=0.8),
        {"learning_rate": 0.01},
    ),
    "adam+nesterov": (
        lambda ps, **kw: fu.apply_nesterov_momentum(fu.adam(ps, **kw)),
        {"learning_rate": 0.01},
    ),
    "sgd+l2": (fu.sgd, {"learning_rate": 0.1, "weight_decay": 0.01}),
    "adamw": (
        fu.adam,
        {"learning_rate": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
}


def run(main) -> None:
    """Run ``main``; on a failed check abort every rank (a rank that just exited would leave
    the others waiting in their next collective until pytest's timeout)."""
    try:
        main()
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        COMM.Abort(1)


class Recorder:
    """Collects this rank's passed cases and writes them when the script ends."""

    def __init__(self) -> None:
        self.out = Path(sys.argv[1])
        self.lines: list[str] = []

    def passed(self, case: str) -> None:
        self.lines.append(case)

    def write(self) -> None:
        (self.out / f"rank{RANK}.txt").write_text("".join(f"PASS {c}\n" for c in self.lines))


def initial_params(dtypes: list, seed: int = 0) -> list[np.ndarray]:
    """The same params on every rank (the same seed), one dtype per shape."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(d) for s, d in zip(SHAPES, dtypes)]


def rank_grads(params: list, step: int, rank: int, kind: str) -> list[np.ndarray]:
    """Rank ``rank``'s gradients at ``step``. ``dyadic``: multiples of 1/256 below 2 in
    magnitude, so that the sum over ranks is exact in every order and dtype (float16
    included); ``normal``: standard normal values, whose sums round."""
    rng = np.random.default_rng([step, rank, 7])
    if kind == "dyadic":
        return [(rng.integers(-511, 512, p.shape) / 256).astype(p.dtype) for p in params]
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def averaged(params: list, step: int, size: int, kind: str) -> list[np.ndarray]:
    """What the sharded step averages: the sum over ranks (in rank order; exact for dyadic
    grads, and for two ranks whatever the values, as a + b == b + a) times 1/size in the
    grads' dtype, the kernel's scale (exactly the mean for 1 and 2 ranks)."""
    every = [rank_grads(params, step, r, kind) for r in range(size)]
    out = []
    for i, p in enumerate(params):
        total = every[0][i].copy()
        for r in range(1, size):
            total = total + every[r][i]
        out.append(total * p.dtype.type(1.0 / size))
    return out


def same_everywhere(arrays: list) -> bool:
    """Whether every rank holds exactly these bytes."""
    blob = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    return all(b == blob for b in COMM.allgather(blob))


def assert_close(actual: list, expected: list, exact: bool, what: str, rtol: float) -> None:
    for i, (a, e) in enumerate(zip(actual, expected)):
        if a is None or e is None:
            assert a is None and e is None, f"{what}[{i}]: presence differs"
            continue
        if exact:
            np.testing.assert_array_equal(a, e, err_msg=f"{what}[{i}] (bit for bit)")
        else:
            scale = float(np.nanmax(np.abs(e.astype(np.float64)), initial=0.0))
            np.testing.assert_allclose(
                a.astype(np.float64),
                e.astype(np.float64),
                rtol=rtol,
                atol=rtol * scale,
                err_msg=f"{what}[{i}]",
            )
