"""Governance at the command line: approve, reject, explain, lineage, and the governance report.

A personal token is read from ``MLOPS_TOKEN`` or asked for without echo; it is never a
command-line argument (those are visible to every user in ``ps``).
"""

from __future__ import annotations

import os

import click

from mlops_assets.config import DatasetConfig, load_dataset_configs
from mlops_assets.errors import PlatformError
from mlops_assets.settings import Settings


class UnknownModelError(PlatformError, LookupError):
    """A model or dataset name no config declares."""


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.export()
    return settings


def find_config(settings: Settings, model: str) -> DatasetConfig:
    """The config of a dataset given by its name (``churn``) or its registered model (``churn_model``)."""
    configs = load_dataset_configs(settings.configs)
    for config in configs:
        if model in (config.name, config.registered_model_name):
            return config
    known = ", ".join(f"{c.name} ({c.registered_model_name})" for c in configs)
    raise UnknownModelError(f"no dataset or model named {model!r} in {settings.configs}; known: {known}")


def _token() -> str | None:
    token = os.environ.get("MLOPS_TOKEN")
    if token:
        return token
    if click.get_text_stream("stdin").isatty():
        return click.prompt("personal token", hide_input=True, default="", show_default=False) or None
    return None


def _decision(decision: str):
    @click.command(decision, help=f"{decision.capitalize()} MODEL VERSION as yourself (token: MLOPS_TOKEN or a prompt).")
    @click.argument("model")
    @click.argument("version")
    @click.option("--comment", required=True, help="why: recorded with the decision, shown on the card")
    @click.option("--role", default=None, help="the role you decide in, when you hold several deciding roles")
    def command(model: str, version: str, comment: str, role: str | None) -> None:
        from mlops_assets.governance.workflow import decide

        settings = _settings()
        config = find_config(settings, model)
        recorded, state, warnings = decide(settings, config, version, _token(), decision, comment, role)
        click.echo(f"recorded #{recorded.seq}: {recorded.person} ({recorded.role}) {decision}s "
                   f"{recorded.model} v{recorded.version} at {recorded.decided_at}")
        click.echo(f"  content {recorded.content_hash[:16]}  record {recorded.record_hash[:16]}")
        click.echo(f"approval state: {state}")
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)

    return command


approve = _decision("approve")
reject = _decision("reject")


def entity_row(settings: Settings, config: DatasetConfig, entity: str):
    """The newest row of ``entity`` in the dataset's newest training set (as the Dagster instance stores it)."""
    import logging

    import dagster as dg

    from mlops_assets.pipeline.runs import load_definitions

    logging.disable(logging.INFO)  # the IO manager's debug lines
    try:
        frame = load_definitions(settings).load_asset_value([config.name, "training_set"],
                                                            instance=dg.DagsterInstance.get())
    except Exception as exc:  # noqa: BLE001 - never materialized: say so, not a traceback
        raise PlatformError(f"dataset {config.name!r} has no materialized training set to look the entity up in "
                            f"(`mlops materialize` first): {exc}") from exc
    finally:
        logging.disable(logging.NOTSET)
    matches = frame[frame[config.entity_column].astype(str) == str(entity)]
    return None if matches.empty else matches.sort_values(config.time_column).iloc[-1]


