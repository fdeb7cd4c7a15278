"""Updater behaviour: state_dict resume, schedules, threads, momentum subsets, build info."""

from __future__ import annotations

import threading

import fusedupdates as fu
import numpy as np
import pytest
from _support import (
    BASE_RULES,
    HYPER,
    MODIFIERS,
    STATE_DTYPE,
    STATE_NAMES,
    RefRunner,
    check_matches,
    make_updater,
    random_grads,
    random_params,
)

SHAPES = [(5,), (3, 4), (), (1000,)]


def _grad_sequence(rng, n, shapes=SHAPES, dtype=np.float64):
    return [random_grads(rng, shapes, dtype) for _ in range(n)]


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_state_dict_resume_is_bit_exact(xp, rng, rule, modifier, dtype):
    init = random_params(rng, SHAPES, dtype)
    seq = _grad_sequence(rng, 16, dtype=dtype)
    a_params = [xp.asarray(p) for p in init]
    a = make_updater(fu, rule, a_params, modifier, **HYPER[rule])
    for g in seq[:8]:
        a.step([xp.asarray(x) for x in g])
    sd = a.state_dict()
    assert set(sd) >= {"rule", "t", "hyperparameters", "state"}
    assert sd["t"] == 8
    for bufs in sd["state"].values():
        for buf in bufs:
            assert buf is None or isinstance(buf, np.ndarray)
    b_params = [xp.asarray(xp.get(p)) for p in a_params]  # a checkpoint of the params
    b = make_updater(fu, rule, b_params, modifier, **HYPER[rule])
    b.load_state_dict(sd)
    assert b.t == 8
    for name in sd["state"]:  # mutating the dict must not touch the live state
        for buf in sd["state"][name]:
            if buf is not None:
                buf[...] = 123
    for g in seq[8:]:
        a.step([xp.asarray(x) for x in g])
        b.step([xp.asarray(x) for x in g])
    assert a.t == b.t == 16
    for pa, pb in zip(a_params, b_params):
        assert np.array_equal(xp.get(pa), xp.get(pb))
    assert set(a.state) == set(b.state)
    for name in a.state:
        for sa, sb in zip(a.state[name], b.state[name]):
            assert (sa is None and sb is None) or np.array_equal(xp.get(sa), xp.get(sb))


def test_state_dict_restores_hyperparameters(xp):
    p = [xp.asarray(np.ones(3))]
    a = fu.adam(p, learning_rate=0.123, beta1=0.5)
    b = fu.adam([xp.asarray(np.ones(3))])
    b.load_state_dict(a.state_dict())
    assert b.learning_rate == pytest.approx(0.123) and b.beta1 == pytest.approx(0.5)


def test_load_state_dict_rejects_a_mismatch(xp):
    a = fu.adam([xp.asarray(np.ones(3))])
    a.step([xp.asarray(np.ones(3))])
    wrong_shape = fu.adam([xp.asarray(np.ones(4))])
    with pytest.raises(ValueError):
        wrong_shape.load_state_dict(a.state_dict())
    other_rule = fu.rmsprop([xp.asarray(np.ones(3))])
    with pytest.raises(ValueError):
        other_rule.load_state_dict(a.state_dict())


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", ["sgd", "adadelta", "adam", "amsgrad"])
def test_hyperparameter_schedule(xp, rng, rule, modifier):
    """learning_rate (and momentum) changed between steps match the reference schedule."""
    init = random_params(rng, SHAPES, np.float64)
    params = [xp.asarray(p) for p in init]
    upd = make_updater(fu, rule, params, modifier, **HYPER[rule])
    runner = RefRunner(rule, init, modifier, **HYPER[rule])
    for k, g in enumerate(_grad_sequence(rng, 20)):
        lr = HYPER[rule]["learning_rate"] * 0.8**k
        upd.learning_rate = lr
        runner.hyper["learning_rate"] = lr
        if modifier != "none" and k == 10:
            upd.momentum = runner.mu = 0.3
        upd.step([xp.asarray(x) for x in g])
        runner.step(g)
        check_matches(upd, runner, xp, np.float64, f"{rule} schedule k={k}")
    assert upd.learning_rate == pytest.approx(HYPER[rule]["learning_rate"] * 0.8**19)
    assert upd.hyperparameters["learning_rate"] == pytest.approx(upd.learning_rate)


def test_hyperparameters_dict_and_attributes():
    upd = fu.adam([np.ones(2)], learning_rate=0.01, beta2=0.99)
    hp = upd.hyperparameters
    assert hp["learning_rate"] == 0.01 and hp["beta2"] == 0.99
    assert hp["beta1"] == 0.9 and hp["epsilon"] == 1e-8
    wrapped = fu.apply_momentum(upd, momentum=0.6)
    assert wrapped.learning_rate == 0.01 and wrapped.momentum == 0.6
    assert fu.rmsprop([np.ones(2)]).rho == 0.9
    assert fu.adadelta([np.ones(2)]).rho == 0.95


