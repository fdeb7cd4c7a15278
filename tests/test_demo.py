"""A shortened run of ``python -m fusedupdates.demo``: every rule must learn."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from fusedupdates.demo import RULES, format_table, run_demo  # noqa: E402
from fusedupdates.demo.__main__ import main  # noqa: E402
from fusedupdates.demo.rules import GROUPS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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


def test_curves_of_one_panel_do_not_coincide(results: tuple[dict, Path]) -> None:
    # sgd at lr and momentum at lr * (1 - momentum) trace the same curve, and so do adam and
    # amsgrad at one rate: the demo's settings must keep the curves of one panel apart
    res, _ = results
    assert {spec.group for spec in RULES} <= set(GROUPS)
    for names in (("sgd", "momentum", "nesterov_momentum"), ("adam", "amsgrad")):
        assert len({res[n].group for n in names}) == 1, names  # they share a panel
        finals = sorted(res[n].losses[-1] for n in names)
        for low, high in zip(finals, finals[1:]):
            assert high > 1.5 * low, {n: res[n].losses for n in names}


def test_hyperparameters_are_recorded(results: tuple[dict, Path]) -> None:
    res, _ = results
    for name, r in res.items():
        assert r.learning_rate > 0, name
    assert res["sgd"].momentum is None and res["adam"].momentum is None
    for name in ("momentum", "nesterov_momentum", "rmsprop+momentum"):
        assert res[name].momentum == pytest.approx(0.9), name


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
    assert "learning rate" in table.splitlines()[0] and "momentum" in table.splitlines()[0]
    for name, r in res.items():
        row = next(line for line in table.splitlines() if line.startswith(name + "  "))
        fields = row[len(name) :].split()
        assert fields[0] == f"{r.learning_rate:g}", row
        assert fields[1] == ("-" if r.momentum is None else f"{r.momentum:g}"), row


def test_cli_rejects_bad_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--epochs", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_cuda_without_cupy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from fusedupdates.demo import DemoError, get_array_module

    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(DemoError, match="CuPy") as info:
        get_array_module("cuda")
    # the hint names the project's own extra and the CuPy wheel that extra installs
    message = str(info.value)
    assert 'pip install "fusedupdates[cuda]"' in message
    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():  # a source checkout
        extra = re.search(r'^cuda = \["([^"]+)"\]', pyproject.read_text(), re.MULTILINE)
        assert extra is not None and extra.group(1) in message


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


@pytest.mark.parametrize("rule", ["adam", "rmsprop", "adagrad"])
def test_bfloat16_with_master_weights_reaches_float32_accuracy(rule: str) -> None:
    """``--dtype bfloat16 --master-weights``: the full 30 epochs reach the float32 run's test
    accuracy within 0.5 points (params and grads stored in bfloat16, math in float32)."""
    pytest.importorskip("ml_dtypes")
    specs = [spec for spec in RULES if spec.name == rule]
    full = run_demo(epochs=30, out=None, progress=False, rules=specs)[rule]
    half = run_demo(
        epochs=30, out=None, progress=False, rules=specs, dtype="bfloat16", master_weights=True
    )[rule]
    assert half.test_accuracy >= full.test_accuracy - 0.005, (half.test_accuracy, full)


def test_master_weights_need_a_16_bit_dtype() -> None:
    from fusedupdates.demo import DemoError

    with pytest.raises(DemoError, match="16-bit"):
        run_demo(epochs=1, out=None, progress=False, master_weights=True)


@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
@pytest.mark.parametrize("rule", ["adam", "rmsprop", "adagrad"])
def test_compact_state_reaches_float32_accuracy(rule: str, state_dtype: str) -> None:
    """``--state-dtype int8`` (and bfloat16): the full 30 epochs reach the float32 run's test
    accuracy within 0.5 points. The 64x128 first layer (8192 elements) gets 8-bit state."""
    if state_dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    specs = [spec for spec in RULES if spec.name == rule]
    probe = specs[0].make([np.zeros((64, 128), np.float32)], state_dtype=state_dtype)
    stored = next(iter(probe.state.values()))[0].dtype
    assert stored == (np.uint8 if state_dtype == "int8" else np.dtype("bfloat16"))
    full = run_demo(epochs=30, out=None, progress=False, rules=specs)[rule]
    compact = run_demo(epochs=30, out=None, progress=False, rules=specs, state_dtype=state_dtype)
    assert compact[rule].test_accuracy >= full.test_accuracy - 0.005, (compact[rule], full)


@pytest.mark.parametrize("rule", ["adam", "rmsprop", "adagrad"])
def test_stochastic_int8_state_reaches_float32_accuracy(rule: str) -> None:
    """``--state-dtype int8 --state-rounding stochastic``: the same bar as to nearest."""
    specs = [spec for spec in RULES if spec.name == rule]
    full = run_demo(epochs=30, out=None, progress=False, rules=specs)[rule]
    compact = run_demo(
        epochs=30,
        out=None,
        progress=False,
        rules=specs,
        state_dtype="int8",
        state_rounding="stochastic",
    )
    assert compact[rule].test_accuracy >= full.test_accuracy - 0.005, (compact[rule], full)


def test_stochastic_state_rounding_needs_a_state_dtype() -> None:
    from fusedupdates.demo import DemoError

    with pytest.raises(DemoError, match="add --state-dtype"):
        run_demo(epochs=1, out=None, progress=False, state_rounding="stochastic")


def test_compact_state_is_for_cpu_runs() -> None:
    from fusedupdates.demo import DemoError

    with pytest.raises(DemoError, match="for CPU runs"):
        run_demo(epochs=1, out=None, progress=False, device="cuda", state_dtype="int8")
