"""Parameter groups in the CUDA binding without a GPU (stand-in arrays, see test_cuda_binding):
the CPU stepper's API and messages, and one launch per (dtype, group, modifier)."""

from __future__ import annotations

import numpy as np
import pytest

_cuda = pytest.importorskip("fusedupdates._cuda", reason="built without the CUDA backend")
from _fake_cuda import _errors, _f32, _wrap  # noqa: E402
from fusedupdates import _cpu  # noqa: E402

SGD, ADAGRAD = 0, 1


def test_parameter_groups_like_the_cpu():
    """Group indices, per-group values and their errors: the same API and messages."""

    def bad_group(module, conv):
        module.Stepper(SGD, conv(_f32(3)), [], []).set_hyperparameters(group=1, learning_rate=0.1)

    def bad_read(module, conv):
        module.Stepper(SGD, conv(_f32(3, 4)), [], [], [0, 1]).hyperparameters(group=2)

    def negative_read(module, conv):
        module.Stepper(SGD, conv(_f32(3)), [], []).hyperparameters(group=-1)

    def bad_indices(module, conv):
        module.Stepper(SGD, conv(_f32(3, 4)), [], [], [0, 2])

    def wrong_count(module, conv):
        module.Stepper(SGD, conv(_f32(3, 4)), [], [], [0])

    for call in (bad_group, bad_read, negative_read, bad_indices, wrong_count):
        cpu, cuda = _errors(call)
        assert cpu == cuda
    for module, conv in ((_cpu, lambda x: x), (_cuda, _wrap)):
        s = module.Stepper(ADAGRAD, conv(_f32(3, 4, 5)), [conv(_f32(3, 4, 5))], ["accu"], [1, 0, 1])
        s.set_hyperparameters(group=None, learning_rate=0.5, epsilon=0.25)
        s.set_hyperparameters(group=1, learning_rate=0.125)
        assert s.num_groups == 2 and s.last_step_applied is True
        assert s.hyperparameters(group=0)["learning_rate"] == 0.5
        assert s.hyperparameters(group=1)["learning_rate"] == 0.125
        assert s.hyperparameters(group=1)["epsilon"] == 0.25
        w = s.with_momentum(conv([np.zeros(3, np.float32), None, np.zeros(5, np.float32)]), True)
        w.set_hyperparameters(group=0, momentum=0.5)
        w.set_hyperparameters(group=1, momentum=0.75)
        assert w.num_groups == 2
        assert [w.hyperparameters(group=g)["momentum"] for g in (0, 1)] == [0.5, 0.75]
        assert w.hyperparameters(group=1)["learning_rate"] == 0.125  # shared with the inner


def test_launches_split_by_group():
    """Each (dtype, group, modifier) runs its own launch, so each gets its group's values;
    the chunk ranges still tile every chunk in order."""
    shapes = [(40_000,), (3,), (5,), (7,)]
    params = _f32(*shapes)
    s = _cuda.Stepper(ADAGRAD, _wrap(params), [_wrap(_f32(*shapes))], ["accu"], [1, 0, 1, 0])
    w = s.with_momentum(_wrap([None, None, np.zeros(5, np.float32), None]), False)
    grads = _wrap(_f32(*shapes))
    assert [(x[0], x[1], x[4]) for x in s.prepare_step(grads)] == [
        ("float32", False, 0),
        ("float32", False, 1),
    ]
    plan = w.prepare_step(grads)
    assert [(x[1], x[4]) for x in plan] == [(False, 0), (False, 1), (True, 1)]
    assert [x[3] - x[2] for x in plan] == [2, 2, 1]  # chunks: (3, 7), (40000 -> 2), (5,)
    assert plan[0][2] == 0 and all(a[3] == b[2] for a, b in zip(plan, plan[1:]))


def test_functional_steppers_have_one_group():
    with pytest.raises(ValueError, match="one parameter group"):
        _cuda.Stepper(SGD, _wrap(_f32(3, 4)), [], [], [0, 1], functional=True)
