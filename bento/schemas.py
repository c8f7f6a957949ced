"""The HTTP contract: request and response types, built from the dataset configs.

A request names its dataset and carries one record (or a batch) of that dataset's raw
feature columns. pydantic checks every field against the config before any model
code runs, and a bad request is answered 400 with the field named.

Types are strict JSON (docs/serving.md, "Types"): a number must be a JSON number
(``"804"`` is refused), a boolean a JSON boolean (``"true"``, ``1`` are refused). An
integer column also takes an integral float (``5.0``: JSON has one number type and
many encoders write integers that way) but not ``5.5``. Non-finite numbers are
refused, integers are bounded by +-2^53 (what a float64 holds exactly) unless the
config bounds them tighter, and strings by length. Training reads files, where the
data contract accepts documented spellings (``yes``/``no`` for a boolean, say); over
HTTP a client sends typed JSON, so the two never disagree on a value.

Field descriptions come from the column's ``description`` in the config.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import AllowInfNan, BaseModel, StrictBool, Strict, BeforeValidator, ConfigDict, Field, RootModel, create_model, model_validator
from annotated_types import Ge, Le
from pydantic_core import PydanticCustomError

from mlops_assets.config import ColumnSpec, DatasetConfig, ExperimentMetric
from mlops_assets.serving.experiment_report import ExperimentReport

MAX_BATCH = 1000
MAX_STRING_LENGTH = 256
MAX_ENTITY_ID_LENGTH = 128
SAFE_INTEGER = 2**53

_STRICT = ConfigDict(extra="forbid")


def _json_number_only(value: Any) -> Any:
    """Integers are JSON numbers: a string or a boolean is refused before pydantic's lax int parsing."""
    if isinstance(value, (str, bool)):
        kind = "a string" if isinstance(value, str) else "a boolean"
        raise PydanticCustomError("int_type", "Input should be a valid integer: a JSON number, not {kind}",
                                  {"kind": kind})
    return value


FiniteNumber = Annotated[float, Strict(), AllowInfNan(False)]


def _title(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def column_description(spec: ColumnSpec) -> str | None:
    """The config's ``description`` of a column (optional: older configs have none)."""
    return getattr(spec, "description", None) or None


def _field(spec: ColumnSpec, learned_values: list[str] | None) -> tuple[Any, Any]:
    """(annotation, FieldInfo): constraints sit on the value type, inside ``| None`` for a nullable column,
    so the document shows them as JSON Schema keywords (``minimum``, ``maxLength``)."""
    description = column_description(spec)
    # Every feature may be left out when the record names an entity_id (fetched from the online store):
    # unset fields are told apart from ones sent as null (``model_fields_set``), and a required one that is
    # missing without an entity_id is refused by the service, per field. The schema's ``anyOf`` says so.
    default = None
    extra: dict[str, Any] = {} if spec.nullable else {"json_schema_extra": _no_default}
    if spec.type == "integer":
        low = max(spec.min if spec.min is not None else -SAFE_INTEGER, -SAFE_INTEGER)
        high = min(spec.max if spec.max is not None else SAFE_INTEGER, SAFE_INTEGER)
        # The bounds go before the validator: after it, pydantic leaves them out of the JSON Schema.
        annotation: Any = Annotated[int, Ge(low), Le(high), BeforeValidator(_json_number_only)]
    elif spec.type == "float":
        bounds = {k: v for k, v in (("ge", spec.min), ("le", spec.max)) if v is not None}
        annotation = Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]
    elif spec.type == "boolean":
        annotation = Annotated[bool, Field(strict=True)]
    elif spec.values:  # categorical (or string) with its values listed in the config
        annotation = Literal[tuple(str(v) for v in spec.values)]  # type: ignore[misc]
    else:
        annotation = Annotated[str, Field(strict=True, max_length=MAX_STRING_LENGTH)]
        if learned_values is not None:
            # Checked by the service against the champion it serves; the document lists them.
            extra["json_schema_extra"] = _no_default_and({"enum": learned_values})
            note = "one of the values the champion was trained on"
            description = f"{description}; {note}" if description else note
    if spec.nullable:
        annotation = annotation | None
    return annotation, Field(default, description=description, **extra)


def _no_default(schema: dict[str, Any]) -> None:
    """A required column's ``None`` default only marks it unset: the document shows no default."""
    schema.pop("default", None)


