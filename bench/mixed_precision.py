"""``python -m bench.mixed_precision``: 16-bit adam on the CPU, with and without master weights.

Workloads: one tensor of N elements (default 1M and 16M) or the 196-tensor model of ``python
-m bench`` (``--sizes model``: ``model-10M``), adam, the same grads every step. Rows, all
timed in the same interleaved rounds:

* ``fu`` updaters: float32, float16, bfloat16, float16 / bfloat16 with ``master_weights``,
  and bfloat16 with ``rounding="stochastic"``;
* ceilings: ``fusedupdates._cpu.bandwidth_probe`` streaming each pattern's arrays (p, m, v
  read and written, g read; plus the master copy) with float32 stand-ins, as ``python -m
  bench`` does: its GB/s is the bandwidth a perfect kernel would reach;
* peers when installed: ``torch.optim.Adam(fused=True)`` and ``foreach=True`` with bfloat16 /
  float16 params (torch keeps the state in the param dtype: 14 bytes per element) and
  ``DeepSpeedCPUAdam`` (float32 state for 16-bit params, like fusedupdates).

Prints a markdown table: median ms per step, GB/s with the bytes each row moves, the median
per-round % of its ceiling (paired, so machine-wide bandwidth swings cancel) and the median
per-round time of the row over fu bfloat16's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

HYPER = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}


def _bf16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _seconds(call, repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - t0) / repeat


def _shapes(workload: str) -> list[tuple[int, ...]]:
    from .workloads import parse_workload

    return list(parse_workload(workload).shapes)


def _torch_params(torch, shapes, tdtype, rng):
    ps = []
    for s in shapes:
        p = torch.nn.Parameter(
            torch.from_numpy(rng.standard_normal(s, dtype=np.float32) * 0.1).to(tdtype)
        )
        p.grad = torch.from_numpy(rng.standard_normal(s, dtype=np.float32) * 1e-2).to(tdtype)
        ps.append(p)
    return ps


def fu_rows(fu, shapes, rng) -> list[tuple[str, object, int, str]]:
    """(label, step, bytes per element, ceiling pattern) of every fusedupdates mode."""
    rows = []
    for label, dtype, master, rounding in [
        ("fu float32", np.dtype(np.float32), False, "nearest"),
        ("fu float16", np.dtype(np.float16), False, "nearest"),
        ("fu bfloat16", _bf16(), False, "nearest"),
        ("fu float16 + master", np.dtype(np.float16), True, "nearest"),
        ("fu bfloat16 + master", _bf16(), True, "nearest"),
        ("fu bfloat16 stochastic rounding", _bf16(), False, "stochastic"),
    ]:
        ps = [(rng.standard_normal(s, dtype=np.float32) * 0.1).astype(dtype) for s in shapes]
        gs = [(rng.standard_normal(s, dtype=np.float32) * 1e-2).astype(dtype) for s in shapes]
        upd = fu.adam(ps, **HYPER, master_weights=master, rounding=rounding)
        nbytes = 3 * dtype.itemsize + 16 + (8 if master else 0)
        rows.append((label, lambda u=upd, g=gs: u.step(g), nbytes, "master" if master else "plain"))
    return rows


def ceiling_rows(n: int) -> dict[str, tuple[object, int]]:
    """Streaming kernels with each pattern's array count, in float32 stand-ins."""
    from fusedupdates import _cpu

    out = {}
    for pattern, rw in [("plain", 3), ("master", 4)]:
        arrays = [np.ones(n, np.float32) for _ in range(rw + 1)]
        out[pattern] = (
            lambda a=arrays, rw=rw: _cpu.bandwidth_probe(a[:rw], a[rw:]),
            4 * (2 * rw + 1),
        )
    return out


def torch_rows(shapes, rng) -> list[tuple[str, object, int, str]]:
    try:
        import torch
    except ImportError:
        return []
    rows = []
    for name, tdtype in [("bfloat16", torch.bfloat16), ("float16", torch.float16)]:
        for mode in ("fused", "foreach"):
            ps = _torch_params(torch, shapes, tdtype, rng)
            b1, b2 = HYPER["beta1"], HYPER["beta2"]
            opt = torch.optim.Adam(
                ps, lr=HYPER["learning_rate"], betas=(b1, b2), eps=HYPER["epsilon"],
                **{mode: True},
            )  # fmt: skip
            label = f"torch {mode} {name} ({name} state)"
            rows.append((label, lambda o=opt, p=ps: o.step(), 14, "plain"))
    return rows


