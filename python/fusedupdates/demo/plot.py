"""The loss-curve figure of the demo (matplotlib, Agg canvas, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_loss_curves"]

_LINESTYLES = ("-", "--", ":", "-.")


def plot_loss_curves(
    results: Mapping[str, Any], path: str | Path, title: str = "training loss"
) -> Path:
    """Plot training loss per epoch, one labelled line per rule, on a log y-scale.

    Parameters
    ----------
    results : mapping of str to RuleResult
        Anything with a ``losses`` list (index 0 is the loss before training).
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
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the demo needs matplotlib: pip install 'fusedupdates[demo]'") from exc

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg whatever backend the session has selected
    ax = fig.add_subplot()
    for i, (name, res) in enumerate(results.items()):
        # colour and dash both cycle, so that curves lying on top of each other stay visible
        ax.plot(
            range(len(res.losses)),
            res.losses,
            label=name,
            color=f"C{i % 10}",
            linestyle=_LINESTYLES[i % len(_LINESTYLES)],
            linewidth=1.5,
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.savefig(path, dpi=120)
    return path