def _no_default_and(extra: dict[str, Any]):
    def update(schema: dict[str, Any]) -> None:
        _no_default(schema)
        schema.update(extra)
    return update


def required_features(config: DatasetConfig) -> list[str]:
    """The raw feature columns a record must carry when it names no entity_id (the non-nullable ones)."""
    return [f for f in config.request_features if not config.columns[f].nullable]


def record_model(config: DatasetConfig, learned: dict[str, list[str]] | None = None) -> type[BaseModel]:
    """One record of raw feature columns; unknown fields are refused so typos cannot pass silently.

    A record carries every required column, or an ``entity_id`` whose stored features fill what it
    leaves out (features sent inline win, a null included).
    """
    fields: dict[str, Any] = {}
    for name in config.features:
        if name in config.derived_features:
            continue
        fields[name] = _field(config.columns[name], (learned or {}).get(name))
    fields["entity_id"] = (str | None, Field(
        None, strict=True, max_length=MAX_ENTITY_ID_LENGTH,
        description=f"the {config.entity_column} this record is about: routes the request (the same id always "
                    "gets the same variant), is logged for feedback, and fetches from the online feature store "
                    "every feature the record leaves out; not a model feature"))
    either = {"anyOf": [{"required": required_features(config)},
                        {"required": ["entity_id"], "properties": {"entity_id": {"type": "string"}}}]}
    return create_model(f"{_title(config.name)}Record", __config__=ConfigDict(
        extra="forbid", title=f"{_title(config.name)}Record", json_schema_extra=either), **fields)


def _union(models: list[type[BaseModel]]) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="dataset")]  # noqa: UP007


def _root(name: str, members: list[type[BaseModel]], description: str) -> type[RootModel]:
    """A named request type: clean schema names and ``1 validation error for <name>`` in 400s."""
    return type(name, (RootModel[_union(members)],), {  # type: ignore[misc]
        "model_config": ConfigDict(title=name, json_schema_extra={"description": description}),
        "__module__": __name__,
    })


def request_types(configs: list[DatasetConfig], learned: dict[str, dict[str, list[str]]] | None = None) -> dict[str, Any]:
    """The request types of every endpoint that takes a dataset, each a union over the datasets served."""
    singles, batches, feedbacks = [], [], []
    for config in configs:
        record = record_model(config, (learned or {}).get(config.name))
        title = _title(config.name)
        dataset: Any = Literal[config.name]  # type: ignore[valid-type]
        dataset_field = (dataset, Field(..., description="the dataset (config name) whose champion scores this"))
        singles.append(create_model(f"{title}PredictRequest", __config__=_STRICT, dataset=dataset_field,
                                    record=(record, ...)))
        batches.append(create_model(
            f"{title}BatchRequest", __config__=_STRICT, dataset=dataset_field,
            records=(list[record], Field(..., min_length=1, max_length=MAX_BATCH,
                                         description=f"1 to {MAX_BATCH} records, scored in order"))))
        feedbacks.append(_feedback_model(config, title, dataset))
    return {
        "predict": _root("PredictRequest", singles, "One record to score."),
        "batch": _root("BatchRequest", batches, f"Up to {MAX_BATCH} records of one dataset to score."),
        "feedback": _root("FeedbackRequest", feedbacks, "The observed outcome of a prediction or of an entity."),
    }


def _one_id(model: BaseModel) -> BaseModel:
    if (model.request_id is None) == (model.entity_id is None):  # type: ignore[attr-defined]
        raise PydanticCustomError("one_id", "give exactly one of request_id or entity_id")
    return model


def _feedback_model(config: DatasetConfig, title: str, dataset: Any) -> type[BaseModel]:
    # The ids are optional strings, never null: "exactly one of them" is then a plain oneOf in the document.
    return create_model(
        f"{title}Feedback", __config__=ConfigDict(extra="forbid", json_schema_extra={
            "oneOf": [{"required": ["request_id"]}, {"required": ["entity_id"]}]}),
        __validators__={"_one_id": model_validator(mode="after")(_one_id)},
        dataset=(dataset, ...),
        request_id=(str, Field(None, strict=True, min_length=1, max_length=64,
                               description="a request_id from a prediction answer")),
        entity_id=(str, Field(None, strict=True, min_length=1, max_length=MAX_ENTITY_ID_LENGTH,
                              description=f"a {config.entity_column}: every prediction made for it so far")),
        outcome=(StrictBool | FiniteNumber, Field(...,
                                                  description=f"what happened: {config.target} (a boolean or 0/1 for a binary "
                                                "outcome, any number for a numeric one)")),
    )


