"""The models a worker serves for one dataset, and how one of them turns records into scores.

A :class:`DatasetDeployment` is an immutable snapshot: the champion, the challenger (if
an experiment needs one), the experiment, and why something is missing. The worker
swaps the whole snapshot when an alias moves or the experiment changes, and each
request reads the snapshot once, so it is scored, logged and answered by one version,
and that version is named in the answer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from mlops_assets.config import DatasetConfig
from mlops_assets.serving.batching import MicroBatcher
from mlops_assets.serving.experiments import Experiment
from mlops_assets.settings import Settings
from mlops_assets.training.compiled import VERIFICATION_ARTIFACT, InferencePath, choose_inference_path
from mlops_assets.training.registry import ServedModel, alias_version, client, load_version, record_inference_path

logger = logging.getLogger("mlops.serving")


def learned_categories(pipeline: Pipeline) -> dict[str, list]:
    """Per column, the categories the fitted encoders saw in training (missing values left out).

    Every model family encodes its categorical columns with a fitted OrdinalEncoder or
    OneHotEncoder inside a ColumnTransformer; their ``categories_`` are the vocabulary.
    """

    def encoders(transformer: object):
        if hasattr(transformer, "categories_"):
            yield transformer
        elif isinstance(transformer, Pipeline):
            for _, step in transformer.steps:
                yield from encoders(step)

    found: dict[str, list] = {}
    for _, step in pipeline.steps:
        if not isinstance(step, ColumnTransformer):
            continue
        for _, transformer, columns in step.transformers_:
            for encoder in encoders(transformer):
                for column, categories in zip(columns, encoder.categories_):
                    found[column] = [c for c in categories.tolist()
                                     if c is not None and not (isinstance(c, float) and math.isnan(c))]
    return found


def example_record(settings: Settings, config: DatasetConfig, version: str) -> dict | None:
    """A real record for the API page: the first row of the input example logged with the version.

    Training logs integers as doubles (so that a missing value is not refused); they are
    integers again here. None when the version has no example.
    """
    import mlflow
    from mlflow.models import Model

    try:
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        local = mlflow.artifacts.download_artifacts(f"models:/{config.registered_model_name}/{version}")
        frame = Model.load(local).load_input_example(local)
    except Exception:
        return None
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return None
    row = frame.iloc[0]
    record: dict = {}
    for name in config.request_features:
        if name not in row.index:
            return None
        value = row[name]
        kind = config.columns[name].type
        if value is None or (isinstance(value, float) and math.isnan(value)):
            record[name] = None
        elif kind == "integer":
            record[name] = int(round(float(value)))
        elif kind == "boolean":
            record[name] = bool(value)
        elif kind == "float":
            record[name] = float(value)
        else:
            record[name] = str(value)
    return record


@dataclass(eq=False)
class ScoringModel:
    """A registered version loaded to answer requests.

    ``score_records`` is the one place where records become scores: the batcher calls it,
    and a faster inference path replaces what is behind it, not its callers.
    """

    alias: str
    served: ServedModel
    raw_columns: list[str]
    learned_values: dict[str, frozenset[str]]
    loaded_at: dt.datetime
    inference: InferencePath
    example: dict | None = None
    batcher: MicroBatcher = field(init=False, repr=False)
    max_batch_size: int = 128

    def __post_init__(self) -> None:
        self.batcher = MicroBatcher(self.score_records, self.max_batch_size)

    @property
    def version(self) -> str:
        return self.served.version

    @property
    def name(self) -> str:
        return self.served.config.registered_model_name

    @property
    def threshold(self) -> float:
        return self.served.decision_threshold

    def score_records(self, records: Sequence[dict]) -> np.ndarray:
        """The compiled form when it was verified for this version, else the sklearn pipeline."""
        compiled = self.inference.compiled
        if compiled is not None:
            return compiled.score_records(records)
        return self.served.score_records(records)

    def unknown_values(self, record: dict) -> list[tuple[str, object]]:
        """(column, value) pairs of free-text columns holding a value this version never saw in training."""
        return [(column, record[column]) for column, known in self.learned_values.items()
                if record.get(column) is not None and record[column] not in known]


def logged_verification_records(settings: Settings, served: ServedModel) -> list[dict]:
    """The records the version's evaluation verified its compiled form on (empty when it logged none).

    Only a missing file means "none logged": a store that fails raises, and the caller says so.
    """
    import mlflow

    tracking = client(settings)
    folder = str(Path(VERIFICATION_ARTIFACT).parent)
    if VERIFICATION_ARTIFACT not in {a.path for a in tracking.list_artifacts(served.run_id, folder)}:
        return []
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    path = mlflow.artifacts.download_artifacts(run_id=served.run_id, artifact_path=VERIFICATION_ARTIFACT)
    return json.loads(Path(path).read_text())


def serving_inference_path(settings: Settings, served: ServedModel, compiled: bool = True) -> InferencePath:
    """Verify the compiled form again, here, on the version's records; fall back to sklearn, and say so."""
    name = served.config.registered_model_name
    if not compiled:
        path = InferencePath(None, "compiled scoring is switched off (MLOPS_COMPILED_SCORING=0)")
        logger.info("%s v%s is served by the sklearn pipeline: %s", name, served.version, path.reason)
        return path
    try:
        records = logged_verification_records(settings, served)
    except Exception as exc:  # noqa: BLE001 - the version still serves, by sklearn, and says why
        path = InferencePath(None, f"its verification records could not be read ({type(exc).__name__}: {exc})")
        logger.warning("%s v%s is served by the sklearn pipeline: %s", name, served.version, path.reason)
        return path  # not recorded on the version: a store failing once says nothing lasting about it
    path = (choose_inference_path(served.config, served.pipeline, served.score_records, records,
                                  served.decision_threshold) if records
            else InferencePath(None, "no verification records were logged with this version"))
    if path.compiled is None:
        logger.warning("%s v%s is served by the sklearn pipeline: %s", name, served.version, path.reason)
        record_inference_path(settings, served.config, served.version, path)
    else:
        logger.info("%s v%s is served compiled: %s", name, served.version, path.reason)
    return path


