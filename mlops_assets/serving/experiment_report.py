"""From the prediction log to a decision: per-variant figures, the lift of the challenger, and a verdict.

``GET /experiment``, ``mlops experiment status`` and the Dagster ``ab_test_report``
asset all call :func:`analyze` on the rows of the experiment's current phase, so they
always agree.

- The **unit** is the entity (assignment sticks to it); requests without an entity id
  are units of their own. A metric's unit value is the mean over that unit's answered
  requests that have an outcome.
- **Metrics** per request, from the score, the decision and the outcome sent to
  ``POST /feedback``: ``outcome`` (its rate or mean; better when the config's
  ``outcome_goal`` says so), ``brier`` (squared error of the score, lower is better),
  ``log_loss`` (lower is better) and ``accuracy`` (decision equals outcome).
- **Sample-ratio mismatch** compares the units per variant with the split (chi-square,
  flagged below p = 0.001): a mismatch means the assignment or the logging is broken,
  and no lift can be trusted. It does not apply in shadow mode, where every request is
  scored by both.
- The **verdict** decides on the always-valid confidence sequence, so it can be read
  every day: the challenger wins when the sequence excludes zero on the good side (and
  no guardrail is breached), the champion wins when it excludes zero on the bad side
  or a guardrail is breached; otherwise keep collecting. The fixed-horizon Welch test
  and the Bayesian chance to win are reported next to it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from mlops_assets.config import ExperimentConfig, ExperimentMetric
from mlops_assets.serving.experiment_stats import (
    FrequentistResult,
    VariantSample,
    bayesian_test,
    cuped_theta,
    sequential_test,
    srm_p_value,
    welch_test,
)
from mlops_assets.serving.experiments import Experiment
from mlops_assets.serving.routing import CHALLENGER, CHAMPION, VARIANTS

SRM_THRESHOLD = 0.001
Decision = Literal["no_experiment", "keep_collecting", "challenger_wins", "champion_wins", "sample_ratio_mismatch"]

#: Columns of the prediction log the analysis reads.
LOG_COLUMNS = ["request_id", "logged_at", "entity_id", "variant", "shadow", "model_version", "score", "decision",
               "latency_ms", "error", "outcome"]


class VariantFigures(BaseModel):
    variant: str
    model_versions: list[str] = Field(description="versions that answered for this variant in the phase")
    requests: int
    units: int = Field(description="entities (or id-less requests) assigned to the variant")
    errors: int
    error_rate: float
    outcomes: int = Field(description="requests with an outcome from /feedback")
    outcome_mean: float | None = Field(description="outcome rate (binary) or mean")
    mean_score: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    metric_mean: float | None = Field(description="the primary metric over units with an outcome")
    metric_units: int = Field(description="units with an outcome")


class Interval(BaseModel):
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    problem: str | None = Field(None, description="why the result is neutral (gbstats' code)")

    @classmethod
    def of(cls, result: FrequentistResult) -> Interval:
        return cls(estimate=result.estimate, ci_low=result.ci[0], ci_high=result.ci[1], p_value=result.p_value,
                   problem=result.error)


class MetricResult(BaseModel):
    metric: ExperimentMetric
    higher_is_better: bool
    binary: bool
    cuped_covariate: str | None
    cuped_theta: float = Field(description="0 when no adjustment was made")
    absolute: Interval = Field(description="challenger - champion, Welch t-test")
    relative: Interval = Field(description="(challenger - champion) / champion, delta method, Welch t-test")
    sequential_absolute: Interval = Field(description="always-valid confidence sequence")
    sequential_relative: Interval
    chance_to_win: float = Field(description="posterior probability that the challenger is better (flat prior)")
    risk_choosing_champion: float = Field(description="expected relative loss of keeping the champion")
    risk_choosing_challenger: float


class SampleRatio(BaseModel):
    applicable: bool
    expected_challenger_share: float
    observed_challenger_share: float | None
    p_value: float | None
    mismatch: bool


class Guardrail(BaseModel):
    name: str
    limit: str
    measured: str
    breached: bool


class Verdict(BaseModel):
    decision: Decision
    summary: str


class ExperimentReport(BaseModel):
    dataset: str
    experiment_id: str | None
    mode: str | None
    status: str | None
    split: str | None
    phase_started_at: dt.datetime | None
    generated_at: dt.datetime
    variants: list[VariantFigures]
    sample_ratio: SampleRatio | None
    primary: MetricResult | None
    guardrail_metrics: list[MetricResult]
    guardrails: list[Guardrail]
    verdict: Verdict


def _higher_is_better(metric: ExperimentMetric, settings: ExperimentConfig) -> bool:
    if metric == "outcome":
        return settings.outcome_goal == "increase"
    return metric == "accuracy"


def request_metric(frame: pd.DataFrame, metric: ExperimentMetric) -> tuple[pd.Series, str | None]:
    """Per-request metric values (NaN where it cannot be computed) and, if none can be, why."""
    outcome, score = frame["outcome"].astype(float), frame["score"].astype(float)
    if metric == "outcome":
        return outcome, None
    known = outcome.dropna()
    if len(known) and not known.isin((0.0, 1.0)).all():
        return pd.Series(np.nan, index=frame.index), f"{metric} needs binary outcomes (0/1); the feedback holds other values"
    if metric == "brier":
        return (score - outcome) ** 2, None
    if metric == "accuracy":
        values = (frame["decision"].astype(float) == outcome).astype(float)
        return values.where(outcome.notna()), None
    clipped = score.clip(1e-15, 1 - 1e-15)
    return -(outcome * np.log(clipped) + (1 - outcome) * np.log(1 - clipped)), None


def _units(frame: pd.DataFrame) -> pd.Series:
    return frame["entity_id"].where(frame["entity_id"].notna(), "request:" + frame["request_id"].astype(str))


def _percentile(values: pd.Series, q: float) -> float | None:
    values = values.dropna()
    return float(np.percentile(values, q)) if len(values) else None


def _variant_figures(rows: pd.DataFrame, variant: str, metric_values: pd.Series) -> VariantFigures:
    answered = rows[rows["error"].isna()]
    with_outcome = answered[answered["outcome"].notna()]
    unit_metric = metric_values.loc[with_outcome.index].groupby(_units(with_outcome)).mean().dropna()
    return VariantFigures(
        variant=variant,
        model_versions=sorted(rows["model_version"].dropna().astype(str).unique().tolist()),
        requests=len(rows),
        units=int(_units(rows).nunique()),
        errors=int(rows["error"].notna().sum()),
        error_rate=float(rows["error"].notna().mean()) if len(rows) else 0.0,
        outcomes=len(with_outcome),
        outcome_mean=float(with_outcome["outcome"].mean()) if len(with_outcome) else None,
        mean_score=float(answered["score"].mean()) if len(answered) else None,
        latency_p50_ms=_percentile(rows["latency_ms"], 50),
        latency_p99_ms=_percentile(rows["latency_ms"], 99),
        metric_mean=float(unit_metric.mean()) if len(unit_metric) else None,
        metric_units=len(unit_metric),
    )


def _unit_samples(frame: pd.DataFrame, metric_values: pd.Series, covariate: str | None) -> dict[str, VariantSample]:
    """Per variant, the per-unit metric values (and the covariate, for CUPED) as sufficient statistics."""
    usable = frame[frame["error"].isna() & metric_values.notna()].copy()
    usable["unit"] = _units(usable)
    usable["value"] = metric_values.loc[usable.index]
    if covariate is not None:
        usable["covariate"] = pd.to_numeric(usable["covariate"], errors="coerce")
        # A unit without the covariate gets the pooled mean: it then carries no adjustment.
        usable["covariate"] = usable["covariate"].fillna(usable["covariate"].mean())
    aggregations = {"value": "mean", **({"covariate": "mean"} if covariate is not None else {})}
    per_unit = usable.groupby(["variant", "unit"]).agg(aggregations).reset_index()
    samples = {}
    for variant in VARIANTS:
        part = per_unit[per_unit["variant"] == variant]
        covariate_values = part["covariate"].to_numpy() if covariate is not None else None
        samples[variant] = VariantSample.from_values(part["value"].to_numpy(), covariate_values)
    return samples


def compare(frame: pd.DataFrame, metric: ExperimentMetric, settings: ExperimentConfig) -> tuple[MetricResult | None, str | None]:
    """The challenger against the champion on one metric, or why it cannot be compared."""
    values, problem = request_metric(frame, metric)
    if problem:
        return None, problem
    samples = _unit_samples(frame, values, settings.covariate)
    a, b = samples[CHAMPION], samples[CHALLENGER]
    if a.n < 2 or b.n < 2:
        return None, f"{metric}: fewer than 2 units with an outcome in a variant ({a.n} champion, {b.n} challenger)"
    higher = _higher_is_better(metric, settings)
    bayes = bayesian_test(a, b, "relative", settings.alpha, inverse=not higher)
    return MetricResult(
        metric=metric, higher_is_better=higher, binary=a.binary and b.binary, cuped_covariate=settings.covariate,
        cuped_theta=cuped_theta(a, b),
        absolute=Interval.of(welch_test(a, b, "absolute", settings.alpha)),
        relative=Interval.of(welch_test(a, b, "relative", settings.alpha)),
        sequential_absolute=Interval.of(sequential_test(a, b, "absolute", settings.alpha)),
        sequential_relative=Interval.of(sequential_test(a, b, "relative", settings.alpha)),
        chance_to_win=bayes.chance_to_win, risk_choosing_champion=bayes.risk[0], risk_choosing_challenger=bayes.risk[1],
    ), None


def _direction(result: MetricResult) -> Literal["better", "worse", "unclear"]:
    """Which side of zero the confidence sequence of the relative lift lies on, in the metric's good direction."""
    interval = result.sequential_relative
    if interval.problem:
        return "unclear"
    if interval.ci_low > 0:
        return "better" if result.higher_is_better else "worse"
    if interval.ci_high < 0:
        return "worse" if result.higher_is_better else "better"
    return "unclear"


