"""The request side of online features: a record that carries only an entity id gets its features from the store.

Plain functions the BentoML service calls (no BentoML here, so they are tested
without a server). The rule: a feature sent inline wins, even when it is sent as
null; a feature not sent is fetched from the online store by entity id; what is
still missing after that is named, so the service can answer 4xx instead of
scoring a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.store import FeatureStore


class FeatureLookupError(PlatformError, LookupError):
    """A record that cannot be completed: no entity id to look up, or features neither sent nor stored."""


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
        self.wanted = [f for f in config.features if f not in config.derived_features]

    def lookup(self, entity_id: Any) -> dict[str, Any]:
        """{feature: value} from the online store; None where the entity or a fresh value is unknown."""
        return self.store.online_features_one(entity_id, self.wanted)

    def complete(self, record: Mapping[str, Any], entity_id: Any | None, sent: Iterable[str] | None = None,
                 require: bool = True) -> CompletedRecord:
        """``record`` with every feature it did not send fetched by ``entity_id``.

        With ``require``, a feature that is still missing is a FeatureLookupError naming it
        and the entity (the service answers it with a 4xx).
        """
        sent_fields = set(record) if sent is None else set(sent)
        absent = [f for f in self.wanted if f not in sent_fields]
        if not absent:
            return CompletedRecord(dict(record), [], [])
        if entity_id is None:
            raise FeatureLookupError(f"dataset {self.config.name!r}: the record lacks {absent} and names no entity_id "
                                     "to fetch them by")
        fetched = self.lookup(entity_id)
        merged = merge_request(record, sent_fields, {f: fetched.get(f) for f in absent})
        missing = [f for f in absent if merged.get(f) is None and not self.config.columns[f].nullable]
        if missing and require:
            known = any(fetched.get(f) is not None for f in self.wanted)
            why = ("its stored values are missing or older than their view's TTL" if known else
                   "the online store holds no features for it (unknown entity, or not materialized yet)")
            raise FeatureLookupError(f"dataset {self.config.name!r}, {self.config.entity_column} {entity_id!r}: "
                                     f"no value for {missing}: {why}; send them inline")
        return CompletedRecord(merged, [f for f in absent if merged.get(f) is not None], missing)
