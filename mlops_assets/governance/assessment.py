"""Measuring one model version for its card: test metrics with intervals, fairness, explanations.

Each step scores the version (loaded back from the registry) on the test split of the
training set it was built from, and writes its evidence beside the version's other
reports (``MLOPS_HOME/reports/<dataset>/v<N>/``), so the card can be rendered again
later (after an approval, a promotion) without the data, and an auditor can open the
JSON behind every figure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.features.training_set import binary_target, split_frame, split_summary
from mlops_assets.governance import plots
from mlops_assets.governance.approvals import FAIRNESS_TAG, FAIRNESS_VERDICT_TAG
from mlops_assets.governance.explanations import (
    ExplanationError,
    RawInputModel,
    background_sample,
    example_rows,
    explain_row,
    global_importance,
)
from mlops_assets.governance.fairness import FairnessReport, assess_fairness
from mlops_assets.governance.intervals import metrics_with_intervals
from mlops_assets.settings import Settings
from mlops_assets.training.registry import client, load_version


def version_folder(settings: Settings, config: DatasetConfig, version: str) -> Path:
    folder = settings.dataset_reports(config.name) / f"v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_folder(settings: Settings, config: DatasetConfig, run_id: str) -> Path:
    """Evidence measured before a version exists (the fairness check runs on the logged model) lives by run."""
    folder = settings.dataset_reports(config.name) / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def split_description(config: DatasetConfig) -> str:
    """What the split did, in words (by event time, or by file order when there is none)."""
    shares = f"{1 - config.split.validation - config.split.test:.0%} / {config.split.validation:.0%} / {config.split.test:.0%}"
    if config.event_time:
        return (f"by event time (`{config.event_time}`): train / validation / test = {shares} of the rows in time "
                "order; the test rows are the newest")
    return (f"by file order: the dataset has no event-time column, so rows keep the order of the source file "
            f"(train / validation / test = {shares}); the test rows are the last rows of the file, which are "
            "newer only if the file is in time order")


@dataclass
class VersionUnderTest:
    """A registered version and the rows it is judged on."""

    config: DatasetConfig
    version: str | None  # None while the model is logged but not yet registered
    run_id: str
    model: RawInputModel
    threshold: float
    train: pd.DataFrame
    test: pd.DataFrame
    y: np.ndarray
    scores: np.ndarray


def version_under_test(settings: Settings, config: DatasetConfig, version: str,
                       training_set: pd.DataFrame) -> VersionUnderTest:
    served = load_version(settings, config, version)
    return _subject(config, str(version), served.run_id, served.pipeline, served.decision_threshold, training_set)


def model_under_test(settings: Settings, config: DatasetConfig, model, training_set: pd.DataFrame) -> VersionUnderTest:
    """The ``model`` asset's value, registered (``version``) or only logged (``model_uri``): both carry
    ``run_id`` and ``decision_threshold``."""
    version = getattr(model, "version", None)
    if version is not None:
        return version_under_test(settings, config, version, training_set)
    pipeline = mlflow.sklearn.load_model(model.model_uri)
    return _subject(config, None, model.run_id, pipeline, float(model.decision_threshold), training_set)


def _subject(config, version, run_id, pipeline, threshold, training_set) -> VersionUnderTest:
    model = RawInputModel(pipeline, config)
    test = split_frame(training_set, "test").reset_index(drop=True)
    return VersionUnderTest(config, version, run_id, model, threshold, split_frame(training_set, "train"), test,
                            binary_target(test, config).to_numpy(), model.score_rows(test))


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str, allow_nan=True))


def read_evidence(settings: Settings, config: DatasetConfig, version: str, name: str) -> dict | None:
    path = settings.dataset_reports(config.name) / f"v{version}" / name
    return json.loads(path.read_text()) if path.exists() else None


def read_fairness(settings: Settings, config: DatasetConfig, run_id: str) -> dict | None:
    """The fairness evidence of the run a version was trained in (plot paths relative to the reports folder)."""
    path = settings.dataset_reports(config.name) / "runs" / run_id / "fairness.json"
    return json.loads(path.read_text()) if path.exists() else None


def load_background(settings: Settings, config: DatasetConfig, version: str) -> pd.DataFrame:
    """The training rows this version's explanations are measured against (written by the explanations asset)."""
    path = settings.reports / config.name / f"v{version}" / "explainer_background.parquet"
    if not path.exists():
        raise ExplanationError(f"{config.registered_model_name} v{version} has no explanation background yet: "
                               f"materialize {config.name}/explanations for it (`mlops materialize`)")
    return pd.read_parquet(path)


