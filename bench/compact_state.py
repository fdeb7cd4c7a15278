"""``python -m bench.compact_state``: adam with compact optimizer state on the CPU.

Workloads: one tensor of N elements (default 1M and 16M) and the 196-tensor model of ``python
-m bench`` (``model-10M``), float32 params, the same grads every step. Rows, all timed in the
same interleaved rounds:

* ``fu`` updaters with ``state_dtype=None`` (float32 state), ``"bfloat16"`` and ``"int8"``;
* ceilings: ``fusedupdates._cpu.bandwidth_probe`` streaming float32 stand-ins with each row's
  bytes per element: 28 B as 3 read-written + 1 read arrays (adam's exact pattern), 20 B as
  2 + 1 (exact for bfloat16 state), 16 B as 1 + 2 (int8 state moves 10 B in and 6 B out,
  the stand-in 12 B in and 4 B out: fewer writes, so this ceiling is if anything too fast);
* peers when installed: ``torch.optim.Adam`` with ``fused=True`` and ``foreach=True``
  (float32 state).

Prints markdown tables: median ms per step, GB/s with the row's own bytes, the median
per-round % of its ceiling and the median per-round speed-up over fu float32 (paired, so
machine-wide swings cancel), and the state memory of each storage.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

HYPER = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
# bytes per element (adam, float32 params) and the float32 stand-in (read-written, read)
PATTERNS = {None: (28, 3, 1), "bfloat16": (20, 2, 1), "int8": (16, 1, 2)}


def _seconds(call, repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - t0) / repeat


def _shapes(workload: str) -> list[tuple[int, ...]]:
    from .workloads import parse_workload

    return list(parse_workload(workload).shapes)


def _state_bytes(upd) -> int:
    return sum(a.nbytes for arrays in upd.state.values() for a in arrays if a is not None)


def fu_rows(fu, shapes, rng):
    rows, memory = [], {}
    grads = [rng.standard_normal(s, dtype=np.float32) * 1e-2 for s in shapes]
    for state_dtype, (nbytes, _, _) in PATTERNS.items():
        params = [rng.standard_normal(s, dtype=np.float32) * 0.1 for s in shapes]
        upd = fu.adam(params, **HYPER, state_dtype=state_dtype)
        label = f"fu {state_dtype or 'float32'} state"
        rows.append((label, lambda u=upd: u.step(grads), nbytes, state_dtype))
        memory[label] = _state_bytes(upd)
    return rows, memory


def torch_rows(shapes, rng):
    try:
        import torch
    except ImportError:
        return []
    rows = []
    for mode in ("fused", "foreach"):
        ps = []
        for s in shapes:
            p = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(s, dtype=np.float32)))
            p.grad = torch.from_numpy(rng.standard_normal(s, dtype=np.float32) * 1e-2)
            ps.append(p)
        opt = torch.optim.Adam(
            ps, lr=HYPER["learning_rate"], betas=(HYPER["beta1"], HYPER["beta2"]),
            eps=HYPER["epsilon"], **{mode: True},
        )  # fmt: skip
        rows.append((f"torch {mode} float32", opt.step, 28, None))
    return rows


def ceiling_calls(numel: int):
    from fusedupdates import _cpu

    out = {}
    for state_dtype, (_, rw, ro) in PATTERNS.items():
        arrays = [np.ones(numel, np.float32) for _ in range(rw + ro)]
        out[state_dtype] = lambda a=arrays, rw=rw: _cpu.bandwidth_probe(a[:rw], a[rw:])
    return out


def measure(workload: str, rounds: int, min_time: float, peers: bool):
    import fusedupdates as fu

    rng = np.random.default_rng(0)
    shapes = _shapes(workload)
    numel = sum(int(np.prod(s)) for s in shapes)
    rows, memory = fu_rows(fu, shapes, rng)
    if peers:
        rows += torch_rows(shapes, rng)
    calls = {label: step for label, step, _, _ in rows}
    ceilings = ceiling_calls(numel)
    calls.update({f"ceiling {k}": v for k, v in ceilings.items()})
    reps = {}
    for label, call in calls.items():  # warm up, then enough repeats for min_time
        call()
        reps[label] = max(1, int(min_time / max(_seconds(call, 1), 1e-6)))
    times = {label: [] for label in calls}
    labels = list(calls)
    for r in range(rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            times[label].append(_seconds(calls[label], reps[label]))
    ref = times["fu float32 state"]
    title = f"{workload} ({len(shapes)} tensors, {numel / 1e6:.2f}M elements)"
    lines = [
        f"**{title}**, median of {rounds} interleaved rounds",
        "",
        "| implementation | B/elem | ms/step | GB/s | % of ceiling | speed-up over fu float32 |",
        "|---|---|---|---|---|---|",
    ]

    def gbs(nbytes, t):
        return nbytes * numel / t / 1e9

    for label, _, nbytes, pattern in rows:
        ceil_b = PATTERNS[pattern][0]
        pct = statistics.median(
            100 * gbs(nbytes, t) / gbs(ceil_b, c)
            for t, c in zip(times[label], times[f"ceiling {pattern}"])
        )
        speedup = statistics.median(b / t for t, b in zip(times[label], ref))
        med = statistics.median(times[label])
        lines.append(
            f"| {label} | {nbytes} | {med * 1e3:.3f} | {gbs(nbytes, med):.1f} | {pct:.0f}% "
            f"| {speedup:.2f} |"
        )
    for pattern, (nbytes, rw, ro) in PATTERNS.items():
        med = statistics.median(times[f"ceiling {pattern}"])
        lines.append(
            f"| ceiling {nbytes} B (bandwidth_probe, float32, {rw} rw + {ro} r) | {nbytes} "
            f"| {med * 1e3:.3f} | {gbs(nbytes, med):.1f} | 100% | |"
        )
    base = memory["fu float32 state"]
    lines += ["", "| state storage | state bytes | % of float32 |", "|---|---|---|"]
    for label, nbytes in memory.items():
        lines.append(f"| {label} | {nbytes} | {100 * nbytes / base:.1f}% |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="1M,16M,model")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--no-peers", action="store_true", help="skip torch")
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to S s for an idle machine first"
    )
    args = ap.parse_args()
    import fusedupdates as fu

    info = fu.build_info()
    print(
        f"adam, float32 params; fusedupdates {info['version']}, simd {info['simd']}, "
        f"{info['num_threads']} threads; {platform.processor() or platform.machine()}\n"
    )
    for workload in args.workloads.split(","):
        if args.wait_quiet > 0:
            from .timing import wait_until_quiet

            wait_until_quiet(args.wait_quiet)
        load = os.getloadavg()[0]
        lines = measure(workload, args.rounds, args.min_time, not args.no_peers)
        load = max(load, os.getloadavg()[0])
        print("\n".join(lines))
        print(f"\n- 1-minute load average up to {load:.1f} on {os.cpu_count()} cores\n")


if __name__ == "__main__":
    main()
