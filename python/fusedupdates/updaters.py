"""Updaters: a rule, its hyperparameters and state buffers, over one native stepper.

An updater allocates one state buffer per parameter and state kind, once, and hands them with
the parameters to a native ``Stepper`` (``_cpu.Stepper`` / ``_cuda.Stepper``) that validates
them once and owns the step counter ``t``. :meth:`Updater.step` is then one native call that
checks only the grads. Hyperparameters are plain attributes, validated when they are set and
read by the next step: Lasagne's "change without recompiling".

Threads: every step, ``state_dict`` and ``load_state_dict`` of one updater (and of the
momentum updaters that share its state) runs under one lock, so calls from several threads
are serialised: each step is applied exactly once and a ``state_dict`` never sees half a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checkpoint import check_state_dict, flatten_state_dict, unflatten_state_dict
from ._compact import SCALES
from ._dispatch import as_list
from ._groups import ParamGroup
from ._hyper import check_grad_scale, check_hyper, check_max_norm, native_fields
from ._rules import SPECS, VELOCITY


class Updater:
    """Applies one update rule, optionally with a fused momentum modifier, to a parameter list.

    Do not construct directly: use :func:`fusedupdates.adam` and the other rule factories,
    and :func:`fusedupdates.apply_momentum` / :func:`fusedupdates.apply_nesterov_momentum`.

    Attributes
    ----------
    params : list of arrays
        The parameters, updated in place by :meth:`step` (a new list each time it is read).
    t : int
        Number of updates applied (Lasagne's ``t``; the next step uses ``t + 1``).
    state : dict of str to list
        Every state buffer by name (``velocity`` entries are None for parameters the
        momentum modifier does not cover).
    hyperparameters : dict of str to float
        Current hyperparameters; each is also an attribute (``upd.learning_rate = 1e-4``),
        validated and converted to a float when set (a 0-d array is read at assignment).
        With several parameter groups, setting an attribute sets it in every group, reading
        one raises if the groups differ, and ``hyperparameters`` holds the shared values.
    param_groups : list of ParamGroup
        torch-style live views, one per group: ``upd.param_groups[1]["learning_rate"] = 1e-4``.
    """

    def __init__(
        self,
        shared: Any,
        stepper: Any,
        velocity: tuple | None,
        nesterov: bool = False,
        velocity_scales: tuple | None = None,
    ):
        object.__setattr__(self, "_shared", shared)
        object.__setattr__(self, "_velocity_scales", velocity_scales)
        object.__setattr__(self, "_stepper", stepper)
        object.__setattr__(self, "_velocity", velocity)
        object.__setattr__(self, "_nesterov", nesterov)
        object.__setattr__(self, "_momentum", None)  # per group, momentum updaters only

    # --- hyperparameters as attributes -------------------------------------------------
    def _hyper_names(self) -> tuple[str, ...]:
        names = tuple(self._shared.groups[0])
        return names + ("momentum",) if self._velocity is not None else names

    def _group_value(self, name: str, group: int) -> float:
        if name == "momentum":
            return self._momentum[group]
        return self._shared.groups[group][name]

    def _set_hyper(self, name: str, value: Any, group: int | None) -> None:
        """Validate, then set ``name`` in one group (or all when None) natively and here."""
        x = check_hyper(name, value)  # raises before anything is stored
        shared = self._shared
        targets = range(len(shared.groups)) if group is None else [group]
        with shared.lock:
            fields = native_fields({name: x}, shared.decoupled)
            self._stepper.set_hyperparameters(group=group, **fields)
            for g in targets:
                if name == "momentum":
                    self._momentum[g] = x
                else:
                    shared.groups[g][name] = x

    def __getattr__(self, name: str) -> Any:
        shared = self.__dict__.get("_shared")
        if shared is not None and name in self._hyper_names():
            values = {self._group_value(name, g) for g in range(len(shared.groups))}
            if len(values) == 1:
                return values.pop()
            raise AttributeError(
                f"{name} differs between the {len(shared.groups)} parameter groups: read "
                f"param_groups[i][{name!r}]"
            )
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._hyper_names():
            raise AttributeError(
                f"cannot set {name!r}: hyperparameters are {list(self._hyper_names())}"
            )
        self._set_hyper(name, value, None)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._hyper_names()))

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"<fusedupdates {self.rule} updater, {len(self.params)} params, t={self.t}, {hyper}>"

    # --- read-only views -----------------------------------------------------------------
    @property
    def rule(self) -> str:
        """Rule name, with the modifier: e.g. ``"rmsprop+momentum"``."""
        base = self._shared.spec.name
        if self._velocity is None:
            return base
        return base + ("+nesterov_momentum" if self._nesterov else "+momentum")

    @property
    def params(self) -> list:
        """The parameters (a new list: changing it does not change the updater)."""
        return list(self._shared.params)

    @property
    def t(self) -> int:
        """Number of updates applied (on the GPU, replays of a captured step included)."""
        return int(self._stepper.t)

    @property
    def state(self) -> dict[str, list]:
        """State buffers by name (new lists of the updater's own arrays)."""
        shared = self._shared
        state = {name: list(arrays) for name, arrays in shared.state.items()}
        if self._velocity is not None:
            state[VELOCITY] = list(self._velocity)
        state.update(shared.scale_states())
        if self._velocity is not None and shared.state_dtype == "int8":
            state[VELOCITY + SCALES] = list(self._velocity_scales)
        return state

    @property
    def state_dtype(self) -> str | None:
        """How the states are stored: None (the params' compute dtype), ``"bfloat16"`` or
        ``"int8"`` (8-bit blockwise codes with ``<name>_absmax`` block scales)."""
        return self._shared.state_dtype

    @property
    def decoupled_weight_decay(self) -> bool:
        """Whether ``weight_decay`` is decoupled (AdamW) rather than L2; fixed at creation."""
        return self._shared.decoupled

    @property
    def master_weights(self) -> bool:
        """Whether float32 master weights (state ``"master"``) back the 16-bit params."""
        return self._shared.master_weights

    @property
    def rounding(self) -> str:
        """How the 16-bit params are rounded: ``"nearest"`` (even) or ``"stochastic"``."""
        return self._shared.rounding

    @property
    def state_rounding(self) -> str:
        """How bfloat16 state is rounded: ``"nearest"`` (even) or ``"stochastic"``."""
        return self._shared.state_rounding

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The hyperparameters (with several groups: those every group shares)."""
        groups = self._group_values()
        return {k: v for k, v in groups[0].items() if all(g[k] == v for g in groups)}

    @property
    def param_groups(self) -> list[ParamGroup]:
        """One live view per parameter group (torch's convention); see :class:`ParamGroup`."""
        return [ParamGroup(self, g) for g in range(len(self._shared.groups))]

    def _group_values(self) -> list[dict[str, float]]:
        names = self._hyper_names()
        return [
            {name: self._group_value(name, g) for name in names}
            for g in range(len(self._shared.groups))
        ]

    # --- stepping --------------------------------------------------------------------------
    def step(
        self,
        grads: Sequence[Any] | Any,
        max_norm: float | None = None,
        grad_scale: float | None = None,
        skip_nonfinite: bool = False,
    ) -> Any:
        """Apply one fused update to every parameter, in place, and advance ``t``.

        Parameters
        ----------
        grads : list of arrays (or one array for a one-parameter updater)
            One gradient per parameter, same shape and dtype; not modified. ``None`` freezes
            that parameter for this step: it and its state are left untouched (``t`` still
            counts the step, Lasagne's single counter, unlike torch's per-parameter one).
        max_norm : float, optional
            Apply Lasagne's ``total_norm_constraint(grads, max_norm)`` inside the step.
        grad_scale : float or 0-d CUDA array, optional
            Loss scaling: the grads are divided by it inside the kernel (nothing is copied).
            Implies ``skip_nonfinite``. On the GPU it may be a 0-d float32/float64 CuPy array
            (a :class:`fusedupdates.LossScaler`'s scale), read by the kernel: no host sync; a
            device scale that is not finite and > 0 skips the step.
        skip_nonfinite : bool, optional
            If any grad holds a NaN or an Inf, skip the whole step: no param, no state and not
            ``t`` changes; :attr:`last_step_applied` is then False. The check shares the
            norm's pass over the grads (one extra read at most). On the GPU the decision is
            made on the device (nothing synchronises); from the first such step on, ``t`` is
            kept on the device and reading it synchronises.

        Returns
        -------
        float, 0-d device array or None
            The total norm of the (unscaled) gradients before clipping when ``max_norm`` is
            given, else None.

        Raises
        ------
        TypeError, ValueError
            For bad arrays or hyperparameters; nothing is modified then.
        """
        if type(grads) is not list and type(grads) is not tuple:
            grads = as_list(grads, "grads")
        if max_norm is not None:
            max_norm = check_max_norm(max_norm)
        if grad_scale is not None or skip_nonfinite:
            if grad_scale is not None:
                grad_scale = check_grad_scale(grad_scale)
            with self._shared.lock:
                return self._stepper.step(grads, max_norm, grad_scale, bool(skip_nonfinite))
        with self._shared.lock:
            return self._stepper.step(grads, max_norm)

    @property
    def last_step_applied(self) -> Any:
        """Whether the last step was applied (False: skipped for a non-finite gradient with
        ``skip_nonfinite`` or ``grad_scale``). On the GPU a 0-d device array, so that reading
        it does not synchronise."""
        return self._stepper.last_step_applied

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit for bit, as plain NumPy arrays and Python values.

        Returns
        -------
        dict
            ``{"rule", "decoupled_weight_decay", "t", "hyperparameters", "param_groups",
            "state"}``: ``param_groups`` lists each group's parameter indices and values;
            ``state`` maps each state name to a list of NumPy copies (None for parameters
            without velocity). With compact state, also ``"state_dtype"``, and ``state`` holds
            what is stored: bfloat16 arrays, or uint8 codes with their ``<name>_absmax``
            block scales (:func:`fusedupdates.convert_state_dict` converts to float32).
        """
        to_numpy = self._shared.backend.to_numpy
        compact = self._shared.state_dtype
        with self._shared.lock:
            return {
                **({"state_dtype": compact} if compact is not None else {}),
                "rule": self.rule,
                "decoupled_weight_decay": self.decoupled_weight_decay,
                "t": self.t,
                "hyperparameters": dict(self.hyperparameters),
                "param_groups": [
                    {"params": indices, **values}
                    for indices, values in zip(self._group_indices(), self._group_values())
                ],
                "state": {
                    name: [None if a is None else to_numpy(a) for a in arrays]
                    for name, arrays in self.state.items()
                },
            }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (copied into the existing buffers).

        Everything is checked before anything is copied, so a mismatching dict raises
        ``TypeError`` or ``ValueError`` and leaves the updater unchanged.
        """
        t, groups, saved = check_state_dict(self, state_dict)
        shared = self._shared
        copy = shared.backend.copy_from_numpy
        with shared.lock:
            for name, arrays in self.state.items():
                for dst, src in zip(arrays, saved[name]):
                    if dst is not None:
                        copy(dst, src)
            for g, values in enumerate(groups):
                values = dict(values)
                momentum = values.pop("momentum", None)
                fields = native_fields(values, shared.decoupled)
                if momentum is not None:
                    fields["momentum"] = momentum
                    self._momentum[g] = momentum
                self._stepper.set_hyperparameters(group=g, **fields)
                shared.groups[g].update(values)
            self._stepper.t = t

    def _group_indices(self) -> list[list[int]]:
        """The parameter indices of each group."""
        out: list[list[int]] = [[] for _ in self._shared.groups]
        for i, g in enumerate(self._shared.group_of):
            out[g].append(i)
        return out

    def save(self, file: Any) -> None:
        """Write :meth:`state_dict` to a ``.npz`` file (no pickled objects in it).

        Parameters
        ----------
        file : str, path or file object
            Where to write; NumPy adds ``.npz`` to a name without it.

        Examples
        --------
        >>> upd.save("opt.npz"); upd2.load("opt.npz")  # doctest: +SKIP
        """
        np.savez(file, **flatten_state_dict(self.state_dict()))

    def load(self, file: Any) -> None:
        """Restore a checkpoint written by :meth:`save` (read with ``allow_pickle=False``).

        Parameters
        ----------
        file : str, path or file object
            A ``.npz`` file from :meth:`save`.

        Raises
        ------
        TypeError, ValueError
            For a file that does not match this updater; nothing is changed then.
        """
        with np.load(file, allow_pickle=False) as archive:
            flat = {key: archive[key] for key in archive.files}
        self.load_state_dict(unflatten_state_dict(flat))

    def __reduce__(self) -> tuple:
        """Pickle and ``copy.deepcopy`` support: the params (copied by deepcopy), how the
        updater was built, and its :meth:`state_dict` (which restores every value)."""
        shared = self._shared
        covered = None
        if self._velocity is not None:
            covered = [i for i, v in enumerate(self._velocity) if v is not None]
        master, rounding = shared.master_weights, shared.rounding
        recipe = (shared.spec.name, shared.decoupled, covered, self._nesterov, master, rounding)
        if shared.state_dtype is not None:
            recipe += (shared.state_dtype,)
        if shared.state_rounding != "nearest":
            recipe += (shared.state_rounding,)
        groups = [
            {"params": [shared.params[i] for i in indices], **values}
            for indices, values in zip(self._group_indices(), shared.groups)
        ]
        return (_rebuild, (groups, recipe, self.state_dict()))


def _rebuild(groups: list, recipe: tuple, state_dict: dict) -> Updater:
    """Inverse of :meth:`Updater.__reduce__`."""
    from ._build import make_updater, with_momentum  # _build imports this module

    name, decoupled, covered, nesterov, *newer = recipe
    newer += [False, "nearest", None, "nearest"][len(newer) :]  # pickled before these existed
    master_weights, rounding, state_dtype, state_rounding = newer
    spec = SPECS[name]
    defaults = {k: v for k, v in groups[0].items() if k in spec.defaults}
    upd = make_updater(
        spec,
        groups,
        defaults,
        0.0,
        decoupled,
        master_weights,
        rounding,
        state_dtype,
        state_rounding,
    )
    if covered is not None:
        params = upd.params
        upd = with_momentum(upd, [params[i] for i in covered], 0.0, nesterov)
    upd.load_state_dict(state_dict)
    return upd