@click.command()
@click.argument("dataset")
@click.option("--entity", "entity", required=True, help="the entity id whose newest row to explain")
@click.option("--version", default=None, help="model version (default: the champion)")
def explain(dataset: str, entity: str, version: str | None) -> None:
    """Explain one entity's score in plain words: what each input added to the average score."""
    from mlops_assets.governance.assessment import load_background
    from mlops_assets.governance.explanations import ExplanationError, explain_record
    from mlops_assets.training.registry import load_champion, load_version

    settings = _settings()
    config = find_config(settings, dataset)
    served = load_version(settings, config, version) if version else load_champion(settings, config)
    row = entity_row(settings, config, entity)
    if row is None:
        raise ExplanationError(f"dataset {config.name!r} has no row with {config.entity_column} = {entity!r} "
                               "in its newest training set")
    explanation = explain_record(served.pipeline, config, served.decision_threshold, row,
                                 load_background(settings, config, served.version), entity)
    click.echo(f"{config.registered_model_name} v{served.version}, {config.entity_column} {entity}:")
    click.echo(f"  {explanation.sentence}")
    click.echo("")
    click.echo(f"  {'input':<24} {'value':<18} contribution")
    for column, value in sorted(explanation.contributions.items(), key=lambda kv: -abs(kv[1])):
        click.echo(f"  {column:<24} {str(explanation.values[column]):<18} {value:+.4f}")
    click.echo(f"  {'(average over training rows)':<43} {explanation.baseline:.4f}")
    click.echo(f"  {'(score)':<43} {explanation.score:.4f}")


@click.command()
@click.argument("model")
@click.argument("version")
def lineage(model: str, version: str) -> None:
    """The chain from source data to deployment for one model version."""
    from mlops_assets.governance.lineage import format_lineage, version_lineage

    settings = _settings()
    config = find_config(settings, model)
    click.echo(f"{config.registered_model_name} v{version}")
    click.echo(format_lineage(version_lineage(settings, config, version)))


@click.group()
def governance() -> None:
    """Model-card coverage, cards on demand, personal tokens."""


@governance.command("report")
def report() -> None:
    """Card coverage of every version that has held champion, and the approval ledger's integrity."""
    from mlops_assets.governance.approvals import check_anchors, open_ledger
    from mlops_assets.governance.coverage import card_coverage, format_coverage

    settings = _settings()
    rows = []
    configs = load_dataset_configs(settings.configs)
    for config in configs:
        rows += card_coverage(settings, config)
    click.echo(format_coverage(rows) if rows else "no version has held the champion alias yet")
    gaps = [row.gap() for row in rows if row.gap()]
    click.echo(f"\ncoverage: {len(rows) - len(gaps)} of {len(rows)} champion versions have a complete card")
    ledger = open_ledger(settings)
    try:
        problems = ledger.verify()
        for config in configs:
            try:
                check_anchors(settings, config, ledger)
            except PlatformError as exc:
                problems.append(str(exc))
        count = len(ledger.records())
    finally:
        ledger.close()
    click.echo(f"approval ledger {ledger.url}: {count} decisions, "
               + ("chain intact" if not problems else "TAMPERED: " + "; ".join(problems)))
    if gaps or problems:
        raise click.exceptions.Exit(1)


@governance.command("card")
@click.argument("model")
@click.argument("version")
def card(model: str, version: str) -> None:
    """Render a version's card again (after an approval, a promotion, an edit of the human sections)."""
    from mlops_assets.governance.workflow import refresh_card

    settings = _settings()
    config = find_config(settings, model)
    files = refresh_card(settings, config, version)
    if files is None:
        raise PlatformError(f"{config.registered_model_name} v{version} was never assessed (no metrics.json under "
                            f"{settings.reports / config.name / f'v{version}'}); materialize {config.name}/model_card "
                            "while it is the newest version")
    missing = files.card["summary"]["missing_human_sections"]
    click.echo(f"{files.markdown}\n{files.html}\n{files.json}")
    if missing:
        click.echo(f"{len(missing)} section(s) missing: needs a person: {', '.join(missing)}")


@governance.command("new-token")
@click.argument("person")
def new_token(person: str) -> None:
    """A fresh personal token for PERSON: keep the token, put the hash line in the roles file."""
    from mlops_assets.governance.roles import new_token as make, token_hash

    token = make()
    click.echo(f"token for {person} (shown once; keep it like a password, use it as MLOPS_TOKEN):\n  {token}")
    click.echo(f"line for the roles file, under people.{person}:\n  token_sha256: {token_hash(token)}")
