"""Timing: warm-up, repetition calibration, interleaved rounds, robust statistics.

Every implementation of one config is set up first; then each round times every implementation
once (``reps`` back-to-back steps, the start rotating from round to round) so that slow drifts
of the machine (frequency, other tenants) hit all of them alike. The statistic is the median
over rounds of the per-step time, reported with the min and max.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Impl:
    """One implementation, ready to step on one config."""

    name: str  # row label
    family: str  # "fu", "torch", "deepspeed", "numpy", "reference", "cupy", "ceiling"
    step: Callable[[], object]
    bytes_per_elem: float  # bytes this implementation actually moves per element
    note: str = ""
    is_ceiling: bool = False
    keepalive: object = None  # arrays / optimizers that must outlive the timing
    probe: object = None  # params[0]: the harness checks that step() changes it


def first_elements(x, n: int = 1 << 16):
    """A NumPy copy of the first ``n`` elements of a NumPy, CuPy or torch array."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().reshape(-1)[:n].cpu().numpy()
    elif hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        x = x.reshape(-1)[:n].get()
    else:
        x = x.reshape(-1)[:n]
    return np.array(x, copy=True)


@dataclass
class Measurement:
    name: str
    family: str
    bytes_per_elem: float
    note: str
    is_ceiling: bool
    reps: int = 1
    times: list[float] = field(default_factory=list)  # seconds per step, one per round
    rounds: list[int] = field(default_factory=list)  # the round of each sample
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.nan

    @property
    def min(self) -> float:
        return min(self.times) if self.times else math.nan

    @property
    def max(self) -> float:
        return max(self.times) if self.times else math.nan


