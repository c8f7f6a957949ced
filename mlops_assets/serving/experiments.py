"""The experiment each dataset runs, as declared in its config and changed at run time.

The state lives in the prediction log's database, next to the rows it explains, so
every worker, the CLI and the Dagster report see the same thing, and it survives a
restart:

- ``experiments``: one row per experiment id (mode, split, the two registry aliases,
  running or stopped, when its current phase began);
- ``serving_state``: per dataset, the active experiment and a reload counter that the
  admin reload call bumps so that every worker reloads, not only the one that got it.

A config's ``experiment:`` section seeds the state the first time its id is seen; from
then on the database wins, so a split changed at run time is not undone by a restart.
Changing the split or the mode starts a new **phase**: the statistics count only the
current phase, because units assigned under 10% and under 20% are not one sample
(GrowthBook does the same).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Literal, get_args

import sqlalchemy as sa

from mlops_assets.config import DatasetConfig, ExperimentMode, split_share
from mlops_assets.errors import PlatformError
from mlops_assets.serving.prediction_log import metadata, utc_now

Mode = ExperimentMode
MODES: tuple[Mode, ...] = get_args(ExperimentMode)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False, index=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("challenger_share", sa.Float, nullable=False),
    sa.Column("champion_alias", sa.String(64), nullable=False),
    sa.Column("challenger_alias", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, comment="running or stopped"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("phase_started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("changed_by", sa.String(128), nullable=False),
    sa.Column("note", sa.Text),
)

serving_state = sa.Table(
    "serving_state",
    metadata,
    sa.Column("dataset", sa.String(64), primary_key=True),
    sa.Column("experiment_id", sa.String(64)),
    sa.Column("reload_generation", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


class ExperimentError(PlatformError, ValueError):
    """An experiment change that cannot be made, with what to do instead."""


@dataclass(frozen=True)
class Experiment:
    id: str
    dataset: str
    mode: Mode
    challenger_share: float
    champion_alias: str
    challenger_alias: str
    status: Literal["running", "stopped"]
    started_at: dt.datetime
    phase_started_at: dt.datetime
    stopped_at: dt.datetime | None
    updated_at: dt.datetime
    changed_by: str
    note: str | None = None

    @property
    def splits_traffic(self) -> bool:
        """Running in ab or shadow mode: requests carry this experiment's id in the log."""
        return self.status == "running" and self.mode != "single"

    @property
    def split(self) -> str:
        share = round(self.challenger_share * 100, 6)
        return f"{100 - share:g}/{share:g}"


@dataclass(frozen=True)
class DatasetState:
    """What a worker polls: the dataset's experiment (if any) and the reload counter."""

    experiment: Experiment | None
    reload_generation: int


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back without a zone; every time here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _experiment(row: sa.Row) -> Experiment:
    values = dict(row._mapping)
    for key in ("started_at", "phase_started_at", "stopped_at", "updated_at"):
        values[key] = _aware(values[key])
    return Experiment(**values)


