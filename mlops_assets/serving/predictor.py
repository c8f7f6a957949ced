"""One worker's prediction engine: route, score, log, answer; keep the models current.

The BentoML service (``bento/service.py``) creates one :class:`Predictor` per worker
and calls it from its HTTP endpoints; everything here is plain Python and asyncio.

The request path, for each record:

1. read the dataset's :class:`DatasetDeployment` snapshot once;
2. complete the records (:meth:`Predictor.complete_records`): features a record leaves out
   are fetched from the online feature store by its entity id, in one read per request,
   off the event loop; features sent inline win. What is still missing is refused: 400
   without an entity id, 404 for an entity the store does not know, 422 for values
   missing or older than their view's TTL;
3. refuse values of free-text columns the champion never saw in training (400);
4. route by the sticky hash of the experiment id and the entity id;
5. score through the variant's micro-batcher (one model call for concurrent requests);
6. queue the log row and count the metrics; in shadow mode, score the challenger after
   the answer, off the response path, as a row of its own.

A background thread polls the experiment state (every second) and the registry aliases
(every ``MLOPS_RELOAD_INTERVAL_S``, or at once after an admin reload), loads a new
version next to the serving one and swaps the snapshot: in-flight requests finish on
the version they started with, new ones get the new version, none fails.

After models are loaded, the heap is frozen (:func:`freeze_heap`), so that Python's full
garbage collections, which objects living a few seconds under load trigger, do not
rescan the worker's ~600,000 long-lived objects (330-390 ms each, measured).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.serving import EntityFeatures, FeatureLookupError
from mlops_assets.features.store import FeatureStore
from mlops_assets.serving.batching import ScoringError
from mlops_assets.serving.deployment import DatasetDeployment, ScoringModel, alias_versions, load_scoring_model
from mlops_assets.serving.experiment_report import ExperimentReport, build_report
from mlops_assets.serving.experiments import DatasetState, Experiment, ExperimentStore, Mode
from mlops_assets.serving.metrics import ServingMetrics
from mlops_assets.serving.options import ServingOptions
from mlops_assets.serving.prediction_log import FeedbackResult, PredictionLogWriter, connect, record_outcome
from mlops_assets.serving.routing import CHALLENGER, CHAMPION, assign
from mlops_assets.settings import Settings
from mlops_assets.training.registry import CHAMPION as CHAMPION_ALIAS
from mlops_assets.training.registry import no_champion_reason

logger = logging.getLogger("mlops.serving")

#: How many allowed values an "unknown value" message quotes.
QUOTED_VALUES = 8


class NotServedError(PlatformError, LookupError):
    """The dataset is unknown or has no champion loaded; answered 404 with the reason."""


class InvalidRecordError(PlatformError, ValueError):
    """Values the served model cannot score; ``details`` are pydantic-style problems (loc, msg, type)."""

    def __init__(self, message: str, details: list[dict]) -> None:
        super().__init__(message)
        self.details = details


class FeaturesUnavailableError(PlatformError, LookupError):
    """Features a record left out are not in the online store: 404 (unknown entity) or 422 (missing, expired)."""

    def __init__(self, message: str, details: list[dict], status: int) -> None:
        super().__init__(message)
        self.details = details
        self.status = status


#: Records read from a local online store on the event loop; a larger batch is read in a thread.
_INLINE_LOOKUPS = 16


def _loc(location: tuple, index: int, column: str) -> list:
    """Where a record's column sits in the body: ``records`` (a batch) adds the record's index."""
    return [*location, index, column] if location[-1] == "records" else [*location, column]


@dataclass(frozen=True)
class Answer:
    request_id: str
    entity_id: str | None
    score: float | None
    label: int | None
    variant: str
    model_version: str
    threshold: float
    experiment_id: str | None
    error: str | None = None


@dataclass(frozen=True)
class _Routed:
    request_id: str
    entity_id: str | None
    record: dict
    variant: str
    model: ScoringModel


def freeze_heap() -> None:
    """Collect once, then move everything alive out of the collector's sight (``gc.freeze``).

    A worker holds ~600,000 long-lived objects (libraries, models). Under load, objects that
    live a few seconds (the prediction log's buffered rows; BentoML's request timers, before
    ``bento/traffic.py``) reach the oldest generation and trigger full collections, and each
    scanned everything: 330-390 ms pauses, 16-19 per worker in one benchmark run (measured
    with ``gc.callbacks``). Frozen objects are skipped by every collection. Unfrozen first,
    so that a model this replaces (held in reference cycles) is freed, not frozen for good.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Predictor:
    """Per worker: the deployments of every dataset, the log writer, the watcher thread."""

    def __init__(self, settings: Settings, configs: list[DatasetConfig], options: ServingOptions,
                 metrics: ServingMetrics | None = None) -> None:
        self.settings = settings
        self.configs = {c.name: c for c in configs}
        self.options = options
        self.metrics = metrics
        self.engine = connect(settings.prediction_log_url)
        self.store = ExperimentStore(self.engine)
        for config in configs:
            self.store.declare(config)
        self.writer = PredictionLogWriter(self.engine, flush_interval=options.log_flush_interval_s)
        self.deployments: dict[str, DatasetDeployment] = {
            c.name: DatasetDeployment(c, None, None, None, problem="not loaded yet") for c in configs}
        # The online store (SQLite under MLOPS_HOME, or MLOPS_ONLINE_STORE) is opened on the first lookup.
        self.features = {c.name: EntityFeatures(c, FeatureStore(c, home=settings.home)) for c in configs}
        self._lookups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="feature-lookup")
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._shadow_tasks: set[asyncio.Task] = set()
        states = self.store.state()
        for config in configs:
            self.refresh(config.name, states.get(config.name), check_registry=True)
        self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)

    # Lifecycle ------------------------------------------------------------------------------
    def start_watching(self) -> None:
        freeze_heap()
        self._watcher.start()

    async def close(self) -> None:
        """Finish shadow scoring, stop the watcher, write every queued log row."""
        if self._shadow_tasks:
            await asyncio.wait(list(self._shadow_tasks), timeout=10)
        self._stop.set()
        await asyncio.to_thread(self.writer.close)
        if self._watcher.is_alive():
            self._watcher.join(5)
        self.engine.dispose()
        self._lookups.shutdown(wait=True)
        for features in self.features.values():
            features.store.close()

    # Requests -------------------------------------------------------------------------------
    def deployment(self, dataset: str) -> DatasetDeployment:
        deployment = self.deployments.get(dataset)
        if deployment is None:
            raise NotServedError(f"dataset {dataset!r} is not served; served: {', '.join(self.deployments)}")
        if deployment.champion is None:
            raise NotServedError(deployment.problem or f"dataset {dataset!r} has no champion loaded")
        return deployment

    async def complete_records(self, deployment: DatasetDeployment, entity_ids: Sequence[str | None],
                               records: list[dict], location: tuple = ("record",)) -> list[dict]:
        """The records as the model will score them: what each left out, fetched by its entity id.

        ``records`` hold only the fields the client sent (a null sent inline wins over the
        store). Records that carry every feature cost nothing here; the others are read
        from the online store in one call. A few reads of a local store (SQLite, memory-mapped:
        ~20 µs each) run right here: handing them to a thread cost more than the read, up to
        0.7 ms at p99. A network store (Redis) and large batches are read in a thread, so a
        round trip never stalls the event loop, which serves every other request.
        """
        features = self.features[deployment.config.name]
        if not any(features.absent(r) for r in records):
            return records
        call = functools.partial(features.complete_many, records, list(entity_ids))
        if features.store.online.reads_locally and len(records) <= _INLINE_LOOKUPS:
            outcomes = call()
        else:
            outcomes = await asyncio.get_running_loop().run_in_executor(self._lookups, call)
        failed = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, FeatureLookupError)]
        if failed:
            raise _lookup_refusal(failed, location)
        return [o.values for o in outcomes]  # type: ignore[union-attr]

    async def prepared_records(self, deployment: DatasetDeployment, entity_ids: Sequence[str | None],
                               records: list[dict], location: tuple) -> list[dict]:
        """Records completed from the online store and checked against what the champion learned: what
        ``/predict`` scores and ``/explain`` explains, refused the same way by both."""
        records = await self.complete_records(deployment, entity_ids, records, location)
        self._check_values(deployment, records, location)
        return records

    def _check_values(self, deployment: DatasetDeployment, records: Sequence[dict], location: tuple) -> None:
        champion = deployment.champion
        assert champion is not None
        if not champion.learned_values:
            return
        details = []
        for index, record in enumerate(records):
            for column, value in champion.unknown_values(record):
                known = sorted(champion.learned_values[column])
                quoted = ", ".join(repr(v) for v in known[:QUOTED_VALUES]) + (", ..." if len(known) > QUOTED_VALUES else "")
                details.append({"type": "unknown_value", "loc": _loc(location, index, column), "msg": (
                    f"Input should be one of the {len(known)} values {champion.name} version {champion.version} "
                    f"was trained on: {quoted}")})
        if details:
            raise InvalidRecordError(f"{len(details)} validation error(s): value(s) the model never saw", details)

    def _route(self, deployment: DatasetDeployment, entity_id: str | None, record: dict) -> _Routed:
        request_id = uuid.uuid4().hex
        experiment = deployment.running_experiment
        variant = CHAMPION
        if experiment is not None and experiment.mode == "ab":
            variant = assign(experiment.id, entity_id or request_id, experiment.challenger_share)
        model = deployment.challenger if variant == CHALLENGER else deployment.champion
        assert model is not None
        return _Routed(request_id, entity_id, record, variant, model)

    async def predict(self, dataset: str, records: list[dict], location: tuple = ("record",)) -> list[Answer]:
        """Score records of one dataset (each a dict of the raw features sent, plus ``entity_id``).

        ``location`` is the path of the record(s) in the request body, for error messages.
        """
        started = time.perf_counter()
        deployment = self.deployment(dataset)
        entity_ids = [record.pop("entity_id", None) for record in records]
        records = await self.prepared_records(deployment, entity_ids, records, location)
        routed = [self._route(deployment, entity_id, record) for entity_id, record in zip(entity_ids, records)]
        if len(routed) == 1:
            outcomes: list = [await self._score(routed[0].model, routed[0].record)]
        else:
            outcomes = await asyncio.gather(*(self._score(r.model, r.record) for r in routed))
        experiment = deployment.running_experiment
        experiment_id = experiment.id if experiment else None
        now = dt.datetime.now(dt.timezone.utc)
        latency = time.perf_counter() - started
        answers = []
        for item, outcome in zip(routed, outcomes):
            answers.append(self._record(dataset, item, outcome, experiment_id, now, latency, shadow=False))
            if experiment is not None and experiment.mode == "shadow":
                self._shadow(dataset, deployment, item, experiment_id)
        return answers

    @staticmethod
    async def _score(model: ScoringModel, record: dict) -> float | ScoringError:
        try:
            return await model.batcher.submit(record)
        except ScoringError as exc:
            return exc

    def _record(self, dataset: str, item: _Routed, outcome: float | ScoringError, experiment_id: str | None,
                now: dt.datetime, latency_s: float, shadow: bool) -> Answer:
        model = item.model
        error = str(outcome) if isinstance(outcome, ScoringError) else None
        score = None if error else outcome
        label = None if score is None else int(score >= model.threshold)
        self.writer.append({
            "request_id": item.request_id, "logged_at": now, "dataset": dataset, "entity_id": item.entity_id,
            "experiment_id": experiment_id, "variant": item.variant, "shadow": shadow, "model_name": model.name,
            "model_version": model.version, "features": json.dumps(item.record), "score": score, "decision": label,
            "threshold": model.threshold, "latency_ms": latency_s * 1000, "error": error,
        })
        if self.metrics is not None:
            self.metrics.observe(dataset, item.variant, model.version, shadow, latency_s, score)
        return Answer(item.request_id, item.entity_id, score, label, item.variant, model.version, model.threshold,
                      experiment_id, error)

    def _shadow(self, dataset: str, deployment: DatasetDeployment, item: _Routed, experiment_id: str | None) -> None:
        challenger = deployment.challenger
        assert challenger is not None
        shadow_item = replace(item, variant=CHALLENGER, model=challenger)

        async def score_and_log() -> None:
            started = time.perf_counter()
            outcome = await self._score(challenger, item.record)
            self._record(dataset, shadow_item, outcome, experiment_id, dt.datetime.now(dt.timezone.utc),
                         time.perf_counter() - started, shadow=True)

        task = asyncio.ensure_future(score_and_log())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def feedback(self, dataset: str, outcome: float, request_id: str | None, entity_id: str | None) -> FeedbackResult:
        """Attach an outcome; a prediction answered a moment ago may still be queued: flush and look again."""
        if dataset not in self.configs:
            raise NotServedError(f"dataset {dataset!r} is not served; served: {', '.join(self.configs)}")
        result = await asyncio.to_thread(record_outcome, self.engine, dataset, outcome,
                                         request_id=request_id, entity_id=entity_id)
        if result.matched == 0:
            # Ours may be in this worker's queue: written now. Another worker's within its flush interval.
            await asyncio.to_thread(self.writer.flush)
            deadline = time.monotonic() + 2 * self.options.log_flush_interval_s + 0.05
            while True:
                result = await asyncio.to_thread(record_outcome, self.engine, dataset, outcome,
                                                 request_id=request_id, entity_id=entity_id)
                if result.matched or time.monotonic() > deadline:
                    return result
                await asyncio.sleep(0.05)
        return result

    # Reading state ----------------------------------------------------------------------------
    def report(self, dataset: str) -> ExperimentReport:
        """The experiment statistics of a dataset (blocking: call from a thread)."""
        if dataset not in self.configs:
            raise NotServedError(f"dataset {dataset!r} is not served; served: {', '.join(self.configs)}")
        self.writer.flush()
        config = self.configs[dataset]
        return build_report(self.engine, dataset, config.experiment, self.store.active(dataset))

    # Changing state (admin) -------------------------------------------------------------------
    def start_experiment(self, dataset: str, *, experiment_id: str | None, mode: Mode | None, split: str | None,
                         champion: str | None, challenger: str | None, by: str, note: str | None) -> Experiment:
        config = self._config(dataset)
        experiment = self.store.start(config, experiment_id=experiment_id, mode=mode, split=split, champion=champion,
                                      challenger=challenger, by=by, note=note)
        self.refresh(dataset, self.store.state().get(dataset), check_registry=True)
        return experiment

    def stop_experiment(self, dataset: str, *, by: str, note: str | None) -> Experiment:
        experiment = self.store.stop(self._config(dataset).name, by=by, note=note)
        self.refresh(dataset, self.store.state().get(dataset), check_registry=False)
        return experiment

    def reload(self, dataset: str) -> DatasetDeployment:
        """Every worker re-reads the aliases: this one now, the others on their next poll."""
        self._config(dataset)
        self.store.request_reload(dataset)
        self.refresh(dataset, self.store.state().get(dataset), check_registry=True)
        return self.deployments[dataset]

    def _config(self, dataset: str) -> DatasetConfig:
        if dataset not in self.configs:
            raise NotServedError(f"dataset {dataset!r} is not served; served: {', '.join(self.configs)}")
        return self.configs[dataset]

    # Hot reload ---------------------------------------------------------------------------------
    def _watch(self) -> None:
        last_registry_check = time.monotonic()
        while not self._stop.wait(self.options.state_poll_interval_s):
            try:
                states = self.store.state()
                registry_due = time.monotonic() - last_registry_check >= self.options.reload_interval_s
                for name in self.configs:
                    self.refresh(name, states.get(name), check_registry=registry_due)
                if registry_due:
                    last_registry_check = time.monotonic()
            except Exception:  # a database or registry hiccup must not end the watcher
                logger.exception("model watcher: refresh failed; serving what is loaded")

    def refresh(self, dataset: str, state: DatasetState | None, check_registry: bool) -> None:
        """Bring the dataset's deployment in line with its experiment and the registry aliases."""
        with self._reload_lock:
            current = self.deployments[dataset]
            experiment = state.experiment if state else None
            generation = state.reload_generation if state else 0
            updated = replace(current, experiment=experiment, reload_generation=generation)
            wants_challenger = updated.challenger_alias is not None
            needs_models = (current.champion is None or updated.champion_alias != current.champion_alias
                            or (wants_challenger and (current.challenger is None
                                                      or current.challenger.alias != updated.challenger_alias)))
            if check_registry or generation != current.reload_generation or needs_models:
                updated = self._load(updated)
            elif not wants_challenger and current.challenger is not None:
                updated = replace(updated, challenger=None)
            if updated != current:
                self.deployments[dataset] = updated  # one assignment: requests see the old or the new snapshot
                if (updated.champion, updated.challenger) != (current.champion, current.challenger):
                    freeze_heap()  # the replaced model is freed, the new one frozen
                    logger.info("%s: serving champion v%s, challenger %s", dataset,
                                updated.champion.version if updated.champion else "-",
                                f"v{updated.challenger.version}" if updated.challenger else "-")

    def _load(self, deployment: DatasetDeployment) -> DatasetDeployment:
        """The deployment with the versions its aliases hold now, loading only what changed."""
        config = deployment.config
        aliases = [deployment.champion_alias] + ([deployment.challenger_alias] if deployment.challenger_alias else [])
        versions = alias_versions(self.settings, config, aliases)
        loaded = {m.version: m for m in (deployment.champion, deployment.challenger) if m is not None}
        problems = []

        def model_for(alias: str, current: ScoringModel | None) -> ScoringModel | None:
            version = versions.get(alias)
            if version is None:
                problems.append(f"no version of {config.registered_model_name} holds the alias '{alias}'")
                return current if current is not None and current.alias == alias else None
            if current is not None and current.version == version and current.alias == alias:
                return current
            if version in loaded and loaded[version].alias == alias:
                return loaded[version]
            try:
                model = load_scoring_model(self.settings, config, alias, version, self.options.max_batch_size,
                                           compiled=self.options.compiled_scoring)
            except Exception as exc:
                problems.append(f"{config.registered_model_name} v{version} ('{alias}') failed to load: {exc}")
                return current
            loaded[version] = model
            return model

        champion = model_for(deployment.champion_alias, deployment.champion)
        challenger = model_for(deployment.challenger_alias, deployment.challenger) if deployment.challenger_alias else None
        problem = None
        if champion is None:
            problem = (no_champion_reason(self.settings, config) if deployment.champion_alias == CHAMPION_ALIAS
                       else f"{config.name} has no champion: no version of {config.registered_model_name} holds "
                            f"the alias '{deployment.champion_alias}' (the experiment's champion)")
        elif problems:
            problem = "; ".join(problems)
        return replace(deployment, champion=champion, challenger=challenger, problem=problem)


