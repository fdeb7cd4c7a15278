"""Markdown table, targets section, JSON dump and the log-log plot of one benchmark run."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .timing import Measurement
from .workloads import DTYPES, RULES, Workload, bytes_per_elem, traffic

FU_ROW = "fu.updater step()"
OTHER_LOAD_WARN = 0.05  # flag configs timed while other processes used > 5% of the CPU


@dataclass
class ConfigResult:
    rule: str
    dtype: str
    workload: Workload
    rows: list[Measurement]
    skips: list[str] = field(default_factory=list)
    load: dict = field(default_factory=dict)  # timing.LoadMonitor.read() during the timing

    def row(self, name: str) -> Measurement | None:
        for m in self.rows:
            if m.name == name and m.times:
                return m
        return None

    def ceiling_by_round(self) -> dict[int, float]:
        """Round -> best ceiling bandwidth (bytes/s) measured in that round."""
        best: dict[int, float] = {}
        for m in self.rows:
            if m.is_ceiling:
                for r, t in zip(m.rounds, m.times):
                    best[r] = max(best.get(r, 0.0), m.bytes_per_elem * self.workload.numel / t)
        return best

    def fraction_of_ceiling(self, m: Measurement) -> float:
        """Median over rounds of m's GB/s / the best ceiling GB/s of the same round."""
        ceil = self.ceiling_by_round()
        nb = m.bytes_per_elem * self.workload.numel
        vals = [nb / t / ceil[r] for r, t in zip(m.rounds, m.times) if r in ceil]
        return statistics.median(vals) if vals else math.nan

    def attainable_speedup(self, peer: Measurement, bytes_per_elem: float) -> float:
        """Median over rounds of peer's time / the time a kernel moving ``bytes_per_elem``
        at the round's ceiling bandwidth would take: the most any such kernel can beat it by."""
        ceil = self.ceiling_by_round()
        nb = bytes_per_elem * self.workload.numel
        vals = [t * ceil[r] / nb for r, t in zip(peer.rounds, peer.times) if r in ceil]
        return statistics.median(vals) if vals else math.nan


def paired_ratio(a: Measurement, b: Measurement) -> float:
    """Median over the rounds both were timed in of a's time / b's time.

    Interleaving puts the two samples of one round close in time, so per-round ratios cancel
    most of the slow drift of a shared machine (memory bandwidth taken by neighbours, clock).
    """
    tb = dict(zip(b.rounds, b.times))
    vals = [t / tb[r] for r, t in zip(a.rounds, a.times) if r in tb]
    return statistics.median(vals) if vals else math.nan


def gbs(m: Measurement, wl: Workload) -> float:
    return m.bytes_per_elem * wl.numel / m.median if m.times else math.nan


def fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "–"
    for unit, f in (("s", 1.0), ("ms", 1e3), ("µs", 1e6)):
        if s * f >= 1:
            return f"{s * f:.3g} {unit}" if s * f < 1000 else f"{s * f:.0f} {unit}"
    return f"{s * 1e9:.3g} ns"


