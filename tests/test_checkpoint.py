"""Checkpoint files (.npz without pickled objects), pickle and deepcopy: each resumes bit for
bit, and a bad file changes nothing."""

from __future__ import annotations

import copy
import pickle

import fusedupdates as fu
import numpy as np
import pytest


def _build(rng, params=None):
    params = params or [rng.standard_normal(6), rng.standard_normal((2, 3)), rng.standard_normal(4)]
    inner = fu.adam(params, learning_rate=0.01, weight_decay=0.1, decoupled_weight_decay=True)
    return fu.apply_nesterov_momentum(inner, params=[params[0], params[2]], momentum=0.6)


def _grads(rng):
    return [rng.standard_normal(6), rng.standard_normal((2, 3)), rng.standard_normal(4)]


def _continue(upd, grads):
    for g in grads:
        upd.step(g)
    return [p.copy() for p in upd.params]


def test_save_load_npz_resumes_bit_for_bit(tmp_path, rng):
    upd = _build(rng)
    for _ in range(3):
        upd.step(_grads(rng))
    upd.learning_rate = 0.02
    upd.save(tmp_path / "opt.npz")
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:  # no object arrays inside
        assert all(f[k].dtype != object for k in f.files)
    resumed = _build(rng, [p.copy() for p in upd.params])
    resumed.load(tmp_path / "opt.npz")
    assert resumed.t == 3 and resumed.learning_rate == 0.02
    later = [_grads(rng) for _ in range(4)]
    for a, b in zip(_continue(upd, later), _continue(resumed, later)):
        np.testing.assert_array_equal(a, b)


def test_loading_a_bad_file_changes_nothing(tmp_path, rng):
    upd = _build(rng)
    upd.step(_grads(rng))
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    other = fu.sgd([np.ones(6)], learning_rate=0.1)
    other.save(tmp_path / "sgd.npz")
    before = upd.state_dict()
    for name, exc in (("other.npz", ValueError), ("sgd.npz", ValueError)):
        with pytest.raises(exc):
            upd.load(tmp_path / name)
    after = upd.state_dict()
    assert after["t"] == before["t"]
    for name in before["state"]:
        for a, b in zip(before["state"][name], after["state"][name]):
            assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("clone", ["pickle", "deepcopy"])
def test_pickle_and_deepcopy_resume_bit_for_bit(rng, clone):
    upd = _build(rng)
    for _ in range(2):
        upd.step(_grads(rng))
    twin = pickle.loads(pickle.dumps(upd)) if clone == "pickle" else copy.deepcopy(upd)
    assert twin.rule == upd.rule and twin.t == 2 and twin.hyperparameters == upd.hyperparameters
    assert twin.decoupled_weight_decay and [v is None for v in twin.state["velocity"]] == [
        False,
        True,
        False,
    ]
    assert all(a is not b for a, b in zip(twin.params, upd.params))  # its own arrays
    later = [_grads(rng) for _ in range(3)]
    for a, b in zip(_continue(upd, later), _continue(twin, later)):
        np.testing.assert_array_equal(a, b)


def test_state_dict_values_round_trip_through_numpy_types(rng):
    upd = _build(rng)
    upd.step(_grads(rng))
    d = upd.state_dict()
    d["t"] = np.int64(d["t"])
    d["hyperparameters"] = {k: np.array(v) for k, v in d["hyperparameters"].items()}
    twin = _build(rng, [p.copy() for p in upd.params])
    twin.load_state_dict(d)
    assert twin.t == 1
