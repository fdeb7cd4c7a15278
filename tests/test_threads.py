"""One updater used from several threads: steps are serialised (each applied exactly once),
state_dict never sees half a step, and no array is freed while a step reads it.

Evidence is counts and bit equality against a sequential run, not timing.
"""

from __future__ import annotations

import threading
import time

import fusedupdates as fu
import numpy as np
import pytest

N = 1 << 20  # large enough that a step spans many thread switches


def _adam(n=N):
    return fu.adam([np.ones(n, np.float32)], learning_rate=0.01)


def _sequential_states(steps: int, grad: np.ndarray) -> list[dict]:
    """state_dict of a single-threaded run after 0..steps steps with a constant grad."""
    upd = _adam(grad.size)
    out = [upd.state_dict()]
    for _ in range(steps):
        upd.step([grad])
        out.append(upd.state_dict())
    return out


def test_four_threads_apply_every_step_once():
    grad = np.full(N, 0.5, np.float32)
    upd = _adam()
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        for _ in range(50):
            upd.step([grad])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert upd.t == 200
    want = _adam()
    for _ in range(200):
        want.step([grad])
    np.testing.assert_array_equal(upd.params[0], want.params[0])
    for name in ("m", "v"):
        np.testing.assert_array_equal(upd.state[name][0], want.state[name][0])


def test_state_dict_during_steps_is_never_torn():
    grad = np.full(N, 0.25, np.float32)
    steps = 30
    upd = _adam()
    done = threading.Event()

    def stepper():
        for _ in range(steps):
            upd.step([grad])
        done.set()

    snapshots = []
    th = threading.Thread(target=stepper)
    th.start()
    while not done.is_set() or len(snapshots) < 5:
        snapshots.append(upd.state_dict())
    th.join()
    reference = _sequential_states(steps, grad)
    for snap in snapshots:
        want = reference[snap["t"]]
        for name in ("m", "v"):
            np.testing.assert_array_equal(snap["state"][name][0], want["state"][name][0])


def test_load_state_dict_during_steps_is_consistent():
    grad = np.full(N, 0.25, np.float32)
    reference = _sequential_states(12, grad)
    upd = _adam()
    stop = threading.Event()

    def stepper():
        while not stop.is_set():
            upd.step([grad])

    th = threading.Thread(target=stepper)
    th.start()
    time.sleep(0.01)
    upd.load_state_dict(reference[7])  # applied between two steps, never inside one
    stop.set()
    th.join()
    final = upd.state_dict()
    replay = _adam()
    replay.load_state_dict(reference[7])
    # Every step taken after the load continues from it: replaying that many steps on the
    # loaded checkpoint gives the same bits (steps before the load were overwritten).
    for _ in range(final["t"] - 7):
        replay.step([grad])
    assert replay.t == final["t"]
    for name in ("m", "v"):
        np.testing.assert_array_equal(final["state"][name][0], replay.state[name][0])


@pytest.mark.parametrize("victim", ["grads", "params", "state"])
def test_lists_cleared_during_a_step_do_not_free_its_arrays(victim):
    n = 20_000_000
    upd = fu.adam([np.ones(n, np.float32)])
    grads = [np.full(n, 0.5, np.float32)]
    upd.step(grads)
    th = threading.Thread(target=upd.step, args=(grads,))
    th.start()
    time.sleep(0.002)
    if victim == "grads":
        grads.clear()  # the caller's list: the step holds its own references
    elif victim == "params":
        upd.params.clear()  # a copy: the updater's own list cannot be changed
    else:
        upd.state["m"].clear()
    th.join()
    assert upd.t == 2
    assert len(upd.params) == 1 and len(upd.state["m"]) == 1
    want = fu.adam([np.ones(n, np.float32)])
    g = np.full(n, 0.5, np.float32)
    want.step([g])
    want.step([g])
    np.testing.assert_array_equal(upd.params[0], want.params[0])


def test_inner_and_wrapper_share_t_and_lock():
    grad = np.full(N, 0.5, np.float32)
    inner = fu.rmsprop([np.ones(N, np.float32)], learning_rate=0.01)
    outer = fu.apply_momentum(inner, momentum=0.5)
    threads = [
        threading.Thread(target=lambda u=u: [u.step([grad]) for _ in range(20)])
        for u in (inner, outer, inner, outer)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert inner.t == outer.t == 80
