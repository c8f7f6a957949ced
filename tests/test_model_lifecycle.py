"""A model's life in MLflow: logged, evaluated, only then registered; compared with the champion;
reproduced from its records; its artifacts stored once."""

from __future__ import annotations

import dataclasses
import filecmp
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.features.training_set import binary_target, split_frame
from mlops_assets.settings import use_home
from mlops_assets.training.artifacts import deduplicate, measure
from mlops_assets.training.environment import capture_environment
from mlops_assets.training.evaluation import choose_threshold, evaluate_on_test, threshold_warning
from mlops_assets.training.registry import CHAMPION, set_alias
from mlops_assets.training.reproduce import RunNotFoundError, reproduce_run
from mlops_assets.training.train import fit_model, lineage_tags, log_training_run
from tests.experiments_support import churn_training_set, write_churn_config


def train_and_log(settings, config, training_set, params=None):
    fitted = fit_model(training_set, config, params)
    return log_training_run(settings, fitted, config, training_set, lineage_tags(training_set, config, fitted))


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """One home: v1 (champion) and a retraining of it on the same data, both evaluated."""
    folder = tmp_path_factory.mktemp("lifecycle")
    config = write_churn_config(folder / "configs")
    training_set = churn_training_set(config)
    with use_home(folder / "home", folder / "configs") as settings:
        client = MlflowClient(settings.mlflow_tracking_uri)
        first = train_and_log(settings, config, training_set)
        versions = {"after logging": client.search_model_versions(f"name = '{config.registered_model_name}'")}
        # Evaluation fails (the test rows lost their target): the logged model must not become a version.
        with pytest.raises(KeyError):
            evaluate_on_test(settings, config, training_set.drop(columns=config.target), first)
        versions["after a failed evaluation"] = client.search_model_versions(f"name = '{config.registered_model_name}'")
        evaluation = evaluate_on_test(settings, config, training_set, first)
        versions["after evaluation"] = client.search_model_versions(f"name = '{config.registered_model_name}'")
        set_alias(settings, config, CHAMPION, evaluation.model.version)
        again = train_and_log(settings, config, training_set)
        # What MLflow serves for the retrained run and its model before anything of theirs is de-duplicated.
        downloaded_before = (
            Path(mlflow.artifacts.download_artifacts(run_id=again.run_id, dst_path=str(folder / "before"))),
            Path(mlflow.artifacts.download_artifacts(again.model_uri, dst_path=str(folder / "model_before"))),
        )
        second = evaluate_on_test(settings, config, training_set, again)
    return folder, config, training_set, first, evaluation, again, second, downloaded_before, versions


def test_a_model_is_registered_only_once_its_evaluation_is_done(lifecycle):
    *_, first, evaluation, _, _, _, versions = lifecycle
    assert versions["after logging"] == [] and versions["after a failed evaluation"] == []
    (version,) = versions["after evaluation"]
    assert str(version.version) == evaluation.model.version == "1" and version.run_id == first.run_id
    assert float(version.tags["test_roc_auc"]) == pytest.approx(evaluation.metrics["roc_auc"], rel=1e-5)
    assert version.description.startswith("hist_gradient_boosting on `churn`: test ROC AUC")


def test_a_new_version_is_compared_with_the_champion_on_the_same_rows(lifecycle):
    folder, config, training_set, first, evaluation, again, second, _, _ = lifecycle
    assert evaluation.comparison is None and second.champion_version == evaluation.model.version
    rows = {row["metric"]: row for row in second.comparison}
    assert set(rows) == {"roc_auc", "accuracy", "pr_auc", "log_loss", "brier"}
    # Retrained on the same data with the same seed: the same model, so no difference at all.
    assert all(row["difference"] == 0 and not row["significant"] for row in rows.values())
    assert rows["roc_auc"]["test"] == "DeLong" and rows["accuracy"]["test"] == "McNemar (exact)"
    with use_home(folder / "home", folder / "configs") as settings:
        version = MlflowClient(settings.mlflow_tracking_uri).get_model_version(config.registered_model_name, "2")
    assert version.tags["compared_with"] == "v1" and version.tags["comparison"].startswith("no significant difference")
    assert "no significant difference" in version.description


