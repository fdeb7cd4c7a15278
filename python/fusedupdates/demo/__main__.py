"""Command line: ``python -m fusedupdates.demo [--out DIR] [--device cpu|cuda] [--epochs N]
[--dtype float32|float16|bfloat16] [--master-weights] [--state-dtype float32|bfloat16|int8]
[--distributed]`` (the last under
``mpiexec -n N``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .train import DemoError, format_table, run_demo


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the demo, print the table; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fusedupdates.demo",
        description="Train a small NumPy MLP on scikit-learn's digits with every update rule "
        "of fusedupdates, print a comparison table and write loss_curves.png.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("."), help="folder for loss_curves.png (default: .)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="numpy (cpu) or cupy (cuda)"
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=30, help="epochs per rule (default: 30)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="storage dtype of params and grads (default: float32; bfloat16 needs ml_dtypes)",
    )
    parser.add_argument(
        "--master-weights",
        action="store_true",
        help="float32 master weights for 16-bit params (master_weights=True)",
    )
    parser.add_argument(
        "--state-dtype",
        choices=("float32", "bfloat16", "int8"),
        default="float32",
        help="optimizer state storage (state_dtype=; default float32): bfloat16, or 8-bit "
        "blockwise codes for the large weight matrix",
    )
    parser.add_argument(
        "--state-rounding",
        choices=("nearest", "stochastic"),
        default="nearest",
        help="how compact state is rounded after each step (state_rounding=; default nearest)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="data parallel over MPI: run with mpiexec -n N; each rank takes 1/N of every batch",
    )
    args = parser.parse_args(argv)
    comm, rank = None, 0
    if args.distributed:
        from mpi4py import MPI  # pip install 'fusedupdates[mpi]'

        comm, rank = MPI.COMM_WORLD, MPI.COMM_WORLD.Get_rank()

    start = time.perf_counter()
    try:
        results = run_demo(
            epochs=args.epochs,
            out=args.out if rank == 0 else None,
            device=args.device,
            progress=not args.no_progress and rank == 0,
            comm=comm,
            dtype=args.dtype,
            master_weights=args.master_weights,
            state_dtype=None if args.state_dtype == "float32" else args.state_dtype,
            state_rounding=args.state_rounding,
        )
    except (ImportError, DemoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if rank != 0:
        return 0  # every rank holds the same results; rank 0 reports them
    if comm is not None:
        print(f"data parallel on {comm.Get_size()} ranks (fusedupdates.distributed.sharded)")
    if args.dtype != "float32":
        mode = "float32 master weights" if args.master_weights else "no master weights"
        print(f"params and grads in {args.dtype}, {mode}")
    if args.state_dtype != "float32":
        print(
            f"optimizer state stored as {args.state_dtype} (state_dtype={args.state_dtype!r}, "
            f"state_rounding={args.state_rounding!r})"
        )
    print(format_table(results))
    print(f"\nloss curves: {args.out / 'loss_curves.png'}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
