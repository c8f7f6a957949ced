"""Why the model scores as it does: globally (permutation importance) and for one row (contributions in words).

Both work on the **raw input columns** a person knows (``tenure_months``, ``contract_type``),
not on what the pipeline makes of them (one-hot columns, ordinal codes, derived ratios):
the model is wrapped so that it takes raw rows and computes derived features itself,
so shuffling or replacing ``total_charges`` also changes ``charges_per_tenure_month``,
and its effect is counted once, under the raw column.

- **Global:** scikit-learn's ``permutation_importance`` on the test split, scored by
  ROC AUC, with the spread over repeats.
- **Local:** Shapley values of the raw columns, estimated by sampling feature orderings
  (and their reverses) against a background sample of training rows. Each ordering
  adds the row's values one column at a time and credits each column with the change
  in the mean score, so the contributions add up exactly to
  ``score - mean background score``. The method is model-agnostic: the same code
  explains the three model families, in probability units a reader can follow.
  SHAP is not used: its fast TreeExplainer explains the estimator's encoded inputs
  (ordinal codes, one-hot columns, derived ratios) rather than the raw columns, it
  covers only the tree families, and it brings numba and llvmlite with it; its
  model-agnostic explainers do what this module does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.engineering import derive_features


class ExplanationError(PlatformError, ValueError):
    """A row that cannot be explained: an unknown entity, missing columns."""


def raw_inputs(config: DatasetConfig) -> list[str]:
    """The columns a client sends and a person reads: the config's features (derived ones are computed)."""
    return list(config.features)