def _pct(value: float) -> str:
    return f"{value * 100:+.2f}%"


def analyze(frame: pd.DataFrame, dataset: str, experiment: Experiment | None,
            settings: ExperimentConfig | None) -> ExperimentReport:
    """The report of one experiment phase from its prediction-log rows (``LOG_COLUMNS`` + ``covariate``)."""
    now = dt.datetime.now(dt.timezone.utc)
    settings = settings or ExperimentConfig(id=experiment.id if experiment else "none")
    base = {"dataset": dataset, "generated_at": now, "experiment_id": experiment.id if experiment else None,
            "mode": experiment.mode if experiment else None, "status": experiment.status if experiment else None,
            "split": experiment.split if experiment else None,
            "phase_started_at": experiment.phase_started_at if experiment else None}
    if experiment is None:
        declared = settings.id != "none"
        summary = (f"experiment {settings.id} is declared in the config and starts when the service runs "
                   f"(`mlops serve`) with a version holding the '{settings.challenger}' alias" if declared else
                   f"no experiment has run on {dataset}: start one with `mlops experiment start {dataset} --id NAME` "
                   "(or declare it under `experiment:` in the dataset config)")
        return ExperimentReport(**base, variants=[], sample_ratio=None, primary=None, guardrail_metrics=[],
                                guardrails=[], verdict=Verdict(decision="no_experiment", summary=summary))
    frame = frame.copy()
    if settings.covariate is not None and "covariate" not in frame:
        frame["covariate"] = np.nan
    primary_values, _ = request_metric(frame, settings.primary_metric)
    variants = [_variant_figures(frame[frame["variant"] == v], v, primary_values) for v in VARIANTS]
    champion, challenger = variants

    shadow = experiment.mode == "shadow"
    srm = None
    if not shadow:
        total = champion.units + challenger.units
        p_value = srm_p_value([champion.units, challenger.units], [1 - experiment.challenger_share,
                                                                   experiment.challenger_share]) if total else None
        srm = SampleRatio(applicable=True, expected_challenger_share=experiment.challenger_share,
                          observed_challenger_share=challenger.units / total if total else None, p_value=p_value,
                          mismatch=p_value is not None and p_value < SRM_THRESHOLD)
    else:
        srm = SampleRatio(applicable=False, expected_challenger_share=1.0, observed_challenger_share=None,
                          p_value=None, mismatch=False)

    primary, primary_problem = compare(frame, settings.primary_metric, settings)
    guardrail_metrics = []
    guardrails = [Guardrail(name="error_rate", limit=f"<= {settings.guardrails.max_error_rate:.2%}",
                            measured=f"{challenger.error_rate:.2%}",
                            breached=challenger.requests > 0 and challenger.error_rate > settings.guardrails.max_error_rate)]
    if settings.guardrails.max_p99_latency_ms is not None and challenger.latency_p99_ms is not None:
        guardrails.append(Guardrail(name="latency_p99_ms", limit=f"<= {settings.guardrails.max_p99_latency_ms:g} ms",
                                    measured=f"{challenger.latency_p99_ms:.1f} ms",
                                    breached=challenger.latency_p99_ms > settings.guardrails.max_p99_latency_ms))
    for metric in settings.guardrails.metrics:
        result, problem = compare(frame, metric, settings)
        if result is None:
            guardrails.append(Guardrail(name=metric, limit="not significantly worse", measured=problem or "n/a",
                                        breached=False))
            continue
        guardrail_metrics.append(result)
        guardrails.append(Guardrail(name=metric, limit="not significantly worse",
                                    measured=f"{_pct(result.sequential_relative.estimate)} "
                                             f"[{_pct(result.sequential_relative.ci_low)}, {_pct(result.sequential_relative.ci_high)}]",
                                    breached=_direction(result) == "worse"))

    verdict = _verdict(experiment, settings, champion, challenger, srm, primary, primary_problem, guardrails)
    return ExperimentReport(**base, variants=variants, sample_ratio=srm, primary=primary,
                            guardrail_metrics=guardrail_metrics, guardrails=guardrails, verdict=verdict)


