"""A shortened run of ``python -m fusedupdates.demo``: every rule must learn."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from fusedupdates.demo import RULES, format_table, run_demo  # noqa: E402
from fusedupdates.demo.__main__ import main  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("demo")
    return run_demo(epochs=3, out=out, progress=False), out


def test_every_rule_learns(results: tuple[dict, Path]) -> None:
    res, _ = results
    assert list(res) == [spec.name for spec in RULES]
    initial = {r.losses[0] for r in res.values()}
    assert len(initial) == 1, "every rule must start from the same initialisation"
    for name, r in res.items():
        assert len(r.losses) == 4, name
        assert all(math.isfinite(v) for v in r.losses), (name, r.losses)
        assert r.losses[-1] < 0.5 * r.losses[0], (name, r.losses)
        assert r.test_accuracy > 0.5, (name, r.test_accuracy)
        assert len(r.epoch_seconds) == 3 and r.seconds_per_epoch > 0, name


def test_clipping_reports_norms(results: tuple[dict, Path]) -> None:
    res, _ = results
    clipped = [r for r in res.values() if r.max_norm is not None]
    assert clipped, "the demo must exercise step(grads, max_norm=...)"
    for r in clipped:
        assert len(r.grad_norms) > 0 and all(n >= 0 for n in r.grad_norms)
        assert r.grad_norms[0] > r.max_norm  # the first steps really are clipped
        assert 0 < r.clipped_fraction <= 1


def test_plot_and_table(results: tuple[dict, Path]) -> None:
    res, out = results
    png = out / "loss_curves.png"
    assert png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(res)
    for name in res:
        assert name in table


def test_cli_rejects_bad_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--epochs", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_cuda_without_cupy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from fusedupdates.demo import DemoError, get_array_module

    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(DemoError, match="CuPy"):
        get_array_module("cuda")


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "adamax" in printed
    assert (tmp_path / "loss_curves.png").is_file()


def test_cuda_device() -> None:
    cupy = pytest.importorskip("cupy")
    import fusedupdates as fu

    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no GPU")
    except Exception:  # no driver
        pytest.skip("no GPU")
    if not fu.build_info().get("cuda", False):
        pytest.skip("fusedupdates built without CUDA")
    res = run_demo(epochs=2, out=None, device="cuda", progress=False)
    for name, r in res.items():
        assert r.losses[-1] < 0.5 * r.losses[0], (name, r.losses)
        assert r.test_accuracy > 0.5, (name, r.test_accuracy)
