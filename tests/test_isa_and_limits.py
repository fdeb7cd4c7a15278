"""Every compiled CPU instruction-set path, and edge values of max_norm."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import fusedupdates as fu
import numpy as np
import pytest

_SCRIPT = r"""
import json, sys
import numpy as np
import fusedupdates as fu
rng = np.random.default_rng(7)
out = {"simd": fu.build_info()["simd"], "params": {}}
for dtype in ("float16", "float32", "float64"):
    params = [rng.standard_normal(n).astype(dtype) for n in (1, 7, 4097, 70001)]
    upd = fu.apply_nesterov_momentum(fu.amsgrad(params, learning_rate=0.01, epsilon=0.1))
    for _ in range(20):
        upd.step([rng.standard_normal(p.shape).astype(dtype) for p in params], max_norm=50.0)
    out["params"][dtype] = [p.astype(float).tolist() for p in params]
json.dump(out, sys.stdout)
"""


def _run(simd: str) -> dict:
    env = dict(os.environ, FUSEDUPDATES_SIMD=simd)
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout)


def test_every_instruction_set_path_agrees():
    """The baseline (SSE2) build a wheel falls back to, AVX2 and AVX-512 give the same
    answers to rounding (FMA contraction differs between them, so not bit for bit)."""
    native = _run("")
    baseline = _run("baseline")
    assert baseline["simd"] == "baseline"
    for dtype, tol in (("float16", 2e-2), ("float32", 1e-5), ("float64", 1e-12)):
        for a, b in zip(native["params"][dtype], baseline["params"][dtype]):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_forced_instruction_set_is_reported():
    info = _run("avx2")["simd"]
    assert info in ("avx2", "baseline")  # baseline on a CPU without AVX2


def test_max_norm_zero_zeroes_the_update():
    """Lasagne accepts max_norm=0: the multiplier is 0, so sgd leaves params unchanged."""
    p = np.arange(1.0, 6.0)
    before = p.copy()
    norm = fu.sgd([p], learning_rate=1.0).step([np.ones(5)], max_norm=0.0)
    assert norm == pytest.approx(np.sqrt(5.0))
    np.testing.assert_array_equal(p, before)
    scaled = fu.total_norm_constraint([np.ones(3)], 0.0)
    np.testing.assert_array_equal(scaled[0], np.zeros(3))


def test_negative_max_norm_is_refused():
    p = np.ones(3)
    with pytest.raises(ValueError, match="max_norm"):
        fu.sgd([p], learning_rate=1.0).step([np.ones(3)], max_norm=-1.0)
    np.testing.assert_array_equal(p, np.ones(3))


def test_state_dict_dtype_mismatch_is_a_type_error():
    upd = fu.adam([np.ones(3, np.float32)])
    sd = upd.state_dict()
    sd["state"]["m"][0] = sd["state"]["m"][0].astype(np.float64)
    with pytest.raises(TypeError, match="dtype"):
        upd.load_state_dict(sd)


def test_build_info_is_json_serialisable():
    json.dumps(fu.build_info())


def test_omp_num_threads_is_respected():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = "import fusedupdates as fu; print(fu.build_info()['num_threads'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "1"


def test_readme_training_loop_runs():
    """The README's example is real code: extract it and run it."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the tests")
    code = re.search(
        r"## A hand-written training loop.*?```python\n(.*?)```", readme.read_text(), re.S
    ).group(1)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_every_readme_python_block_runs():
    """Every ```python block of the README runs as is (with numpy and fusedupdates imported)."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the tests")
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert len(blocks) >= 3
    for code in blocks:
        prelude = "import numpy as np\nimport fusedupdates as fu\n"
        run = subprocess.run(
            [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, f"README block failed:\n{code}\n{run.stderr}"