def measure_metrics(settings: Settings, subject: VersionUnderTest, training_set: pd.DataFrame) -> dict:
    """Test metrics with bootstrap intervals, and the split the version was judged on."""
    started = time.perf_counter()
    config = subject.config
    fairness = config.governance.fairness
    summary = split_summary(training_set, config)
    evidence = {
        "metrics": metrics_with_intervals(subject.y, subject.scores, subject.threshold, fairness.bootstrap,
                                          fairness.confidence, fairness.seed),
        "confidence": fairness.confidence,
        "resamples": fairness.bootstrap,
        "threshold": subject.threshold,
        "split": split_description(config),
        "split_summary": summary.reset_index(names="split").to_dict(orient="records"),
        "test_rows": int(len(subject.test)),
    }
    evidence["seconds"] = round(time.perf_counter() - started, 3)
    _write_json(version_folder(settings, config, subject.version) / "metrics.json", evidence)
    return evidence


def measure_fairness(settings: Settings, subject: VersionUnderTest) -> FairnessReport:
    """The fairness report and its plots (by training run), and the verdict as tags on the run (and on the
    version once it exists): promotion reads them."""
    started = time.perf_counter()
    config = subject.config
    report = assess_fairness(subject.test, subject.y, subject.scores, subject.threshold, config)
    folder = run_folder(settings, config, subject.run_id)
    files = {}
    for attribute in report.groups["attribute"].unique():
        name = "fairness_" + attribute.replace(" × ", "_x_") + ".png"
        (folder / name).write_bytes(plots.fairness_bars(report.groups, attribute, report.confidence))
        files[attribute] = f"runs/{subject.run_id}/{name}"
    payload = {**report.to_dict(), "plots": files, "seconds": round(time.perf_counter() - started, 3)}
    _write_json(folder / "fairness.json", payload)
    verdict = ("passed" if report.passed else "failed") if report.judged else "not judged"
    tracking = client(settings)
    for key, value in ((FAIRNESS_TAG, verdict), (FAIRNESS_VERDICT_TAG, report.verdict()[:4000])):
        tracking.set_tag(subject.run_id, key, value)
        if subject.version is not None:
            tracking.set_model_version_tag(config.registered_model_name, subject.version, key, value)
    return report


def measure_explanations(settings: Settings, subject: VersionUnderTest) -> dict:
    """Global importance with its spread, example rows in words, and the background kept for later requests."""
    started = time.perf_counter()
    config = subject.config
    settings_ = config.governance.explanations
    folder = version_folder(settings, config, subject.version)
    importance = global_importance(subject.model, subject.test, subject.y, settings_.repeats, settings_.seed,
                                   settings_.max_rows)
    background = background_sample(subject.train, config)
    background.to_parquet(folder / "explainer_background.parquet", index=False)
    examples = []
    for position in example_rows(subject.test, subject.scores, subject.threshold, settings_.examples):
        row = subject.test.iloc[position]
        entity = str(row[config.entity_column])
        explanation = explain_row(subject.model, row, background, subject.threshold, entity)
        examples.append({**explanation.to_dict(), "actual": int(subject.y[position])})
    (folder / "importance.png").write_bytes(plots.importance_bars(importance, settings_.repeats))
    payload = {
        "method": "permutation importance on the test split (ROC AUC drop), sampled Shapley contributions "
                  "of the raw input columns against training rows",
        "repeats": settings_.repeats,
        "rows_per_repeat": min(settings_.max_rows, len(subject.test)),
        "test_rows": int(len(subject.test)),
        "importance": importance.to_dict(orient="records"),
        "examples": examples,
        "background_rows": int(len(background)),
        "plot": "importance.png",
        "seconds": round(time.perf_counter() - started, 3),
    }
    _write_json(folder / "explanations.json", payload)
    return payload
