"""Running the scripts of tests/mpi_scripts under mpiexec from pytest.

mpiexec is the one installed next to this Python (the ``mpich`` wheel puts it in the
environment's ``bin/``), else the first on PATH. MPICH's Hydra launcher is told to fork its
processes locally (``-launcher fork``), which works in containers without ssh; Open MPI gets
``--oversubscribe`` so that 3 ranks may run on 2 cores. Each rank uses one OpenMP thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fusedupdates.distributed import Transport

SCRIPTS = Path(__file__).parent / "mpi_scripts"


def mpi_skip_reason() -> str | None:
    """Why the MPI tests cannot run here, or None."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        return f"mpi4py cannot be imported ({err}); pip install '.[test]' installs it"
    if find_mpiexec() is None:
        return f"no mpiexec next to {sys.executable} or on PATH ({MPI.Get_library_version()[:40]})"
    return None


def find_mpiexec() -> str | None:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def _launcher_flags() -> list[str]:
    from mpi4py import MPI

    return ["-launcher", "fork"] if "MPICH" in MPI.Get_library_version() else ["--oversubscribe"]


def run_mpi(script: str, ranks: int, out: Path, *args: str, timeout: float = 60) -> list[set]:
    """Run ``script`` on ``ranks`` ranks; return each rank's set of passed cases. Fails the
    test on a non-zero exit or a timeout (a hang), with the output."""
    reason = mpi_skip_reason()
    if reason:
        pytest.skip(reason)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        find_mpiexec(),
        *_launcher_flags(),
        "-n",
        str(ranks),
        sys.executable,
        str(SCRIPTS / script),
        str(out),
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(
            f"{script} on {ranks} ranks did not finish in {timeout} s (a hang?):\n"
            f"{err.stdout}\n{err.stderr}"
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{script} on {ranks} ranks exited {proc.returncode}:\n{proc.stdout}\n"
            f"{proc.stderr[-6000:]}"
        )
    passed = []
    for r in range(ranks):
        lines = (out / f"rank{r}.txt").read_text().splitlines()
        passed.append({line.removeprefix("PASS ") for line in lines})
    return passed


class Loopback(Transport):
    """One rank, no MPI: every collective is a copy. Runs the whole algorithm in process."""

    xp = np
    rank, size = 0, 1

    def reduce_scatter_sum(self, send, recv):
        recv[...] = send

    def allgather_inplace(self, flat):
        pass

    def allgather(self, send, recv):
        recv[...] = send

    def allreduce_sum(self, buf):
        pass
