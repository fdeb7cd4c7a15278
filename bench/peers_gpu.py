"""GPU implementations (``--device cuda``; needs CuPy and a GPU): fusedupdates on CuPy arrays,
naive CuPy array expressions, a per-tensor fused ``cupy.ElementwiseKernel``, torch.optim on
CUDA (foreach, fused), and two streaming ceilings: a CuPy kernel and fusedupdates' own
``bandwidth_probe`` (same packs and grid-stride loop as its update kernel). Timed with CuPy
events (``timing.CudaEventTimer``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

from .peers_cpu import functional_call, torch_impls
from .timing import Impl
from .workloads import DataCache, RuleSpec, Workload, bytes_per_elem, state_dtype

GPU_PEERS = ("fu", "cupy", "torch")


@dataclass
class GpuEnv:
    cp: object
    fu: object = None
    torch: object = None
    versions: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    threads: int = 0  # unused on the GPU; keeps the report header uniform
    kernels: dict = field(default_factory=dict)


def gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001
        return False


def load_gpu_env(peers: set[str]) -> GpuEnv:
    import cupy as cp

    env = GpuEnv(cp=cp)
    env.versions["cupy"] = cp.__version__
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    env.notes.append(f"GPU: {name}, {props['totalGlobalMem'] / 2**30:.0f} GiB")
    if "fu" in peers:
        try:
            import fusedupdates as fu

            if fu.build_info().get("cuda"):
                env.fu = fu
                env.versions["fusedupdates"] = getattr(fu, "__version__", "?")
            else:
                print("[bench] fusedupdates was built without CUDA", file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            print(f"[bench] fusedupdates not importable: {e}", file=sys.stderr)
    if "torch" in peers:
        try:
            import torch

            if torch.cuda.is_available():
                env.torch = torch
                env.versions["torch"] = torch.__version__
        except ImportError:
            pass
    return env


def gpu_name_tag(env: GpuEnv) -> str:
    cp = env.cp
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    words = [w for w in name.lower().replace("nvidia", "").split() if w]
    return "gpu-" + "-".join(words[:2]) if words else "gpu"


# ------------------------------------------------------------------------- naive CuPy formula


def naive_step(cp, rule: RuleSpec, p, g, states, t: int) -> None:
    """Straight array expressions, one kernel (and temporary) per operator."""
    hp = rule.hyper
    if rule.base in ("adam", "amsgrad"):
        b1, b2, eps = hp["beta1"], hp["beta2"], hp["epsilon"]
        a_t = hp["learning_rate"] * math.sqrt(1 - b2**t) / (1 - b1**t)
        m, v = states[0], states[1]
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        den = v
        if rule.base == "amsgrad":
            states[2][...] = cp.maximum(states[2], v)
            den = states[2]
        p[...] = p - a_t * m / (cp.sqrt(den) + eps)
    elif rule.base == "rmsprop":
        a, vel = states
        a[...] = hp["rho"] * a + (1 - hp["rho"]) * g * g
        vel[...] = rule.mu * vel - hp["learning_rate"] * g / cp.sqrt(a + hp["epsilon"])
        p[...] = p + vel
    elif rule.base == "sgd":
        p[...] = p - hp["learning_rate"] * g


# ------------------------------------------------------------------ fused ElementwiseKernel

_EWK = {
    "adam": (
        "T g, float32 a_t, float32 b1, float32 b2, float32 eps",
        "T p, float32 m, float32 v",
        """float gf = (float)g;
                float mm = b1 * m + (1.0f - b1) * gf;
                float vv = b2 * v + (1.0f - b2) * gf * gf;
                m = mm; v = vv;
                p = (T)((float)p - a_t * mm / (sqrtf(vv) + eps));""",
    ),
    "amsgrad": (
        "T g, float32 a_t, float32 b1, float32 b2, float32 eps",
        "T p, float32 m, float32 v, float32 vh",
        """float gf = (float)g;
                   float mm = b1 * m + (1.0f - b1) * gf;
                   float vv = b2 * v + (1.0f - b2) * gf * gf;
                   float hh = fmaxf(vh, vv);
                   m = mm; v = vv; vh = hh;
                   p = (T)((float)p - a_t * mm / (sqrtf(hh) + eps));""",
    ),
    "rmsprop_momentum": (
        "T g, float32 lr, float32 rho, float32 eps, float32 mu",
        "T p, float32 a, float32 vel",
        """float gf = (float)g;
                            float aa = rho * a + (1.0f - rho) * gf * gf;
                            float vv = mu * vel - lr * gf / sqrtf(aa + eps);
                            a = aa; vel = vv;
                            p = (T)((float)p + vv);""",
    ),
    "sgd": ("T g, float32 lr", "T p", "p = (T)((float)p - lr * (float)g);"),
}


def _ewk(env: GpuEnv, rule: RuleSpec):
    if rule.name not in env.kernels:
        ins, outs, body = _EWK[rule.name]
        env.kernels[rule.name] = env.cp.ElementwiseKernel(ins, outs, body, f"fub_{rule.name}")
    return env.kernels[rule.name]


def _ewk_scalars(rule: RuleSpec, t: int) -> tuple:
    hp, f = rule.hyper, np.float32
    if rule.base in ("adam", "amsgrad"):
        a_t = hp["learning_rate"] * math.sqrt(1 - hp["beta2"] ** t) / (1 - hp["beta1"] ** t)
        return f(a_t), f(hp["beta1"]), f(hp["beta2"]), f(hp["epsilon"])
    if rule.base == "rmsprop":
        return f(hp["learning_rate"]), f(hp["rho"]), f(hp["epsilon"]), f(rule.mu)
    return (f(hp["learning_rate"]),)


# --------------------------------------------------------------------------------- assemble


def _one(xs: list):
    """Single-tensor workloads pass bare arrays to the functional API, lists otherwise."""
    return xs[0] if len(xs) == 1 else xs


def _arrays(env, wl, dtype, data, rule):
    cp = env.cp
    ps_np, gs_np = data.base(wl, dtype)
    ps = [cp.asarray(p) for p in ps_np]
    gs = [cp.asarray(g) for g in gs_np]
    states = [[cp.zeros(p.shape, state_dtype(dtype)) for p in ps] for _ in rule.states]
    return ps, gs, states


def gpu_impls(env: GpuEnv, rule: RuleSpec, dtype, wl: Workload, data: DataCache, peers):
    impls, skips = [], []
    nbytes = bytes_per_elem(rule, dtype)
    if env.fu is not None:
        ps, gs, _ = _arrays(env, wl, dtype, data, rule)
        upd = getattr(env.fu, rule.base)(ps, **rule.hyper)
        if rule.momentum:
            upd = env.fu.apply_momentum(upd, momentum=rule.mu)
        impls.append(
            Impl(
                "fu.updater step()",
                "fu",
                lambda u=upd, g=gs: u.step(g),
                nbytes,
                keepalive=(ps, gs, upd),
                probe=ps[0],
            )
        )
        ps, gs, states = _arrays(env, wl, dtype, data, rule)
        args = (_one(ps), _one(gs), [_one(s) for s in states])
        tf = [0]

        def fstep(args=args, tf=tf):
            tf[0] += 1
            functional_call(env.fu.functional, rule, *args, tf[0])

        impls.append(Impl("fu.functional", "fu", fstep, nbytes, keepalive=args, probe=ps[0]))
        impls.append(gpu_fu_ceiling(env, rule, dtype, wl.numel))
    if "cupy" in peers:
        ps, gs, states = _arrays(env, wl, dtype, data, rule)
        tn = [0]

        def nstep(ps=ps, gs=gs, states=states, tn=tn):
            tn[0] += 1
            for i, (p, g) in enumerate(zip(ps, gs)):
                naive_step(env.cp, rule, p, g, [s[i] for s in states], tn[0])

        impls.append(
            Impl(
                "cupy naive expressions",
                "cupy",
                nstep,
                nbytes,
                keepalive=(ps, gs, states),
                probe=ps[0],
            )
        )
        ps, gs, states = _arrays(env, wl, dtype, data, rule)
        kern = _ewk(env, rule)
        te = [0]

        def estep(ps=ps, gs=gs, states=states, te=te):
            te[0] += 1
            sc = _ewk_scalars(rule, te[0])
            for i, (p, g) in enumerate(zip(ps, gs)):
                kern(g, *sc, p, *[s[i] for s in states])

        impls.append(
            Impl(
                "cupy ElementwiseKernel per tensor",
                "cupy",
                estep,
                nbytes,
                keepalive=(ps, gs, states),
                probe=ps[0],
            )
        )
    if env.torch is not None:
        got, why = torch_impls(
            env.torch, rule, dtype, wl, data, device="cuda", modes=("foreach", "fused")
        )
        impls += got
        skips += why
    return impls, skips


def gpu_ceiling(env: GpuEnv, rule: RuleSpec, dtype, numel: int) -> Impl:
    """ElementwiseKernel reading p, g, states and writing p, states: one flat buffer."""
    cp = env.cp
    key = ("stream", rule.name)
    names = ["p"] + [f"s{k}" for k in range(rule.n_states)]
    if key not in env.kernels:
        outs = ", ".join(["T p"] + [f"float32 {n}" for n in names[1:]])
        total = " + ".join(["(float)g", "(float)p"] + names[1:])
        body = f"float in = 1e-7f * ({total});\np = (T)((float)p + in);\n"
        body += "".join(f"{n} = {n} + in;\n" for n in names[1:])
        env.kernels[key] = cp.ElementwiseKernel("T g", outs, body, f"fub_stream_{rule.name}")
    kern = env.kernels[key]
    g = cp.ones(numel, dtype)
    rw = [cp.ones(numel, dtype)] + [
        cp.ones(numel, state_dtype(dtype)) for _ in range(rule.n_states)
    ]
    return Impl(
        "ceiling: cupy stream kernel",
        "ceiling",
        lambda: kern(g, *rw),
        bytes_per_elem(rule, dtype),
        is_ceiling=True,
        keepalive=(g, rw),
    )


def gpu_fu_ceiling(env: GpuEnv, rule: RuleSpec, dtype, numel: int) -> Impl:
    """fusedupdates' bandwidth probe: the rule's streams (p and states read and written, g
    read) with the update kernel's loads and stores but no math. One dtype for every array,
    so a float16 rule is probed with float32 stand-ins (its GB/s is what counts)."""
    from fusedupdates import _cuda_backend

    cp = env.cp
    dt = np.dtype(dtype)
    rw_t = [dt] + [state_dtype(dt)] * rule.n_states
    note = ""
    if len(set(rw_t)) > 1:
        rw_t, dt = [np.dtype(np.float32)] * len(rw_t), np.dtype(np.float32)
        note = "float32 stand-in streams (bandwidth_probe() takes one dtype)"
    rw = [cp.ones(numel, t) for t in rw_t]
    ro = [cp.ones(numel, dt)]
    nbytes = sum(2 * a.itemsize for a in rw) + ro[0].itemsize
    return Impl(
        "ceiling: fu._cuda.bandwidth_probe",
        "ceiling",
        lambda: _cuda_backend.bandwidth_probe(rw, ro),
        nbytes,
        note=note,
        is_ceiling=True,
        keepalive=(rw, ro),
    )
