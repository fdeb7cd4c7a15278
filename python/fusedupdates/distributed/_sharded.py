"""The ZeRO-1 data-parallel updater: optimizer state sharded across ranks, written once over
the :class:`~fusedupdates.distributed.Transport` interface.

One step, per dtype bucket (see ``_layout.py``):

1. a handshake: one all-gather of a few floats, so that a rank whose grads fail validation, or
   ranks that disagree on ``max_norm``, ``t`` or a hyperparameter, make EVERY rank raise
   instead of leaving the others blocked in the reduce-scatter;
2. the grads are copied end to end into the flat send buffer (one call per dtype);
3. reduce-scatter (sum): this rank receives the summed gradients of its shard;
4. with ``max_norm``: this shard's sum of squares, all-reduced (one float);
5. ONE fused native step of an ordinary :class:`~fusedupdates.Updater` over the flat shards
   (its params are views of this rank's slice of the flat parameter buffers, its state is
   only that slice's); the mean over ranks and the norm multiplier are applied inside that
   kernel, as its ``grad_scale``;
6. all-gather, in place, of the flat parameter buffers; then, unless the params are views of
   those buffers (:func:`allocate_params`), one copy back into the user's arrays.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from .._compact import check_state_dtype, forced_int8_storage
from .._dispatch import as_list
from .._hyper import check_max_norm
from ..updaters import Updater
from ._agree import agree_on_setup, agree_on_step
from ._arrays import as_host_scalar, pack, sum_squares
from ._layout import Bucket, plan_buckets, shared_flat_buffer, views_of, with_gaps
from ._state import full_state_dict, load_full_state_dict, read_checkpoint, write_checkpoint
from ._transport import Transport

# Lasagne's total_norm_constraint epsilon, as the native step uses it (csrc/rules/norm.h).
_CLIP_EPSILON = 1e-7


class ShardedUpdater:
    """A data-parallel updater whose state is sharded across ranks; see :func:`sharded`.

    Attributes
    ----------
    params : list of arrays
        The user's parameters; after every step identical on every rank.
    t : int
        Number of updates applied.
    hyperparameters : dict of str to float
        As on :class:`~fusedupdates.Updater`; each is also an attribute, and a value set on
        one rank must be set to the same value on every rank before the next step (checked).
    local : Updater
        The ordinary updater over this rank's flat shards (one 1-D array per dtype).
    last_timings : dict of str to float
        Seconds spent in each phase of the last step (``handshake``, ``pack``,
        ``reduce_scatter``, ``norm``, ``update``, ``all_gather``, ``unpack``); on CuPy these
        are host times of asynchronous launches.
    """

    def __init__(self, rule_factory: Callable, params: Any, transport: Transport, hyper: dict):
        object.__setattr__(self, "_transport", transport)
        object.__setattr__(self, "last_timings", {})
        error = None
        description: dict[str, Any] = {}
        try:
            self._setup(rule_factory, params, hyper)
            description = self._describe()
        except Exception as err:  # reported through the exchange: every rank raises below
            error = err
        agree_on_setup(transport, "sharded()", description, error)

    # --- construction (local only: nothing here may raise past __init__) ------------------
    def _setup(self, rule_factory: Callable, params: Any, hyper: dict) -> None:
        tr = self._transport
        xp = tr.xp
        if not callable(rule_factory):
            raise TypeError(f"rule_factory must be callable, got {type(rule_factory).__name__}")
        params = as_list(params, "params") if not isinstance(params, (list, tuple)) else params
        params = list(params)
        if not params:
            raise ValueError("sharded() got an empty parameter list")
        for i, p in enumerate(params):
            if isinstance(p, dict):
                raise TypeError(
                    "sharded(): parameter groups are not supported; pass a list of arrays"
                )
            if not isinstance(p, xp.ndarray):
                raise TypeError(
                    f"params[{i}]: expected a {xp.__name__}.ndarray for this communicator, got "
                    f"{type(p).__name__}"
                )
            if not getattr(p.flags, "writeable", True):  # CuPy arrays have no such flag
                raise ValueError(f"params[{i}] is read-only")
        # The layout depends on the state storage (8-bit blocks must not straddle params or
        # shards), so it is read here, before rule_factory builds the local updater.
        state_dtype = check_state_dtype(hyper.get("state_dtype"), params, tr.xp is not np)
        buckets = plan_buckets(
            [p.shape for p in params], [p.dtype for p in params], tr.size, state_dtype
        )
        set_ = object.__setattr__
        set_(self, "_zeros", {})  # padding arrays for with_gaps
        flats, copy_out, copied = [], [], []
        for b in buckets:
            flat = shared_flat_buffer(params, b)
            copied.append(flat is None)
            if flat is None:  # the user's own arrays: copies in and out every step
                flat = xp.zeros(b.padded, dtype=b.dtype)
                mine = [params[i] for i in b.indices]
                pack(xp, with_gaps(xp, mine, b, self._zeros), flat[: b.numel])
                copy_out.extend(zip(mine, views_of(flat, b)))
            flats.append(flat)
        lo, hi = tr.rank, tr.rank + 1
        shards = [flat[lo * b.shard : hi * b.shard] for flat, b in zip(flats, buckets)]
        with forced_int8_storage(shards, [b.quantized for b in buckets]):
            local = rule_factory(shards, **hyper)
        if not isinstance(local, Updater):
            raise TypeError(
                f"rule_factory must return a fusedupdates Updater, got {type(local).__name__}"
            )
        if (local.state_dtype == "int8") != (state_dtype == "int8"):
            raise ValueError(
                f"rule_factory built an updater with state_dtype={local.state_dtype!r} but "
                f"sharded() was given state_dtype={state_dtype!r}: pass state_dtype to "
                "sharded() as a keyword (it decides the layout of the 8-bit blocks)"
            )
        set_(self, "_params", params)
        set_(self, "_shapes", [p.shape for p in params])
        set_(self, "_dtypes", [p.dtype for p in params])
        set_(self, "_buckets", buckets)
        set_(self, "_flats", flats)
        set_(self, "_copy_out", copy_out)
        set_(self, "_copied", copied)  # per bucket: the params are copied in and out
        send = [xp.zeros(b.padded, dtype=b.dtype) for b in buckets]
        grad_views: list = [None] * len(params)
        for flat, b in zip(send, buckets):
            for i, view in zip(b.indices, views_of(flat, b)):
                grad_views[i] = view
        set_(self, "_send", send)
        set_(self, "_grad_views", grad_views)
        set_(self, "_recv", [xp.zeros(b.shard, dtype=b.dtype) for b in buckets])
        set_(self, "_local", local)

    def _describe(self) -> dict[str, Any]:
        """What every rank must share (compared with rank 0's before anything moves)."""
        local = self._local
        return {
            "shapes": [list(s) for s in self._shapes],
            "dtypes": [str(np.dtype(d)) for d in self._dtypes],
            "rule": local.rule,
            "state_dtype": local.state_dtype,
            "decoupled_weight_decay": local.decoupled_weight_decay,
            "hyperparameters": local.hyperparameters,
        }

    # --- attributes, as on Updater -----------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        local = self.__dict__.get("_local")
        if local is not None and name in local.hyperparameters:
            return getattr(local, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._local, name, value)  # validated there; AttributeError for unknown names

    def __repr__(self) -> str:
        tr = self._transport
        return (
            f"<fusedupdates sharded {self.rule} updater, {len(self._params)} params, rank "
            f"{tr.rank} of {tr.size}, t={self.t}>"
        )

    @property
    def params(self) -> list:
        """The parameters (a new list of the user's arrays)."""
        return list(self._params)

    @property
    def local(self) -> Updater:
        """The ordinary updater over this rank's shards."""
        return self._local

    @property
    def rule(self) -> str:
        return self._local.rule

    @property
    def t(self) -> int:
        return self._local.t

    @property
    def hyperparameters(self) -> dict[str, float]:
        return self._local.hyperparameters

    @property
    def decoupled_weight_decay(self) -> bool:
        return self._local.decoupled_weight_decay

    @property
    def rank(self) -> int:
        return self._transport.rank

    @property
    def size(self) -> int:
        return self._transport.size

    @property
    def uses_views(self) -> bool:
        """True when every parameter is a view of the flat buffers: no copies per step."""
        return not self._copy_out

    def grad_buffers(self) -> list:
        """Views of the flat send buffers, one per parameter (the same arrays every call).

        Write this rank's gradients into them (e.g. ``np.matmul(a, b, out=g)``) and pass them
        to :meth:`step`: then the step copies no gradient (it skips the pack phase).

        Returns
        -------
        list of arrays
            Shaped and typed like the params.

        Examples
        --------
        >>> gW, gb = upd.grad_buffers()  # doctest: +SKIP
        >>> np.matmul(x.T, err, out=gW); upd.step([gW, gb])  # doctest: +SKIP
        """
        return list(self._grad_views)

    @property
    def state_bytes(self) -> int:
        """Bytes of optimizer state held by this rank (its shards only)."""
        arrays = [a for group in self._local.state.values() for a in group if a is not None]
        return sum(a.nbytes for a in arrays)

    @property
    def buckets(self) -> list[Bucket]:
        """How the parameters are laid out in the flat buffers, one bucket per dtype."""
        return list(self._buckets)

    # --- stepping --------------------------------------------------------------------------
    def step(self, grads: Any, max_norm: float | None = None) -> Any:
        """Average ``grads`` over the ranks and apply one update; collective (every rank).

        Parameters
        ----------
        grads : list of arrays
            This rank's gradients, one per parameter (same shape and dtype); not modified.
        max_norm : float, optional
            Lasagne's ``total_norm_constraint`` on the averaged gradients, with the global
            norm. Must be the same on every rank.

        Returns
        -------
        float, 0-d device array or None
            The global norm of the averaged gradients before clipping when ``max_norm`` is
            given, else None: what a single-process step on the averaged grads returns.

        Raises
        ------
        TypeError, ValueError
            On every rank, before any array is written, if a rank's grads are invalid or the
            ranks disagree on ``max_norm``, ``t`` or a hyperparameter.

        Examples
        --------
        >>> upd.step(grads, max_norm=1.0)  # doctest: +SKIP
        0.73
        """
        tr, xp, timings = self._transport, self._transport.xp, {}
        clock = time.perf_counter()
        error = None
        try:
            grads = self._checked_grads(grads)
            max_norm = check_max_norm(max_norm)
        except (TypeError, ValueError) as err:
            error = err
        hyper = self._local.hyperparameters
        agree_on_step(
            tr,
            error,
            [math.nan if max_norm is None else max_norm, float(self.t), *hyper.values()],
            ["max_norm", "t", *hyper],
        )
        clock = _lap(timings, "handshake", clock)
        in_place = all(g is v for g, v in zip(grads, self._grad_views))  # grad_buffers()
        for b, send, flat, copied in zip(self._buckets, self._send, self._flats, self._copied):
            if not in_place:
                mine = grads if len(self._buckets) == 1 else [grads[i] for i in b.indices]
                pack(xp, with_gaps(xp, mine, b, self._zeros), send[: b.numel])
            if copied:  # the user's arrays are the truth: copy them in
                mine = [self._params[i] for i in b.indices]
                pack(xp, with_gaps(xp, mine, b, self._zeros), flat[: b.numel])
        clock = _lap(timings, "pack", clock)
        for send, recv in zip(self._send, self._recv):
            tr.reduce_scatter_sum(send, recv)
        clock = _lap(timings, "reduce_scatter", clock)
        norm, multiplier = None, 1.0
        if max_norm is not None:
            total = xp.asarray([sum(sum_squares(xp, r) for r in self._recv)], dtype=np.float64)
            tr.allreduce_sum(total)
            norm = math.sqrt(float(total[0])) / tr.size  # the norm of the averaged grads
            target = norm if norm < max_norm else max_norm
            multiplier = target / (_CLIP_EPSILON + norm)  # Lasagne's, as the kernel has it
        clock = _lap(timings, "norm", clock)
        self._update_shard(multiplier)
        clock = _lap(timings, "update", clock)
        for flat in self._flats:
            tr.allgather_inplace(flat)
        clock = _lap(timings, "all_gather", clock)
        for dst, src in self._copy_out:
            xp.copyto(dst, src)
        _lap(timings, "unpack", clock)
        object.__setattr__(self, "last_timings", timings)
        return None if norm is None else as_host_scalar(xp, norm)

    def _update_shard(self, multiplier: float) -> None:
        """One native step on the summed gradient shards, scaled by ``multiplier / size``.

        The scale rides in the kernel as ``grad_scale = size / multiplier`` (the kernel
        multiplies by its inverse), so no extra pass over the shard is needed. ``grad_scale``
        also makes the kernel skip the step if this shard holds a NaN or an Inf, which a
        single-process step would not do: then (and when the multiplier is 0 or not finite)
        the shard is scaled here and stepped plainly, so NaN and Inf propagate as they do in
        one process."""
        local, size = self._local, self._transport.size
        if multiplier == 1.0 and size == 1:
            local.step(self._recv)
            return
        scale = size / multiplier if multiplier > 0.0 else math.inf
        if math.isfinite(scale):
            local.step(self._recv, grad_scale=scale)
            if bool(local.last_step_applied):
                return
        xp = self._transport.xp
        for r in self._recv:
            xp.multiply(r, r.dtype.type(multiplier / size), out=r)
        local.step(self._recv)

    def _checked_grads(self, grads: Any) -> list:
        """The grads as a list, or TypeError/ValueError naming the first bad index."""
        if type(grads) is not list and type(grads) is not tuple:
            grads = as_list(grads, "grads")
        if len(grads) != len(self._params):
            raise ValueError(f"got {len(grads)} grads for {len(self._params)} params")
        array = self._transport.xp.ndarray
        if not all(type(g) is array or isinstance(g, array) for g in grads):
            i = next(i for i, g in enumerate(grads) if not isinstance(g, array))
            what = "None (frozen parameters are not supported when sharded)"
            raise TypeError(
                f"grads[{i}]: expected a {array.__module__}.ndarray, got "
                f"{what if grads[i] is None else type(grads[i]).__name__}"
            )
        if [g.shape for g in grads] != self._shapes or [g.dtype for g in grads] != self._dtypes:
            for i, (g, p) in enumerate(zip(grads, self._params)):
                if g.dtype != p.dtype:
                    raise TypeError(f"grads[{i}]: dtype {g.dtype} does not match {p.dtype}")
                if g.shape != p.shape:
                    raise ValueError(
                        f"grads[{i}]: shape {g.shape} does not match params[{i}] shape {p.shape}"
                    )
        return grads

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The FULL, unsharded state in the single-process format, on every rank; collective.

        Returns
        -------
        dict
            Exactly what :meth:`fusedupdates.Updater.state_dict` of a single-process updater
            over the same params would return: loadable by one, or by a sharded updater over
            any number of ranks.

        Examples
        --------
        >>> ckpt = upd.state_dict()  # doctest: +SKIP
        """
        return full_state_dict(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a single-process (or :meth:`state_dict`) dict; collective: every rank
        passes the same dict and keeps only its shard. A dict that does not match raises the
        same error on every rank and changes nothing."""
        load_full_state_dict(self, state_dict)

    def save(self, file: Any) -> None:
        """Write :meth:`state_dict` as :meth:`fusedupdates.Updater.save` does, from rank 0
        only; collective. Examples: ``upd.save("opt.npz")``."""
        write_checkpoint(self, file)

    def load(self, file: Any) -> None:
        """Restore a file written by :meth:`save` or :meth:`fusedupdates.Updater.save`;
        every rank reads it. Collective."""
        read_checkpoint(self, file)


def _lap(timings: dict, name: str, start: float) -> float:
    now = time.perf_counter()
    timings[name] = now - start
    return now
