"""Holdout metrics and the plots a reviewer looks at before trusting a model."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from mlops_assets.config import DatasetConfig  # noqa: E402
from mlops_assets.features.training_set import binary_target, split_frame  # noqa: E402
from mlops_assets.settings import Settings  # noqa: E402
from mlops_assets.training.registry import RegisteredModel, load_version, log_evaluation  # noqa: E402


def choose_threshold(y_true: np.ndarray, scores: np.ndarray, rule: float | str) -> float:
    """A fixed cut-off, or the one that maximises F1 on the rows given (the validation set)."""
    if not isinstance(rule, str):
        return float(rule)
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision), where=precision + recall > 0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking, probability and decision quality of one model on one set of rows."""
    predicted = (scores >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "pr_auc": float(average_precision_score(y_true, scores)),
        "log_loss": float(log_loss(y_true, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, scores)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "threshold": float(threshold),
        "positive_rate": float(np.mean(y_true)),
        "rows": float(len(y_true)),
    }


@dataclass(frozen=True)
class EvaluationPlots:
    roc_png: bytes
    calibration_png: bytes


def evaluation_plots(y_true: np.ndarray, scores: np.ndarray, title: str) -> EvaluationPlots:
    """ROC curve and reliability diagram as PNG bytes."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(y_true, scores):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}")
    ax.legend(loc="lower right")
    roc = _png(fig)

    observed, predicted = calibration_curve(y_true, scores, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(predicted, observed, marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title=f"Calibration: {title}")
    ax.legend(loc="upper left")
    return EvaluationPlots(roc_png=roc, calibration_png=_png(fig))


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class Evaluation:
    """Holdout result of one registered model version, with its plots on disk."""

    model: RegisteredModel
    metrics: dict[str, float]
    plots: dict[str, Path] = field(default_factory=dict)


def evaluate_on_test(settings: Settings, config: DatasetConfig, training_set: pd.DataFrame,
                     model: RegisteredModel) -> Evaluation:
    """Score the test split with the version loaded back from the registry; plots go under reports/."""
    test = split_frame(training_set, "test")
    served = load_version(settings, config, model.version)
    y_test = binary_target(test, config).to_numpy()
    scores = served.pipeline.predict_proba(test[config.model_features])[:, 1]
    metrics = classification_metrics(y_test, scores, model.decision_threshold)
    plots = evaluation_plots(y_test, scores, f"{config.name} v{model.version}")
    folder = settings.dataset_reports(config.name) / f"v{model.version}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"roc": folder / "roc.png", "calibration": folder / "calibration.png"}
    paths["roc"].write_bytes(plots.roc_png)
    paths["calibration"].write_bytes(plots.calibration_png)
    log_evaluation(settings, model.run_id, metrics, list(paths.values()))
    return Evaluation(model=model, metrics=metrics, plots=paths)