# Answers ---------------------------------------------------------------------------------

class Prediction(BaseModel):
    request_id: str = Field(description="this answer's id: quote it in POST /feedback")
    dataset: str
    entity_id: str | None
    score: float = Field(description="probability of the positive class")
    label: int = Field(description="1 when score >= threshold")
    threshold: float = Field(description="the decision threshold of the version that answered")
    model_version: str = Field(description="the registry version that made this answer")
    variant: Literal["champion", "challenger"]
    experiment_id: str | None = Field(description="the experiment this answer belongs to, if one is running")


class ScoredRecord(BaseModel):
    request_id: str
    entity_id: str | None
    score: float | None = Field(description="null when the model failed on this record (see error)")
    label: int | None
    threshold: float
    model_version: str
    variant: Literal["champion", "challenger"]
    error: str | None = Field(description="why the model could not score this record")


class BatchPrediction(BaseModel):
    dataset: str
    experiment_id: str | None
    predictions: list[ScoredRecord] = Field(description="in the order of the records")


class FeedbackResult(BaseModel):
    dataset: str
    matched: int = Field(description="logged predictions the outcome applies to (a shadow prediction counts)")
    updated: int = Field(description="of those, how many changed (0 when the same outcome was sent before)")


class ErrorDetail(BaseModel):
    type: str = Field(description="machine-readable kind, e.g. missing, literal_error, unknown_value")
    loc: list[str | int] = Field(description="path of the offending field in the body")
    msg: str
    url: str | None = Field(None, description="pydantic's documentation of this kind of error")


class ErrorResponse(BaseModel):
    error: str = Field(description="what went wrong, for a person")
    detail: list[ErrorDetail] = Field(default_factory=list, description="one entry per offending field (400)")


class ServedVersion(BaseModel):
    alias: str
    version: str
    run_id: str
    threshold: float
    loaded_at: dt.datetime
    learned_values: dict[str, int] = Field(description="free-text columns checked against training: values known")
    inference_path: str = Field(description="compiled (verified against the sklearn pipeline) or sklearn")
    inference_runtime: str = Field(description="what scores the version: Treelite GTIL, a numpy dot product, sklearn")
    inference_check: str = Field(description="the verification result, or why the version is served by sklearn")


class ExperimentState(BaseModel):
    id: str
    dataset: str
    mode: Literal["single", "ab", "shadow"]
    split: str = Field(description="champion/challenger traffic in percent")
    champion_alias: str
    challenger_alias: str
    status: Literal["running", "stopped"]
    started_at: dt.datetime
    phase_started_at: dt.datetime = Field(description="statistics count from here (the split or mode last changed)")
    stopped_at: dt.datetime | None
    changed_by: str
    note: str | None


class DatasetModels(BaseModel):
    champion: ServedVersion | None
    challenger: ServedVersion | None
    experiment: ExperimentState | None
    splitting_traffic: bool = Field(description="true while both variants are loaded and the experiment runs")
    problem: str | None = Field(description="why something is missing (no champion, challenger alias unset, ...)")


class ModelsResponse(BaseModel):
    datasets: dict[str, DatasetModels]


class StartExperiment(BaseModel):
    model_config = _STRICT
    dataset: str = Field(max_length=64)
    experiment_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                                      description="default: the running or declared experiment")
    mode: Literal["single", "ab", "shadow"] | None = None
    challenger_percent: float | None = Field(None, ge=0, le=100, strict=True, allow_inf_nan=False,
                                             description="the challenger's share of traffic in percent (20: 80/20)")
    champion: str | None = Field(None, max_length=64, description="registry alias")
    challenger: str | None = Field(None, max_length=64, description="registry alias")
    note: str | None = Field(None, max_length=500)


class StopExperiment(BaseModel):
    model_config = _STRICT
    dataset: str = Field(max_length=64)
    note: str | None = Field(None, max_length=500)


class ReloadRequest(BaseModel):
    model_config = _STRICT
    dataset: str = Field(max_length=64)


