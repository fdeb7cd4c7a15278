"""CUDA backend: steps inside CUDA graphs (GPU only).

A captured step must replay bit for bit like eager steps, advance t on the device (t counts the
updates applied: replays included, the recorded step itself not), and pick up hyperparameters
changed between replays, without touching a momentum wrapper's own momentum. The capture
itself is the no-sync check: a step that synchronised the stream, or copied from device to
host, would invalidate it.
"""

from __future__ import annotations

import fusedupdates as fu
import numpy as np
import pytest
from _support import (
    HYPER,
    MODIFIERS,
    make_updater,
    random_grads,
    random_params,
    require_cuda_module,
)

cupy = require_cuda_module()

SHAPES = [(5,), (3, 7), (40_000,)]
STEPS = 6


def _setup(rng, rule, modifier, dtype=np.float32):
    init = random_params(rng, SHAPES, dtype)
    grads = [random_grads(rng, SHAPES, dtype) for _ in range(STEPS)]
    return init, grads


def _snapshot(upd):
    out = [cupy.asnumpy(p) for p in upd.params]
    for name in sorted(upd.state):
        out += [cupy.asnumpy(s) for s in upd.state[name] if s is not None]
    return out


def _eager(rule, modifier, init, grads, max_norm=None, lr_at=None):
    """Reference run: eager steps, grads copied into fixed buffers like the graph run."""
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        upd = make_updater(fu, rule, [cupy.asarray(p) for p in init], modifier, **HYPER[rule])
        bufs = [cupy.empty(g.shape, g.dtype) for g in grads[0]]
        norms = []
        for k, gk in enumerate(grads):
            if lr_at is not None and k == lr_at[0]:
                upd.learning_rate = lr_at[1]
            for b, g in zip(bufs, gk):
                b.set(g, stream=stream)
            norm = upd.step(bufs, max_norm=max_norm)
            norms.append(None if norm is None else float(norm))
        stream.synchronize()
    return upd, norms


def _graph(rule, modifier, init, grads, max_norm=None, lr_at=None, warmup=True):
    """Step 1 eager (unless not warmup), capture one step, replay it for the rest."""
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        upd = make_updater(fu, rule, [cupy.asarray(p) for p in init], modifier, **HYPER[rule])
        bufs = [cupy.empty(g.shape, g.dtype) for g in grads[0]]
        norms = []
        first = 0
        if warmup:
            for b, g in zip(bufs, grads[0]):
                b.set(g, stream=stream)
            norm = upd.step(bufs, max_norm=max_norm)
            norms.append(None if norm is None else float(norm))
            first = 1
        stream.begin_capture()
        try:
            norm_out = upd.step(bufs, max_norm=max_norm)  # recorded, not run
        finally:
            graph = stream.end_capture()
        for k in range(first, len(grads)):
            if lr_at is not None and k == lr_at[0]:
                upd.learning_rate = lr_at[1]
            for b, g in zip(bufs, grads[k]):
                b.set(g, stream=stream)
            graph.launch(stream=stream)
            norms.append(None if norm_out is None else float(norm_out))
        stream.synchronize()
    return upd, norms


def _assert_identical(a, b):
    for x, y in zip(_snapshot(a), _snapshot(b)):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", ["sgd", "adagrad", "adadelta", "adam", "amsgrad"])
def test_replay_is_bit_identical_to_eager(rng, rule, modifier):
    init, grads = _setup(rng, rule, modifier)
    eager, _ = _eager(rule, modifier, init, grads)
    graph, _ = _graph(rule, modifier, init, grads)
    _assert_identical(eager, graph)
    # Updates applied: the warm-up and STEPS - 1 replays (the recorded step itself is none).
    assert eager.t == graph.t == STEPS


def test_replay_with_max_norm_returns_each_norm(rng):
    init, grads = _setup(rng, "adam", "momentum")
    eager, eager_norms = _eager("adam", "momentum", init, grads, max_norm=0.5)
    graph, graph_norms = _graph("adam", "momentum", init, grads, max_norm=0.5)
    _assert_identical(eager, graph)
    assert eager_norms == graph_norms


def test_learning_rate_changed_between_replays(rng):
    init, grads = _setup(rng, "rmsprop", "none")
    eager, _ = _eager("rmsprop", "none", init, grads, lr_at=(3, 0.5))
    graph, _ = _graph("rmsprop", "none", init, grads, lr_at=(3, 0.5))
    _assert_identical(eager, graph)
    unchanged, _ = _graph("rmsprop", "none", init, grads)
    assert not np.array_equal(_snapshot(unchanged)[0], _snapshot(graph)[0])


def test_first_step_captured_without_warmup(rng):
    init, grads = _setup(rng, "adamax", "nesterov")
    eager, _ = _eager("adamax", "nesterov", init, grads)
    graph, _ = _graph("adamax", "nesterov", init, grads, warmup=False)
    _assert_identical(eager, graph)
    assert graph.t == STEPS  # STEPS replays


