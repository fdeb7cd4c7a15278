"""``python -m bench``: time one step() of fusedupdates against its peers, side by side.

See bench/README.md. ``main(argv)`` returns the path of the markdown report.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from pathlib import Path

from . import ceiling as ceilings
from .report import (
    OTHER_LOAD_WARN,
    ConfigResult,
    evaluate_targets,
    markdown,
    plot,
    terminal_table,
    to_json,
)
from .timing import (
    CpuTimer,
    CudaEventTimer,
    LoadMonitor,
    Progress,
    TimingPlan,
    run_interleaved,
    wait_until_quiet,
)
from .workloads import (
    DEFAULT_SIZES,
    DTYPES,
    QUICK_SIZES,
    RULE_ALIASES,
    RULES,
    DataCache,
    parse_list,
    parse_workload,
)

RESULTS = Path(__file__).resolve().parent / "results"
ALL_PEERS = ("fu", "reference", "numpy", "torch", "deepspeed", "cupy")
QUICK_TARGETS_NOTE = (
    "--quick checks that the harness runs; it does not evaluate the targets "
    "(run python -m bench without --quick for them)"
)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rules", default=",".join(RULES), help=f"comma list of {', '.join(RULES)} (default: all)"
    )
    ap.add_argument(
        "--sizes",
        default=None,
        help="comma list: 4K, 64K, 1M, 16M (one tensor), plain counts, 'model' "
        "(~10M-element transformer on the CPU, ~138M on a GPU), model-tiny, "
        "model-10M, model-130M (default: 4K,64K,1M,16M,model)",
    )
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7, quick 1)")
    ap.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds per timed measurement; small steps repeat to reach it "
        "(default 0.02, quick 0.002)",
    )
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument(
        "--peers",
        default=None,
        help=f"comma list of {', '.join(ALL_PEERS)} (default: all installed; "
        "--quick leaves out deepspeed unless named here)",
    )
    ap.add_argument(
        "--ceiling",
        default="auto",
        help="CPU streaming ceilings: auto (fu + native, else numpy), all, none, or "
        f"a comma list of {', '.join(ceilings.PROVIDERS)}",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every library (default: fusedupdates' own count)",
    )
    ap.add_argument("--out", default=str(RESULTS), help="output folder (default bench/results)")
    ap.add_argument("--machine", default=None, help="tag in the file names (default: detected)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 1 round: proves the harness works (used by the tests); prints a "
        "compact table and evaluates no targets",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each config wait up to SECONDS until other processes use < 5%% "
        "of the CPU (for shared machines; default 0: do not wait)",
    )
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_tag(model: str, cores: int) -> str:
    low = model.lower()
    for word in ("epyc", "xeon", "ryzen", "threadripper", "core", "neoverse", "graviton", "apple"):
        if word in low:
            break
    else:
        word = platform.machine().lower() or "cpu"
    return f"cpu-{cores}core-{word}"


def build_plan(args) -> TimingPlan:
    plan = TimingPlan()
    if args.quick:
        plan = TimingPlan(rounds=1, warmup=1, min_time=0.002, max_reps=200)
    if args.rounds is not None:
        plan.rounds = max(1, args.rounds)
    if args.min_time is not None:
        plan.min_time = args.min_time
    if args.warmup is not None:
        plan.warmup = max(0, args.warmup)
    return plan


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:  # before torch / fusedupdates start their OpenMP runtimes
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rules = parse_list(args.rules, RULES, RULE_ALIASES)
    dtypes = parse_list(args.dtypes, DTYPES)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES[args.device])
    workloads = [parse_workload(s, args.device) for s in parse_list(sizes)]
    if args.peers:
        peers = set(parse_list(args.peers, dict.fromkeys(ALL_PEERS)))
    else:
        peers = set(ALL_PEERS) - ({"deepspeed"} if args.quick else set())
    plan = build_plan(args)
    t_start = time.perf_counter()
    model = cpu_model()
    header = {
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "CPU": f"{model}, {os.cpu_count()} logical cores, {platform.system()}",
    }

    if args.device == "cuda":
        from .peers_gpu import gpu_available, gpu_ceiling, gpu_impls, gpu_name_tag, load_gpu_env

        if not gpu_available():
            raise SystemExit("--device cuda needs CuPy and a GPU")
        env = load_gpu_env(peers)
        timer = CudaEventTimer()
        tag = args.machine or gpu_name_tag(env)

        def make(rule, dtype, wl, data):
            impls, skips = gpu_impls(env, rule, dtype, wl, data, peers)
            return impls + [gpu_ceiling(env, rule, dtype, wl.numel)], skips
    else:
        from .peers_cpu import cpu_impls, load_cpu_env

        env = load_cpu_env(peers, args.threads)
        timer = CpuTimer()
        tag = args.machine or machine_tag(model, os.cpu_count() or 1)
        chosen = ceilings.select(args.ceiling)
        header["threads"] = (
            f"{env.threads} for every library (fusedupdates.set_num_threads, "
            f"torch.set_num_threads, NumPy chunk pool, ceiling kernels)"
        )
        header["ceilings"] = ", ".join(p.label for p in chosen) or "none"

        def make(rule, dtype, wl, data):
            impls, skips = cpu_impls(env, rule, dtype, wl, data)
            for prov in chosen:
                impls.append(prov.make(rule, dtype, wl.numel, env.threads))
            return impls, skips

    header["versions"] = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    header["timing"] = (
        f"{timer.name}; {plan.warmup} warm-up steps, reps calibrated to ≥ "
        f"{plan.min_time * 1e3:g} ms per measurement, {plan.rounds} interleaved "
        f"rounds (start rotates), median [min – max]; steps slower than "
        f"{plan.slow_step:g} s get at most {plan.slow_rounds} rounds; gc off"
    )
    for i, note in enumerate(env.notes):
        header[f"note {i + 1}"] = note
    if "reference" in peers and getattr(env, "ref_origin", ""):
        header["reference"] = env.ref_origin

    configs = [(wl, dt, RULES[r]) for wl in workloads for dt in dtypes for r in rules]
    progress = Progress(len(configs), enabled=not args.no_progress)
    data = DataCache()
    results: list[ConfigResult] = []
    each = LoadMonitor()
    waited = 0.0
    try:
        for wl, dt, rule in configs:
            progress.describe(f"{rule.name} {dt} {wl.name}")
            impls, skips = make(rule, DTYPES[dt], wl, data)
            if args.wait_quiet > 0:
                waited += wait_until_quiet(args.wait_quiet)
            each.restart()
            rows = run_interleaved(impls, timer, plan, progress.tick)
            results.append(ConfigResult(rule.name, dt, wl, rows, skips, each.read()))
            del impls
            gc.collect()
    finally:
        progress.close()
    data.clear()

    date = time.strftime("%Y-%m-%d")
    header["total benchmark time"] = f"{time.perf_counter() - t_start:.0f} s"
    secs = sum(r.load["seconds"] for r in results) or math.nan
    load = {
        k: sum(r.load[k] * r.load["seconds"] for r in results) / secs for k in ("other", "steal")
    }
    header["machine load"] = (
        f"other processes used {load['other']:.1%} of the machine's CPU "
        f"while timing, hypervisor steal {load['steal']:.1%} (configs "
        f"above {OTHER_LOAD_WARN:.0%} are flagged)"
        + (f"; waited {waited:.0f} s for quiet" if args.wait_quiet else "")
    )
    meta = {"machine": tag, "date": date, "device": args.device, "header": header}
    if args.quick:
        # the targets are set at 4K, 16M and model-10M with full rounds: one round of tiny
        # sizes would print noise or a column of 'not measured' that reads like failures
        targets = []
        meta["targets_note"] = QUICK_TARGETS_NOTE
    else:
        targets = evaluate_targets(results, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{tag}-{date}"
    md_path = stem.with_suffix(".md")
    if not args.no_plot and plot(
        results, stem.with_suffix(".png"), f"time per element per step, {tag}, {date}"
    ):
        header["plot"] = stem.with_suffix(".png").name
    md_path.write_text(markdown(results, meta, targets))
    stem.with_suffix(".json").write_text(to_json(results, meta, targets))
    if args.quick:
        print(terminal_table(results))
        print(f"\nwrote {md_path}")
        print(QUICK_TARGETS_NOTE)
    else:
        print(f"wrote {md_path}")
    for t in targets:
        print(f"  {t['status']:>12}: {t['target']} (measured {t['measured']})")
    return md_path


if __name__ == "__main__":
    main()
