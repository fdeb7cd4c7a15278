"""Sharded (ZeRO-1) versus replicated data-parallel steps on this machine, over MPI.

``python -m bench.distributed [--out FILE.md]`` launches itself under ``mpiexec -n 1`` and
``mpiexec -n 2`` (the mpiexec next to this Python, as the tests find it) and prints a markdown
report: step time and per-rank optimizer-state bytes of adam on the 196-tensor model
(``bench/workloads.py``, size ``model``, float32) for

* 1 rank: a plain ``fu.adam`` step (with 1 and with 2 OpenMP threads);
* 2 ranks sharded: ``fusedupdates.distributed.sharded`` (params as views from
  ``allocate_params``, and as the user's own arrays), with where the time goes;
* 2 ranks replicated: the grads packed into one flat buffer, one in-place all-reduce, then a
  full local step of every parameter (the mean applied as the kernel's ``grad_scale``).

``--state-dtype bfloat16|int8`` runs every row with that compact state (``state_dtype=``).

Every rank uses one OpenMP thread in the 2-rank runs (2 ranks on 2 cores). Times are medians
of ``--reps`` steps after 3 warm-up steps, with a barrier before each step.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHASES = ["handshake", "pack", "reduce_scatter", "norm", "update", "all_gather", "unpack"]


def _model():
    from bench.workloads import DataCache, parse_workload

    wl = parse_workload("model", "cpu")
    params, grads = DataCache().copies(wl, np.float32)
    return wl, params, grads


def _timed(comm, fn, reps: int) -> list[float]:
    """Per-step seconds (the slowest rank's, since a step ends when every rank's does)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        comm.Barrier()
        start = time.perf_counter()
        fn()
        times.append(comm.allreduce(time.perf_counter() - start, op=_max()))
    return times


def _max():
    from mpi4py import MPI

    return MPI.MAX


def _state_bytes(upd) -> int:
    return sum(a.nbytes for arrays in upd.state.values() for a in arrays if a is not None)


def worker(reps: int, out: Path, state_dtype: str | None) -> None:
    import fusedupdates as fu
    import fusedupdates.distributed as fud
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    wl, params, grads = _model()
    result = {"ranks": comm.size, "tensors": wl.n_tensors, "numel": wl.numel}
    compact = {"state_dtype": state_dtype}
    if comm.size == 1:
        for threads in (1, 2):
            fu.set_num_threads(threads)
            upd = fu.adam([p.copy() for p in params], **compact)
            result[f"single_{threads}t"] = _timed(comm, lambda u=upd: u.step(grads), reps)
            result["single_state_bytes"] = _state_bytes(upd)
    else:
        fu.set_num_threads(1)
        for label in ("grad_buffers", "views", "copies"):
            own = label == "copies"
            ps = [p.copy() for p in params] if own else fud.allocate_params(params, comm, **compact)
            upd = fud.sharded(fu.adam, ps, comm, **compact)
            gs = grads
            if label == "grad_buffers":  # as if the backward wrote its grads in place
                gs = upd.grad_buffers()
                for g, src in zip(gs, grads):
                    g[...] = src
            phases = {k: [] for k in PHASES}

            def step(u=upd, ph=phases, gs=gs):
                u.step(gs)
                for k, v in u.last_timings.items():
                    ph[k].append(v)

            result[f"sharded_{label}"] = _timed(comm, step, reps)
            result[f"sharded_{label}_phases"] = {k: statistics.median(v) for k, v in phases.items()}
            result["sharded_state_bytes"] = upd.state_bytes
            # elements of state per rank beyond numel / ranks: the layout's padding
            result["sharded_padding_elements"] = sum(b.shard for b in upd.buckets) - (
                wl.numel / comm.size
            )
            result["sharded_buffer_bytes"] = sum(
                a.nbytes for group in (upd._send, upd._recv) for a in group
            ) + (0 if upd.uses_views else sum(f.nbytes for f in upd._flats))
        result.update(_replicated(comm, params, grads, reps, compact))
    if comm.rank == 0:
        out.write_text(json.dumps(result))


