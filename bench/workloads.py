"""What is benchmarked: the rules (with their memory traffic), the dtypes and the workloads.

A *config* is one (rule, dtype, workload) triple; every implementation in ``peers_*.py`` is
timed on every config it supports, side by side in the same process.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RuleSpec:
    """One benchmarked update rule, as fusedupdates defines it (docs/DESIGN.md)."""

    name: str  # CLI / report name
    base: str  # fusedupdates factory and functional name of the base rule
    states: tuple[str, ...]  # fusedupdates state names, velocity last when momentum
    momentum: bool  # wrapped with fu.apply_momentum
    hyper: dict = field(default_factory=dict)  # hyperparameters of the base rule
    needs_step: bool = False  # functional takes step=t
    mu: float = 0.9  # momentum of the modifier

    @property
    def n_states(self) -> int:
        return len(self.states)


RULES: dict[str, RuleSpec] = {
    "adam": RuleSpec(
        "adam",
        "adam",
        ("m", "v"),
        False,
        {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
        needs_step=True,
    ),
    "amsgrad": RuleSpec(
        "amsgrad",
        "amsgrad",
        ("m", "v", "v_hat"),
        False,
        {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
        needs_step=True,
    ),
    "rmsprop_momentum": RuleSpec(
        "rmsprop_momentum",
        "rmsprop",
        ("accu", "velocity"),
        True,
        {"learning_rate": 1e-3, "rho": 0.9, "epsilon": 1e-6},
    ),
    "sgd": RuleSpec("sgd", "sgd", (), False, {"learning_rate": 1e-3}),
}
RULE_ALIASES = {"rmsprop+momentum": "rmsprop_momentum", "rmsprop": "rmsprop_momentum"}

DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}


def state_dtype(dtype: np.dtype) -> np.dtype:
    """fusedupdates keeps float32 state for float16 params (DESIGN.md, Dtypes)."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def traffic(rule: RuleSpec, param_bytes: int, state_bytes: int) -> tuple[int, int]:
    """(bytes read, bytes written) per element: read p, g and every state; write p and states.

    Every written array is also read (in-place update), so there is no extra write-allocate
    traffic to account for.
    """
    read = 2 * param_bytes + rule.n_states * state_bytes
    write = param_bytes + rule.n_states * state_bytes
    return read, write


def bytes_per_elem(rule: RuleSpec, dtype: np.dtype, state: np.dtype | None = None) -> int:
    """Minimum bytes one update must move per element (28 for float32 adam)."""
    state = state_dtype(dtype) if state is None else np.dtype(state)
    r, w = traffic(rule, np.dtype(dtype).itemsize, state.itemsize)
    return r + w


# ----------------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """A list of parameter shapes updated by one step()."""

    name: str  # "4K", "16M", "model-10M"
    shapes: tuple[tuple[int, ...], ...]
    is_model: bool = False

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def n_tensors(self) -> int:
        return len(self.shapes)

    @property
    def label(self) -> str:
        if self.is_model:
            return f"{self.name} ({self.n_tensors} tensors)"
        return self.name


def transformer_shapes(d: int, layers: int, vocab: int, ctx: int) -> list[tuple[int, ...]]:
    """Parameter shapes of a GPT-style transformer (12 tensors per block, + 4 outside)."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [
            (d,),
            (d,),  # ln1 weight, bias
            (3 * d, d),
            (3 * d,),  # qkv
            (d, d),
            (d,),  # attention output projection
            (d,),
            (d,),  # ln2
            (4 * d, d),
            (4 * d,),  # mlp fc1
            (d, 4 * d),
            (d,),
        ]  # mlp fc2
    shapes += [(d,), (d,)]  # final layer norm
    return shapes


# name -> (d_model, layers, vocab, context)
MODELS = {
    "model-tiny": (32, 2, 256, 64),  # quick mode: 28 tensors, ~35K elements
    "model-10M": (208, 16, 8192, 512),  # CPU: 196 tensors, ~10.1M elements
    "model-130M": (768, 16, 32000, 1024),  # GPU: 196 tensors, ~138M elements
}

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_workload(token: str, device: str = "cpu") -> Workload:
    """'4K' -> one tensor of 4096 elements; 'model' -> the device's model preset."""
    tok = token.strip()
    if tok == "model":
        tok = "model-10M" if device == "cpu" else "model-130M"
    if tok in MODELS:
        return Workload(tok, tuple(transformer_shapes(*MODELS[tok])), is_model=True)
    m = re.fullmatch(r"(\d+)([KMG]?)", tok.upper())
    if not m:
        raise ValueError(
            f"unknown size {token!r}: use e.g. 4K, 64K, 1M, 16M, 1000, model, "
            f"or one of {sorted(MODELS)}"
        )
    n = int(m.group(1)) * _SUFFIX[m.group(2)]
    if n < 1:
        raise ValueError(f"size must be positive, got {token!r}")
    return Workload(tok.upper(), ((n,),))


def parse_list(text: str, known: dict | None = None, aliases: dict | None = None) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if aliases:
        items = [aliases.get(t, t) for t in items]
    if known is not None:
        bad = [t for t in items if t not in known]
        if bad:
            raise ValueError(f"unknown {bad}; choose from {sorted(known)}")
    return items


DEFAULT_SIZES = {"cpu": "4K,64K,1M,16M,model", "cuda": "4K,64K,1M,16M,model"}
QUICK_SIZES = "1K,4K,model-tiny"

# ------------------------------------------------------------------------------------ the data


class DataCache:
    """Deterministic params/grads for a (workload, dtype); every implementation gets copies."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._key = None
        self._val: tuple[list[np.ndarray], list[np.ndarray]] | None = None

    def base(self, wl: Workload, dtype: np.dtype) -> tuple[list[np.ndarray], list[np.ndarray]]:
        key = (wl.name, np.dtype(dtype).str)
        if key != self._key:
            self._val = None  # free the previous workload first
            rng = np.random.default_rng(self.seed)
            ps, gs = [], []
            for shape in wl.shapes:
                ps.append((rng.standard_normal(shape, dtype=np.float32) * 0.1).astype(dtype))
                gs.append((rng.standard_normal(shape, dtype=np.float32) * 1e-2).astype(dtype))
            self._key, self._val = key, (ps, gs)
        return self._val

    def copies(self, wl: Workload, dtype: np.dtype) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Fresh, separately allocated copies of the params and grads."""
        ps, gs = self.base(wl, dtype)
        return [p.copy() for p in ps], [g.copy() for g in gs]

    def clear(self) -> None:
        self._key, self._val = None, None
