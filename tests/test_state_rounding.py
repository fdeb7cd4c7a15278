"""Stochastic rounding of bfloat16 state (state_rounding="stochastic"): unbiasedness, resume
and the errors. (Every rule and momentum mode against the reference's generator, the second
moment it keeps unbiased and thread-count independence, for bfloat16 and 8-bit state alike:
test_state_rounding_int8.py.)"""

from __future__ import annotations

import copy

import fusedupdates as fu
import numpy as np
import pytest
from _compact_support import RM

pytest.importorskip("ml_dtypes")


def test_rounding_is_unbiased_and_lands_on_neighbours():
    x = np.full(200_000, 1.0 + 2.0**-9 * 0.3)  # 0.3 of the way from 1 to the next bfloat16
    r = RM.stochastic_round_state(x, 5, 2, 1)
    assert set(np.unique(r)) == {1.0, 1.0 + 2.0**-7}
    assert abs(np.mean(r == 1.0 + 2.0**-7) - 0.3 * 2.0**-9 / 2.0**-7) < 0.01
    assert abs(np.mean(r) - x[0]) < 2e-5
    other = RM.stochastic_round_state(x, 5, 2, 0)  # another state: another stream
    assert np.mean(other != r) > 0.05


def test_resume_and_copies_go_on_bit_for_bit(rng):
    params = [rng.standard_normal(5000).astype(np.float32)]
    upd = fu.adam(params, state_dtype="bfloat16", state_rounding="stochastic")
    grads = [[rng.standard_normal(5000).astype(np.float32)] for _ in range(4)]
    for g in grads[:2]:
        upd.step(g)
    twin = copy.deepcopy(upd)
    assert twin.state_rounding == "stochastic"
    resumed = fu.adam([params[0].copy()], state_dtype="bfloat16", state_rounding="stochastic")
    resumed.load_state_dict(upd.state_dict())
    for g in grads[2:]:
        upd.step(g)
        twin.step(g)
        resumed.step(g)
    for other in (twin, resumed):
        np.testing.assert_array_equal(other.params[0], upd.params[0])
        for name in ("m", "v"):
            np.testing.assert_array_equal(
                other.state[name][0].view(np.uint16), upd.state[name][0].view(np.uint16)
            )


def test_errors():
    w = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="for state_dtype='bfloat16' or 'int8', not None"):
        fu.adam([w], state_rounding="stochastic")
    with pytest.raises(ValueError, match="or 'int8', not 'float32'"):
        fu.adam([w], state_dtype="float32", state_rounding="stochastic")
    with pytest.raises(ValueError, match="state_rounding must be one of"):
        fu.rmsprop([w], state_dtype="bfloat16", state_rounding="up")
    with pytest.raises(TypeError, match="state_rounding must be a str"):
        fu.rmsprop([w], state_dtype="bfloat16", state_rounding=True)
    assert fu.adagrad([w], state_dtype="bfloat16").state_rounding == "nearest"
