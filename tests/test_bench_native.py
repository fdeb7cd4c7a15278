"""bench/native, the in-cache C++ driver of one CPU kernel, builds and runs (no timing asserts)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import fusedupdates as fu
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT = re.compile(r": ([0-9.]+) ns/element \(sum (-?[0-9.]+)\)")

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or shutil.which("g++") is None,
    reason="bench/native/build.sh builds with g++ for x86-64 instruction sets",
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    # The instruction set the package picked for this CPU, so that the driver can run here.
    isa = fu.build_info()["simd"]
    out = tmp_path_factory.mktemp("native") / "incache_step"
    build = subprocess.run(
        ["bash", str(ROOT / "bench/native/build.sh"), str(ROOT), str(out), isa],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
    return out


def _run(driver: Path, *args: str) -> tuple[float, float]:
    proc = subprocess.run([str(driver), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    match = RESULT.search(proc.stdout)
    assert match, proc.stdout
    return float(match.group(1)), float(match.group(2))


@pytest.mark.parametrize("rule", ["4", "6"])  # adam; amsgrad (three 8-bit states)
def test_int8_checksum_is_the_same_on_one_and_two_threads(driver, rule):
    # 300,007 elements: full blocks on both threads and a partial block at the end.
    ns_one, sum_one = _run(driver, "int8", "300007", "20", "1", rule)
    ns_two, sum_two = _run(driver, "int8", "300007", "20", "2", rule)
    assert ns_one > 0 and ns_two > 0
    assert sum_one == sum_two


def test_bad_arguments_are_refused(driver):
    proc = subprocess.run([str(driver), "float64"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown state dtype" in proc.stderr
    proc = subprocess.run([str(driver), "int8", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "must be positive" in proc.stderr
