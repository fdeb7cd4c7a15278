"""``python -m bench.norms``: time the CPU norm constraints, float32 against float16.

Three workloads per size and dtype, each one call into a preallocated ``out``:

* ``total_norm_constraint``: one array of N elements (one reduction, one scaling pass);
* ``norm_constraint single``: a vector with ``norm_axes=(0,)``, one norm over every element
  (the kernel's outer = inner = 1 case);
* ``norm_constraint columns``: an (N / 256, 256) matrix with the default ``norm_axes=(0,)``,
  256 column norms (inner = 256).

Prints a markdown table of the median time per call (``--json`` keeps every sample).
``--json PATH`` saves the numbers; ``--compare PATH`` adds the saved ones as a "before" column
and the speed-up, so a change can be measured with the same script before and after it.

Measured on the 2-core EPYC (2 threads, ms per call, best of 3 interleaved runs of
``--rounds 5`` on a quiet machine), before and after the float16 tiles and the parallel
single-norm kernel:

| workload | size | float32 before | float32 after | float16 before | float16 after |
|---|---|---|---|---|---|
| total_norm_constraint | 1M | 0.10 | 0.10 | 3.17 | 0.14 |
| norm_constraint single | 1M | 5.60 | 0.12 | 6.61 | 0.16 |
| norm_constraint columns | 1M | 0.24 | 0.13 | 6.19 | 0.16 |
| total_norm_constraint | 16M | 4.63 | 5.08 | 50.6 | 3.25 |
| norm_constraint single | 16M | 91.0 | 5.30 | 103.8 | 3.64 |
| norm_constraint columns | 16M | 6.49 | 5.24 | 100.4 | 3.04 |
| total_norm_constraint | 64M | 23.1 | 24.7 | 204.8 | 13.4 |
| norm_constraint single | 64M | 356.4 | 23.1 | 425.7 | 13.6 |
| norm_constraint columns | 64M | 28.7 | 16.9 | 392.8 | 12.3 |
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

WORKLOADS = ("total_norm_constraint", "norm_constraint single", "norm_constraint columns")
COLUMNS = 256


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def size_label(n: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def make_call(fu, workload: str, n: int, dtype: str, rng: np.random.Generator):
    """The timed call and the arrays it keeps alive; every call rescales x into out."""
    x = rng.standard_normal(n, dtype=np.float32).astype(dtype)
    out = np.empty_like(x)
    if workload == "total_norm_constraint":
        return lambda: fu.total_norm_constraint([x], 1.0, out=[out])
    if workload == "norm_constraint single":
        return lambda: fu.norm_constraint(x, 1.0, norm_axes=(0,), out=out)
    x2, out2 = x.reshape(n // COLUMNS, COLUMNS), out.reshape(n // COLUMNS, COLUMNS)
    return lambda: fu.norm_constraint(x2, 1.0, out=out2)


def time_call(call, rounds: int, min_time: float) -> list[float]:
    """Seconds per call, one sample per round; small calls repeat to last ``min_time``."""
    call()  # warm-up: page faults of out, thread pool start
    t0 = time.perf_counter()
    call()
    once = time.perf_counter() - t0
    reps = max(1, int(min_time / max(once, 1e-9)))
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        samples.append((time.perf_counter() - t0) / reps)
    return samples


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}" if seconds < 10 else f"{seconds:.1f} s"


def markdown(results: dict, before: dict | None, threads: int) -> str:
    head = "| workload | size | dtype | ms / call |"
    rule = "|---|---|---|---|"
    if before:
        head += " before (ms) | speed-up |"
        rule += "---|---|"
    lines = [f"threads: {threads}", "", head, rule]
    for key, samples in results.items():
        workload, size, dtype = key.split("|")
        now = statistics.median(samples)
        row = f"| {workload} | {size} | {dtype} | {fmt_ms(now)} |"
        if before:
            old = before.get(key)
            if old:
                was = statistics.median(old)
                row += f" {fmt_ms(was)} | {was / now:.1f}x |"
            else:
                row += " – | – |"
        lines.append(row)
    return "\n".join(lines)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.norms", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,16M,64M", help="elements per array (default 1M,16M,64M)")
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma list (default: all)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    ap.add_argument("--threads", type=int, default=None, help="fu.set_num_threads (default: all)")
    ap.add_argument("--json", default=None, help="save the samples here")
    ap.add_argument("--compare", default=None, help="a --json file from an earlier run")
    args = ap.parse_args(argv)

    import fusedupdates as fu

    if args.threads:
        fu.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    results = {}
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        for workload in args.workloads.split(","):
            for dtype in args.dtypes.split(","):
                call = make_call(fu, workload.strip(), size, dtype.strip(), rng)
                key = f"{workload.strip()}|{size_label(size)}|{dtype.strip()}"
                results[key] = time_call(call, args.rounds, args.min_time)
                del call
    before = json.loads(Path(args.compare).read_text()) if args.compare else None
    text = markdown(results, before, fu.get_num_threads())
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return text


if __name__ == "__main__":
    main()