class RawInputModel(ClassifierMixin, BaseEstimator):
    """The registered pipeline behind an interface of raw columns (derived features computed inside)."""

    def __init__(self, pipeline: Pipeline, config: DatasetConfig):
        self.pipeline = pipeline
        self.config = config
        self.classes_ = np.array([0, 1])

    def fit(self, X, y=None):  # noqa: N803 - scikit-learn's signature; the pipeline is fitted already
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.pipeline.predict_proba(derive_features(X, self.config)[self.config.model_features])

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.predict_proba(X)[:, 1] >= 0.5

    def score_rows(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.predict_proba(X)[:, 1]


def global_importance(model: RawInputModel, rows: pd.DataFrame, y: np.ndarray, repeats: int, seed: int,
                      max_rows: int | None = None) -> pd.DataFrame:
    """Drop in test ROC AUC when each raw column is shuffled: mean, spread and every repeat, largest first.

    With ``max_rows``, each repeat scores its own random sample of that many rows, so the
    spread over repeats includes the sampling's.
    """
    columns = raw_inputs(model.config)
    sample = 1.0 if max_rows is None or max_rows >= len(rows) else max_rows
    # Many small predictions: OpenMP threads cost more than they give (4.1 s vs 1.2 s for churn on 2 busy cores).
    with threadpool_limits(limits=1):
        result = permutation_importance(model, rows[columns], y, scoring="roc_auc", n_repeats=repeats,
                                        random_state=seed, n_jobs=1, max_samples=sample)
    table = pd.DataFrame({
        "feature": columns,
        "importance": result.importances_mean,
        "std": result.importances_std,
        "low": result.importances.min(axis=1),
        "high": result.importances.max(axis=1),
    })
    return table.sort_values("importance", ascending=False, ignore_index=True)


@dataclass
class LocalExplanation:
    """One row's score, taken apart into what each raw column added to the average score."""

    entity_id: str | None
    score: float
    threshold: float
    baseline: float
    values: dict[str, object]
    contributions: dict[str, float]
    sentence: str

    def to_dict(self) -> dict:
        return asdict(self)


def background_sample(train: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """The training rows contributions are measured against (fixed per version, stored beside the card)."""
    settings = config.governance.explanations
    take = min(settings.background_rows, len(train))
    return train[raw_inputs(config)].sample(n=take, random_state=settings.seed).reset_index(drop=True)


def contributions(model: RawInputModel, row: pd.Series, background: pd.DataFrame, permutations: int,
                  seed: int) -> tuple[float, float, dict[str, float]]:
    """(score, mean background score, contribution per raw column) for one raw row.

    All orderings are scored in one ``predict_proba`` call: orderings x (columns + 1) x
    background rows, e.g. 16 x 13 x 64 = 13,312 rows for churn.
    """
    columns = raw_inputs(model.config)
    m, b = len(columns), len(background)
    rng = np.random.default_rng(seed)
    half = [rng.permutation(m) for _ in range((permutations + 1) // 2)]
    orders = np.array([o for p in half for o in (p, p[::-1])][:max(permutations, 2)])
    # coalition[p, j, c]: column c already holds the row's value at step j of ordering p
    rank = np.argsort(orders, axis=1)  # position of each column in each ordering
    coalition = rank[:, None, :] < np.arange(m + 1)[None, :, None]
    mask = np.repeat(coalition.reshape(-1, m), b, axis=0)  # (P * (m+1) * b, m)
    repeated = background.iloc[np.tile(np.arange(b), len(orders) * (m + 1))].reset_index(drop=True)
    frame = pd.DataFrame({c: _where(mask[:, i], row[c], repeated[c]) for i, c in enumerate(columns)})
    with threadpool_limits(limits=1):
        scored = model.score_rows(frame)
    scores = scored.reshape(len(orders), m + 1, b).mean(axis=2)  # value of each coalition
    steps = np.diff(scores, axis=1)  # (P, m): what the column added at step j
    credit = np.zeros(m)
    for p, order in enumerate(orders):
        credit[order] += steps[p]
    credit /= len(orders)
    return float(scores[0, -1]), float(scores[0, 0]), dict(zip(columns, credit.tolist()))


def _where(condition: np.ndarray, value: object, others: pd.Series) -> pd.Series:
    """``others`` with the row's value where ``condition`` holds, kept in the background's dtype when it fits."""
    out = others.to_numpy(dtype=object, copy=True)
    out[condition] = value
    try:
        return pd.Series(out).astype(others.dtype)
    except (TypeError, ValueError):  # e.g. a missing value in an integer column: let the model see NaN
        return pd.Series(out)


def explain_row(model: RawInputModel, row: pd.Series, background: pd.DataFrame, threshold: float,
                entity_id: str | None = None) -> LocalExplanation:
    """Contributions of one raw row, with the sentence a non-technical reader follows."""
    missing = [c for c in raw_inputs(model.config) if c not in row.index]
    if missing:
        raise ExplanationError(f"dataset {model.config.name!r}: the row to explain lacks columns {missing}")
    settings = model.config.governance.explanations
    score, baseline, credit = contributions(model, row, background, settings.permutations, settings.seed)
    values = {c: _plain(row[c]) for c in raw_inputs(model.config)}
    sentence = describe(score, baseline, threshold, values, credit, model.config)
    return LocalExplanation(entity_id, score, threshold, baseline, values, credit, sentence)


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def _value_words(column: str, value: object, config: DatasetConfig) -> str:
    if value is None:
        return f"{column} is missing"
    kind = config.columns[column].type
    if kind == "boolean":
        return f"{column} is {'yes' if value else 'no'}"
    if kind in ("categorical", "string"):
        return f"{column} is {value}"
    if kind == "integer" or (isinstance(value, float) and float(value).is_integer()):
        return f"{column} is {int(value)}"
    number = float(value)
    return f"{column} is {number:,.0f}" if abs(number) >= 1000 else f"{column} is {number:.3g}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(score: float, baseline: float, threshold: float, values: dict[str, object],
             credit: dict[str, float], config: DatasetConfig, most: int = 3) -> str:
    """'The score is high (0.57, ...) mainly because tenure_months is 2 (+0.18) ...; contract_type ... lowered it.'"""
    level = "high" if score >= threshold else "low"
    toward = 1 if score >= baseline else -1
    ranked = sorted(credit.items(), key=lambda kv: -abs(kv[1]))
    total = sum(abs(v) for v in credit.values()) or 1.0
    main = [(c, v) for c, v in ranked if v * toward > 0 and abs(v) >= 0.05 * total][:most]
    against = [(c, v) for c, v in ranked if v * toward < 0 and abs(v) >= 0.05 * total][:2]
    head = (f"The score is {level}: {score:.2f} against the decision threshold {threshold:.2f} "
            f"(the average over training rows is {baseline:.2f}).")
    if not main:
        return head + " No single input moved it much."
    words = [f"{_value_words(c, values[c], config)} ({v:+.2f})" for c, v in main]
    text = f"{head} It is {'higher' if toward > 0 else 'lower'} than average mainly because {_join(words)}"
    if against:
        opposite = [f"{_value_words(c, values[c], config)} ({v:+.2f})" for c, v in against]
        text += f"; {_join(opposite)} {'lowered' if toward > 0 else 'raised'} it"
    return text + "."


def example_rows(test: pd.DataFrame, scores: np.ndarray, threshold: float, count: int) -> list[int]:
    """Positions of a few telling test rows: the highest score, the lowest, the nearest the threshold, ..."""
    if count == 0 or len(test) == 0:
        return []
    order = np.argsort(scores)
    picks = [int(order[-1]), int(order[0]), int(np.argmin(np.abs(scores - threshold)))]
    picks += [int(i) for i in order[np.linspace(0, len(order) - 1, count + 2, dtype=int)[1:-1]]]
    unique = list(dict.fromkeys(picks))
    return unique[:count]


def explain_record(pipeline: Pipeline, config: DatasetConfig, threshold: float, record: dict | pd.Series,
                   background: pd.DataFrame, entity_id: str | None = None) -> LocalExplanation:
    """One raw record (as a client sends it) explained: for `mlops explain` and the service's endpoint."""
    row = pd.Series(record) if isinstance(record, dict) else record
    return explain_row(RawInputModel(pipeline, config), row, background, threshold, entity_id)