def _replicated(comm, params, grads, reps: int, compact: dict) -> dict:
    """The baseline: pack, all-reduce the whole flat grad buffer, full local step."""
    import fusedupdates as fu
    import fusedupdates.distributed._arrays as arrays
    from mpi4py import MPI

    flat = np.zeros(sum(g.size for g in grads), np.float32)
    views, offset = [], 0
    for g in grads:
        views.append(flat[offset : offset + g.size].reshape(g.shape))
        offset += g.size
    upd = fu.adam([p.copy() for p in params], **compact)
    phases = {"pack": [], "all_reduce": [], "update": []}

    def step():
        t0 = time.perf_counter()
        arrays.pack(np, grads, flat)
        t1 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        t2 = time.perf_counter()
        upd.step(views, grad_scale=comm.size)
        t3 = time.perf_counter()
        for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
            phases[k].append(v)

    times = _timed(comm, step, reps)
    return {
        "replicated": times,
        "replicated_phases": {k: statistics.median(v) for k, v in phases.items()},
        "replicated_state_bytes": _state_bytes(upd),
    }


def _launch(ranks: int, reps: int, out: Path, state_dtype: str) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _mpi import _launcher_flags, find_mpiexec

    cmd = [
        find_mpiexec(),
        *_launcher_flags(),
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "bench.distributed",
        "--worker",
        "--reps",
        str(reps),
        "--json",
        str(out),
        "--state-dtype",
        state_dtype,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1" if ranks > 1 else "2")
    subprocess.run(cmd, check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.read_text())


def _ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e3:.2f} [{min(times) * 1e3:.2f} – {max(times) * 1e3:.2f}]"


