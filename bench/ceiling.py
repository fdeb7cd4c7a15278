"""Memory-bandwidth ceilings, measured in the same run as the implementations.

A ceiling provider streams the SAME read/write pattern as a rule (read p, g and every state;
write p and every state; float32 state for float16 params) over one flat buffer of the
workload's total element count, with almost no arithmetic. Its time is what a perfect fused
kernel could reach; "% of ceiling" in the report is an implementation's GB/s over the best
ceiling GB/s of the same config.

Providers are pluggable (``register``); the CPU ones, best first:

``fu``      ``fusedupdates._cpu.bandwidth_probe(rw, ro)``: the library's own OpenMP loop, same
            thread count and vector width as its rule kernels. All arrays must share one dtype,
            so a float16 rule is probed with float32 stand-ins (same stream counts, its GB/s
            is used).
``native``  ``bench/_stream.c`` compiled at run time with the system C compiler
            (``-O3 -march=native -fopenmp``) and called through ctypes; exact mixed-dtype
            pattern.
``numpy``   the same chunked pattern in NumPy on a thread pool: a fallback that needs nothing
            but under-estimates the ceiling (it moves each chunk through L2 several times).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .peers_numpy import shared_runner
from .timing import Impl
from .workloads import RuleSpec, state_dtype

STREAM_C = Path(__file__).with_name("_stream.c")


def pattern(rule: RuleSpec, dtype) -> tuple[list[np.dtype], list[np.dtype]]:
    """dtypes of the (read-and-written, read-only) streams of ``rule``: ([p, *states], [g])."""
    dt = np.dtype(dtype)
    return [dt] + [state_dtype(dt)] * rule.n_states, [dt]


def _alloc(dtypes, numel):
    return [np.ones(numel, d) for d in dtypes]


def _bytes(rw, ro) -> int:
    return sum(2 * a.itemsize for a in rw) + sum(a.itemsize for a in ro)


class CeilingProvider:
    name = "base"
    label = "base"

    def available(self) -> bool:
        return False

    def make(self, rule: RuleSpec, dtype, numel: int, threads: int) -> Impl | None:
        raise NotImplementedError


class FuStream(CeilingProvider):
    name, label = "fu", "ceiling: fu._cpu.bandwidth_probe"

    def _fn(self):
        try:
            from fusedupdates import _cpu

            return getattr(_cpu, "bandwidth_probe", None)
        except Exception:  # noqa: BLE001 - core not built
            return None

    def available(self) -> bool:
        return self._fn() is not None

    def make(self, rule, dtype, numel, threads):
        fn = self._fn()
        rw_t, ro_t = pattern(rule, dtype)
        note = ""
        if len(set(rw_t + ro_t)) > 1:  # one dtype only: float32 stand-ins
            rw_t, ro_t = [np.dtype(np.float32)] * len(rw_t), [np.dtype(np.float32)] * len(ro_t)
            note = "float32 stand-in streams (bandwidth_probe() takes one dtype)"
        rw, ro = _alloc(rw_t, numel), _alloc(ro_t, numel)
        return Impl(
            self.label,
            "ceiling",
            lambda: fn(rw, ro),
            _bytes(rw, ro),
            note=note,
            is_ceiling=True,
            keepalive=(rw, ro),
        )


class NativeStream(CeilingProvider):
    name, label = "native", "ceiling: native C stream"
    _lib = None
    _tried = False
    error = ""

    @classmethod
    def lib(cls):
        if cls._tried:
            return cls._lib
        cls._tried = True
        cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
        if not cc:
            cls.error = "no C compiler"
            return None
        src = STREAM_C.read_bytes()
        flags = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]
        key = hashlib.sha1(src + " ".join([cc, *flags]).encode()).hexdigest()[:12]
        cache_root = os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
        cache = Path(cache_root) / "fusedupdates-bench"
        so = cache / f"stream-{key}.so"
        try:
            if not so.exists():
                cache.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / so.name
                    subprocess.run(
                        [cc, *flags, "-o", str(out), str(STREAM_C)],
                        check=True,
                        capture_output=True,
                        timeout=120,
                    )
                    shutil.move(str(out), so)
            lib = ctypes.CDLL(str(so))
            f = lib.fub_stream
            f.restype = None
            f.argtypes = [
                ctypes.c_int64,
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_int,
            ]
            cls._lib = lib
        except Exception as e:  # noqa: BLE001 - no compiler, no OpenMP, ...
            cls.error = f"{type(e).__name__}: {e}"[:200]
            print(f"[bench] native stream kernel unavailable: {cls.error}", file=sys.stderr)
        return cls._lib

    def available(self) -> bool:
        return self.lib() is not None

    def make(self, rule, dtype, numel, threads):
        f = self.lib().fub_stream
        rw_t, ro_t = pattern(rule, dtype)
        rw, ro = _alloc(rw_t, numel), _alloc(ro_t, numel)

        def ptrs(arrs):
            return (ctypes.c_void_p * max(1, len(arrs)))(*[a.ctypes.data for a in arrs])

        def types(arrs):
            return (ctypes.c_int * max(1, len(arrs)))(
                *[0 if a.dtype == np.float32 else 1 for a in arrs]
            )

        args = (
            ctypes.c_int64(numel),
            len(rw),
            ptrs(rw),
            types(rw),
            len(ro),
            ptrs(ro),
            types(ro),
            int(threads),
        )
        return Impl(
            self.label,
            "ceiling",
            lambda: f(*args),
            _bytes(rw, ro),
            is_ceiling=True,
            keepalive=(rw, ro, args),
        )


class NumpyStream(CeilingProvider):
    name, label = "numpy", "ceiling: numpy stream"

    def available(self) -> bool:
        return True

    def make(self, rule, dtype, numel, threads):
        rw_t, ro_t = pattern(rule, dtype)
        rw, ro = _alloc(rw_t, numel), _alloc(ro_t, numel)
        runner = shared_runner(threads)
        size = min(runner.chunk, numel)
        acc = [np.empty(size, np.float32) for _ in range(runner.threads)]
        tmp = [np.empty(size, np.float32) for _ in range(runner.threads)]

        def body(w, lo, hi):
            a, t = acc[w][: hi - lo], tmp[w][: hi - lo]
            a[...] = 0.0
            for x in ro:
                np.add(a, x[lo:hi], out=a)
            np.multiply(a, 1e-7, out=t)
            for y in rw:
                np.add(y[lo:hi], t, out=y[lo:hi])

        return Impl(
            self.label,
            "ceiling",
            lambda: runner.run(numel, body),
            _bytes(rw, ro),
            note="under-estimates: NumPy passes",
            is_ceiling=True,
            keepalive=(rw, ro, acc, tmp),
        )


PROVIDERS: dict[str, CeilingProvider] = {}


def register(provider: CeilingProvider) -> None:
    """Add (or replace) a ceiling provider, e.g. one backed by a new native kernel."""
    PROVIDERS[provider.name] = provider


for _p in (FuStream(), NativeStream(), NumpyStream()):
    register(_p)


def select(choice: str) -> list[CeilingProvider]:
    """'auto': fu and native when available, numpy only if neither; 'all'; or a name list."""
    if choice == "none":
        return []
    if choice in ("auto", "all"):
        names = list(PROVIDERS)
    else:
        names = [c.strip() for c in choice.split(",") if c.strip()]
        bad = [n for n in names if n not in PROVIDERS]
        if bad:
            raise ValueError(f"unknown ceiling {bad}; choose from {sorted(PROVIDERS)}")
    chosen = [PROVIDERS[n] for n in names if PROVIDERS[n].available()]
    if choice == "auto":
        exact = [p for p in chosen if p.name != "numpy"]
        chosen = exact or [p for p in chosen if p.name == "numpy"]
    return chosen