def load_scoring_model(settings: Settings, config: DatasetConfig, alias: str, version: str,
                       max_batch_size: int = 128, compiled: bool = True) -> ScoringModel:
    served = load_version(settings, config, version)
    # Columns whose values the config does not list are checked against the vocabulary the model learned.
    open_columns = {name for name in config.request_features
                    if config.columns[name].type in ("string", "categorical") and not config.columns[name].values}
    learned = {column: frozenset(str(v) for v in values)
               for column, values in learned_categories(served.pipeline).items() if column in open_columns}
    return ScoringModel(
        alias=alias, served=served, raw_columns=config.request_features,
        learned_values=learned, loaded_at=dt.datetime.now(dt.timezone.utc), max_batch_size=max_batch_size,
        inference=serving_inference_path(settings, served, compiled),
        example=example_record(settings, config, version),
    )


@dataclass(frozen=True)
class DatasetDeployment:
    """What one dataset is served with right now (replaced whole, never changed in place)."""

    config: DatasetConfig
    champion: ScoringModel | None
    challenger: ScoringModel | None
    experiment: Experiment | None
    reload_generation: int = 0
    problem: str | None = None

    @property
    def running_experiment(self) -> Experiment | None:
        """The experiment, when it splits traffic and both of its models are loaded."""
        if self.experiment is not None and self.experiment.splits_traffic and self.champion and self.challenger:
            return self.experiment
        return None

    @property
    def champion_alias(self) -> str:
        return self.experiment.champion_alias if self.experiment else "champion"

    @property
    def challenger_alias(self) -> str | None:
        return self.experiment.challenger_alias if self.experiment and self.experiment.splits_traffic else None


def alias_versions(settings: Settings, config: DatasetConfig, aliases: list[str]) -> dict[str, str | None]:
    return {alias: alias_version(settings, config, alias) for alias in aliases}