def test_two_threads_give_the_sequential_result(rng):
    init = random_params(rng, [(300_000,), (7,)], np.float32)
    seqs = [_grad_sequence(rng, 10, [(300_000,), (7,)], np.float32) for _ in range(2)]

    def run(params, seq):
        upd = fu.apply_nesterov_momentum(fu.adam(params, learning_rate=0.01))
        for g in seq:
            upd.step(g)

    sequential = [[p.copy() for p in init] for _ in range(2)]
    for params, seq in zip(sequential, seqs):
        run(params, seq)
    threaded = [[p.copy() for p in init] for _ in range(2)]
    threads = [
        threading.Thread(target=run, args=(params, seq)) for params, seq in zip(threaded, seqs)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for ps, pt in zip(sequential, threaded):
        for a, b in zip(ps, pt):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_on_a_subset_of_params(xp, rng, nesterov):
    init = random_params(rng, SHAPES, np.float64)
    params = [xp.asarray(p) for p in init]
    inner = fu.rmsprop(params, **HYPER["rmsprop"])
    apply = fu.apply_nesterov_momentum if nesterov else fu.apply_momentum
    upd = apply(inner, params=[params[1], params[3]], momentum=0.6)
    vel = upd.state["velocity"]
    assert vel[0] is None and vel[2] is None
    assert vel[1].shape == (3, 4) and vel[3].shape == (1000,)
    modifier = "nesterov" if nesterov else "momentum"
    runner = RefRunner("rmsprop", init, modifier, mu=0.6, subset={1, 3}, **HYPER["rmsprop"])
    for g in _grad_sequence(rng, 20):
        upd.step([xp.asarray(x) for x in g])
        runner.step(g)
        check_matches(upd, runner, xp, np.float64, "subset")
    for a, b in zip(inner.state["accu"], upd.state["accu"]):  # shared with the inner updater
        assert np.array_equal(xp.get(a), xp.get(b))
    assert upd.params[1] is params[1]


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float16, np.float64], ids=lambda d: np.dtype(d).name
)
def test_dtypes_are_kept(xp, rng, dtype):
    init = random_params(rng, SHAPES, dtype)
    params = [xp.asarray(p) for p in init]
    upd = fu.apply_momentum(fu.amsgrad(params, learning_rate=0.01))
    for g in _grad_sequence(rng, 3, dtype=dtype):
        upd.step([xp.asarray(x) for x in g])
    for p, q in zip(upd.params, params):
        assert p is q and p.dtype == np.dtype(dtype)
    for name in [*STATE_NAMES["amsgrad"], "velocity"]:
        for s in upd.state[name]:
            assert s.dtype == STATE_DTYPE[np.dtype(dtype)]
    assert not np.array_equal(xp.get(params[0]), init[0])  # updated in place


def test_step_counter_and_updater_attributes(xp):
    params = [xp.asarray(np.ones(3)), xp.asarray(np.ones((2, 2)))]
    upd = fu.adamax(params)
    assert upd.t == 0
    assert len(upd.params) == 2 and all(a is b for a, b in zip(upd.params, params))
    assert list(upd.state) == STATE_NAMES["adamax"]
    for _ in range(3):
        upd.step([xp.asarray(np.ones(3)), xp.asarray(np.ones((2, 2)))])
    assert upd.t == 3 and isinstance(upd.t, int)


def test_build_info():
    info = fu.build_info()
    for key in ("openmp", "cuda", "simd", "num_threads", "version"):
        assert key in info
    assert isinstance(info["openmp"], bool) and isinstance(info["num_threads"], int)
    assert info["num_threads"] == fu.get_num_threads() >= 1


def test_set_num_threads_gives_identical_results(rng):
    old = fu.get_num_threads()
    init = random_params(rng, [(200_001,)], np.float32)
    seq = _grad_sequence(rng, 5, [(200_001,)], np.float32)
    results = []
    try:
        for n in (1, 2):
            fu.set_num_threads(n)
            if fu.build_info()["openmp"]:
                assert fu.get_num_threads() == n
                assert fu.build_info()["num_threads"] == n
            params = [p.copy() for p in init]
            upd = fu.apply_momentum(fu.adam(params, learning_rate=0.01))
            for g in seq:
                upd.step(g)
            results.append(params[0])
    finally:
        fu.set_num_threads(old)
    assert fu.get_num_threads() == old
    assert np.array_equal(results[0], results[1])
