"""HTTP request and response types, built from the dataset configs.

A request names its dataset and carries one record (or a batch) of that dataset's raw
feature columns. pydantic checks every field against the config (type, allowed
values, required), so a bad request is answered 400 with the field named, before any
model code runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlops_assets.config import ColumnSpec, DatasetConfig

MAX_BATCH = 1000

_PYTHON_TYPES: dict[str, Any] = {"integer": int, "float": float, "boolean": bool, "string": str, "categorical": str}


def _field_type(spec: ColumnSpec) -> Any:
    if spec.type == "categorical" and spec.values:
        annotation: Any = Literal[tuple(spec.values)]  # type: ignore[valid-type]
    else:
        annotation = _PYTHON_TYPES[spec.type]
    return annotation | None if spec.nullable else annotation


def record_model(config: DatasetConfig) -> type[BaseModel]:
    """One record of raw feature columns; unknown fields are refused so typos cannot pass silently."""
    raw_features = [f for f in config.features if f not in config.derived_features]
    fields: dict[str, Any] = {}
    for name in raw_features:
        spec = config.columns[name]
        bounds = {k: v for k, v in (("ge", spec.min), ("le", spec.max)) if v is not None and spec.type in ("integer", "float")}
        fields[name] = (_field_type(spec), Field(None if spec.nullable else ..., **bounds))
    fields["entity_id"] = (str | None, Field(None, description=f"the {config.entity_column} this record is about"))
    return create_model(
        f"{config.name.title().replace('_', '')}Record",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


class ScoredRecord(BaseModel):
    entity_id: str | None
    score: float = Field(description="probability of the positive class")
    label: int = Field(description="1 when score >= threshold")


class Prediction(ScoredRecord):
    request_id: str
    dataset: str
    model_version: str
    threshold: float


class BatchPrediction(BaseModel):
    request_id: str
    dataset: str
    model_version: str
    threshold: float
    predictions: list[ScoredRecord]


def request_types(configs: list[DatasetConfig]) -> tuple[Any, Any]:
    """(single request type, batch request type): unions over datasets, told apart by ``dataset``."""
    singles, batches = [], []
    for config in configs:
        record = record_model(config)
        name: Any = Literal[config.name]  # type: ignore[valid-type]
        strict = ConfigDict(extra="forbid")
        singles.append(create_model(f"{record.__name__}Request", __config__=strict, dataset=(name, ...), record=(record, ...)))
        batches.append(
            create_model(
                f"{record.__name__}BatchRequest",
                __config__=strict,
                dataset=(name, ...),
                records=(list[record], Field(..., min_length=1, max_length=MAX_BATCH)),
            )
        )
    return _tagged_union(singles), _tagged_union(batches)


def _tagged_union(models: list[type[BaseModel]]) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="dataset")]  # noqa: UP007