def _verdict(experiment: Experiment, settings: ExperimentConfig, champion: VariantFigures, challenger: VariantFigures,
             srm: SampleRatio, primary: MetricResult | None, problem: str | None,
             guardrails: list[Guardrail]) -> Verdict:
    metric = settings.primary_metric
    if srm.mismatch:
        return Verdict(decision="sample_ratio_mismatch", summary=(
            f"sample-ratio mismatch: the challenger has {srm.observed_challenger_share:.2%} of the units where the "
            f"split gives it {srm.expected_challenger_share:.2%} (chi-square p = {srm.p_value:.2g}); stop the "
            "experiment and find out why (assignment, logging or bot traffic) before reading any lift"))
    breached = [g for g in guardrails if g.breached]
    if breached:
        names = ", ".join(f"{g.name} {g.measured} (limit {g.limit})" for g in breached)
        return Verdict(decision="champion_wins", summary=f"champion wins: the challenger breaks a guardrail: {names}")
    if challenger.requests == 0:
        return Verdict(decision="keep_collecting", summary=(
            f"keep collecting: the challenger ({experiment.challenger_alias}) has answered no request yet"
            + (" (is a version holding that alias loaded? see GET /models)" if experiment.splits_traffic else "")))
    if primary is None:
        return Verdict(decision="keep_collecting", summary=f"keep collecting: {problem}; send outcomes to POST /feedback")
    fewest = min(champion.metric_units, challenger.metric_units)
    interval = primary.sequential_relative
    described = (f"{metric} {_pct(interval.estimate)} relative, always-valid {1 - settings.alpha:.0%} interval "
                 f"[{_pct(interval.ci_low)}, {_pct(interval.ci_high)}], chance to win {primary.chance_to_win:.1%}")
    if fewest < settings.min_units:
        return Verdict(decision="keep_collecting", summary=(
            f"keep collecting: {fewest} units with an outcome in the smaller variant, {settings.min_units} needed "
            f"before a decision ({described})"))
    direction = _direction(primary)
    if direction == "better":
        return Verdict(decision="challenger_wins", summary=f"challenger wins: {described}")
    if direction == "worse":
        return Verdict(decision="champion_wins", summary=f"champion wins: the challenger is worse: {described}")
    return Verdict(decision="keep_collecting", summary=f"keep collecting: no difference yet: {described}")


