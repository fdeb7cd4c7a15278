"""Dynamic loss scaling for 16-bit training, with torch.amp.GradScaler's rules.

Multiply the loss by ``scaler.scale`` before the backward pass; ``scaler.step(updater, grads)``
then divides the grads by the scale inside the fused kernel and skips the whole step when any
gradient is NaN or Inf (no param, state or ``t`` changes), and adapts the scale: halve it after
a skipped step, double it after ``growth_interval`` applied steps in a row.

On the GPU (the first :meth:`LossScaler.step` with an updater of CuPy arrays) the scale and the
growth tracker move to the device, as torch's GradScaler keeps them: the step reads the scale
there, and a small CuPy kernel adapts it from the step's device flag, so nothing synchronises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._hyper import _as_float, check_count

__all__ = ["LossScaler"]

# torch's _amp_update_scale_ on one element: the scale float32, the factors double, the product
# rounded to float32 (an overflow to Inf keeps the old scale).
_UPDATE_SCALE_CODE = """
if (!applied) {
  scale = (float)((double)scale * backoff);
  tracker = 0;
} else if (tracker + 1 == interval) {
  const float grown = (float)((double)scale * growth);
  if (isfinite(grown)) scale = grown;
  tracker = 0;
} else {
  tracker = tracker + 1;
}
"""
_update_scale_kernel = None  # built on first use, so that importing never needs CuPy


def _device_update(applied: Any, growth: float, backoff: float, interval: int, scale, tracker):
    global _update_scale_kernel
    import cupy

    if _update_scale_kernel is None:
        _update_scale_kernel = cupy.ElementwiseKernel(
            "bool applied, float64 growth, float64 backoff, int32 interval",
            "float32 scale, int32 tracker",
            _UPDATE_SCALE_CODE,
            "fusedupdates_update_loss_scale",
        )
    _update_scale_kernel(applied, growth, backoff, interval, scale, tracker)


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
        self._device = None  # (scale, tracker) as 0-d CuPy arrays once used on the GPU

    @property
    def scale(self) -> float:
        """The current loss scale (on the GPU this reads the device: it synchronises; use
        :attr:`device_scale` in the training loop)."""
        if self._device is not None:
            return float(self._device[0])
        return float(self._scale)

    @property
    def device_scale(self) -> Any:
        """On the GPU, the scale as a 0-d float32 CuPy array (multiply the loss by it: no
        synchronisation); None until the scaler has stepped a CuPy updater."""
        return None if self._device is None else self._device[0]

    def _to_device(self, device_id: int) -> None:
        import cupy

        with cupy.cuda.Device(device_id):
            scale = cupy.asarray(self._scale, dtype=cupy.float32).reshape(())
            tracker = cupy.asarray(self._tracker, dtype=cupy.int32).reshape(())
        self._device = (scale, tracker)

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
        params = updater.params
        if params and hasattr(params[0], "__cuda_array_interface__"):
            if self._device is None:
                self._to_device(params[0].device.id)
            norm = updater.step(grads, max_norm=max_norm, grad_scale=self._device[0])
            self._device_update(updater.last_step_applied)
            return norm
        norm = updater.step(grads, max_norm=max_norm, grad_scale=self.scale)
        self.update(not bool(updater.last_step_applied))
        return norm

    def _device_update(self, applied: Any) -> None:
        scale, tracker = self._device
        _device_update(applied, self._growth, self._backoff, self._interval, scale, tracker)

    def update(self, found_inf: bool) -> None:
        """Adapt the scale after a step: back off if it found a non-finite gradient, grow
        after ``growth_interval`` applied steps in a row (unless growing overflows).
        ``found_inf`` may be a 0-d device array on the GPU (read there, no sync)."""
        if self._device is not None:
            if isinstance(found_inf, (bool, np.bool_)):
                self._device_update(not found_inf)
            else:
                self._device_update(~found_inf.astype(bool))
            return
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
        """The scaler's state, for checkpoints (plain Python numbers; on the GPU read from the
        device)."""
        if self._device is not None:
            self._scale = np.float32(self._device[0].get())
            self._tracker = int(self._device[1].get())
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
        device = self._device
        self.__dict__.update(fresh.__dict__)
        self._tracker = tracker
        if device is not None:  # stays on the GPU: write the device copies
            device[0][...] = self._scale
            device[1][...] = tracker
            self._device = device

    def __repr__(self) -> str:
        return f"LossScaler(scale={self.scale}, growth_tracker={self._tracker})"
