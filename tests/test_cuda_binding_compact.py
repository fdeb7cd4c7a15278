"""The CUDA binding's compact-state (8-bit) validation without a GPU: ``_cuda.Stepper`` on
stand-in arrays (``_fake_cuda``) must accept what ``_cpu.Stepper`` accepts (uint8 codes as
stepper states only, with their float32 block scales) and raise exactly what it raises, and
split its launches by state format. Skipped when the CUDA module was not built."""

from __future__ import annotations

import numpy as np
import pytest

_cuda = pytest.importorskip("fusedupdates._cuda", reason="built without the CUDA backend")
from _fake_cuda import _errors, _wrap  # noqa: E402
from fusedupdates import _cpu  # noqa: E402

ADAM, SGD, ADAGRAD = 4, 0, 1
N = 5000
BLOCKS = -(-N // _cpu.QUANT_BLOCK)


def _scales(n=N):
    return np.zeros(-(-n // _cpu.QUANT_BLOCK), np.float32)


def _nested(conv, lists):
    """Scales as a binding takes them: None, or lists of (None or array)."""
    return None if lists is None else [conv(list(x)) for x in lists]


def _adam8(m, c, p=None, ms=None, vs=None, scales="default", names=("m", "v")):
    p = [np.zeros(N, np.float32)] if p is None else p
    ms = [np.zeros(N, np.uint8)] if ms is None else ms
    vs = [np.zeros(N, np.uint8)] if vs is None else vs
    if isinstance(scales, str):
        scales = [[_scales()], [_scales()]]
    return m.Stepper(ADAM, c(p), [c(ms), c(vs)], list(names), scales=_nested(c, scales))


def _shared_scales(m, c):
    s = [_scales()]
    return _adam8(m, c, scales=[s, s])


def _scale_is_a_param(m, c):
    p = [np.zeros(N, np.float32)]
    return _adam8(m, c, p=p, scales=[[p[0][:BLOCKS]], [_scales()]])


def _readonly_scales(m, c):
    s = _scales()
    s.flags.writeable = False
    return _adam8(m, c, scales=[[s], [_scales()]])


def _non_contiguous_scales(m, c):
    return _adam8(m, c, scales=[[np.zeros(2 * BLOCKS, np.float32)[::2]], [_scales()]])


CASES = {
    "missing scales": lambda m, c: _adam8(m, c, scales=None),
    "scale count": lambda m, c: _adam8(m, c, scales=[[_scales(3 * _cpu.QUANT_BLOCK)], [_scales()]]),
    "float64 scales": lambda m, c: _adam8(m, c, scales=[[np.zeros(BLOCKS)], [_scales()]]),
    "mixed storage": lambda m, c: _adam8(
        m, c, vs=[np.zeros(N, np.float32)], scales=[[_scales()], [None]]
    ),
    "scales for float32 state": lambda m, c: _adam8(
        m, c, ms=[np.zeros(N, np.float32)], vs=[np.zeros(N, np.float32)]
    ),
    "overlapping scales": _shared_scales,
    "scale is a param": _scale_is_a_param,
    "read-only scales": _readonly_scales,
    "non-contiguous scales": _non_contiguous_scales,
    "uint8 param": lambda m, c: m.Stepper(
        ADAM, c([np.zeros(N, np.uint8)]), [c(_z(np.float32)), c(_z(np.float32))], ["m", "v"]
    ),
    "uint8 sgd param": lambda m, c: m.Stepper(SGD, c([np.zeros(3, np.uint8)]), [], []),
    "float64 params": lambda m, c: _adam8(m, c, p=[np.zeros(N)]),
    "scale lists count": lambda m, c: _adam8(m, c, scales=[[_scales()]]),
    "scale list length": lambda m, c: _adam8(m, c, scales=[[_scales(), _scales()], [_scales()]]),
    "scales not a list": lambda m, c: _adam8(m, c, scales=[3, [_scales()]]),
}


def _z(dtype):
    return [np.zeros(N, dtype)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_compact_build_errors_match_the_cpu(case):
    cpu, cuda = _errors(CASES[case])
    assert cpu == cuda


def _velocity_errors(velocity, velocity_scales):
    def call(module, conv):
        s = _adam8(module, conv)
        s.with_momentum(
            conv(velocity), False, velocity_scales=velocity_scales and conv(velocity_scales)
        )

    return _errors(call)


@pytest.mark.parametrize(
    "velocity, scales",
    [
        ([np.zeros(N, np.uint8)], None),  # uint8 velocity without scales
        ([np.zeros(N, np.float32)], None),  # float32 velocity next to uint8 m, v
        ([np.zeros(N, np.uint8)], [_scales(), _scales()]),  # wrong list length
        ([np.zeros(N, np.uint8)], [np.zeros(BLOCKS)]),  # float64 scales
    ],
)
def test_compact_velocity_errors_match_the_cpu(velocity, scales):
    cpu, cuda = _velocity_errors(velocity, scales)
    assert cpu == cuda


def test_valid_compact_steppers_build_on_both():
    for module, conv in ((_cpu, lambda x: x), (_cuda, _wrap)):
        s = _adam8(module, conv)
        w = s.with_momentum(conv([np.zeros(N, np.uint8)]), True, velocity_scales=conv([_scales()]))
        assert len(s) == len(w) == 1 and w.has_momentum


def test_launches_split_by_state_format():
    """Tensors of one dtype and group but different state storages (int8 for big params,
    float32 under 4096 elements) run separate kernels: one launch per format, full first."""
    p = [np.zeros(N, np.float32), np.zeros(7, np.float32), np.zeros(70_000, np.float32)]
    m = [np.zeros(N, np.uint8), np.zeros(7, np.float32), np.zeros(70_000, np.uint8)]
    v = [np.zeros(N, np.uint8), np.zeros(7, np.float32), np.zeros(70_000, np.uint8)]
    scales = [[_scales(), None, _scales(70_000)], [_scales(), None, _scales(70_000)]]
    s = _cuda.Stepper(
        ADAM, _wrap(p), [_wrap(m), _wrap(v)], ["m", "v"], scales=_nested(_wrap, scales)
    )
    grads = _wrap([np.zeros_like(x) for x in p])
    plan = s.prepare_step(grads)
    assert [(x[0], x[1], x[5]) for x in plan] == [
        ("float32", False, "full"),
        ("float32", False, "int8"),
    ]
    assert [x[3] - x[2] for x in plan] == [1, 1 + 3]  # (7,); 5000 -> 1 chunk, 70000 -> 3
    velocity = [np.zeros(N, np.uint8), None, None]
    w = s.with_momentum(_wrap(velocity), False, velocity_scales=_wrap([_scales(), None, None]))
    plan = w.prepare_step(grads)
    assert [(x[1], x[5]) for x in plan] == [(False, "full"), (False, "int8"), (True, "int8")]
    assert plan[0][2] == 0 and all(a[3] == b[2] for a, b in zip(plan, plan[1:]))
