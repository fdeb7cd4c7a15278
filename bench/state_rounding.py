"""``python -m bench.state_rounding``: compact optimizer state (bfloat16 values or 8-bit
codes) rounded to nearest or stochastically (``state_rounding=``), what it does to adam's
second moment and what it costs.

1. **Bias.** adam (learning rate 0, so the params stay put) on 8192 elements with fresh
   N(0, 1) grads every step: the float32 second moment tends to ``E[g^2] (1 - beta2^t)`` = 1
   after bias correction. The table gives the bias-corrected mean of ``v`` per storage after
   t steps, for beta2 = 0.999 and 0.99 (1 is right).
2. **Cost.** Median ms per adam step (float32 params) with bfloat16 and with int8 state,
   nearest and stochastic, at 1M and 16M elements, interleaved rounds, and the median
   per-round ratio.

Prints markdown; ``--out FILE`` writes it too.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

CHECKPOINTS = (100, 300, 1000, 3000, 10000)


def bias_rows(betas: tuple[float, ...]) -> list[str]:
    import fusedupdates as fu

    rows = []
    storages = [("float32", {}), ("bfloat16, nearest", {"state_dtype": "bfloat16"})]
    storages.append(
        ("bfloat16, stochastic", {"state_dtype": "bfloat16", "state_rounding": "stochastic"})
    )
    storages.append(("int8, nearest", {"state_dtype": "int8"}))
    storages.append(("int8, stochastic", {"state_dtype": "int8", "state_rounding": "stochastic"}))
    for beta2 in betas:
        for label, kw in storages:
            rng = np.random.default_rng(3)  # the same grads for every storage
            w = np.zeros(8192, np.float32)
            upd = fu.adam([w], learning_rate=0.0, beta2=beta2, **kw)
            cells = []
            for t in range(1, CHECKPOINTS[-1] + 1):
                upd.step([rng.standard_normal(w.shape).astype(np.float32)])
                if t in CHECKPOINTS:
                    decoded = fu.convert_state_dict(upd.state_dict(), None)  # int8: decode
                    v = np.asarray(decoded["state"]["v"][0]).astype(np.float64)
                    cells.append(f"{v.mean() / (1 - beta2**t):.3f}")
            rows.append(f"| {beta2} | {label} | " + " | ".join(cells) + " |")
    return rows


def cost_rows(sizes: tuple[int, ...], rounds: int, state_dtype: str) -> list[str]:
    import fusedupdates as fu

    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        grads = [rng.standard_normal(n).astype(np.float32)]
        upds = {
            mode: fu.adam(
                [rng.standard_normal(n).astype(np.float32)],
                learning_rate=1e-3,
                state_dtype=state_dtype,
                state_rounding=mode,
            )
            for mode in ("nearest", "stochastic")
        }
        repeat = max(1, int(2e8 // (n * 20)))  # ~0.2 s of traffic per timing
        times: dict[str, list[float]] = {m: [] for m in upds}
        for upd in upds.values():
            upd.step(grads)  # warm
        for _ in range(rounds):
            for mode, upd in upds.items():
                t0 = time.perf_counter()
                for _ in range(repeat):
                    upd.step(grads)
                times[mode].append((time.perf_counter() - t0) / repeat)
        ratio = statistics.median(s / r for s, r in zip(times["stochastic"], times["nearest"]))
        near, sto = (statistics.median(times[m]) * 1e3 for m in ("nearest", "stochastic"))
        rows.append(f"| {state_dtype} | {n:,} | {near:.3f} | {sto:.3f} | {ratio:.3f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_rounding", description=__doc__)
    parser.add_argument("--rounds", type=int, default=11, help="timing rounds (default 11)")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args()
    import fusedupdates as fu

    lines = [
        f"# Compact state: nearest vs stochastic rounding, {time.strftime('%Y-%m-%d')}",
        "",
        f"- **command**: python -m bench.state_rounding --rounds {args.rounds}",
        f"- **machine**: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"cores, kernels {fu._cpu.simd()}, {fu.get_num_threads()} threads",
        "",
        "## adam's second moment, bias-corrected mean of v (E[g^2] = 1; 8192 elements)",
        "",
        "| beta2 | state | " + " | ".join(f"t={t}" for t in CHECKPOINTS) + " |",
        "|---|---|" + "---|" * len(CHECKPOINTS),
        *bias_rows((0.999, 0.99)),
        "",
        "## Cost: ms per adam step (medians of interleaved rounds)",
        "",
        "| state | elements | nearest | stochastic | stochastic / nearest (median per round) |",
        "|---|---|---|---|---|",
        *cost_rows((1 << 20, 1 << 24), args.rounds, "bfloat16"),
        *cost_rows((1 << 20, 1 << 24), args.rounds, "int8"),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