__all__ = [
    "BatchPrediction", "DatasetModels", "ErrorDetail", "ErrorResponse", "ExperimentMetric", "ExperimentReport",
    "ExperimentState", "FeedbackResult", "MAX_BATCH", "ModelsResponse", "Prediction", "ReloadRequest",
    "ScoredRecord", "ServedVersion", "StartExperiment", "StopExperiment", "record_model", "request_types",
    "required_features",
]


# Governance: explanations and approvals ----------------------------------------------------

def explain_request_type(predict: type[RootModel]) -> type[RootModel]:
    """``POST /explain`` takes the body of ``POST /predict`` (a dataset and one record), checked the same way.

    Built from the predict type's own record classes, so the API document has one
    ``ChurnRecord`` and the two endpoints cannot drift apart.
    """
    annotation = predict.model_fields["root"].annotation
    members = [annotation] if isinstance(annotation, type) else list(get_args(annotation))
    explains = [create_model(
        member.__name__.replace("PredictRequest", "ExplainRequest"), __config__=_STRICT,
        dataset=(member.model_fields["dataset"].annotation,
                 Field(..., description="the dataset (config name) whose champion explains this")),
        record=(member.model_fields["record"].annotation, ...)) for member in members]
    return _root("ExplainRequest", explains, "One record to explain.")


class Contribution(BaseModel):
    feature: str = Field(description="a raw input column, as the client sends it (derived features count under "
                                     "the columns they are computed from)")
    value: str | float | int | bool | None = Field(description="the record's value of it")
    contribution: float = Field(description="what this value added to (or, negative, took from) the average "
                                            "training score, in probability units")


class Explanation(BaseModel):
    dataset: str
    entity_id: str | None
    model_version: str = Field(description="the registry version explained: the champion")
    alias: str = Field(description="the alias it serves under")
    score: float = Field(description="probability of the positive class, as POST /predict answers it for the champion")
    label: int = Field(description="1 when score >= threshold")
    threshold: float
    baseline: float = Field(description="the average score over the version's background training rows")
    contributions: list[Contribution] = Field(description="one per raw input, largest effect first; they add up "
                                                          "to score - baseline")
    sentence: str = Field(description="the explanation in plain words")
    method: str = Field(description="how the contributions were estimated")


class ApprovalRequest(BaseModel):
    model_config = _STRICT
    decision: Literal["approve", "reject"]
    comment: str = Field(min_length=1, max_length=2000, pattern=r"\S",
                         description="why: recorded with the decision, shown on the model card")
    role: str | None = Field(None, min_length=1, max_length=200,
                             description="the role you decide in, needed only when you hold several deciding roles")


class DecisionRecord(BaseModel):
    seq: int = Field(description="the record's number in the ledger")
    model: str
    version: str
    content_hash: str = Field(description="SHA-256 of the version's model files and threshold when decided")
    person: str
    role: str
    decision: Literal["approve", "reject"]
    comment: str
    decided_at: str = Field(description="UTC, ISO 8601")
    record_hash: str = Field(description="this record's link in the ledger's hash chain")


class ApprovalStatus(BaseModel):
    model: str = Field(description="the registered model")
    version: str
    status: Literal["not required", "pending", "approved", "rejected"]
    summary: str = Field(description="the state in one line, as the model card and `mlops approve` show it")
    required: list[str] = Field(description="roles that must approve before the version may become champion")
    approvals: dict[str, list[str]] = Field(description="role -> people whose latest decision approves this content")
    missing: list[str] = Field(description="required roles without an approval")
    rejections: list[DecisionRecord] = Field(description="latest decisions that reject: any one blocks promotion")
    stale: list[DecisionRecord] = Field(description="decisions made on other content (the model or threshold "
                                                    "changed since): they do not count")
    decisions: list[DecisionRecord] = Field(description="every decision on this version, oldest first")
    ledger_intact: bool = Field(description="false when the ledger's hash chain or MLflow anchors show tampering")
    ledger_problems: list[str]


class ApprovalRecorded(BaseModel):
    recorded: DecisionRecord
    state: ApprovalStatus = Field(description="the version's approval state after this decision")
    warnings: list[str] = Field(description="recorded, but not shown everywhere yet (Dagster UI, model card)")


__all__ += ["ApprovalRecorded", "ApprovalRequest", "ApprovalStatus", "Contribution", "DecisionRecord",
            "Explanation", "explain_request_type"]
