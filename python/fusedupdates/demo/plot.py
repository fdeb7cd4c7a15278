"""The loss-curve figure of the demo (matplotlib, Agg canvas, no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_loss_curves"]

_LINESTYLES = ("-", "--", ":", "-.")


def _label(name: str, res: Any) -> str:
    """``name (lr 0.1, momentum 0.9)``: the legend says which settings drew the curve."""
    settings = []
    lr = getattr(res, "learning_rate", None)
    if lr is not None and lr == lr:  # skip NaN: a result that does not know its rate
        settings.append(f"lr {lr:g}")
    momentum = getattr(res, "momentum", None)
    if momentum is not None:
        settings.append(f"momentum {momentum:g}")
    return f"{name} ({', '.join(settings)})" if settings else name


def plot_loss_curves(
    results: Mapping[str, Any], path: str | Path, title: str = "training loss"
) -> Path:
    """Plot training loss per epoch on a log y-scale, one panel per group of rules.

    Eleven curves on one axis hide each other, so the rules are split by their ``group``
    (rules without one share a single panel); the panels share both axes, so that curves of
    different panels can still be compared by eye.

    Parameters
    ----------
    results : mapping of str to RuleResult
        Anything with a ``losses`` list (index 0 is the loss before training), and optionally
        ``group``, ``learning_rate`` and ``momentum`` (shown in the legend).
    path : str or Path
        Output PNG; its folder is created if needed.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the demo needs matplotlib: pip install 'fusedupdates[demo]'") from exc

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = list(dict.fromkeys(getattr(res, "group", "") for res in results.values()))
    ncols = 1 if len(groups) == 1 else 2
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(5.6 * ncols, 1.2 + 3.4 * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg whatever backend the session has selected
    axes = list(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).flat)
    for ax, group in zip(axes, groups):
        members = [(n, r) for n, r in results.items() if getattr(r, "group", "") == group]
        for i, (name, res) in enumerate(members):
            ax.plot(
                range(len(res.losses)),
                res.losses,
                label=_label(name, res),
                color=f"C{i % 10}",
                linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                linewidth=1.6,
            )
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, even for 3
        ax.set_title(group, fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(groups) :]:  # an odd number of groups leaves one cell empty
        ax.set_visible(False)
    fig.supxlabel("epoch")
    fig.supylabel("training loss (cross-entropy)")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path
