"""fusedupdates.distributed: the MPI scripts under mpiexec (2 and 3 ranks), plus in-process
checks of the algorithm over a one-rank loopback transport and of the input errors.

The scripts are in tests/mpi_scripts (see their docstrings for what each case compares); each
run is a subprocess with a timeout, so a rank left blocked in a collective fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys

import fusedupdates as fu
import fusedupdates.distributed as fud
import numpy as np
import pytest
from _mpi import Loopback, find_mpiexec, mpi_skip_reason, run_mpi

PARITY_CASES = 127  # 13 rules x 4 dtype sets x 2 max_norms, 18 views/normal, 3 edge, 2 buffers


@pytest.mark.parametrize("ranks", [2, 3])
def test_sharded_step_matches_one_process(tmp_path, ranks):
    passed = run_mpi("parity.py", ranks, tmp_path)
    assert all(p == passed[0] for p in passed), "ranks ran different cases"
    assert len(passed[0]) == PARITY_CASES
    assert "adam+nesterov/float16/max_norm=2.0/dyadic/views=False" in passed[0]
    assert "rmsprop+momentum/mixed/max_norm=None/dyadic/views=True" in passed[0]


def test_checkpoint_on_3_ranks_resumes_on_2_and_1(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    saved = run_mpi("checkpoint.py", 3, tmp_path / "save", "save", str(ckpt))
    assert len(saved[0]) == 4
    for ranks in (2, 1):
        resumed = run_mpi("checkpoint.py", ranks, tmp_path / f"on{ranks}", "resume", str(ckpt))
        assert all(r == resumed[0] for r in resumed)
        assert resumed[0] == {
            "resume/adam",
            "resume/rmsprop+momentum",
            "resume/adadelta",
            "resume/amsgrad",
            "resume/mismatch",
        }


@pytest.mark.parametrize("ranks", [2, 3])
def test_mismatches_raise_on_every_rank_without_hanging(tmp_path, ranks):
    passed = run_mpi("errors.py", ranks, tmp_path, timeout=60)
    assert all(p == passed[0] for p in passed)
    assert len(passed[0]) == 17
    assert {"shapes", "rule", "hyperparameters", "grad shape", "max_norm"} <= passed[0]


@pytest.mark.parametrize("state_dtype", ["float32", "int8"])
def test_demo_distributed_matches_one_process(tmp_path, state_dtype):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    reason = mpi_skip_reason()
    if reason:
        pytest.skip(reason)
    from _mpi import _launcher_flags

    args = ["-m", "fusedupdates.demo", "--epochs", "2", "--no-progress", "--out", str(tmp_path)]
    args += ["--state-dtype", state_dtype]
    one = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    two = subprocess.run(
        [find_mpiexec(), *_launcher_flags(), "-n", "2", sys.executable, *args, "--distributed"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert "data parallel on 2 ranks" in two.stdout
    # the same final losses and accuracies (columns 4 and 5 of every rule's row)
    rows = [
        [line.split()[-3:-1] for line in out.stdout.splitlines() if line.startswith("adam ")]
        for out in (one, two)
    ]
    assert rows[0] and rows[0] == rows[1], (one.stdout, two.stdout)


@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_one_rank_is_the_single_process_updater(max_norm):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (4,), (0,)]]
    mine = [p.copy() for p in params]
    upd = fud.sharded(fu.adamax, mine, Loopback(), learning_rate=0.01)
    ref = fu.adamax(params, learning_rate=0.01)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
        norm = upd.step(grads, max_norm=max_norm)
        ref_norm = ref.step(grads, max_norm=max_norm)
        assert (norm is None) == (max_norm is None)
        if max_norm is not None:
            assert norm == pytest.approx(ref_norm, rel=1e-6)
    exact = max_norm is None  # one rank, no clipping: the very same kernel call
    for a, b in zip(mine, params):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    state = upd.state_dict()
    assert state["rule"] == "adamax" and state["t"] == 3
    assert [a.shape for a in state["state"]["u"]] == [(5, 3), (4,), (0,)]
    assert upd.learning_rate == 0.01 and upd.t == 3
    upd.learning_rate = 0.5
    assert upd.local.learning_rate == 0.5
    with pytest.raises(ValueError, match="learning_rate must be >= 0"):
        upd.learning_rate = -1.0


def test_allocate_params_gives_views_of_one_buffer_per_dtype():
    arrays = [np.ones((2, 3), np.float32), np.full(4, 2.0), np.zeros(5, np.float32)]
    views = fud.allocate_params(arrays, Loopback())
    assert [v.dtype for v in views] == [np.float32, np.float64, np.float32]
    assert views[0].base is views[2].base and views[1].base is not views[0].base
    for v, a in zip(views, arrays):
        np.testing.assert_array_equal(v, a)
    upd = fud.sharded(fu.sgd, views, Loopback(), learning_rate=1.0)
    assert upd.uses_views
    upd.step([np.ones_like(v) for v in views])
    np.testing.assert_array_equal(views[1], np.full(4, 1.0))
    assert not fud.sharded(fu.sgd, arrays, Loopback(), learning_rate=1.0).uses_views
    grads = upd.grad_buffers()
    for g in grads:
        g[...] = 0.5
    upd.step(grads)  # in place: nothing packed
    np.testing.assert_array_equal(views[1], np.full(4, 0.5))
    np.testing.assert_array_equal(upd._send[1][:4], np.full(4, 0.5))


def test_bad_input_raises_before_anything_moves():
    params = [np.zeros(3, np.float32)]
    with pytest.raises(TypeError, match="mpi4py communicator"):
        fud.sharded(fu.adam, params, object())
    with pytest.raises(TypeError, match="callable"):
        fud.sharded("adam", params, Loopback())
    with pytest.raises(TypeError, match="parameter groups"):
        fud.sharded(fu.adam, [{"params": params}], Loopback())
    with pytest.raises(ValueError, match="empty"):
        fud.sharded(fu.adam, [], Loopback())
    upd = fud.sharded(fu.adam, params, Loopback())
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        upd.step([None])
    with pytest.raises(ValueError, match=r"grads\[0\]: shape"):
        upd.step([np.zeros(4, np.float32)])
    assert upd.t == 0


def _nccl_or_skip():
    """CuPy's NCCL communicator for one rank on GPU 0, or a skip saying what is missing."""
    import importlib.util

    cupy = pytest.importorskip("cupy", reason="the NCCL transport needs CuPy (and a GPU)")
    if importlib.util.find_spec("fusedupdates._cuda") is None:
        pytest.skip("fusedupdates was built without its CUDA module")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no GPU")
        from cupy.cuda import nccl
    except Exception as err:  # no driver, or CuPy without NCCL
        pytest.skip(f"no GPU or no NCCL in CuPy: {err}")
    return cupy, nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)


@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_nccl_transport_with_one_rank(max_norm):
    # One GPU runs the NCCL path with one rank; testing the communication itself needs 2+ GPUs.
    cupy, comm = _nccl_or_skip()
    rng = np.random.default_rng(2)
    host = [rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (4,)]]
    params, ref_params = [cupy.asarray(p) for p in host], [cupy.asarray(p) for p in host]
    upd = fud.sharded(fu.adam, params, comm, learning_rate=0.01)
    ref = fu.adam(ref_params, learning_rate=0.01)
    for _ in range(3):
        grads = [cupy.asarray(rng.standard_normal(p.shape).astype(np.float32)) for p in host]
        upd.step(grads, max_norm=max_norm)
        ref.step(grads, max_norm=max_norm)
    for a, b in zip(params, ref_params):
        np.testing.assert_allclose(cupy.asnumpy(a), cupy.asnumpy(b), rtol=1e-6, atol=1e-7)
    state = upd.state_dict()
    assert state["t"] == 3 and [m.shape for m in state["state"]["m"]] == [(5, 3), (4,)]
    upd.load_state_dict(ref.state_dict())
