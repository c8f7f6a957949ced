"""Tuning: search-space checks, a study recorded as nested MLflow runs, pruning, failed trials, plots."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.config import ConfigError
from mlops_assets.settings import use_home
from mlops_assets.training.search_space import check_search_space
from mlops_assets.training.study import SplitData, StudyError, open_storage
from mlops_assets.training.tuning import tune
from tests.experiments_support import churn_training_set, write_churn_config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search_space": {"learning_rte": {"low": 0.01, "high": 0.3}}},
         "search_space.learning_rte: hist_gradient_boosting has no parameter 'learning_rte' (did you mean 'learning_rate'?)"),
        ({"search_space": {"learning_rate": {"low": 0.3, "high": 0.01}}}, "inverted range: low 0.3 is above high 0.01"),
        ({"search_space": {"max_leaf_nodes": {"low": 8, "high": 8}}}, "empty range: low and high are both 8"),
        ({"search_space": {"max_leaf_nodes": {"choices": []}}}, "choices is empty"),
        ({"tuning": {"n_trials": 0}}, "tuning.n_trials: Input should be greater than or equal to 1"),
        ({"model": {"family": "xgboost_deluxe"}}, "model.family: Input should be 'hist_gradient_boosting'"),
        ({"tuning": {"pruner": "sometimes"}}, "tuning.pruner: Input should be 'median', 'hyperband' or 'none'"),
    ],
)
def test_a_bad_search_space_or_tuning_setting_is_one_line_before_any_work(tmp_path, change, message):
    with pytest.raises(ConfigError) as raised:
        check_search_space(write_churn_config(tmp_path, **change))
    text = str(raised.value)
    assert message in text and "\n" not in text
    assert str(tmp_path / "churn.yaml") in text


def test_study_records_every_trial_as_a_nested_run_and_attaches_its_plots(tmp_path):
    config = write_churn_config(tmp_path / "configs", tuning={"n_trials": 5, "pruner": "none"})
    training_set = churn_training_set(config)
    with use_home(tmp_path / "home", tmp_path / "configs") as settings:
        outcome = tune(settings, config, training_set)
        client = MlflowClient(settings.mlflow_tracking_uri)
        study_run = client.get_run(outcome.mlflow_run_id)
        trials = client.search_runs([study_run.info.experiment_id],
                                    f"tags.mlflow.parentRunId = '{outcome.mlflow_run_id}'")
        storage = open_storage(settings)
        study = optuna.load_study(study_name=outcome.study_name, storage=storage)

    assert outcome.trials["COMPLETE"] == 5 and outcome.new_trials == 5
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trials) == [0, 1, 2, 3, 4]
    best = next(r for r in trials if int(r.data.tags["optuna.trial"]) == outcome.best_trial)
    assert best.data.metrics["validation_roc_auc"] == pytest.approx(outcome.best_value)
    assert set(best.data.params) == set(config.search_space)
    # Intermediate scores: one per stage, at steps 1..stages.
    history = client.get_metric_history(best.info.run_id, "validation_roc_auc")
    assert [m.step for m in history] == [1, 2]
    assert {r.info.status for r in trials} == {"FINISHED"} and all(r.data.metrics["duration_seconds"] > 0 for r in trials)
    # No model is logged per trial: only the study's plots and best parameters on the study run.
    assert all(not client.list_artifacts(r.info.run_id) for r in trials)
    assert {a.path for a in client.list_artifacts(outcome.mlflow_run_id, "study")} == {
        "study/best_params.json", "study/optimization_history.png", "study/parallel_coordinates.png",
        "study/param_importances.png"}
    assert study_run.data.metrics["trials_complete"] == 5 and study_run.info.status == "FINISHED"
    assert study.best_trial.number == outcome.best_trial
    # The study lives in Optuna's own database under MLOPS_HOME, not in MLflow's.
    assert storage.url == f"sqlite:///{tmp_path / 'home' / 'optuna' / 'optuna.db'}"

    # The same data and space is the same study: running again continues it (nothing left to do).
    with use_home(tmp_path / "home", tmp_path / "configs") as settings:
        again = tune(settings, config, training_set)
    assert again.study_name == outcome.study_name and again.new_trials == 0
    assert again.best_params == outcome.best_params


def test_a_trial_that_raises_is_recorded_as_failed_and_the_study_goes_on(tmp_path):
    # max_leaf_nodes=1 makes scikit-learn refuse the estimator: those trials fail, the others complete.
    config = write_churn_config(tmp_path / "configs", search_space={"max_leaf_nodes": {"choices": [1, 15]}},
                                tuning={"n_trials": 6, "pruner": "none"})
    with use_home(tmp_path / "home", tmp_path / "configs") as settings:
        outcome = tune(settings, config, churn_training_set(config))
        client = MlflowClient(settings.mlflow_tracking_uri)
        runs = client.search_runs([client.get_run(outcome.mlflow_run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{outcome.mlflow_run_id}'")
    failed = [r for r in runs if r.data.tags["optuna.state"] == "FAIL"]
    assert failed and outcome.trials["FAIL"] == len(failed) and outcome.trials["COMPLETE"] == 6 - len(failed)
    assert all(r.info.status == "FAILED" and "max_leaf_nodes" in r.data.tags["error"] for r in failed)
    assert outcome.best_params == {"max_leaf_nodes": 15}


def test_a_study_where_every_trial_fails_says_why(tmp_path):
    config = write_churn_config(tmp_path / "configs", search_space={"max_leaf_nodes": {"choices": [0, 1]}},
                                tuning={"n_trials": 2})
    with use_home(tmp_path / "home", tmp_path / "configs") as settings:
        with pytest.raises(StudyError, match="no trial completed .* first error: .*max_leaf_nodes"):
            tune(settings, config, churn_training_set(config))


def test_hopeless_trials_are_pruned_on_intermediate_scores(tmp_path):
    # A learning rate of 1e-5 barely moves the log loss: the median pruner stops those trials at a stage.
    config = write_churn_config(
        tmp_path / "configs",
        search_space={"learning_rate": {"choices": [0.00001, 0.2]}},
        tuning={"n_trials": 12, "pruner": "median", "metric": "log_loss", "stages": 3, "seed": 3},
    )
    with use_home(tmp_path / "home", tmp_path / "configs") as settings:
        outcome = tune(settings, config, churn_training_set(config))
        client = MlflowClient(settings.mlflow_tracking_uri)
        runs = client.search_runs([client.get_run(outcome.mlflow_run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{outcome.mlflow_run_id}'")
    pruned = [r for r in runs if r.data.tags["optuna.state"] == "PRUNED"]
    assert outcome.trials["PRUNED"] >= 1 and len(pruned) == outcome.trials["PRUNED"]
    assert all(r.data.params["learning_rate"] == "1e-05" and r.info.status == "KILLED" for r in pruned)
    assert all(len(client.get_metric_history(r.info.run_id, "validation_log_loss")) < 3 for r in pruned)
    assert outcome.best_params == {"learning_rate": 0.2} and outcome.direction == "minimize"


def test_optuna_refuses_mlflows_database(tmp_path):
    config = write_churn_config(tmp_path / "configs")
    with use_home(tmp_path / "home", tmp_path / "configs",
                  MLOPS_OPTUNA_STORAGE=f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}") as settings:
        with pytest.raises(StudyError, match="MLOPS_OPTUNA_STORAGE is MLflow's database"):
            tune(settings, config, churn_training_set(config))


def test_trials_fit_on_a_seeded_sample_of_a_large_train_split_and_say_so(tmp_path):
    config = write_churn_config(tmp_path / "configs", tuning={"n_trials": 2, "pruner": "none", "max_train_rows": 1000})
    training_set = churn_training_set(config, rows=3000)
    train = training_set[training_set["split"] == "train"]
    data = SplitData.from_training_set(training_set, config)
    again = SplitData.from_training_set(training_set, config)

    # At most max_train_rows, a subset of the train split in its time order, the same every time (every worker).
    assert len(train) > 1000 and len(data.x_train) == 1000 == len(data.y_train)
    assert data.x_train.index.is_monotonic_increasing and data.x_train.index.isin(train.index).all()
    assert data.x_train.index.equals(again.x_train.index)
    assert len(data.x_validation) == (training_set["split"] == "validation").sum()  # validation is never sampled
    assert data.describe() == f"1,000 of {len(train):,} training rows (seeded sample)"
    everything = SplitData.from_training_set(training_set, config.model_copy(
        update={"tuning": config.tuning.model_copy(update={"max_train_rows": None})}))
    assert len(everything.x_train) == len(train) and everything.describe() == f"all {len(train):,} training rows"

    with use_home(tmp_path / "home", tmp_path / "configs") as settings:
        outcome = tune(settings, config, training_set)
        study_run = MlflowClient(settings.mlflow_tracking_uri).get_run(outcome.mlflow_run_id)
    assert outcome.tuning_rows == data.describe() == study_run.data.tags["tuning_rows"]
    assert study_run.data.params["max_train_rows"] == "1000"
