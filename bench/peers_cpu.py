"""CPU implementations: fusedupdates (updater, functional), its NumPy reference, the in-place
NumPy version, torch.optim (for-loop, foreach, fused) and DeepSpeedCPUAdam.

Every implementation gets its own freshly allocated copies of the same params and grads, and
its own zero state, so that all of them can be set up at once and timed interleaved.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .peers_numpy import make_numpy_inplace
from .timing import Impl
from .workloads import DataCache, RuleSpec, Workload, bytes_per_elem, state_dtype

CPU_PEERS = ("fu", "reference", "numpy", "torch", "deepspeed")
REF_PATH = Path(__file__).resolve().parents[1] / "python" / "fusedupdates" / "reference.py"


@dataclass
class CpuEnv:
    """The importable peers, loaded once per run."""

    threads: int
    fu: object = None
    ref: object = None
    ref_origin: str = ""
    torch: object = None
    ds_adam: object = None
    numpy_inplace: bool = False
    use_torch: bool = False
    versions: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # lines for the report header


def _load_reference(env: CpuEnv):
    try:
        import fusedupdates.reference as ref

        env.ref, env.ref_origin = ref, "fusedupdates.reference"
        return
    except Exception:  # noqa: BLE001 - core not built / not installed
        pass
    if REF_PATH.exists():  # the source tree's copy (pure Python)
        spec = importlib.util.spec_from_file_location("_bench_fu_reference", REF_PATH)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        env.ref, env.ref_origin = mod, f"{REF_PATH.parent.name}/reference.py from the source tree"


def load_cpu_env(peers: set[str], threads: int | None) -> CpuEnv:
    """Import what is installed among ``peers``; set every library to the same thread count."""
    fu = None
    if "fu" in peers or "reference" in peers:
        try:
            import fusedupdates as fu
        except Exception as e:  # noqa: BLE001
            print(
                f"[bench] fusedupdates not importable ({type(e).__name__}: {e}); "
                "its rows are skipped",
                file=sys.stderr,
            )
            fu = None
    if threads is None:
        threads = fu.get_num_threads() if fu is not None else _default_threads()
    env = CpuEnv(threads=threads, numpy_inplace="numpy" in peers, use_torch="torch" in peers)
    if fu is not None:
        fu.set_num_threads(threads)
        env.versions["fusedupdates"] = getattr(fu, "__version__", "?")
        try:
            info = fu.build_info()
            env.notes.append(f"fusedupdates build_info: {info}")
        except Exception:  # noqa: BLE001
            pass
        if "fu" in peers:
            env.fu = fu
    if "reference" in peers:
        _load_reference(env)
    if "torch" in peers or "deepspeed" in peers:
        try:
            import torch

            torch.set_num_threads(threads)
            env.torch = torch
            env.versions["torch"] = torch.__version__
        except ImportError:
            pass
    if "deepspeed" in peers and env.torch is not None:
        t0 = time.perf_counter()
        try:
            import deepspeed
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            # The first optimizer JIT-builds (or loads) the cpu_adam op: do it here, untimed.
            p = env.torch.nn.Parameter(env.torch.zeros(8))
            DeepSpeedCPUAdam([p])
            env.ds_adam = DeepSpeedCPUAdam
            env.versions["deepspeed"] = deepspeed.__version__
            env.notes.append(
                f"DeepSpeed import + cpu_adam op load/build: {time.perf_counter() - t0:.1f} s"
            )
        except Exception as e:  # noqa: BLE001 - not installed, no compiler, ...
            print(f"[bench] DeepSpeedCPUAdam unavailable: {type(e).__name__}: {e}", file=sys.stderr)
    env.versions["numpy"] = np.__version__
    return env


def _default_threads() -> int:
    import os

    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ------------------------------------------------------------------------ fusedupdates & ref


def _one(xs: list):
    """Single-tensor workloads pass bare arrays to the functional API, lists otherwise."""
    return xs[0] if len(xs) == 1 else xs


def functional_call(mod, rule: RuleSpec, ps, gs, states, t: int):
    """``mod.<rule>(params, grads, *states, ...)`` with the DESIGN.md functional signature."""
    kw = dict(rule.hyper)
    if rule.needs_step:
        kw["step"] = t
    fn = getattr(mod, rule.base)
    if rule.momentum:
        *inner, vel = states
        return fn(ps, gs, *inner, velocity=vel, momentum=rule.mu, **kw)
    return fn(ps, gs, *states, **kw)


def _functional_impl(name, family, mod, rule, dtype, ps, gs) -> Impl:
    sdt = state_dtype(dtype)
    states = [_one([np.zeros(p.shape, sdt) for p in ps]) for _ in rule.states]
    p1, g1 = _one(ps), _one(gs)
    t = [0]

    def step():
        t[0] += 1
        functional_call(mod, rule, p1, g1, states, t[0])

    return Impl(
        name, family, step, bytes_per_elem(rule, dtype), keepalive=(ps, gs, states), probe=ps[0]
    )


def _updater_impl(fu, rule, dtype, ps, gs) -> Impl:
    upd = getattr(fu, rule.base)(ps, **rule.hyper)
    if rule.momentum:
        upd = fu.apply_momentum(upd, momentum=rule.mu)
    step = upd.step
    return Impl(
        "fu.updater step()",
        "fu",
        lambda: step(gs),
        bytes_per_elem(rule, dtype),
        keepalive=(ps, gs, upd),
        probe=ps[0],
    )


# ------------------------------------------------------------------------------------- torch


def torch_optimizer(torch, rule: RuleSpec):
    """(class, kwargs) of the torch.optim equivalent of ``rule`` (same memory traffic)."""
    hp = rule.hyper
    if rule.base in ("adam", "amsgrad"):
        return torch.optim.Adam, dict(
            lr=hp["learning_rate"],
            betas=(hp["beta1"], hp["beta2"]),
            eps=hp["epsilon"],
            amsgrad=rule.base == "amsgrad",
        )
    if rule.base == "rmsprop" and rule.momentum:
        return torch.optim.RMSprop, dict(
            lr=hp["learning_rate"], alpha=hp["rho"], eps=hp["epsilon"], momentum=rule.mu
        )
    if rule.base == "sgd" and not rule.momentum:
        return torch.optim.SGD, dict(lr=hp["learning_rate"])
    return None, None


def torch_impls(
    torch,
    rule,
    dtype,
    wl: Workload,
    data: DataCache,
    device: str = "cpu",
    modes=("for-loop", "foreach", "fused"),
):
    """One Impl per supported torch.optim mode; (impls, skip notes)."""
    cls, kw = torch_optimizer(torch, rule)
    impls, skips = [], []
    if cls is None:
        return impls, [f"torch.optim: no equivalent of {rule.name}"]
    has_fused = "fused" in inspect.signature(cls.__init__).parameters
    # torch keeps the state in the param dtype (float16 state for float16 params).
    nbytes = bytes_per_elem(rule, dtype, state=dtype)
    note = "float16 state" if np.dtype(dtype) == np.float16 else ""
    for mode in modes:
        if mode == "fused" and not has_fused:
            skips.append(f"torch {mode}: {cls.__name__} has no fused implementation")
            continue
        ps_np, gs_np = data.copies(wl, dtype)
        ps = [torch.nn.Parameter(torch.from_numpy(p).to(device)) for p in ps_np]
        for p, g in zip(ps, gs_np):
            p.grad = torch.from_numpy(g).to(device)
        flag = {
            "for-loop": dict(foreach=False),
            "foreach": dict(foreach=True),
            "fused": dict(fused=True),
        }[mode]
        try:
            opt = cls(ps, **kw, **flag)
        except Exception as e:  # noqa: BLE001 - e.g. fused not supported for this dtype
            skips.append(f"torch {mode}: {type(e).__name__}: {e}"[:160])
            continue
        impls.append(
            Impl(
                f"torch {mode}",
                "torch",
                opt.step,
                nbytes,
                note=note,
                keepalive=(ps, opt),
                probe=ps[0],
            )
        )
    return impls, skips


def deepspeed_impl(env: CpuEnv, rule, dtype, wl, data):
    if rule.base != "adam":
        return None, f"DeepSpeedCPUAdam: adam only (no {rule.name})"
    torch = env.torch
    ps_np, gs_np = data.copies(wl, dtype)
    ps = [torch.nn.Parameter(torch.from_numpy(p)) for p in ps_np]
    for p, g in zip(ps, gs_np):
        p.grad = torch.from_numpy(g)
    hp = rule.hyper
    opt = env.ds_adam(
        ps,
        lr=hp["learning_rate"],
        betas=(hp["beta1"], hp["beta2"]),
        eps=hp["epsilon"],
        weight_decay=0.0,
        bias_correction=True,
        adamw_mode=False,
    )
    # float32 state for float16 params (fp32_optimizer_states): the same bytes as fusedupdates
    return Impl(
        "DeepSpeedCPUAdam",
        "deepspeed",
        opt.step,
        bytes_per_elem(rule, dtype),
        keepalive=(ps, opt),
        probe=ps[0],
    ), ""


# --------------------------------------------------------------------------------- assemble


def cpu_impls(env: CpuEnv, rule: RuleSpec, dtype, wl: Workload, data: DataCache):
    """All CPU implementations for one config: (impls, skip notes)."""
    impls, skips = [], []
    if env.fu is not None:
        impls.append(_updater_impl(env.fu, rule, dtype, *data.copies(wl, dtype)))
        impls.append(
            _functional_impl(
                "fu.functional", "fu", env.fu.functional, rule, dtype, *data.copies(wl, dtype)
            )
        )
    if env.ref is not None:
        impls.append(
            _functional_impl(
                "fu.reference (NumPy)", "reference", env.ref, rule, dtype, *data.copies(wl, dtype)
            )
        )
    if env.numpy_inplace:
        impls.append(make_numpy_inplace(rule, dtype, *data.copies(wl, dtype), env.threads))
    if env.torch is not None and env.use_torch:
        got, why = torch_impls(env.torch, rule, dtype, wl, data)
        impls += got
        skips += why
    if env.ds_adam is not None:
        impl, why = deepspeed_impl(env, rule, dtype, wl, data)
        if impl is not None:
            impls.append(impl)
        if why:
            skips.append(why)
    return impls, skips