def _lookup_refusal(failed: list[tuple[int, FeatureLookupError]], location: tuple) -> PlatformError:
    """One error for every record that could not be completed, each missing feature named where it belongs.

    No entity id is a malformed request (400, like pydantic's "Field required"); an entity the
    store does not know is 404; a known entity whose values are missing or expired is 422.
    """
    unnamed = [(i, e) for i, e in failed if e.reason == "no_entity_id"]
    if unnamed:
        details = [{"type": "missing", "loc": _loc(location, i, f),
                    "msg": "Field required: send it, or an entity_id to fetch it from the online feature store"}
                   for i, e in unnamed for f in e.missing]
        return InvalidRecordError(f"{len(details)} validation error(s): required feature(s) missing", details)
    details = [{"type": e.reason, "loc": _loc(location, i, f),
                "msg": f"no value for entity_id {e.entity_id!r}: " + (
                    "the online store holds no features for it" if e.reason == "unknown_entity"
                    else "missing or older than its view's TTL") + "; send it inline"}
               for i, e in failed for f in e.missing]
    status = 404 if all(e.reason == "unknown_entity" for _, e in failed) else 422
    message = str(failed[0][1]) if len(failed) == 1 else (
        f"{len(failed)} records cannot be completed from the online store (first: {failed[0][1]})")
    return FeaturesUnavailableError(message, details, status)
