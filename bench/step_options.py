"""``python -m bench.step_options``: what each option of ``Updater.step`` costs on the CPU.

adam (float32 params, or ``--dtype float16|bfloat16`` with float32 state), one tensor of N
elements or the 196-tensor model of ``python -m bench``, the same grads every call. Modes,
each against the plain ``step(grads)`` measured in the same interleaved rounds (the order
rotates from round to round):

* ``skip_nonfinite``: the non-finite check, one extra read of the grads (of their bits);
* ``grad_scale``: loss scaling (implies the check);
* ``max_norm``: clipping (the norm pass);
* ``grad_scale + max_norm``: both, still ONE extra read (the check shares the norm's pass);
* ``weight_decay`` and ``decoupled``: fused decay, no extra pass.

Prints a markdown table: median ms per step and the median of the per-round ratios to the
plain step (paired rounds, so machine-wide bandwidth swings cancel).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

MODES = {
    "plain": ({}, {}),
    "skip_nonfinite": ({}, {"skip_nonfinite": True}),
    "grad_scale": ({}, {"grad_scale": 1024.0}),
    "max_norm": ({}, {"max_norm": 1e9}),
    "grad_scale + max_norm": ({}, {"grad_scale": 1024.0, "max_norm": 1e9}),
    "weight_decay": ({"weight_decay": 1e-4}, {}),
    "decoupled": ({"weight_decay": 1e-4, "decoupled_weight_decay": True}, {}),
}


def _seconds(call, repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    import fusedupdates as fu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1M,16M,model", help="comma list: e.g. 4K, 1M, 16M, model"
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    args = parser.parse_args()
    if args.dtype == "bfloat16":
        import ml_dtypes

        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = np.dtype(args.dtype)
    from .workloads import parse_workload

    info = fu.build_info()
    print(
        f"# Updater.step options, {args.dtype} adam ({info['simd']}, "
        f"{info['num_threads']} threads)\n"
    )
    print("| workload | mode | ms per step | x plain (median of paired rounds) |")
    print("|---|---|---|---|")
    for size in args.sizes.split(","):
        shapes = list(parse_workload(size).shapes)
        grads = [np.full(s, 1e-3, np.float32).astype(dtype) for s in shapes]
        calls = {}
        for mode, (factory_kw, step_kw) in MODES.items():
            upd = fu.adam([np.zeros(s, dtype) for s in shapes], **factory_kw)
            calls[mode] = lambda upd=upd, kw=step_kw, g=grads: upd.step(g, **kw)
        repeat = max(1, int(0.05 / max(_seconds(calls["plain"], 1), 1e-6)))
        times: dict[str, list[float]] = {m: [] for m in MODES}
        order = list(calls)
        for r in range(args.rounds):
            for mode in order[r % len(order) :] + order[: r % len(order)]:
                times[mode].append(_seconds(calls[mode], repeat))
        for mode in MODES:
            ratio = statistics.median(a / b for a, b in zip(times[mode], times["plain"]))
            ms = statistics.median(times[mode]) * 1e3
            print(f"| {size} | {mode} | {ms:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
