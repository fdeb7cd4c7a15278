"""Train the same network with every rule and collect the results."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import mlp
from .data import load_data
from .rules import RULES, RuleSpec

__all__ = [
    "DemoError",
    "RuleResult",
    "format_table",
    "get_array_module",
    "run_demo",
    "storage_dtype",
    "train_rule",
]

_DEPS_HINT = "pip install 'fusedupdates[demo]'"


class DemoError(RuntimeError):
    """The demo cannot run as asked (e.g. ``--device cuda`` without CuPy or a GPU)."""


@dataclass
class RuleResult:
    """What one rule achieved.

    Attributes
    ----------
    name : str
        The rule's label.
    group : str
        The panel of the loss-curve figure that shows the rule.
    learning_rate : float
        The updater's learning rate.
    momentum : float or None
        The updater's momentum, or None for a rule without one.
    losses : list of float
        Mean cross-entropy on the whole training set before training (index 0) and after
        each epoch.
    test_accuracy : float
        Fraction of the held-out images classified correctly after the last epoch.
    epoch_seconds : list of float
        Wall time of each epoch's training steps (evaluation excluded).
    max_norm : float or None
        The rule's gradient-norm limit, if any.
    grad_norms : list of float
        With ``max_norm``: the total gradient norm before clipping at every step, as returned
        by ``Updater.step``.
    """

    name: str
    group: str = ""
    learning_rate: float = float("nan")
    momentum: float | None = None
    losses: list[float] = field(default_factory=list)
    test_accuracy: float = float("nan")
    epoch_seconds: list[float] = field(default_factory=list)
    max_norm: float | None = None
    grad_norms: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Training loss after the last epoch."""
        return self.losses[-1]

    @property
    def seconds_per_epoch(self) -> float:
        """Median wall time of an epoch (robust to the first epoch's warm-up)."""
        return statistics.median(self.epoch_seconds) if self.epoch_seconds else float("nan")

    @property
    def clipped_fraction(self) -> float | None:
        """Fraction of steps whose gradients were clipped, or None without ``max_norm``."""
        if self.max_norm is None or not self.grad_norms:
            return None
        return sum(n > self.max_norm for n in self.grad_norms) / len(self.grad_norms)