def report(one: dict, two: dict, reps: int, state_dtype: str) -> str:
    med = statistics.median
    single1, single2 = med(one["single_1t"]), med(one["single_2t"])
    in_place = med(two["sharded_grad_buffers"])
    sharded, copies, repl = (
        med(two["sharded_views"]),
        med(two["sharded_copies"]),
        med(two["replicated"]),
    )
    allreduce = two["replicated_phases"]["all_reduce"]
    bound = 1.2 * (allreduce + single1 / 2)
    state1, state2 = one["single_state_bytes"], two["sharded_state_bytes"]
    from fusedupdates.reference_compact import QUANT_BLOCK

    # adam's 2 states: bytes per element of each (int8: a code, 4 bytes of scale per block)
    per_element = {"float32": 4, "bfloat16": 2, "int8": 1 + 4 / QUANT_BLOCK}[state_dtype]
    padding = 2 * per_element * two["sharded_padding_elements"]
    lines = [
        f"# fusedupdates.distributed on {os.cpu_count()} cores, "
        f"{datetime.date.today().isoformat()}",
        "",
        f"- **command**: python -m bench.distributed --state-dtype {state_dtype} ({reps} timed "
        "steps per row, medians "
        "[min – max] of the slowest rank's step time; a barrier before each step)",
        f"- **machine**: {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"logical cores, {platform.system()}; MPICH from its PyPI wheel, shared memory",
        f"- **workload**: adam, float32, the {one['tensors']}-tensor model "
        f"({one['numel'] / 1e6:.1f} M elements) of bench/workloads.py; optimizer state "
        f"stored as {state_dtype} (state_dtype="
        f"{None if state_dtype == 'float32' else state_dtype!r})",
        "- **threads**: 1 OpenMP thread per rank with 2 ranks; the 1-rank rows say theirs",
        f"- **load average before the run**: {os.getloadavg()[0]:.2f} (other work on the "
        "machine slows every row, the 2-rank ones most)",
        "",
        "## Step time",
        "",
        "| configuration | ms per step |",
        "|---|---|",
        f"| 1 rank, 1 thread | {_ms(one['single_1t'])} |",
        f"| 1 rank, 2 threads | {_ms(one['single_2t'])} |",
        f"| 2 ranks sharded, params from allocate_params | {_ms(two['sharded_views'])} |",
        "| 2 ranks sharded, params from allocate_params, grads written into grad_buffers() | "
        f"{_ms(two['sharded_grad_buffers'])} |",
        f"| 2 ranks sharded, the user's own arrays (copies) | {_ms(two['sharded_copies'])} |",
        f"| 2 ranks replicated (all-reduce + full step) | {_ms(two['replicated'])} |",
        "",
        "## Where the time goes (ms, medians per phase, rank 0)",
        "",
        "| phase | sharded, grad_buffers | sharded, views | sharded, copies |",
        "|---|---|---|---|",
    ]
    for k in PHASES:
        row = [two[f"sharded_{c}_phases"][k] * 1e3 for c in ("grad_buffers", "views", "copies")]
        lines.append(f"| {k} | " + " | ".join(f"{x:.2f}" for x in row) + " |")
    rp = two["replicated_phases"]
    lines += [
        "",
        f"Replicated: pack {rp['pack'] * 1e3:.2f} ms, all-reduce {allreduce * 1e3:.2f} ms, "
        f"full local step {rp['update'] * 1e3:.2f} ms.",
        "",
        "## Optimizer state per rank",
        "",
        "| configuration | state bytes per rank |",
        "|---|---|",
        f"| 1 rank | {state1:,} |",
        f"| 2 ranks replicated | {two['replicated_state_bytes']:,} |",
        f"| 2 ranks sharded | {state2:,} ({state2 / state1:.4f} of 1 rank) |",
        "",
        f"The sharded updater also holds communication buffers: {two['sharded_buffer_bytes']:,} "
        "bytes per rank with the user's own arrays (a full-size grad send buffer, the received "
        "shard and a flat copy of the params), the send buffer and shard only with views.",
        "",
        "## Targets",
        "",
        f"- per-rank state = 1/2 of one rank's ± one bucket: {state2:,} vs {state1 / 2:,.0f} "
        f"(difference {state2 - state1 / 2:+,.0f} bytes): "
        f"**{'met' if abs(state2 - state1 / 2) <= padding else 'not met'}** (allowed: the "
        f"padding of the layout, {padding:,.0f} bytes)",
        f"- sharded (views) faster than replicated on 2 ranks: {sharded * 1e3:.2f} vs "
        f"{repl * 1e3:.2f} ms: **{'met' if sharded < repl else 'not met'}** "
        f"(with copies: {copies * 1e3:.2f} ms, {'met' if copies < repl else 'not met'})",
        f"- sharded (views) ≤ 1.2 × (replicated all-reduce + 1/2 of a 1-rank 1-thread step) = "
        f"1.2 × ({allreduce * 1e3:.2f} + {single1 / 2 * 1e3:.2f}) = {bound * 1e3:.2f} ms: "
        f"{sharded * 1e3:.2f} ms, **{'met' if sharded <= bound else 'not met'}** (with "
        f"grads in grad_buffers(): {in_place * 1e3:.2f} ms, "
        f"{'met' if in_place <= bound else 'not met'})",
        f"- for scale: 1 rank with both cores takes {single2 * 1e3:.2f} ms per step, so on this "
        "one machine data parallelism buys no step time; what sharding buys is state memory.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__)
    parser.add_argument("--reps", type=int, default=20, help="timed steps per row (default 20)")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--state-dtype",
        choices=["float32", "bfloat16", "int8"],
        default="float32",
        help="optimizer state storage of every row (default float32)",
    )
    args = parser.parse_args()
    compact = None if args.state_dtype == "float32" else args.state_dtype
    if args.worker:
        worker(args.reps, args.json, compact)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        one = _launch(1, args.reps, Path(tmp) / "one.json", args.state_dtype)
        two = _launch(2, args.reps, Path(tmp) / "two.json", args.state_dtype)
    text = report(one, two, args.reps, args.state_dtype)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
