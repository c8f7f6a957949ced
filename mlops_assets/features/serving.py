"""The request side of online features: a record that carries only an entity id gets its features from the store.

Plain functions the BentoML service calls (no BentoML here, so they are tested
without a server). The rule: a feature sent inline wins, even when it is sent as
null; a feature not sent is fetched from the online store by entity id; what is
still missing after that is named, so the service can answer 4xx instead of
scoring a guess. A nullable feature may stay null; the others are required.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.store import FeatureStore

#: Why a record could not be completed: nothing to look up by, nothing stored, or stored values too old.
Reason = Literal["no_entity_id", "unknown_entity", "missing_values"]


class FeatureLookupError(PlatformError, LookupError):
    """A record that cannot be completed: no entity id to look up, or features neither sent nor stored."""

    def __init__(self, message: str, entity_id: Any = None, missing: Sequence[str] = (),
                 reason: Reason = "missing_values") -> None:
        super().__init__(message)
        self.entity_id = entity_id
        self.missing = list(missing)
        self.reason = reason


@dataclass(frozen=True)
class CompletedRecord:
    values: dict[str, Any]
    fetched: list[str]  # features that came from the online store
    missing: list[str]  # features neither sent nor found (unknown entity, expired value)


def merge_request(inline: Mapping[str, Any], sent: Iterable[str] | None, fetched: Mapping[str, Any]) -> dict[str, Any]:
    """Fetched values under the inline ones: a field the client sent (``sent``; all of ``inline`` if None) wins."""
    sent_fields = set(inline) if sent is None else set(sent)
    merged = dict(fetched)
    merged.update({k: v for k, v in inline.items() if k in sent_fields})
    return merged


class EntityFeatures:
    """The model's input features of one dataset, looked up by entity id (the service keeps one per dataset)."""

    def __init__(self, config: DatasetConfig, store: FeatureStore | None = None):
        self.config = config
        self.store = store or FeatureStore(config)
        # The served model recomputes derived features from the raw ones, so those are what a record needs.
        self.wanted = config.request_features
        self.required = frozenset(f for f in self.wanted if not config.columns[f].nullable)

    def absent(self, record: Mapping[str, Any], sent: Iterable[str] | None = None) -> list[str]:
        """The features ``record`` did not send (cheap: no lookup)."""
        sent_fields = record.keys() if sent is None else set(sent)
        return [f for f in self.wanted if f not in sent_fields]

    def lookup(self, entity_id: Any) -> dict[str, Any]:
        """{feature: value} from the online store; None where the entity or a fresh value is unknown."""
        return self.store.online_features_one(entity_id, self.wanted)

    def complete(self, record: Mapping[str, Any], entity_id: Any | None, sent: Iterable[str] | None = None,
                 require: bool = True, now: datetime | None = None) -> CompletedRecord:
        """``record`` with every feature it did not send fetched by ``entity_id``.

        With ``require``, a required feature that is still missing is a FeatureLookupError
        naming it and the entity (the service answers it with a 4xx).
        """
        (outcome,) = self.complete_many([record], [entity_id], [sent], require=require, now=now, raise_first=True)
        return outcome  # type: ignore[return-value]

    def complete_many(self, records: Sequence[Mapping[str, Any]], entity_ids: Sequence[Any],
                      sents: Sequence[Iterable[str] | None] | None = None, require: bool = True,
                      now: datetime | None = None, raise_first: bool = False) -> list[CompletedRecord | FeatureLookupError]:
        """:meth:`complete` for many records with one read of the store (one round trip on Redis).

        Each outcome is a CompletedRecord or, with ``require``, the FeatureLookupError of that
        record (returned, not raised, so a batch can name every record that failed).
        """
        sents = sents if sents is not None else [None] * len(records)
        absent = [self.absent(r, s) for r, s in zip(records, sents)]
        ids = [e for e, a in zip(entity_ids, absent) if a and e is not None]
        if len(ids) == 1:  # the common request: the store's single-entity fast path
            found = iter([self.store.online_features_one(ids[0], self.wanted, now=now)])
        else:
            found = iter(self.store.online_features_many(ids, self.wanted, now=now) if ids else [])
        outcomes: list[CompletedRecord | FeatureLookupError] = []
        for record, entity_id, sent, missing_here in zip(records, entity_ids, sents, absent):
            if not missing_here:
                outcomes.append(CompletedRecord(dict(record), [], []))
                continue
            fetched = next(found) if entity_id is not None else {}
            outcome = self._finish(record, entity_id, sent, missing_here, fetched, require)
            if raise_first and isinstance(outcome, FeatureLookupError):
                raise outcome
            outcomes.append(outcome)
        return outcomes

    def _finish(self, record: Mapping[str, Any], entity_id: Any | None, sent: Iterable[str] | None,
                absent: list[str], fetched: Mapping[str, Any], require: bool) -> CompletedRecord | FeatureLookupError:
        merged = merge_request(record, sent, {f: fetched.get(f) for f in absent})
        missing = [f for f in absent if merged.get(f) is None and f in self.required]
        if missing and require:
            name = f"dataset {self.config.name!r}"
            if entity_id is None:
                return FeatureLookupError(f"{name}: the record lacks {missing} and names no entity_id to fetch them by",
                                          None, missing, "no_entity_id")
            known = any(v is not None for v in fetched.values())
            why = ("its stored values are missing or older than their view's TTL" if known else
                   "the online store holds no features for it (unknown entity, or not materialized yet)")
            return FeatureLookupError(f"{name}, {self.config.entity_column} {entity_id!r}: no value for {missing}: "
                                      f"{why}; send them inline", entity_id, missing,
                                      "missing_values" if known else "unknown_entity")
        return CompletedRecord(merged, [f for f in absent if merged.get(f) is not None], missing)