def deepspeed_rows(shapes, rng) -> tuple[list, list[str]]:
    try:
        import torch
        from deepspeed.ops.adam import DeepSpeedCPUAdam
    except Exception as e:  # noqa: BLE001 - not installed, or its extension does not build
        return [], [f"DeepSpeedCPUAdam: not available ({type(e).__name__})"]
    rows, notes = [], []
    for name, tdtype in [("bfloat16", torch.bfloat16), ("float16", torch.float16)]:
        ps = _torch_params(torch, shapes, tdtype, rng)
        p = ps[-1]
        try:
            opt = DeepSpeedCPUAdam(
                ps, lr=HYPER["learning_rate"], betas=(HYPER["beta1"], HYPER["beta2"]),
                eps=HYPER["epsilon"], weight_decay=0.0, adamw_mode=False,
            )  # fmt: skip
            before = p.detach().clone()
            opt.step()
            if torch.equal(before, p.detach()):
                raise RuntimeError("step did not change the param")
        except Exception as e:  # noqa: BLE001 - e.g. a dtype it does not support
            notes.append(f"DeepSpeedCPUAdam {name}: {type(e).__name__}: {e}"[:200])
            continue
        rows.append((f"DeepSpeedCPUAdam {name} (float32 state)", opt.step, 22, "plain"))
    return rows, notes


def measure(
    workload: str, rounds: int, min_time: float, peers: bool
) -> tuple[list[str], list[str]]:
    import fusedupdates as fu

    rng = np.random.default_rng(0)
    shapes = _shapes(workload)
    n = sum(int(np.prod(s)) for s in shapes)
    rows = fu_rows(fu, shapes, rng)
    notes: list[str] = []
    if peers:
        rows += torch_rows(shapes, rng)
        ds, why = deepspeed_rows(shapes, rng)
        rows += ds
        notes += why
    ceilings = ceiling_rows(n)
    calls = {label: step for label, step, _, _ in rows}
    calls.update({f"ceiling {k}": v[0] for k, v in ceilings.items()})
    reps = {}
    for label, call in calls.items():  # warm up, then enough repeats for min_time
        call()
        reps[label] = max(1, int(min_time / max(_seconds(call, 1), 1e-6)))
    times = {label: [] for label in calls}
    labels = list(calls)
    for r in range(rounds):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            times[label].append(_seconds(calls[label], reps[label]))
    ref = times["fu bfloat16"]
    lines = [
        f"**{workload} ({len(shapes)} tensors, {n / 1e6:.2f}M elements)** (median of {rounds} "
        "interleaved rounds)",
        "",
        "| implementation | B/elem | ms/step | GB/s | % of ceiling | time / fu bfloat16 |",
        "|---|---|---|---|---|---|",
    ]

    def gbs(nbytes, t):
        return nbytes * n / t / 1e9

    for label, _, nbytes, pattern in rows:
        ceil_t = times[f"ceiling {pattern}"]
        ceil_b = ceilings[pattern][1]
        pct = statistics.median(
            100 * gbs(nbytes, t) / gbs(ceil_b, c) for t, c in zip(times[label], ceil_t)
        )
        ratio = statistics.median(t / b for t, b in zip(times[label], ref))
        med = statistics.median(times[label])
        lines.append(
            f"| {label} | {nbytes} | {med * 1e3:.3f} | {gbs(nbytes, med):.1f} | {pct:.0f}% "
            f"| {ratio:.2f} |"
        )
    for pattern, (_, ceil_b) in ceilings.items():
        med = statistics.median(times[f"ceiling {pattern}"])
        lines.append(
            f"| ceiling {pattern} (bandwidth_probe, float32, {ceil_b} B) | {ceil_b} "
            f"| {med * 1e3:.3f} | {gbs(ceil_b, med):.1f} | 100% | |"
        )
    return lines, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1M,16M", help="comma list: e.g. 1M, 16M, model")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--no-peers", action="store_true", help="skip torch and DeepSpeed")
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to S s for an idle machine first"
    )
    args = ap.parse_args()
    import fusedupdates as fu

    info = fu.build_info()
    print(
        f"adam; fusedupdates {info['version']}, simd {info['simd']}, "
        f"{info['num_threads']} threads; {platform.processor() or platform.machine()}\n"
    )
    for size in args.sizes.split(","):
        if args.wait_quiet > 0:
            from .timing import wait_until_quiet

            wait_until_quiet(args.wait_quiet)
        load = os.getloadavg()[0]
        lines, notes = measure(size, args.rounds, args.min_time, not args.no_peers)
        load = max(load, os.getloadavg()[0])
        print("\n".join(lines))
        print(
            f"\n- 1-minute load average up to {load:.1f} on {os.cpu_count()} cores during the run"
        )
        for note in notes:
            print(f"\n- {note}")
        print()


if __name__ == "__main__":
    main()
