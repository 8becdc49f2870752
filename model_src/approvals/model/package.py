"""The model package: the only thing that crosses from training to serving.

A directory holding the booster (LightGBM text format), the stacked linear model, the
calibrator, the feature spec, the feature state at the end of training, metrics, a manifest
(versions, data fingerprint), a short model card and, from packages trained with monitoring
on, the training reference the monitor compares live traffic with (``reference.json``,
optional: older packages load without it). It is written into a temporary directory
beside the target and swapped in only when complete, so a failed write never replaces a good
package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.atomic import staged_dir
from approvals.errors import PackageError
from approvals.features.derive import FeatureSpec
from approvals.model.calibrate import Calibrator
from approvals.model.stacking import LinearStack
from approvals.model.trees import CompiledTrees, RawTrees

if TYPE_CHECKING:
    import lightgbm as lgb

    from approvals.features.state import FeatureState
    from approvals.model.reference import TrainingReference

FORMAT_VERSION = 1
FILES = ("booster.txt", "linear.json", "calibrator.json", "features.json", "manifest.json")


@dataclass
class ModelPackage:
    """A trained, calibrated approval model with what it needs to compute its features."""

    booster: lgb.Booster
    linear: LinearStack
    calibrator: Calibrator
    spec: FeatureSpec
    manifest: dict[str, Any]
    path: Path | None = None

    @property
    def model_version(self) -> str:
        """The version string published with every prediction."""
        return str(self.manifest["model_version"])

    @cached_property
    def trees(self) -> RawTrees | CompiledTrees:
        """The booster's raw scores: the package's compiled trees when present and verified
        (:func:`approvals.model.trees.compile_trees`), else LightGBM's C API (``predict``'s
        numbers)."""
        compiled = CompiledTrees.load(self.path, self.booster) if self.path else None
        return compiled if compiled is not None else RawTrees(self.booster)

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated log-odds: linear model plus trees."""
        return self.linear.score(x, self.spec.names) + self.trees(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated approval probabilities for a feature matrix in ``spec.names`` order."""
        return self.calibrator(self.raw_score(x))

    def state(self) -> FeatureState:
        """The feature state carried in the package (loaded on demand; training side only)."""
        from approvals.features.state import FeatureState

        if self.path is None:
            raise PackageError("package has no directory to load its feature state from")
        end = self.spec.state_end
        return FeatureState.load(self.path / "state", datetime.fromisoformat(end) if end else None)

    def reference(self) -> TrainingReference | None:
        """The training reference written with the package, or None when the package has none
        (trained before ``reference.json`` existed, or never saved)."""
        from approvals.model.reference import REFERENCE_FILE, TrainingReference

        if self.path is None or not (self.path / REFERENCE_FILE).is_file():
            return None
        return TrainingReference.load(self.path / REFERENCE_FILE)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelPackage:
        """Load a package directory written by :func:`save`."""
        import lightgbm as lgb

        root = Path(path)
        missing = [f for f in FILES if not (root / f).is_file()]
        if missing:
            raise PackageError(f"{root} is not a model package (missing {', '.join(missing)})")
        manifest = json.loads((root / "manifest.json").read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise PackageError(
                f"{root}: unsupported format_version {manifest.get('format_version')}"
            )
        return cls(
            booster=lgb.Booster(model_file=str(root / "booster.txt")),
            linear=LinearStack.from_json((root / "linear.json").read_text()),
            calibrator=Calibrator.from_json((root / "calibrator.json").read_text()),
            spec=FeatureSpec.from_json((root / "features.json").read_text()),
            manifest=manifest,
            path=root,
        )


def save(
    package: ModelPackage,
    target: str | os.PathLike[str],
    state: FeatureState,
    extras: dict[str, str] | None = None,
) -> Path:
    """Write the package atomically: build beside ``target``, then swap it in.

    Args:
        package: the trained model.
        target: package directory to create or replace.
        state: feature state at the end of training, carried for batch prediction.
        extras: further text files (name -> content), e.g. metrics and the model card.
    """
    target = Path(target)
    with staged_dir(target) as tmp:
        package.booster.save_model(str(tmp / "booster.txt"))
        (tmp / "linear.json").write_text(package.linear.to_json())
        (tmp / "calibrator.json").write_text(package.calibrator.to_json())
        (tmp / "features.json").write_text(package.spec.to_json())
        state.save(tmp / "state")
        for name, text in (extras or {}).items():
            (tmp / name).write_text(text)
        (tmp / "manifest.json").write_text(json.dumps(package.manifest, indent=1, sort_keys=True))
        ModelPackage.load(tmp)  # refuse to install something that does not load
    return target


def model_card(manifest: dict[str, Any]) -> str:
    """A short human-readable card: what the model is, what it was trained on, how it does."""
    test = manifest.get("metrics", {}).get("test", {})
    lines = [
        f"# Approval model {manifest.get('model_version')}",
        "",
        "Predicts the calibrated probability that the issuer approves a card authorization",
        "attempt. LightGBM on point-in-time aggregates (issuer BIN x route, merchant, card",
        "history, context), stacked on a regularised logistic model, then calibrated.",
        "",
        f"- trained: {manifest.get('created_at')} on {manifest.get('training_rows')} attempts",
        f"- data window: {' to '.join(manifest.get('time_range', []))}",
        f"- data fingerprint: `{manifest.get('training_data_fingerprint')}`",
        f"- calibration: {manifest.get('calibration', {}).get('method')}",
        f"- splits (time-ordered): {manifest.get('splits')}",
        "",
        "## Test split",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in ("log_loss", "brier", "roc_auc", "pr_auc", "ece", "approval_rate", "mean_p"):
        value = test.get(key)
        lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | - |")
    lines += [
        "",
        "## Limits",
        "",
        "- Scores attempts after the end of its feature state; rows inside the training window",
        "  would see outcomes from after them.",
        "- Decisions (routing, retries) must also respect scheme rules; see",
        "  approvals.decisions.retries.",
        "",
    ]
    return "\n".join(lines)