def test_retraining_on_unchanged_data_stores_its_artifacts_once_and_downloads_stay_identical(lifecycle):
    folder, config, training_set, first, evaluation, again, second, before, _ = lifecycle
    run_before, model_before = before
    with use_home(folder / "home", folder / "configs") as settings:
        report = deduplicate(settings)  # evaluation de-duplicated already: nothing left to link
        run_after = Path(mlflow.artifacts.download_artifacts(run_id=again.run_id, dst_path=str(folder / "after")))
        model_after = Path(mlflow.artifacts.download_artifacts(again.model_uri, dst_path=str(folder / "m2")))
        first_model = Path(mlflow.artifacts.download_artifacts(first.model_uri, dst_path=str(folder / "m1")))
        loaded = mlflow.sklearn.load_model(again.model_uri)
        stored_model = Path(mlflow.get_logged_model(again.model_uri.removeprefix("models:/")).artifact_location.removeprefix("file://"))
    assert report.newly_linked == 0 and len(_files(run_before)) >= 3 and len(_files(model_before)) >= 6
    for base_before, base_after in ((run_before, run_after), (model_before, model_after)):
        assert all(filecmp.cmp(base_before / p, base_after / p, shallow=False) for p in _files(base_before))
    # The same model is the same bytes (skops files are written canonically), stored once.
    assert (first_model / "model.skops").read_bytes() == (model_after / "model.skops").read_bytes()
    assert (stored_model / "model.skops").stat().st_nlink == 3  # two runs' models + the content store
    assert report.stored_bytes < 0.6 * report.logical_bytes
    assert measure(settings).files == report.files
    test = split_frame(training_set, "test")
    assert np.array_equal(loaded.predict_proba(test[config.model_features]),
                          mlflow.sklearn.load_model(first.model_uri).predict_proba(test[config.model_features]))


def _files(root: Path) -> list[Path]:
    return [p.relative_to(root) for p in root.rglob("*") if p.is_file()]


def test_reproduction_matches_exactly_and_names_the_reason_when_it_does_not(lifecycle):
    folder, config, training_set, first, *_ = lifecycle
    with use_home(folder / "home", folder / "configs") as settings:
        exact = reproduce_run(settings, first.run_id, config, training_set)
        assert exact.exact, exact.report()
        assert [c.name for c in exact.checks] == ["environment", "code", "dataset config", "training data",
                                                   "validation metrics", "test metrics", "test predictions"]

        now = capture_environment()
        upgraded = tuple(p if not p.startswith("numpy==") else "numpy==0.0.1" for p in now.packages)
        changed = dataclasses.replace(now, packages=upgraded, git_dirty=True, git_diff_hash="feedface0000")
        different_env = reproduce_run(settings, first.run_id, config, training_set, environment=changed)

        altered = training_set.copy()
        train_rows = altered.index[altered["split"] == "train"][:300]
        altered.loc[train_rows, config.target] = 1 - altered.loc[train_rows, config.target]
        different_data = reproduce_run(settings, first.run_id, config, altered)

        with pytest.raises(RunNotFoundError, match="run 'no-such-run' does not exist"):
            reproduce_run(settings, "no-such-run", config, training_set)
    assert not different_env.exact
    assert "environment: packages differ: numpy" in " ".join(different_env.reasons)
    assert "the working tree now has uncommitted changes" in different_env.report() or \
        "different uncommitted changes" in different_env.report()
    assert not different_data.exact and different_data.reasons[0].startswith("training data: recorded ")
    assert "test predictions     DIFFERS" in different_data.report()


def test_a_majority_positive_target_gets_a_real_split_or_a_warning():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.9).astype(int)  # 90% positive, a weak model
    scores = np.clip(0.6 + 0.1 * (y - 0.5) + rng.normal(scale=0.2, size=2000), 0, 1)
    from sklearn.metrics import f1_score
    # The plain argmax of F1 over the cut-offs labels (nearly) everyone positive here.
    cut_offs = np.quantile(scores, np.linspace(0, 1, 201))
    assert np.mean(scores >= max(cut_offs, key=lambda t: f1_score(y, scores >= t))) > 0.99
    by_f1 = choose_threshold(y, scores, "max_f1")
    assert (scores >= by_f1).sum() < len(y)  # never every row...
    assert "labels nearly every validation row positive" in threshold_warning(y, scores, by_f1)  # ...and flagged
    by_mcc = choose_threshold(y, scores, "max_mcc")
    assert 0.2 < np.mean(scores >= by_mcc) < 0.8 and threshold_warning(y, scores, by_mcc) is None
    assert threshold_warning(y, scores, 0.0).startswith("decision threshold 0.0000 labels every validation row positive")
    # A rare-positive target flagged sparingly but correctly is not degenerate.
    rare = np.zeros(1000, dtype=int)
    rare[:8] = 1
    assert threshold_warning(rare, rare * 0.9 + 0.05, 0.5) is None


def test_a_single_class_threshold_is_a_warning_on_the_model_and_its_version(tmp_path):
    config = write_churn_config(tmp_path / "configs", model={"decision_threshold": 0.0001})
    training_set = churn_training_set(config)
    fitted = fit_model(training_set, config)
    y_validation = binary_target(split_frame(training_set, "validation"), config)
    assert fitted.threshold_warning.startswith("decision threshold 0.0001 labels every validation row positive")
    assert f"positive rate {y_validation.mean():.3f})" in fitted.threshold_warning
    assert lineage_tags(training_set, config, fitted)["decision_threshold_warning"] == fitted.threshold_warning
