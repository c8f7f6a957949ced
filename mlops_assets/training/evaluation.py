"""Holdout metrics and the plots a reviewer looks at before trusting a model."""

from __future__ import annotations

import io
import time
import json
import shutil
import tempfile
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
from mlops_assets.training.tracking import now_label  # noqa: E402
from mlops_assets.training.artifacts import deduplicate  # noqa: E402
from mlops_assets.training.comparison import Comparison, compare_models  # noqa: E402
from mlops_assets.training.registry import (  # noqa: E402
    CHAMPION,
    LoggedModel,
    RegisteredModel,
    alias_version,
    client,
    load_logged,
    load_version,
    log_evaluation,
    register_version,
    ServedModel,
)
from mlops_assets.training.compiled import (  # noqa: E402
    VERIFICATION_ARTIFACT,
    InferencePath,
    choose_inference_path,
    verification_records,
)


def choose_threshold(y_true: np.ndarray, scores: np.ndarray, rule: float | str) -> float:
    """A fixed cut-off, or the one that maximises F1 (or Matthews correlation) on the rows given.

    Only cut-offs that leave both classes predicted are candidates: on a majority-positive
    target, "everyone is positive" has a high F1 (2p / (1 + p)) and would otherwise win.
    Matthews correlation scores a one-class prediction 0, so it prefers a real split anyway.
    """
    if not isinstance(rule, str):
        return float(rule)
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=float)
    fpr, tpr, thresholds = roc_curve(y_true, scores, drop_intermediate=False)
    positives, negatives = y_true.sum(), len(y_true) - y_true.sum()
    tp, fp = tpr * positives, fpr * negatives
    fn, tn = positives - tp, negatives - fp
    # A cut-off at or below the lowest score labels every row positive; inf labels none.
    splits = (thresholds > scores.min()) & np.isfinite(thresholds)
    if not splits.any():
        return 0.5
    if rule == "max_mcc":
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        quality = np.divide(tp * tn - fp * fn, denominator, out=np.zeros_like(tp), where=denominator > 0)
    else:
        quality = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    quality = np.where(splits, quality, -np.inf)
    return float(thresholds[int(np.argmax(quality))])


