"""A/B no-regression check: ``updater.step()`` of this build against a baseline build of
fusedupdates, in ONE process with interleaved rounds, so that both see the same machine.

Absolute times from another day (or another VM: this project's "2-core" machines have been an
AMD EPYC and an Intel Xeon) cannot show a 3% regression; a paired ratio measured side by side
can. Build the baseline once into a folder, then point this script at it:

    git worktree add --detach /tmp/fu-base <commit>
    CXXFLAGS='-DPYBIND11_COMPILER_TYPE=\"_fu_baseline\"' FUSEDUPDATES_CUDA=OFF \
        pip install --no-deps --target /tmp/fu_base /tmp/fu-base
    python bench/ab_step.py --baseline /tmp/fu_base/fusedupdates [--sizes 4K,16M,model]

The CXXFLAGS give the baseline its own pybind11 registry: two builds that both define the
``Stepper`` class otherwise fail with 'type "Stepper" is already registered'.
The baseline package is imported under another name (``fu_baseline``; its imports are all
relative) next to the installed ``fusedupdates``. Each round times both once (the order
alternates), each measurement repeating the step until it lasts ``--min-time``; the report
gives each side's median time per step and the median over rounds of (this / baseline).
``--dtype float16|bfloat16`` times 16-bit params and grads (float32 state);
``--step-option skip_nonfinite`` (or ``max_norm``, ``grad_scale``) times that step option;
``--state-dtype bfloat16|int8`` times compact optimizer state.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import parse_list, parse_workload  # noqa: E402


def load_baseline(package_dir: Path) -> ModuleType:
    init = package_dir / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--baseline: {init} not found (give the package folder itself)")
    spec = importlib.util.spec_from_file_location(
        "fu_baseline", init, submodule_search_locations=[str(package_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["fu_baseline"] = module
    spec.loader.exec_module(module)
    return module


# Keyword arguments of Updater.step per --step-option; the values never trigger a clip or skip.
STEP_OPTIONS = {
    "none": {},
    "skip_nonfinite": {"skip_nonfinite": True},
    "max_norm": {"max_norm": 1e9},
    "grad_scale": {"grad_scale": 1024.0},
}


def make_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclass(frozen=True)
class StepConfig:
    """What both sides time: param dtype, step() options, optimizer state dtype."""

    dtype: np.dtype = np.dtype(np.float32)
    step_kwargs: dict = field(default_factory=dict)
    state_dtype: str = "float32"


def make_step(fu: ModuleType, shapes: list, seed: int, config: StepConfig = StepConfig()):
    """An adam updater over fresh params and one fixed grad list: returns step()."""
    rng = np.random.default_rng(seed)
    dtype = config.dtype
    params = [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]
    state = {} if config.state_dtype == "float32" else {"state_dtype": config.state_dtype}
    updater = fu.adam(params, learning_rate=1e-3, **state)
    kwargs = dict(config.step_kwargs)

    def step() -> None:
        updater.step(grads, **kwargs)

    return step


def time_per_step(step, reps: int) -> float:
    step()  # untimed: wakes the OpenMP workers after the other side's run
    start = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - start) / reps


def calibrate(step, min_time: float) -> int:
    reps = 1
    while True:
        if time_per_step(step, reps) * reps >= min_time or reps >= 1 << 20:
            return reps
        reps *= 2


def compare(
    fu_new: ModuleType,
    fu_old: ModuleType,
    shapes: list,
    rounds: int,
    min_time: float,
    config: StepConfig = StepConfig(),
):
    steps = {
        "this build": make_step(fu_new, shapes, 0, config),
        "baseline": make_step(fu_old, shapes, 0, config),
    }
    reps = {name: calibrate(s, min_time) for name, s in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    gc.disable()
    try:
        for r in range(rounds):
            order = list(steps) if r % 2 == 0 else list(reversed(steps))
            for name in order:
                time.sleep(0.003)
                times[name].append(time_per_step(steps[name], reps[name]))
    finally:
        gc.enable()
    ratios = [a / b for a, b in zip(times["this build"], times["baseline"])]
    return times, ratios


def fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="the baseline package folder")
    ap.add_argument("--sizes", default="4K,16M,model")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--min-time", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--step-option", default="none", choices=list(STEP_OPTIONS))
    ap.add_argument("--state-dtype", default="float32", choices=["float32", "bfloat16", "int8"])
    args = ap.parse_args(argv)

    import fusedupdates as fu_new

    fu_old = load_baseline(args.baseline.resolve())
    if args.threads is not None:
        fu_new.set_num_threads(args.threads)
        fu_old.set_num_threads(args.threads)
    print(f"this build: {fu_new.__file__}\nbaseline:   {fu_old.__file__}")
    dtype, step_kwargs = make_dtype(args.dtype), STEP_OPTIONS[args.step_option]
    print(
        f"threads {fu_new.get_num_threads()}, {args.rounds} interleaved rounds, adam {args.dtype}"
        f", state {args.state_dtype}, step options {step_kwargs or 'none'}\n"
    )
    print("| size | this build | baseline | this / baseline (median of rounds) [min – max] |")
    print("|---|---|---|---|")
    for token in parse_list(args.sizes):
        workload = parse_workload(token)
        times, ratios = compare(
            fu_new,
            fu_old,
            list(workload.shapes),
            args.rounds,
            args.min_time,
            StepConfig(dtype, step_kwargs or {}, args.state_dtype),
        )
        new, old = (statistics.median(times[k]) for k in ("this build", "baseline"))
        print(
            f"| {workload.label} | {fmt(new)} | {fmt(old)} | {statistics.median(ratios):.3f} "
            f"[{min(ratios):.3f} – {max(ratios):.3f}] |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