def _f(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else "–"


# ------------------------------------------------------------------------------------ targets

CPU_TARGETS = [  # (rule, dtype, workload, peer row or "ceiling", required ratio)
    ("adam", "float32", "16M", "torch fused", 1.5),
    ("adam", "float32", "16M", "DeepSpeedCPUAdam", 1.0),
    ("adam", "float32", "16M", "fu.reference (NumPy)", 10.0),
    ("adam", "float32", "16M", "ceiling", 0.85),
    ("adam", "float32", "model-10M", "torch fused", 1.4),
    ("adam", "float32", "model-10M", "DeepSpeedCPUAdam", 1.4),
    ("adam", "float32", "4K", "torch fused", 6.0),
]


def evaluate_targets(results: list[ConfigResult], device: str) -> list[dict]:
    if device != "cpu":
        return []
    by_key = {(r.rule, r.dtype, r.workload.name): r for r in results}
    out = []
    for rule, dtype, wl, peer, need in CPU_TARGETS:
        what = f"{rule} {dtype} {wl}: fu.updater " + (
            f"≥ {need:.0%} of the streaming ceiling" if peer == "ceiling" else f"≥ {need:g}× {peer}"
        )
        res = by_key.get((rule, dtype, wl))
        fu = res.row(FU_ROW) if res else None
        ratio = bound = math.nan
        if fu is not None:
            if peer == "ceiling":
                ratio = res.fraction_of_ceiling(fu)
            elif (m := res.row(peer)) is not None:
                ratio = paired_ratio(m, fu)
                bound = res.attainable_speedup(m, fu.bytes_per_elem)
        status = (
            "not measured" if not math.isfinite(ratio) else ("met" if ratio >= need else "NOT met")
        )
        shown = (
            "–"
            if not math.isfinite(ratio)
            else _f(ratio, ".0%")
            if peer == "ceiling"
            else _f(ratio, ".2f") + "×"
        )
        out.append(
            dict(
                target=what, measured=shown, ratio=ratio, required=need, status=status, bound=bound
            )
        )
    return out


# ----------------------------------------------------------------------------------- markdown


def bytes_table() -> list[str]:
    lines = [
        "| rule | streams read | streams written | float32 B/elem | float16 B/elem "
        "(fp32 state) | torch float16 B/elem (fp16 state) |",
        "|---|---|---|---|---|---|",
    ]
    for r in RULES.values():
        reads = ", ".join(["p", "g", *r.states])
        writes = ", ".join(["p", *r.states])
        f32 = traffic(r, 4, 4)
        f16 = traffic(r, 2, 4)
        torch16 = bytes_per_elem(r, "float16", "float16")
        lines.append(
            f"| {r.name} | {reads} | {writes} | {sum(f32)} ({f32[0]}+{f32[1]}) | "
            f"{sum(f16)} ({f16[0]}+{f16[1]}) | {torch16} |"
        )
    return lines


def config_table(res: ConfigResult) -> list[str]:
    wl = res.workload
    fu = res.row(FU_ROW)
    lines = []
    for m in res.rows:
        if not m.times:
            lines.append(
                f"| {wl.label} | {m.name} | failed: {m.error or 'no samples'} | | | | | | | |"
            )
            continue
        bw = gbs(m, wl)
        speed = paired_ratio(m, fu) if fu is not None else math.nan
        name = m.name + (f" ({m.note})" if m.note else "")
        lines.append(
            f"| {wl.label} | {name} | {fmt_time(m.median)} | {fmt_time(m.min)} – "
            f"{fmt_time(m.max)} | {_f(m.median / wl.numel * 1e9, '.3g')} | "
            f"{_f(wl.numel / m.median / 1e9, '.3g')} | {m.bytes_per_elem:g} | "
            f"{_f(bw / 1e9, '.1f')} | {_f(res.fraction_of_ceiling(m), '.0%')} | "
            f"{'—' if m.name == FU_ROW or m.is_ceiling else _f(speed, '.2f') + '×'} |"
        )
    return lines


def markdown(results: list[ConfigResult], meta: dict, targets: list[dict]) -> str:
    out = [f"# fusedupdates benchmark: {meta['machine']}, {meta['date']}", ""]
    for k, v in meta["header"].items():
        out.append(f"- **{k}**: {v}")
    out += [
        "",
        "## Bytes per element",
        "",
        "The minimum memory traffic of one update (every written array is also read, so "
        "there is no extra write-allocate traffic). Effective GB/s = B/elem × elements / "
        "time, with the bytes the row's implementation moves. The ceiling is the best "
        "streaming kernel with the rule's read/write pattern, timed in the same rounds.",
        "",
        *bytes_table(),
        "",
    ]
    out += ["## Targets", ""]
    if targets:
        out += [
            "Ratios are medians of per-round ratios (see Results). *Bandwidth bound*: the "
            "peer's time over the time of a kernel moving fusedupdates' bytes at the "
            "ceiling bandwidth, i.e. the largest speedup any implementation could show.",
            "",
            "| target | measured | bandwidth bound | status |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {t['target']} | {t['measured']} | "
            f"{_f(t['bound'], '.2f') + '×' if math.isfinite(t['bound']) else '—'} | "
            f"{t['status']} |"
            for t in targets
        ]
    else:
        out.append(meta.get("targets_note", "No targets are defined for this device."))
    out += [
        "",
        "## Results",
        "",
        "time/step: median over rounds [min – max]. Speedup = median over rounds of "
        "(this row's time / fu.updater's time in the same round): > 1 means fusedupdates is "
        "faster. % ceiling = median over rounds of this row's GB/s / the best ceiling GB/s "
        "of the same round. Pairing by round cancels most of the drift of a shared machine.",
        "",
    ]
    head = [
        "| size | implementation | time/step | [min – max] | ns/elem | Gelem/s | B/elem | "
        "GB/s | % ceiling | fu.updater speedup |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        for dtype in DTYPES:
            group = [r for r in results if r.rule == rule and r.dtype == dtype]
            if not group:
                continue
            out += [f"### {rule} · {dtype}", "", *head]
            for r in group:
                out += config_table(r)
            skips = sorted({s for r in group for s in r.skips})
            noisy = [
                f"{r.workload.name} ({r.load['other']:.0%})"
                for r in group
                if r.load.get("other", 0) > OTHER_LOAD_WARN
            ]
            out += [""] + [f"- skipped: {s}" for s in skips]
            if noisy:
                out.append("- ⚠ other processes were busy while timing: " + ", ".join(noisy))
            out += [""] if skips or noisy else []
    return "\n".join(out) + "\n"


def to_json(results: list[ConfigResult], meta: dict, targets: list[dict]) -> str:
    rows = []
    for r in results:
        for m in r.rows:
            rows.append(
                dict(
                    rule=r.rule,
                    dtype=r.dtype,
                    workload=r.workload.name,
                    numel=r.workload.numel,
                    n_tensors=r.workload.n_tensors,
                    load=r.load,
                    **asdict(m),
                )
            )
    return json.dumps(dict(meta=meta, targets=targets, rows=rows), indent=1, default=str)


# ----------------------------------------------------------------------------------- terminal

# Column headers of the terminal table; the markdown report keeps the full row names.
_SHORT_NAMES = {
    FU_ROW: "fu.updater",
    "fu.reference (NumPy)": "reference",
    "numpy in-place (chunked, out=)": "numpy",
    "torch for-loop": "torch loop",
    "DeepSpeedCPUAdam": "deepspeed",
    "cupy naive expressions": "cupy naive",
    "cupy ElementwiseKernel per tensor": "cupy kernel",
}


def terminal_table(results: list[ConfigResult]) -> str:
    """Median time per step of every implementation, one line per config, for the terminal.

    The ceiling rows collapse into one column (the fastest), so that the table stays narrow
    enough for a terminal; the markdown report has every row with its spread and GB/s.
    """
    names = list(dict.fromkeys(m.name for r in results for m in r.rows if not m.is_ceiling))
    has_ceiling = any(m.is_ceiling for r in results for m in r.rows)
    head = ["rule", "dtype", "size", *(_SHORT_NAMES.get(n, n) for n in names)]
    head += ["ceiling"] if has_ceiling else []
    body = []
    for r in results:
        cells = [r.rule, r.dtype, r.workload.name]
        for name in names:
            m = r.row(name)
            ran = any(x.name == name for x in r.rows)
            cells.append(fmt_time(m.median) if m else ("failed" if ran else "–"))
        if has_ceiling:
            ceil = [m.median for m in r.rows if m.is_ceiling and m.times]
            cells.append(fmt_time(min(ceil)) if ceil else "–")
        body.append(cells)
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        # labels left-aligned, times right-aligned so that their units line up
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    caption = "time per step (median over rounds); ceiling: the fastest streaming kernel"
    rule = "-" * len(line(head))
    return "\n".join([caption, "", line(head), rule, *(line(c) for c in body)])


# --------------------------------------------------------------------------------------- plot


def plot(results: list[ConfigResult], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rules = [r for r in RULES if any(x.rule == r for x in results)]
    dtypes = [d for d in DTYPES if any(x.dtype == d for x in results)]
    if not rules or not dtypes:
        return False
    fig, axes = plt.subplots(
        len(dtypes),
        len(rules),
        figsize=(4.6 * len(rules), 3.9 * len(dtypes)),
        squeeze=False,
        sharex=True,
    )
    names = list(dict.fromkeys(m.name for r in results for m in r.rows))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    color = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    for i, dtype in enumerate(dtypes):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            group = [r for r in results if r.rule == rule and r.dtype == dtype]
            for name in names:
                pts = [
                    (r.workload.numel, m.median / r.workload.numel * 1e9, r.workload.is_model)
                    for r in group
                    for m in r.rows
                    if m.name == name and m.times
                ]
                line = sorted((x, y) for x, y, mod in pts if not mod)
                style = dict(
                    color=color[name],
                    lw=2.2 if name == FU_ROW else 1.2,
                    ls="--" if name.startswith("ceiling") else "-",
                )
                if line:
                    ax.plot(*zip(*line), marker="o", ms=3, label=name, **style)
                for x, y, mod in pts:
                    if mod:
                        ax.plot(
                            [x],
                            [y],
                            marker="*",
                            ms=11,
                            color=color[name],
                            ls="none",
                            label=None if line else name,
                        )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{rule} · {dtype}", fontsize=10)
            ax.grid(True, which="both", alpha=0.25)
            if j == 0:
                ax.set_ylabel("ns per element per step")
            if i == len(dtypes) - 1:
                ax.set_xlabel("elements (★ = model-shaped list)")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="lower center",
        ncol=min(5, len(handles)),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(handles) / 5), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
