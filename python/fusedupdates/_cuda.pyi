"""Type stub of the native CUDA backend ``fusedupdates._cuda`` (csrc/bindings/cuda_module.cpp).

Internal: use the public API (``fusedupdates``) with CuPy arrays. Arrays are ``cupy.ndarray``
or objects exposing ``__cuda_array_interface__`` and ``.device.id``.
"""

from collections.abc import Callable, Sequence
from typing import Any

HYPER_FIELDS: str  # "learning_rate, beta1, ...": the fields set_hyperparameters accepts
CLIP_EPSILON: float  # the epsilon of step(grads, max_norm=...)
NORM_BUFFER_DOUBLES: int  # float64s of a norm buffer: [norm, multiplier, flags, partials...]
NORM_PARTIALS: int  # blocks of the deterministic sum of squares
RUNTIME_VERSION: int  # CUDART_VERSION the module was built with, e.g. 13000

class Stepper:
    """The native object behind one updater on CUDA arrays: validated params and states, ``t``,
    the hyperparameters and every device resource. ``t`` counts the updates applied, CUDA graph
    replays included."""

    def __init__(
        self,
        rule: int,
        params: Sequence[Any],
        states: Sequence[Sequence[Any]],
        state_names: Sequence[str],
        groups: Sequence[int] | None = None,
        *,
        functional: bool = False,
    ) -> None: ...
    def with_momentum(self, velocity: Sequence[Any | None], nesterov: bool) -> Stepper:
        """A stepper adding (Nesterov) momentum, sharing this one's t, rule hyperparameters
        and states; ``None`` velocity entries leave their param without the modifier."""
    def step(
        self,
        grads: Sequence[Any | None],
        max_norm: float | None = None,
        grad_scale: float | None = None,
        skip_nonfinite: bool = False,
    ) -> Any | None:
        """One fused update on CuPy's current stream; with ``max_norm`` the total norm as a
        0-d float64 CuPy array (no host synchronisation). A None grad leaves its param and
        state untouched. ``grad_scale`` (a float, or a 0-d float32/float64 CuPy array read by
        the kernel) divides the grads inside the kernel and implies ``skip_nonfinite``: a
        non-finite grad skips the whole step on the device (t included); the first such step
        moves t to the device."""
    def prepare_step(self, grads: Sequence[Any | None]) -> list[tuple[str, bool, int, int, int]]:
        """The host part of a step, without any CUDA call; returns its launches as
        (dtype, with_momentum, first_chunk, end_chunk, group). For benchmarks and tests."""
    def set_hyperparameters(self, *, group: int | None = None, **fields: float) -> None:
        """Fields of HYPER_FIELDS; ``group`` None (every group) or a group index."""
    def hyperparameters(self, group: int = 0) -> dict[str, float]: ...
    @property
    def t(self) -> int:
        """Updates applied; once a step has been captured, reading it synchronises the stream
        of the steps and reads the device."""
    @t.setter
    def t(self, value: int) -> None: ...
    @property
    def has_momentum(self) -> bool: ...
    @property
    def num_groups(self) -> int: ...
    @property
    def last_step_applied(self) -> Any:
        """True, or the 0-d bool CuPy array written by the last step with skip_nonfinite."""
    def __len__(self) -> int: ...

def driver_version() -> int:
    """cudaDriverGetVersion: the CUDA version the installed driver supports (0: no driver)."""

def set_cupy_hooks(
    ndarray_type: type,
    alloc: Callable[[int, int, int], Any],
    current_stream: Callable[[int], Any],
    norm_buffer: Callable[[int], tuple[int, Any, Any]],
) -> None:
    """Registered once by ``fusedupdates._cuda_backend``: CuPy's array type, device memory for
    tables and control blocks ``alloc(nbytes, device, stream_ptr)``, the current stream of a
    device, and a new norm buffer ``(pointer, 0-d view)``."""

def sum_squares(xs: Sequence[Any]) -> Any:
    """Sum of squares of every element (deterministic), as a 0-d float64 CuPy array."""

def total_norm_constraint(
    xs: Sequence[Any], out: Sequence[Any], max_norm: float, epsilon: float
) -> Any:
    """out = xs * Lasagne's total-norm multiplier; returns the norm as a 0-d float64 array."""

def norm_constraint(
    x: Any, out: Any, outer: int, reduce: int, inner: int, max_norm: float, epsilon: float
) -> None: ...
def bandwidth_probe(rw: Sequence[Any], ro: Sequence[Any]) -> None:
    """Benchmark probe: rw[k] += 1e-7 * sum(ro), the memory streams of a rule."""

def copy_probe(dst: Any, src: Any) -> None:
    """Benchmark probe: a device-to-device copy of src into dst."""
