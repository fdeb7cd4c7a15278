"""Dynamic loss scaling for 16-bit training, with torch.amp.GradScaler's rules.

Multiply the loss by ``scaler.scale`` before the backward pass; ``scaler.step(updater, grads)``
then divides the grads by the scale inside the fused kernel and skips the whole step when any
gradient is NaN or Inf (no param, state or ``t`` changes), and adapts the scale: halve it after
a skipped step, double it after ``growth_interval`` applied steps in a row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._hyper import _as_float, check_count

__all__ = ["LossScaler"]


class LossScaler:
    """Dynamic loss scale (``torch.amp.GradScaler`` semantics, the scale kept in float32).

    Parameters
    ----------
    init_scale : float, optional
        The first scale (default ``2**16``).
    growth_factor : float, optional
        Multiplier after ``growth_interval`` applied steps in a row (> 1, default 2).
    backoff_factor : float, optional
        Multiplier after a skipped step (in (0, 1), default 0.5).
    growth_interval : int, optional
        Applied steps in a row before the scale grows (default 2000).

    Examples
    --------
    >>> scaler = fu.LossScaler()  # doctest: +SKIP
    >>> grads = backward(loss * scaler.scale)  # your backward pass  # doctest: +SKIP
    >>> scaler.step(updater, grads)  # unscales, skips non-finite steps  # doctest: +SKIP
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ):
        scale = _as_float("init_scale", init_scale)
        growth = _as_float("growth_factor", growth_factor)
        backoff = _as_float("backoff_factor", backoff_factor)
        if not scale > 0:
            raise ValueError(f"init_scale must be > 0, got {scale}")
        if not growth > 1:
            raise ValueError(f"growth_factor must be > 1, got {growth}")
        if not 0 < backoff < 1:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff}")
        # The scale is float32 and each update multiplies it by a double factor, rounding
        # the product to float32: exactly torch's _amp_update_scale_.
        self._scale = np.float32(scale)
        self._growth = growth
        self._backoff = backoff
        self._interval = check_count("growth_interval", growth_interval, 1)
        self._tracker = 0  # applied steps in a row since the last change of scale

    @property
    def scale(self) -> float:
        """The current loss scale."""
        return float(self._scale)

    def step(self, updater: Any, grads: Any, max_norm: float | None = None) -> Any:
        """One loss-scaled step of ``updater``, then :meth:`update`.

        Parameters
        ----------
        updater : Updater
            Steps with ``grad_scale=self.scale``.
        grads : list of arrays
            Gradients of the SCALED loss.
        max_norm : float, optional
            Clip by the norm of the unscaled gradients, as ``Updater.step``.

        Returns
        -------
        float, 0-d device array or None
            What ``updater.step`` returns; ``updater.last_step_applied`` tells whether the
            step was applied.
        """
        norm = updater.step(grads, max_norm=max_norm, grad_scale=self.scale)
        self.update(not bool(updater.last_step_applied))
        return norm

    def update(self, found_inf: bool) -> None:
        """Adapt the scale after a step: back off if it found a non-finite gradient, grow
        after ``growth_interval`` applied steps in a row (unless growing overflows)."""
        if found_inf:
            self._scale = np.float32(float(self._scale) * self._backoff)
            self._tracker = 0
            return
        self._tracker += 1
        if self._tracker == self._interval:
            grown = float(self._scale) * self._growth
            if grown <= float(np.finfo(np.float32).max):  # an overflow keeps the scale
                self._scale = np.float32(grown)
            self._tracker = 0

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state, for checkpoints (plain Python numbers)."""
        return {
            "scale": float(self._scale),
            "growth_factor": self._growth,
            "backoff_factor": self._backoff,
            "growth_interval": self._interval,
            "growth_tracker": self._tracker,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (validated completely before anything changes)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval"} - set(state)
        if missing:
            raise ValueError(f"LossScaler state is missing {sorted(missing)}")
        fresh = LossScaler(
            state["scale"],
            state["growth_factor"],
            state["backoff_factor"],
            state["growth_interval"],
        )
        tracker = check_count("growth_tracker", state.get("growth_tracker", 0), 0)
        if tracker >= fresh._interval:
            raise ValueError(f"growth_tracker must be < growth_interval, got {tracker}")
        self.__dict__.update(fresh.__dict__)
        self._tracker = tracker

    def __repr__(self) -> str:
        return f"LossScaler(scale={self.scale}, growth_tracker={self._tracker})"
