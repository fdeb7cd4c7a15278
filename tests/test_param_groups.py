"""Parameter groups (torch's convention): per-group hyperparameters in one native step, live
edits, attributes, checkpoints and errors."""

from __future__ import annotations

import pickle

import fusedupdates as fu
import numpy as np
import pytest
from _support import BASE_RULES, HYPER, MODIFIERS, MU, REF, RefRunner, check_matches

SHAPES_A = [(6,), (3, 4)]
SHAPES_B = [(5,), (2,)]
CHANGED = {"learning_rate": 0.5, "rho": 0.5, "beta1": 0.5, "beta2": 0.7, "epsilon": 0.3}


def _group_b_hyper(rule):
    return {
        k: CHANGED[k] * v if k == "learning_rate" else CHANGED[k] for k, v in HYPER[rule].items()
    }


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("rule", BASE_RULES)
def test_each_group_steps_with_its_own_values(xp, rng, rule, modifier):
    init_a = [rng.standard_normal(s) for s in SHAPES_A]
    init_b = [rng.standard_normal(s) for s in SHAPES_B]
    hyper_b = {**_group_b_hyper(rule), "weight_decay": 0.2}
    groups = [
        {"params": [xp.asarray(p) for p in init_a]},
        {"params": [xp.asarray(p) for p in init_b], **hyper_b},
    ]
    upd = getattr(fu, rule)(groups, **HYPER[rule])
    if modifier != "none":
        apply = fu.apply_momentum if modifier == "momentum" else fu.apply_nesterov_momentum
        upd = apply(upd, momentum=MU)
    assert len(upd.param_groups) == 2 and upd._stepper.num_groups == 2
    run_a = RefRunner(rule, init_a, modifier, **HYPER[rule])
    run_b = RefRunner(rule, init_b, modifier, **hyper_b)
    for step in range(8):
        ga = [rng.standard_normal(s) for s in SHAPES_A]
        gb = [rng.standard_normal(s) for s in SHAPES_B]
        max_norm = 2.0 if step % 3 == 2 else None
        upd.step([xp.asarray(g) for g in [*ga, *gb]], max_norm=max_norm)
        if max_norm is not None:  # one norm over every group's grads
            clipped = REF.total_norm_constraint([*ga, *gb], max_norm)
            ga, gb = clipped[: len(ga)], clipped[len(ga) :]
        run_a.step(ga)
        run_b.step(gb)
    host = type("Host", (), {"get": staticmethod(xp.get)})
    for run, sl in ((run_a, slice(0, 2)), (run_b, slice(2, 4))):
        view = type("View", (), {})()
        view.params = upd.params[sl]
        view.state = {k: v[sl] for k, v in upd.state.items()}
        check_matches(view, run, host, np.float64, f"group {sl}")


def test_live_edits_attributes_and_errors():
    a, b = np.ones(4), np.ones(3)
    upd = fu.adam([{"params": [a]}, {"params": [b], "learning_rate": 0.1}], learning_rate=0.01)
    with pytest.raises(AttributeError, match="differs between the 2 parameter groups"):
        _ = upd.learning_rate
    assert upd.beta1 == 0.9 and "learning_rate" not in upd.hyperparameters
    group = upd.param_groups[1]
    assert group["learning_rate"] == 0.1 and group["params"][0] is b
    group["learning_rate"] = 0.2  # validated, pushed natively, shown everywhere
    assert upd.param_groups[1]["learning_rate"] == 0.2
    with pytest.raises(ValueError):
        group["learning_rate"] = -1.0
    with pytest.raises(ValueError, match="unknown hyperparameter 'lr'"):
        group["lr"] = 0.1
    with pytest.raises(TypeError):
        group["params"] = []
    upd.learning_rate = 0.05  # every group
    assert upd.learning_rate == 0.05 and group["learning_rate"] == 0.05
    assert dict(group) == {**{"params": [b]}, **upd.param_groups[1]}


def test_learning_rate_edit_takes_effect_for_one_group_only():
    a, b = np.ones(2), np.ones(2)
    upd = fu.sgd([{"params": [a]}, {"params": [b]}], learning_rate=0.1)
    upd.param_groups[1]["learning_rate"] = 0.0
    upd.step([np.ones(2), np.ones(2)])
    np.testing.assert_allclose(a, 0.9)
    np.testing.assert_array_equal(b, 1.0)


def test_group_momentum_from_the_factory():
    a, b = np.ones(2), np.ones(2)
    upd = fu.momentum([{"params": [a]}, {"params": [b], "momentum": 0.0}], learning_rate=0.1)
    assert upd.param_groups[0]["momentum"] == 0.9 and upd.param_groups[1]["momentum"] == 0.0
    for _ in range(2):
        upd.step([np.ones(2), np.ones(2)])
    np.testing.assert_allclose(b, 0.8)  # no momentum: two plain sgd steps
    np.testing.assert_allclose(a, 1 - 0.1 - (0.9 * 0.1 + 0.1))


def test_groups_in_checkpoints_and_pickle(tmp_path, rng):
    def build():
        return fu.apply_momentum(
            fu.rmsprop(
                [{"params": [np.ones(3)], "weight_decay": 0.1}, {"params": [np.ones(2)]}],
                learning_rate=0.01,
            ),
            momentum=0.5,
        )

    upd = build()
    upd.param_groups[1]["momentum"] = 0.2
    upd.step([np.ones(3), np.ones(2)])
    d = upd.state_dict()
    assert [g["params"] for g in d["param_groups"]] == [[0], [1]]
    assert d["param_groups"][1]["momentum"] == 0.2
    upd.save(tmp_path / "g.npz")
    for twin in (build(), pickle.loads(pickle.dumps(upd))):
        if twin.t == 0:
            twin.load(tmp_path / "g.npz")
        assert twin.param_groups[0]["weight_decay"] == 0.1
        assert twin.param_groups[1]["momentum"] == 0.2 and twin.t == 1
    bad = dict(d, param_groups=[dict(d["param_groups"][0], params=[1]), d["param_groups"][1]])
    with pytest.raises(ValueError, match="params"):
        build().load_state_dict(bad)


@pytest.mark.parametrize(
    "params, exc, match",
    [
        ([{"lr": 0.1, "params": [np.ones(2)]}], ValueError, "unknown hyperparameter"),
        ([{"weights": [np.ones(2)]}], ValueError, "missing the 'params' key"),
        ([{"params": []}], ValueError, "non-empty"),
        ([np.ones(2), {"params": [np.ones(2)]}], TypeError, "mix of arrays"),
        ([{"params": [np.ones(2)], "learning_rate": "x"}], TypeError, "learning_rate"),
    ],
)
def test_bad_groups(params, exc, match):
    with pytest.raises(exc, match=match):
        fu.adam(params)


def test_sgd_learning_rate_may_come_from_every_group():
    upd = fu.sgd([{"params": [np.ones(2)], "learning_rate": 0.1}], learning_rate=None)
    assert upd.learning_rate == 0.1
