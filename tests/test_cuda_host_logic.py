"""The CUDA backend's host logic without a GPU: csrc/cuda/tables.cpp and step_engine.cpp built
against a fake runtime (tests/native/fake_runtime.cpp) and run as a C++ program.

It checks what a GPU run alone cannot show reliably: that a table uploaded for one stream is
ordered before its use on any other (an event each), that setup work during a capture stays
outside the graph and what a graph uses is never freed, that a table still read by queued
work is never evicted, that two threads missing on the same table keep one entry, that t
counts graph replays and is read from the stream the steps ran on without writing anything
back, that a momentum wrapper's momentum survives the inner updater's changes (also in a
captured graph), that plain and momentum tensors run separate launches, that each parameter
group's launches use its own values (eagerly and in a replayed graph, t advancing once per
step), and that a step skipped for a non-finite grad leaves the device t unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    ROOT / "tests" / "native" / "test_cuda_host.cpp",
    ROOT / "tests" / "native" / "test_cuda_host_steps.cpp",
    ROOT / "tests" / "native" / "fake_runtime.cpp",
    ROOT / "csrc" / "cuda" / "tables.cpp",
    ROOT / "csrc" / "cuda" / "step_engine.cpp",
    ROOT / "csrc" / "common" / "validate.cpp",
]


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("native") / "test_cuda_host"
    cmd = [cxx, "-std=c++20", "-O1", "-g", "-pthread", "-o", str(exe), *map(str, SOURCES)]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if built.returncode != 0:
        if "c++20" in built.stderr or "unrecognized" in built.stderr:
            pytest.skip(f"{cxx} cannot build C++20: {built.stderr[:200]}")
        pytest.fail(f"building the native host test failed:\n{built.stderr[-4000:]}")
    return exe


def test_cuda_host_logic(program):
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK (0 failed checks)" in run.stdout