class CpuTimer:
    """Wall-clock time of ``reps`` calls (the implementations block until done)."""

    name = "time.perf_counter"

    def measure(self, fn: Callable[[], object], reps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps


class CudaEventTimer:
    """GPU time between two CuPy events on the current stream around ``reps`` calls.

    Launch overhead is included whenever it, not the GPU, is the bottleneck (the GPU then
    idles between kernels), which is what a training loop sees.
    """

    name = "cupy.cuda.Event"

    def __init__(self) -> None:
        import cupy

        self.cp = cupy
        self.start = cupy.cuda.Event()
        self.end = cupy.cuda.Event()

    def measure(self, fn: Callable[[], object], reps: int) -> float:
        cp = self.cp
        cp.cuda.get_current_stream().synchronize()
        self.start.record()
        for _ in range(reps):
            fn()
        self.end.record()
        self.end.synchronize()
        return cp.cuda.get_elapsed_time(self.start, self.end) / 1e3 / reps


@dataclass
class TimingPlan:
    rounds: int = 11
    warmup: int = 2  # untimed steps before calibration
    min_time: float = 0.01  # seconds per measurement; reps are raised to reach it
    max_reps: int = 20000
    slow_step: float = 0.25  # an implementation slower than this per step ...
    slow_rounds: int = 3  # ... is timed in at most this many rounds
    settle: float = 0.003  # idle seconds before each measurement (see run_interleaved)


def calibrate(timer, fn: Callable[[], object], plan: TimingPlan) -> int:
    """Number of back-to-back steps whose total reaches ``plan.min_time``."""
    t = timer.measure(fn, 1)
    reps = 1
    for _ in range(3):
        if t * reps >= plan.min_time or reps >= plan.max_reps:
            break
        reps = min(plan.max_reps, max(reps + 1, math.ceil(1.2 * plan.min_time / max(t, 1e-9))))
        t = timer.measure(fn, reps)
    return reps


def run_interleaved(
    impls: list[Impl], timer, plan: TimingPlan, tick: Callable[[float], None] = lambda frac: None
) -> list[Measurement]:
    """Warm up, calibrate and time every implementation in interleaved rounds.

    Before each measurement the harness idles ``plan.settle`` seconds and then runs one untimed
    step: the OpenMP workers of the previously timed library (torch, DeepSpeed and
    fusedupdates bring separate runtimes) stop spinning and go to sleep, and the library about
    to be timed has its own workers awake and its arrays in cache, as in a training loop where
    it is the only optimizer. An implementation whose warm-up steps leave its first parameter
    unchanged is reported as failed ("no-op"), never timed. Implementations slower than
    ``plan.slow_step`` per step skip the settling (it is noise to them), get one warm-up
    step, ``reps = 1`` and at most
    ``plan.slow_rounds`` rounds, so that the unfused float16 NumPy baselines (seconds per step)
    do not dominate the run time.

    ``tick(fraction)`` is called as work completes (fractions sum to 1) for the progress bar.
    An implementation that raises is reported with its error and dropped from later rounds.
    """
    out = [Measurement(i.name, i.family, i.bytes_per_elem, i.note, i.is_ceiling) for i in impls]
    if not impls:
        tick(1.0)
        return out
    units = len(impls) * (plan.rounds + 1)
    alive = [True] * len(impls)
    slow = [False] * len(impls)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for k, impl in enumerate(impls):  # warm-up and calibration
            try:
                before = first_elements(impl.probe) if impl.probe is not None else None
                first = timer.measure(impl.step, 1)
                if first > plan.slow_step:  # slow: one step is warm-up enough, reps = 1
                    out[k].reps, slow[k] = 1, True
                else:
                    for _ in range(plan.warmup - 1):
                        impl.step()
                    out[k].reps = calibrate(timer, impl.step, plan)
                if before is not None and np.array_equal(before, first_elements(impl.probe)):
                    raise RuntimeError("no-op: step() left the parameters unchanged")
            except Exception as e:  # noqa: BLE001 - report and go on
                alive[k] = False
                out[k].error = f"{type(e).__name__}: {e}"[:200]
                print(f"\n[bench] {impl.name} failed: {out[k].error}", file=sys.stderr)
            tick(1 / units)
        for r in range(plan.rounds):
            n = len(impls)
            for j in range(n):
                k = (r + j) % n  # rotate the starting implementation
                m = out[k]
                wanted = alive[k] and not (
                    len(m.times) >= plan.slow_rounds and m.median > plan.slow_step
                )
                if wanted:
                    try:
                        if plan.settle > 0 and not slow[k]:
                            time.sleep(plan.settle)
                            impls[k].step()
                        m.times.append(timer.measure(impls[k].step, m.reps))
                        m.rounds.append(r)
                        slow[k] = slow[k] or m.times[-1] > plan.slow_step
                    except Exception as e:  # noqa: BLE001
                        alive[k] = False
                        m.error = f"{type(e).__name__}: {e}"[:200]
                tick(1 / units)
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


# ------------------------------------------------------------------------- machine load


class LoadMonitor:
    """CPU time used by OTHER processes while we benchmark (Linux /proc/stat; else nan).

    ``other`` is in cores' worth of the machine (0.25 = a quarter of all cores busy elsewhere);
    ``steal`` is the hypervisor's steal time, same unit.
    """

    def __init__(self) -> None:
        import os

        self.os = os
        self.ncpu = os.cpu_count() or 1
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = self._sample()

    def _sample(self):
        try:
            with open("/proc/stat") as f:
                vals = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        steal = vals[7] if len(vals) > 7 else 0
        busy = sum(vals[:8]) - idle - steal
        t = self.os.times()
        return time.perf_counter(), busy / self.hz, steal / self.hz, t.user + t.system

    def restart(self) -> None:
        self._start = self._sample()

    def read(self) -> dict:
        end = self._sample()
        if end is None or self._start is None:
            return {"other": math.nan, "steal": math.nan, "seconds": math.nan}
        seconds = max(end[0] - self._start[0], 1e-9)
        other = (end[1] - self._start[1]) - (end[3] - self._start[3])
        return {
            "other": max(0.0, other / (seconds * self.ncpu)),
            "steal": (end[2] - self._start[2]) / (seconds * self.ncpu),
            "seconds": seconds,
        }


def wait_until_quiet(max_wait: float, threshold: float = 0.05, window: float = 0.5) -> float:
    """Sleep until other processes use < ``threshold`` of the CPU over ``window`` seconds, or
    ``max_wait`` seconds have passed; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        mon = LoadMonitor()
        time.sleep(window)
        if not mon.read()["other"] > threshold:  # nan (no /proc) counts as quiet
            break
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------- progress bar


class Progress:
    """tqdm when installed, else a one-line text bar on stderr; total in configs."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done, self.enabled = total, 0.0, enabled
        self._bar = None
        self._last = 0.0
        self._desc = ""
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total,
                    unit="cfg",
                    dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}]",
                )
            except ImportError:
                self._bar = None
        self._t0 = time.perf_counter()

    def describe(self, text: str) -> None:
        self._desc = text
        if self._bar is not None:
            self._bar.set_description_str(text)
        else:
            self._draw(force=True)

    def tick(self, frac: float) -> None:
        self.done = min(self.total, self.done + frac)
        if self._bar is not None:
            self._bar.update(frac)
        else:
            self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done:5.1f}/{self.total} {now - self._t0:6.0f}s {self._desc:<40}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._draw(force=True)
            sys.stderr.write("\n")