def get_array_module(device: str) -> ModuleType:
    """Return the array module for ``device``: ``numpy`` for "cpu", ``cupy`` for "cuda".

    CuPy is imported only here, only when asked for.

    Raises
    ------
    ValueError
        For an unknown device.
    DemoError
        If ``device="cuda"`` but CuPy, a GPU, or the CUDA build of fusedupdates is missing.
    """
    if device == "cpu":
        return np
    if device != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    try:
        import cupy
    except ImportError as exc:
        raise DemoError(
            "--device cuda needs CuPy, which is not installed: pip install "
            '"fusedupdates[cuda]" (the cuda extra installs cupy-cuda13x)'
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when there is no driver
        raise DemoError(f"--device cuda: CuPy cannot reach a GPU ({exc})") from exc
    if count == 0:
        raise DemoError("--device cuda: CuPy found no GPU")
    import fusedupdates as fu

    if not fu.build_info().get("cuda", False):
        raise DemoError("--device cuda: this build of fusedupdates has no CUDA backend")
    return cupy


def _synchronize(xp: ModuleType) -> None:
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def _to_floats(values: list[Any], xp: ModuleType) -> list[float]:
    """Python floats from a list of floats or 0-d device arrays, with one transfer at most."""
    if not values:
        return []
    stacked = xp.stack([xp.asarray(v, dtype=xp.float64) for v in values])
    return [float(v) for v in (stacked if xp is np else stacked.get())]


def train_rule(
    spec: RuleSpec,
    init: list[np.ndarray],
    data: Any,
    xp: ModuleType,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    bar: Any = None,
    comm: Any = None,
    dtype: Any = np.float32,
    master_weights: bool = False,
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> RuleResult:
    """Train a fresh copy of the network from ``init`` with one rule.

    Parameters
    ----------
    spec : RuleSpec
        The rule.
    init : list of numpy.ndarray
        Initial ``[W1, b1, W2, b2]`` (copied, never written).
    data : Digits
        The data set, already in ``xp``.
    xp : module
        ``numpy`` or ``cupy``.
    epochs : int
        Passes over the training set.
    batch_size : int, optional
        Minibatch size; the last incomplete batch of each epoch is dropped.
    seed : int, optional
        Seed of the minibatch order, the same for every rule.
    bar : tqdm or None, optional
        Progress bar, advanced once per epoch.
    comm : mpi4py communicator, optional
        Data parallel: each rank computes the gradients of its slice of every minibatch and a
        :func:`fusedupdates.distributed.sharded` updater averages them (the mean of the
        slices' mean gradients is the whole batch's), so the run follows one process's.
    dtype : dtype, optional
        Storage dtype of the params and grads (float32, float16 or ml_dtypes.bfloat16); the
        forward and backward pass compute in float32.
    master_weights : bool, optional
        Keep a float32 master copy of 16-bit params in the updater (``master_weights=True``).
    state_dtype : {None, "bfloat16", "int8"}, optional
        Compact optimizer state (the factories' ``state_dtype``).
    state_rounding : {"nearest", "stochastic"}, optional
        How compact state is rounded (the factories' ``state_rounding``).

    Returns
    -------
    RuleResult
    """
    params = mlp.to_device(init, xp, dtype)  # updated in place by the updater, never rebound
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    options: dict[str, Any] = {"master_weights": True} if master_weights else {}
    if state_dtype is not None:
        options["state_dtype"] = state_dtype
    if state_rounding != "nearest":
        options["state_rounding"] = state_rounding
    if comm is None:
        updater = spec.make(params, **options)
    else:
        from ..distributed import sharded

        # state_dtype goes to sharded() itself: it lays out the 8-bit blocks by it
        updater = sharded(lambda ps, **kw: spec.make(ps, **kw), params, comm, **options)
    part = batch_size // size  # this rank's slice of each minibatch
    rng = np.random.default_rng(seed)
    x, onehot = data.x_train, data.onehot_train
    n = int(x.shape[0])
    # read back from the updater, so that the table shows what actually ran
    momentum = getattr(updater, "momentum", None)
    result = RuleResult(
        spec.name,
        group=spec.group,
        learning_rate=float(updater.learning_rate),
        momentum=None if momentum is None else float(momentum),
        max_norm=spec.max_norm,
    )
    result.losses.append(float(mlp.loss(params, x, onehot, xp)))
    for _ in range(epochs):
        start = time.perf_counter()
        order = xp.asarray(rng.permutation(n))
        x_epoch, onehot_epoch = x[order], onehot[order]
        norms = []  # kept on the device until the epoch ends: no per-step host sync
        for lo in range(0, n - batch_size + 1, batch_size):
            mine = slice(lo + rank * part, lo + (rank + 1) * part)
            _, grads = mlp.loss_and_grads(params, x_epoch[mine], onehot_epoch[mine], xp)
            norm = updater.step(grads, max_norm=spec.max_norm)
            if spec.max_norm is not None:
                norms.append(norm)
        _synchronize(xp)
        result.epoch_seconds.append(time.perf_counter() - start)
        result.grad_norms.extend(_to_floats(norms, xp))
        result.losses.append(float(mlp.loss(params, x, onehot, xp)))
        if bar is not None:
            bar.set_description(spec.name, refresh=False)
            bar.set_postfix(loss=f"{result.losses[-1]:.4f}", refresh=False)
            bar.update(1)
    result.test_accuracy = mlp.accuracy(params, data.x_test, data.y_test, xp)
    return result


def run_demo(
    epochs: int = 30,
    out: str | Path | None = ".",
    device: str = "cpu",
    progress: bool = True,
    batch_size: int = 64,
    hidden: int = 128,
    seed: int = 0,
    rules: Sequence[RuleSpec] = RULES,
    comm: Any = None,
    dtype: str = "float32",
    master_weights: bool = False,
    state_dtype: str | None = None,
    state_rounding: str = "nearest",
) -> dict[str, RuleResult]:
    """Train the digits MLP with every rule from the same initialisation.

    Parameters
    ----------
    epochs : int, optional
        Passes over the training set per rule.
    out : str or Path or None, optional
        Folder that receives ``loss_curves.png`` (created if needed); None writes no plot.
    device : {"cpu", "cuda"}, optional
        "cuda" runs the very same code on CuPy arrays.
    progress : bool, optional
        Show a tqdm progress bar on stderr.
    batch_size : int, optional
        Minibatch size.
    hidden : int, optional
        Width of the hidden layer.
    seed : int, optional
        Seed of the initial weights and of the minibatch order.
    rules : sequence of RuleSpec, optional
        The contenders; defaults to all of :data:`RULES`.
    comm : mpi4py communicator, optional
        Train data parallel over its ranks (see :func:`train_rule`); ``batch_size`` must be a
        multiple of the number of ranks.
    dtype : {"float32", "float16", "bfloat16"}, optional
        Storage dtype of the params and grads (bfloat16 needs ml_dtypes).
    master_weights : bool, optional
        Float32 master weights for 16-bit params.
    state_dtype : {None, "bfloat16", "int8"}, optional
        Compact optimizer state for every rule (CPU only).
    state_rounding : {"nearest", "stochastic"}, optional
        How that state is rounded after each step (``"stochastic"`` needs ``state_dtype``).

    Returns
    -------
    dict of str to RuleResult
        One entry per rule, in order.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if comm is not None and batch_size % comm.Get_size():
        raise ValueError(f"batch_size {batch_size} is not a multiple of {comm.Get_size()} ranks")
    storage = storage_dtype(dtype)
    if master_weights and storage == np.float32:
        raise DemoError("--master-weights is for 16-bit params: add --dtype bfloat16 or float16")
    if state_dtype is not None and device != "cpu":
        raise DemoError("--state-dtype is for CPU runs (not with --device cuda yet)")
    if state_rounding != "nearest" and state_dtype is None:
        raise DemoError("--state-rounding stochastic rounds compact state: add --state-dtype")
    xp = get_array_module(device)
    data = load_data(xp, seed=seed)
    init = mlp.init_params((data.num_features, hidden, data.num_classes), seed=seed)
    bar = None
    if progress:
        try:
            from tqdm import tqdm
        except ImportError as exc:
            raise ImportError(f"the demo's progress bar needs tqdm: {_DEPS_HINT}") from exc
        bar = tqdm(total=len(rules) * epochs, file=sys.stderr, unit="epoch", leave=False)
    results: dict[str, RuleResult] = {}
    try:
        for spec in rules:
            results[spec.name] = train_rule(
                spec, init, data, xp, epochs, batch_size, seed, bar, comm, storage,
                master_weights, state_dtype, state_rounding,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    if out is not None:
        from .plot import plot_loss_curves

        title = f"MLP {data.num_features}-{hidden}-{data.num_classes} on digits ({device})"
        plot_loss_curves(results, Path(out) / "loss_curves.png", title=title)
    return results


def storage_dtype(name: str) -> np.dtype:
    """The NumPy dtype of ``--dtype`` (bfloat16 is ml_dtypes', also CuPy's)."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:
            raise DemoError(
                "--dtype bfloat16 needs ml_dtypes: pip install 'fusedupdates[bf16]'"
            ) from exc
        return np.dtype(ml_dtypes.bfloat16)
    if name not in ("float32", "float16"):
        raise DemoError(f"unknown dtype {name!r}: use float32, float16 or bfloat16")
    return np.dtype(name)


def _hyper(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def format_table(results: dict[str, RuleResult]) -> str:
    """Render the results as a plain-text table.

    One line per rule: learning rate, momentum, final training loss, test accuracy and the
    median time of an epoch; then a line per rule with ``max_norm`` about its clipping.
    """
    width = max(len("rule"), *(len(name) for name in results))
    lines = [
        f"{'rule':<{width}}  learning rate  momentum  final train loss  test accuracy  ms/epoch"
    ]
    lines.append("-" * len(lines[0]))
    for name, res in results.items():
        lines.append(
            f"{name:<{width}}  {_hyper(res.learning_rate):>13}  {_hyper(res.momentum):>8}"
            f"  {res.final_loss:>16.4f}  {res.test_accuracy:>13.4f}"
            f"  {1e3 * res.seconds_per_epoch:>8.2f}"
        )
    if any(res.momentum is not None for res in results.values()):
        lines.append(
            "(with momentum, a steady gradient moves the parameters learning rate / "
            "(1 - momentum) per step)"
        )
    clipped_rules = [(n, r) for n, r in results.items() if r.clipped_fraction is not None]
    if clipped_rules:
        lines.append("")
    for name, res in clipped_rules:
        clipped = res.clipped_fraction
        if clipped is not None:
            lines.append(
                f"{name}: gradient norm {res.grad_norms[0]:.3g} at step 1, "
                f"{res.grad_norms[-1]:.3g} at the last step; clipped {100 * clipped:.0f}% of steps"
            )
    return "\n".join(lines)