class ExperimentStore:
    """Reads and changes experiment state; every change is one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # Reading --------------------------------------------------------------------------
    def get(self, experiment_id: str) -> Experiment | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(experiments).where(experiments.c.id == experiment_id)).first()
        return _experiment(row) if row else None

    def state(self) -> dict[str, DatasetState]:
        """Every dataset's active experiment and reload counter, in one query (workers poll this)."""
        query = sa.select(serving_state.c.dataset, serving_state.c.reload_generation, *experiments.columns).select_from(
            serving_state.outerjoin(experiments, serving_state.c.experiment_id == experiments.c.id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        states = {}
        for row in rows:
            mapping = row._mapping
            experiment = None
            if mapping[experiments.c.id] is not None:
                values = {c.name: mapping[c] for c in experiments.columns}
                for key in ("started_at", "phase_started_at", "stopped_at", "updated_at"):
                    values[key] = _aware(values[key])
                experiment = Experiment(**values)
            states[mapping[serving_state.c.dataset]] = DatasetState(experiment, int(mapping[serving_state.c.reload_generation]))
        return states

    def active(self, dataset: str) -> Experiment | None:
        state = self.state().get(dataset)
        return state.experiment if state else None

    def history(self, dataset: str) -> list[Experiment]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(experiments).where(experiments.c.dataset == dataset).order_by(experiments.c.started_at)
            ).all()
        return [_experiment(r) for r in rows]

    # Changing -------------------------------------------------------------------------
    def declare(self, config: DatasetConfig) -> Experiment | None:
        """Seed the state from the config's ``experiment:`` the first time its id is seen."""
        declared = config.experiment
        if declared is None:
            return None
        if self.get(declared.id) is not None:
            return None
        try:
            return self._upsert(config.name, declared.id, declared.mode, declared.challenger_share, declared.champion,
                                declared.challenger, by=f"config:{config.path.name if config.path else config.name}",
                                note="declared in the dataset config", only_if_new=True)
        except sa.exc.IntegrityError:  # another worker seeded it first
            return None

    def start(self, config: DatasetConfig, *, experiment_id: str | None = None, mode: Mode | None = None,
              split: str | None = None, champion: str | None = None, challenger: str | None = None,
              by: str, note: str | None = None) -> Experiment:
        """Start an experiment, or change the running one (same id): mode, split or aliases.

        Unset options keep the current experiment's values, else the config's declaration,
        else ``ab`` at 90/10 between the ``champion`` and ``challenger`` aliases.
        """
        current = self.active(config.name)
        experiment_id = experiment_id or (current.id if current else None) or (
            config.experiment.id if config.experiment else None)
        if experiment_id is None:
            raise ExperimentError(
                f"dataset {config.name!r} declares no experiment: give an id (`mlops experiment start "
                f"{config.name} --id NAME`) or add an `experiment:` section to its config"
            )
        existing = self.get(experiment_id)
        if existing is not None and existing.dataset != config.name:
            raise ExperimentError(f"experiment id {experiment_id!r} belongs to dataset {existing.dataset!r}")
        declared = config.experiment if config.experiment and config.experiment.id == experiment_id else None
        if mode is not None and mode not in MODES:
            raise ExperimentError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        # Starting an experiment declared as `single` (not splitting yet) without a mode means A/B.
        declared_mode = declared.mode if declared and declared.mode != "single" else "ab"
        chosen_mode = mode or (existing.mode if existing else declared_mode)
        try:
            share = split_share(split) if split is not None else (
                existing.challenger_share if existing else declared.challenger_share if declared else 0.1)
        except ValueError as exc:
            raise ExperimentError(str(exc)) from None
        champion_alias = champion or (existing.champion_alias if existing else declared.champion if declared else "champion")
        challenger_alias = challenger or (
            existing.challenger_alias if existing else declared.challenger if declared else "challenger")
        return self._upsert(config.name, experiment_id, chosen_mode, share, champion_alias, challenger_alias,
                            by=by, note=note)

    def stop(self, dataset: str, *, by: str, note: str | None = None) -> Experiment:
        """Stop the dataset's experiment: from now on the champion answers everyone."""
        current = self.active(dataset)
        if current is None or current.status == "stopped":
            raise ExperimentError(f"dataset {dataset!r} has no running experiment to stop")
        now = utc_now()
        with self.engine.begin() as connection:
            connection.execute(experiments.update().where(experiments.c.id == current.id).values(
                status="stopped", stopped_at=now, updated_at=now, changed_by=by, note=note or current.note))
        return replace(current, status="stopped", stopped_at=now, updated_at=now, changed_by=by,
                       note=note or current.note)

    def request_reload(self, dataset: str) -> int:
        """Bump the dataset's reload counter: every worker reloads its aliases on its next poll."""
        with self.engine.begin() as connection:
            self._ensure_state_row(connection, dataset)
            connection.execute(serving_state.update().where(serving_state.c.dataset == dataset).values(
                reload_generation=serving_state.c.reload_generation + 1, updated_at=utc_now()))
            return int(connection.execute(sa.select(serving_state.c.reload_generation)
                                          .where(serving_state.c.dataset == dataset)).scalar_one())

    # Internals ------------------------------------------------------------------------
    @staticmethod
    def _ensure_state_row(connection: sa.Connection, dataset: str) -> None:
        exists = connection.execute(sa.select(serving_state.c.dataset).where(serving_state.c.dataset == dataset)).first()
        if not exists:
            connection.execute(serving_state.insert().values(dataset=dataset, experiment_id=None, reload_generation=0,
                                                             updated_at=utc_now()))

    def _upsert(self, dataset: str, experiment_id: str, mode: Mode, share: float, champion: str, challenger: str,
                *, by: str, note: str | None, only_if_new: bool = False) -> Experiment:
        now = utc_now()
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(experiments).where(experiments.c.id == experiment_id)).first()
            if row is None:
                connection.execute(experiments.insert().values(
                    id=experiment_id, dataset=dataset, mode=mode, challenger_share=share, champion_alias=champion,
                    challenger_alias=challenger, status="running", started_at=now, phase_started_at=now,
                    stopped_at=None, updated_at=now, changed_by=by, note=note))
            elif only_if_new:
                raise sa.exc.IntegrityError("experiment exists", None, Exception(experiment_id))
            else:
                old = _experiment(row)
                new_phase = (old.status == "stopped" or old.mode != mode or old.challenger_share != share
                             or old.champion_alias != champion or old.challenger_alias != challenger)
                connection.execute(experiments.update().where(experiments.c.id == experiment_id).values(
                    mode=mode, challenger_share=share, champion_alias=champion, challenger_alias=challenger,
                    status="running", stopped_at=None, updated_at=now, changed_by=by, note=note or old.note,
                    phase_started_at=now if new_phase else old.phase_started_at))
            self._ensure_state_row(connection, dataset)
            connection.execute(serving_state.update().where(serving_state.c.dataset == dataset).values(
                experiment_id=experiment_id, updated_at=now))
            row = connection.execute(sa.select(experiments).where(experiments.c.id == experiment_id)).one()
        return _experiment(row)
