"""Tests for approvals.evaluation.plots: valid PNGs, atomic writes, no import side effects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from approvals.evaluation import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    p = rng.beta(4, 2, 2000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    brand = rng.choice(["visa", "mastercard", "amex"], size=p.size)
    return y, p, brand


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert path.stat().st_size > 10_000, f"{path.name} is suspiciously small"
    pixels = image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300, "image has real dimensions"
    assert pixels.std() > 0.01, "image is not blank"
    assert not list(path.parent.glob(f".{path.name}.*")), "no temporary file left behind"


def test_reliability_diagram(tmp_path: Path, data: tuple[np.ndarray, ...]) -> None:
    y, p, _ = data
    path = plots.reliability_diagram(y, p, tmp_path / "sub" / "rel.png")
    assert path == tmp_path / "sub" / "rel.png", "returns the target path"
    assert_png(path)


def test_precision_recall_curve_with_threshold(
    tmp_path: Path, data: tuple[np.ndarray, ...]
) -> None:
    y, p, _ = data
    assert_png(plots.precision_recall_curve(y, p, tmp_path / "pr.png", threshold=0.6))
    assert_png(plots.precision_recall_curve(y, p, tmp_path / "pr2.png"))


def test_approval_by_segment(tmp_path: Path, data: tuple[np.ndarray, ...]) -> None:
    y, p, brand = data
    assert_png(plots.approval_by_segment(brand, y, p, tmp_path / "seg.png", "By brand", 2))


def test_one_class_data_still_plots(tmp_path: Path) -> None:
    y, p = np.zeros(50), np.linspace(0.01, 0.5, 50)
    assert_png(plots.precision_recall_curve(y, p, tmp_path / "pr.png", threshold=0.3))
    assert_png(plots.reliability_diagram(y, p, tmp_path / "rel.png"))


def test_failed_plot_keeps_previous_file(tmp_path: Path, data: tuple[np.ndarray, ...]) -> None:
    y, p, brand = data
    target = plots.approval_by_segment(brand, y, p, tmp_path / "seg.png", "ok")
    before = target.read_bytes()
    with pytest.raises(ValueError, match="segment values"):
        plots.approval_by_segment(brand[:10], y, p, target, "bad")
    with pytest.raises(ValueError, match="within"):
        plots.reliability_diagram(y, p + 1, target)
    assert target.read_bytes() == before, "a failed plot leaves the previous file intact"
    assert [f.name for f in tmp_path.iterdir()] == ["seg.png"], "no temporary files left"


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, approvals.evaluation.plots, approvals.model.metrics;"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported';"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
