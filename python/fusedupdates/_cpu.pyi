"""Type stub of the native OpenMP module (csrc/bindings/cpu_module.cpp, cpu_stepper.h).

Internal: the public API is the fusedupdates package.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

HYPER_FIELDS: str  # "learning_rate, beta1, beta2, epsilon, momentum, weight_decay, ..."
CLIP_EPSILON: float
QUANT_BLOCK: int  # elements per float32 block scale of 8-bit compact state

class Stepper:
    """The native object behind one updater: validated params and states, t, and each
    parameter group's hyperparameters."""

    def __init__(
        self,
        rule: int,
        params: Sequence[np.ndarray],
        states: Sequence[Sequence[np.ndarray]],
        state_names: Sequence[str],
        groups: Sequence[int] | None = None,
        *,
        stochastic_rounding: bool = False,
        stochastic_state_rounding: bool = False,
        scales: Sequence[Sequence[np.ndarray | None]] | None = None,
    ) -> None: ...
    def with_momentum(
        self,
        velocity: Sequence[np.ndarray | None],
        nesterov: bool,
        *,
        velocity_scales: Sequence[np.ndarray | None] | None = None,
    ) -> Stepper: ...
    def step(
        self, grads: Sequence[np.ndarray | None], max_norm: float | None = None
    ) -> float | None: ...
    def set_hyperparameters(self, *, group: int | None = None, **fields: float) -> None: ...
    def hyperparameters(self, group: int = 0) -> dict[str, float]: ...
    t: int
    @property
    def has_momentum(self) -> bool: ...
    @property
    def num_groups(self) -> int: ...
    def __len__(self) -> int: ...

def total_norm_constraint(
    xs: Sequence[np.ndarray], out: Sequence[np.ndarray], max_norm: float, epsilon: float
) -> float: ...
def norm_constraint(
    x: np.ndarray,
    out: np.ndarray,
    outer: int,
    reduce: int,
    inner: int,
    max_norm: float,
    epsilon: float,
) -> None: ...
def quantize_blockwise(
    x: np.ndarray, codes: np.ndarray, absmax: np.ndarray, signed: bool
) -> None: ...
def dequantize_blockwise(
    codes: np.ndarray, absmax: np.ndarray, out: np.ndarray, signed: bool
) -> None: ...
def bandwidth_probe(rw: Sequence[np.ndarray], ro: Sequence[np.ndarray]) -> None: ...
def simd() -> str: ...
def openmp() -> bool: ...
def num_threads() -> int: ...
def max_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def __getattr__(name: str) -> Any: ...