def test_eager_step_after_replays_continues_device_t(rng):
    init, grads = _setup(rng, "adam", "none")
    eager, _ = _eager("adam", "none", init, grads + grads[:1])
    graph, _ = _graph("adam", "none", init, grads)
    with cupy.cuda.Stream(non_blocking=True) as s:
        graph.step([cupy.asarray(g) for g in grads[0]])  # t = STEPS + 1 on the device
        s.synchronize()
    _assert_identical(eager, graph)
    assert graph.t == STEPS + 1


def test_functional_step_captures_its_arguments(rng):
    (p0,) = random_params(rng, [(1000,)], np.float32)
    (g0,) = random_grads(rng, [(1000,)], np.float32)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        a, b = cupy.asarray(p0), cupy.asarray(p0)
        ma, va, mb, vb = (cupy.zeros(1000, np.float32) for _ in range(4))
        g = cupy.asarray(g0)
        for _ in range(3):
            fu.functional.adam(a, g, ma, va, step=4, **HYPER["adam"])
        s.begin_capture()
        try:
            fu.functional.adam(b, g, mb, vb, step=4, **HYPER["adam"])
        finally:
            graph = s.end_capture()
        for _ in range(3):
            graph.launch(stream=s)
        s.synchronize()
    assert np.array_equal(cupy.asnumpy(a), cupy.asnumpy(b))


def test_changing_a_hyperparameter_inside_a_capture_is_an_error(rng):
    """Once a step is captured the updater's values live on the device: writing one (or reading
    t) while its stream is capturing would be recorded into the graph, so it raises and changes
    nothing; before any captured step, values are host-side only and can change any time."""
    (p0,) = random_params(rng, [(10,)], np.float32)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        upd = fu.adam([cupy.asarray(p0)])
        g = cupy.ones(10, np.float32)
        upd.step([g])
        s.begin_capture()
        try:
            upd.learning_rate = 0.002  # no step captured yet: nothing on the device to write
            upd.step([g])  # from here on the updater reads its device copy
            with pytest.raises(RuntimeError, match="capturing"):
                upd.learning_rate = 0.5
            with pytest.raises(RuntimeError, match="capturing"):
                _ = upd.t
        finally:
            graph = s.end_capture()
        assert upd.learning_rate == 0.002  # the failed assignment changed nothing
        upd.learning_rate = 0.5  # outside the capture: written to the device copy
        graph.launch(stream=s)
        s.synchronize()
    assert upd.learning_rate == 0.5 and upd.t == 2


def test_wrapper_graph_keeps_its_momentum_when_the_inner_changes(rng):
    """The inner updater's learning rate changed between replays of a graph captured from its
    momentum wrapper: the replays see the new rate and keep the wrapper's momentum."""
    init, grads = _setup(rng, "rmsprop", "momentum")
    results = []
    for captured in (False, True):
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            inner = fu.rmsprop([cupy.asarray(p) for p in init], **HYPER["rmsprop"])
            upd = fu.apply_momentum(inner, momentum=0.7)
            bufs = [cupy.empty(g.shape, g.dtype) for g in grads[0]]
            run = upd.step
            for k, gk in enumerate(grads):
                if k == 3:
                    inner.learning_rate = 0.5
                for b, g in zip(bufs, gk):
                    b.set(g, stream=stream)
                if captured and k == 1:
                    stream.begin_capture()
                    try:
                        upd.step(bufs)
                    finally:
                        graph = stream.end_capture()
                    run = lambda _bufs, g=graph, s=stream: g.launch(stream=s)  # noqa: E731
                run(bufs)
            stream.synchronize()
        assert upd.momentum == 0.7 and upd.t == len(grads)
        results.append(_snapshot(upd))
    for x, y in zip(*results):
        assert np.array_equal(x, y)


def test_t_waits_for_the_stream_the_replays_ran_on(rng):
    """Reading t synchronises the stream of the updater's steps, not CuPy's current stream."""
    (p0,) = random_params(rng, [(1 << 22,)], np.float32)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        upd = fu.amsgrad([cupy.asarray(p0)])
        g = [cupy.ones(p0.shape, np.float32)]
        upd.step(g)
        s.begin_capture()
        try:
            upd.step(g)
        finally:
            graph = s.end_capture()
        for _ in range(30):
            graph.launch(stream=s)
    assert cupy.cuda.get_current_stream() != s
    assert upd.t == 31  # read outside `with s`, with the replays possibly still running


def test_steps_alternating_between_streams_match_one_stream(rng):
    """A table uploaded for one stream is ordered before its use on another, and each step
    comes after the previous one whatever stream it ran on."""
    init, grads = _setup(rng, "adam", "nesterov")
    eager, _ = _eager("adam", "nesterov", init, grads)
    streams = [cupy.cuda.Stream(non_blocking=True) for _ in range(3)]
    with streams[0]:
        upd = make_updater(fu, "adam", [cupy.asarray(p) for p in init], "nesterov", **HYPER["adam"])
    for k, gk in enumerate(grads):
        with streams[k % 3]:
            upd.step([cupy.asarray(g) for g in gk])  # fresh grads: a new table each step
    for s in streams:
        s.synchronize()
    _assert_identical(eager, upd)