def threshold_warning(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> str | None:
    """A sentence for the model's metadata and card when the cut-off (nearly) predicts one class only.

    Degenerate: at least 99% of the validation rows get one label that less than 99% of them
    truly have. A rare-positive model that flags 1% of rows is not degenerate; max_f1 on a
    majority-positive target usually is.
    """
    y_true, predicted = np.asarray(y_true), np.asarray(scores) >= threshold
    share = predicted.mean()
    if 0.01 < share < 0.99:
        return None
    true_share = np.mean(y_true) if share >= 0.99 else 1 - np.mean(y_true)
    if true_share >= 0.99 and share not in (0.0, 1.0):
        return None
    label = "positive" if share >= 0.99 else "negative"
    nearly = "" if share in (0.0, 1.0) else "nearly "
    return (f"decision threshold {threshold:.4f} labels {nearly}every validation row {label} "
            f"({100 * share:.1f}% positive; positive rate {np.mean(y_true):.3f}): its accuracy is the base rate. "
            "Use decision_threshold: max_mcc or a fixed cut-off")


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
    """Holdout result of one registered model version, with its plots on disk.

    ``comparison`` holds the paired test against the champion of the time (one dict per
    metric, see ``training/comparison.py``); None when there was no champion to compare with.
    """

    model: RegisteredModel
    metrics: dict[str, float]
    plots: dict[str, Path] = field(default_factory=dict)
    comparison: list[dict] | None = None
    comparison_summary: str | None = None
    champion_version: str | None = None
    threshold_warning: str | None = None
    artifact_storage: dict[str, int] | None = None
    inference: dict[str, str] = field(default_factory=dict)


def compare_with_champion(settings: Settings, config: DatasetConfig, test: pd.DataFrame, y_test: np.ndarray,
                          scores: np.ndarray, threshold: float) -> tuple[str | None, Comparison | None]:
    """The candidate against the current champion, both scored on these test rows."""
    champion_version = alias_version(settings, config, CHAMPION)
    if champion_version is None:
        return None, None
    champion = load_version(settings, config, champion_version)
    champion_scores = champion.pipeline.predict_proba(test[config.model_features])[:, 1]
    comparison = compare_models(
        y_test, champion_scores, scores, champion.decision_threshold, threshold,
        significance_level=config.comparison.significance_level,
        bootstrap_samples=config.comparison.bootstrap_samples, seed=config.comparison.seed,
        label_a=f"champion v{champion_version}", label_b="candidate",
    )
    return champion_version, comparison


def name_run_and_parent(settings: Settings, config: DatasetConfig, run_id: str, version: str,
                        metrics: dict[str, float]) -> None:
    """The run is named after its version; the parent (Dagster) run gets the dataset's headline metrics."""
    from mlflow.entities import Metric

    tracking = client(settings)
    tracking.set_tag(run_id, "mlflow.runName", f"{config.name} v{version} {now_label()}")
    parent = tracking.get_run(run_id).data.tags.get("mlflow.parentRunId")
    if parent:
        now = int(time.time() * 1000)
        tracking.log_batch(parent, metrics=[Metric(f"{config.name}_test_{k}", metrics[k], now, 0)
                                            for k in ("roc_auc", "pr_auc", "brier", "accuracy")])


def check_inference_path(settings: Settings, config: DatasetConfig, pipeline, test: pd.DataFrame,
                         logged: LoggedModel) -> InferencePath:
    """Verify the compiled form on the test rows (with missing values and unseen categories added) and log
    those records beside the model, so that the service verifies again on the same rows before serving it."""
    records = verification_records(config, test)
    reference = ServedModel(config, "", logged.run_id, logged.decision_threshold, pipeline).score_records
    path = choose_inference_path(config, pipeline, reference, records, logged.decision_threshold)
    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / Path(VERIFICATION_ARTIFACT).name
        file.write_text(json.dumps(records, separators=(",", ":")))
        client(settings).log_artifact(logged.run_id, str(file), artifact_path=str(Path(VERIFICATION_ARTIFACT).parent))
    return path


def evaluate_on_test(settings: Settings, config: DatasetConfig, training_set: pd.DataFrame, logged: LoggedModel,
                     version_tags: dict[str, str] | None = None) -> Evaluation:
    """Score the test split with the logged model, compare it with the champion, then register it.

    Registration is the last step: a run that fails anywhere before leaves no version behind.
    Plots go under reports/.
    """
    test = split_frame(training_set, "test")
    pipeline = load_logged(settings, logged.model_uri)
    y_test = binary_target(test, config).to_numpy()
    scores = pipeline.predict_proba(test[config.model_features])[:, 1]
    metrics = classification_metrics(y_test, scores, logged.decision_threshold)
    champion_version, comparison = compare_with_champion(settings, config, test, y_test, scores,
                                                         logged.decision_threshold)
    # Titles without run ids: the same model draws the same bytes, stored once (artifact de-duplication).
    plots = evaluation_plots(y_test, scores, f"{config.name}, test split")
    folder = settings.dataset_reports(config.name) / "runs" / logged.run_id
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"roc": folder / "roc.png", "calibration": folder / "calibration.png"}
    paths["roc"].write_bytes(plots.roc_png)
    paths["calibration"].write_bytes(plots.calibration_png)
    files = list(paths.values())
    inference = check_inference_path(settings, config, pipeline, test, logged)
    # What other systems tagged the run with meanwhile (governance's fairness verdict) goes on the version too.
    run_tags = {k: v for k, v in client(settings).get_run(logged.run_id).data.tags.items()
                if not k.startswith("mlflow.") and k != "run_kind"}
    tags = {**run_tags, **logged.version_tags, **{f"test_{k}": f"{v:.6g}" for k, v in metrics.items()},
            **inference.tags(), **(version_tags or {})}
    if comparison is not None:
        comparison_file = folder / "comparison_with_champion.json"
        comparison_file.write_text(json.dumps({"summary": comparison.summary, "metrics": comparison.as_dicts()},
                                              indent=2) + "\n")
        files.append(comparison_file)
        tags.update({"compared_with": f"v{champion_version}", "comparison": comparison.summary[:5000],
                     **{f"comparison.{m.metric}.p_value": f"{m.p_value:.4g}" for m in comparison.metrics}})
    log_evaluation(settings, logged.run_id, logged.model_uri, metrics, files,
                   dataset=(f"{config.name}-test", tags.get("data_snapshot", "")))
    description = (f"{config.model.family} on `{config.name}`: test ROC AUC {metrics['roc_auc']:.4f}, "
                   f"PR AUC {metrics['pr_auc']:.4f}, Brier {metrics['brier']:.4f}, accuracy "
                   f"{metrics['accuracy']:.4f} at threshold {logged.decision_threshold:.4f}. "
                   + (comparison.summary + "." if comparison else "First version evaluated: no champion to compare."))
    registered = register_version(settings, config, logged.model_uri, logged.run_id, logged.decision_threshold,
                                  tags, description)
    name_run_and_parent(settings, config, logged.run_id, registered.version, metrics)
    # Reports of a version live in reports/<dataset>/v<version>/ (the model card is written beside them).
    # Only this step's files move: other systems keep evidence in the run's folder (governance's fairness).
    version_folder = folder.parent.parent / f"v{registered.version}"
    version_folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.move(str(path), version_folder / path.name)
    paths = {name: version_folder / path.name for name, path in paths.items()}
    storage = deduplicate(settings)
    return Evaluation(model=registered, metrics=metrics, plots=paths,
                      comparison=comparison.as_dicts() if comparison else None,
                      comparison_summary=comparison.summary if comparison else None,
                      champion_version=champion_version, threshold_warning=logged.threshold_warning,
                      artifact_storage={"files": storage.files, "logical_bytes": storage.logical_bytes,
                                        "stored_bytes": storage.stored_bytes},
                      inference=inference.tags())
