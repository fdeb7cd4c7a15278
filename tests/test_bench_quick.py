"""The benchmark harness runs end to end (``python -m bench --quick``); no timing assertions."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_bench_quick_writes_report(tmp_path):
    cmd = [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--no-progress"]
    if not _has("matplotlib"):
        cmd.append("--no-plot")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    # the terminal gets a compact table of what was timed and one line about the targets,
    # not a "not measured" line per target (which reads like a failure)
    out = proc.stdout
    header = next((ln for ln in out.splitlines() if ln.startswith("rule ")), "")
    for column in ("dtype", "size", "reference", "numpy", "ceiling"):
        assert column in header, out[-3000:]
    if _has("fusedupdates"):
        assert "fu.updater" in header, out[-3000:]
    table_rows = [ln for ln in out.splitlines() if ln.split()[:1] in (["adam"], ["sgd"])]
    assert len(table_rows) == 2 * 2 * 3, out[-3000:]  # (adam, sgd) x dtypes x quick sizes
    assert "does not evaluate the targets" in out
    assert "not measured" not in out and "NOT met" not in out

    mds = list(tmp_path.glob("cpu-*.md"))
    assert len(mds) == 1, list(tmp_path.iterdir())
    text = mds[0].read_text()
    for section in (
        "## Bytes per element",
        "## Targets",
        "## Results",
        "### adam · float32",
        "### sgd · float16",
        "### amsgrad",
        "### rmsprop_momentum",
    ):
        assert section in text
    assert "does not evaluate the targets" in text.split("## Targets", 1)[1]
    results = text.split("## Results", 1)[1]
    rows = [
        line
        for line in results.splitlines()
        if line.startswith("| ") and not line.startswith("| size |") and "failed" not in line
    ]
    assert len(rows) >= 4 * 2 * 3, text[-3000:]  # rules x dtypes x quick sizes, at least
    for name in ("fu.reference (NumPy)", "numpy in-place", "ceiling:"):
        assert any(name in row for row in rows), name
    if _has("fusedupdates"):
        fu_rows = [r for r in rows if "| fu.updater step() |" in r]
        assert len(fu_rows) == 4 * 2 * 3
    if _has("torch"):
        assert any("| torch fused |" in r for r in rows)

    data = json.loads(mds[0].with_suffix(".json").read_text())
    assert data["rows"] and {"rule", "dtype", "workload", "times"} <= set(data["rows"][0])
    if _has("matplotlib"):
        assert mds[0].with_suffix(".png").stat().st_size > 1000


def test_bytes_per_element_table():
    sys.path.insert(0, str(ROOT))
    from bench.workloads import RULES, bytes_per_elem, parse_workload

    assert bytes_per_elem(RULES["adam"], "float32") == 28
    assert bytes_per_elem(RULES["adam"], "float16") == 22
    assert bytes_per_elem(RULES["amsgrad"], "float32") == 36
    assert bytes_per_elem(RULES["rmsprop_momentum"], "float32") == 28
    assert bytes_per_elem(RULES["sgd"], "float32") == 12
    model = parse_workload("model", "cpu")
    assert 150 <= model.n_tensors <= 250 and 8e6 <= model.numel <= 12e6
    assert parse_workload("model", "cuda").numel >= 100e6
    assert parse_workload("16M").numel == 16 << 20