def covariate_values(features: pd.Series, column: str) -> pd.Series:
    """One feature's logged values, from the JSON ``features`` column."""
    return features.map(lambda text: json.loads(text).get(column) if isinstance(text, str) else None)


def report_markdown(report: ExperimentReport) -> str:
    """The report as Markdown: the verdict first, then the figures a reviewer checks."""
    lines = [f"**{report.verdict.summary}**", ""]
    if report.experiment_id is None:
        return "\n".join(lines)
    lines += [f"Experiment `{report.experiment_id}` on `{report.dataset}`: mode {report.mode}, split {report.split}, "
              f"{report.status}; phase since {report.phase_started_at:%Y-%m-%d %H:%M} UTC.", "",
              "| variant | versions | requests | units | errors | outcomes | outcome mean | mean score | p50 ms | p99 ms |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def fmt(value: float | None, spec: str = ".4g") -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    for v in report.variants:
        lines.append(f"| {v.variant} | {', '.join(v.model_versions) or '-'} | {v.requests} | {v.units} | {v.errors} | "
                     f"{v.outcomes} | {fmt(v.outcome_mean)} | {fmt(v.mean_score)} | {fmt(v.latency_p50_ms, '.2f')} | "
                     f"{fmt(v.latency_p99_ms, '.2f')} |")
    if report.sample_ratio and report.sample_ratio.applicable and report.sample_ratio.p_value is not None:
        lines += ["", f"Sample ratio: challenger {fmt(report.sample_ratio.observed_challenger_share, '.2%')} of units, "
                      f"expected {report.sample_ratio.expected_challenger_share:.2%}, p = {report.sample_ratio.p_value:.3g}"]
    for result in [r for r in [report.primary] if r] + report.guardrail_metrics:
        lines += ["", f"**{result.metric}** ({'higher' if result.higher_is_better else 'lower'} is better"
                      + (f", CUPED on {result.cuped_covariate}, theta {result.cuped_theta:.3g}" if result.cuped_theta else "")
                      + ")", "", "| test | lift | interval | p-value |", "| --- | --- | --- | --- |"]
        for name, interval, as_pct in (("Welch, relative", result.relative, True), ("Welch, absolute", result.absolute, False),
                                       ("confidence sequence, relative", result.sequential_relative, True),
                                       ("confidence sequence, absolute", result.sequential_absolute, False)):
            show = _pct if as_pct else (lambda x: f"{x:+.4g}")
            lines.append(f"| {name} | {show(interval.estimate)} | [{show(interval.ci_low)}, {show(interval.ci_high)}] | "
                         f"{interval.p_value:.3g} |")
        lines.append(f"| Bayesian | chance to win {result.chance_to_win:.1%} | risk: champion {result.risk_choosing_champion:.3g}, "
                     f"challenger {result.risk_choosing_challenger:.3g} | |")
    if report.guardrails:
        lines += ["", "| guardrail | limit | challenger | breached |", "| --- | --- | --- | --- |"]
        lines += [f"| {g.name} | {g.limit} | {g.measured} | {'yes' if g.breached else 'no'} |" for g in report.guardrails]
    return "\n".join(lines)


def plot_report(report: ExperimentReport) -> bytes:
    """PNG: the primary metric per variant (left) and the challenger's relative lift with both intervals (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    metric = report.primary.metric if report.primary else "outcome"
    names = [v.variant for v in report.variants]
    means = [v.metric_mean if v.metric_mean is not None else 0.0 for v in report.variants]
    left.bar(names, means, color=["#4c72b0", "#dd8452"][: len(names)])
    for index, v in enumerate(report.variants):
        left.annotate(f"{v.metric_units} units", (index, means[index]), ha="center", va="bottom", fontsize=8)
    better = "" if report.primary is None else (", higher is better" if report.primary.higher_is_better
                                                  else ", lower is better")
    left.set_title(f"{metric} per variant (unit mean{better})")
    right.axvline(0, color="grey", lw=1)
    if report.primary:
        fixed, sequential = report.primary.relative, report.primary.sequential_relative
        right.errorbar([fixed.estimate * 100], [1], xerr=[[(fixed.estimate - fixed.ci_low) * 100],
                                                          [(fixed.ci_high - fixed.estimate) * 100]], fmt="o", capsize=4,
                       label="Welch (fixed horizon)")
        right.errorbar([sequential.estimate * 100], [0], xerr=[[(sequential.estimate - sequential.ci_low) * 100],
                                                               [(sequential.ci_high - sequential.estimate) * 100]],
                       fmt="s", capsize=4, label="confidence sequence (always valid)")
        right.set_yticks([0, 1], ["sequential", "Welch"])
        right.set_ylim(-0.8, 1.8)
        right.legend(fontsize=7, loc="upper right")
        right.set_title(f"challenger lift on {metric}, % (chance to win {report.primary.chance_to_win:.0%})")
    else:
        right.text(0.5, 0.5, "no lift yet", ha="center", va="center", transform=right.transAxes)
        right.set_title("challenger lift")
    right.set_xlabel("relative lift, %")
    fig.suptitle(report.verdict.summary[:110] + ("..." if len(report.verdict.summary) > 110 else ""), fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def analysis_settings(config_experiment: ExperimentConfig | None, experiment: Experiment | None) -> ExperimentConfig:
    """How an experiment is judged: the config's ``experiment:`` settings (metric, covariate, guardrails)
    whatever its id, else the defaults; with no experiment, the declaration itself (id "none" if none)."""
    if config_experiment is None:
        return ExperimentConfig(id=experiment.id if experiment else "none")
    return config_experiment.model_copy(update={"id": experiment.id}) if experiment else config_experiment


def build_report(engine, dataset: str, config_experiment: ExperimentConfig | None,
                 experiment: Experiment | None) -> ExperimentReport:
    """Read the current phase of ``experiment`` from the prediction log and analyze it."""
    from mlops_assets.serving.prediction_log import read_predictions

    settings = analysis_settings(config_experiment, experiment)
    if experiment is None:
        return analyze(pd.DataFrame(columns=LOG_COLUMNS), dataset, None, settings)
    columns = LOG_COLUMNS + (["features"] if settings.covariate else [])
    frame = read_predictions(engine, dataset, experiment.id, since=experiment.phase_started_at,
                             until=experiment.stopped_at, columns=columns)
    if settings.covariate:
        frame["covariate"] = covariate_values(frame.pop("features"), settings.covariate)
    return analyze(frame, dataset, experiment, settings)
