"""The dataset config contract: what loads, what is refused and how the refusal reads."""

from __future__ import annotations

import pytest
import yaml

from mlops_assets.config import ConfigError, load_dataset_config, load_dataset_configs
from mlops_assets.settings import PROJECT_ROOT
from tests.datasets import LOANS_CONFIG

CHURN = PROJECT_ROOT / "configs" / "churn.yaml"


def write(tmp_path, config, name="data.yaml"):
    """The config, and an (empty) file where its source.path points: a missing source is a config error."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    source = config.get("source", {}).get("path")
    if isinstance(source, str) and source.endswith((".csv", ".parquet")):
        (tmp_path / source).touch()
    return path


def test_shipped_churn_config_loads_with_derived_features_last_among_numerics():
    config = load_dataset_config(CHURN)
    assert config.name == "churn" and config.entity_column == "customer_id" and config.time_column == "event_time"
    assert config.numeric_features[-2:] == ["charges_per_tenure_month", "support_calls_per_login"]
    assert config.categorical_features == ["contract_type", "payment_method", "region"]
    assert "gender" not in config.model_features
    assert config.registered_model_name == "churn_model"


def test_absent_entity_id_and_event_time_fall_back_to_row_number_and_load_time(tmp_path):
    config = load_dataset_config(write(tmp_path, LOANS_CONFIG))
    assert (config.entity_column, config.time_column) == ("row_id", "load_time")


def test_relative_source_path_resolves_next_to_the_config(tmp_path):
    config = load_dataset_config(write(tmp_path, LOANS_CONFIG))
    assert config.resolve_source_path() == tmp_path / "loans.csv"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(target="missing_column"), "target 'missing_column' is not declared"),
        (lambda c: c["features"].append("nope"), "features name columns not declared under columns: ['nope']"),
        (lambda c: c.update(name="Loans-2"), "name: Value error, name 'Loans-2' must be lowercase"),
        (lambda c: c["columns"]["income"].update(type="money"), "columns.income.type"),
        (lambda c: c.update(source={"path": "x.xlsx"}), "must end in .csv or .parquet"),
        (lambda c: c.update(source={"path": "a.csv", "generator": "churn"}), "exactly one of source.path"),
        (lambda c: c.update(colour="blue"), "colour: Extra inputs are not permitted"),
        (lambda c: c["columns"]["defaulted"].update(values=["a", "b", "c"]), "must be binary"),
        (lambda c: c.update(drift={"alpha": 0.7}), "drift.alpha: Input should be less than 0.5"),
    ],
    ids=["target", "feature", "name", "column-type", "suffix", "two-sources", "unknown-key", "non-binary-target",
         "drift-alpha"],
)
def test_a_bad_config_is_refused_naming_file_and_field(tmp_path, change, message):
    config = yaml.safe_load(yaml.safe_dump(LOANS_CONFIG))
    change(config)
    path = write(tmp_path, config)
    with pytest.raises(ConfigError) as error:
        load_dataset_config(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_dataset_names_must_be_unique_in_a_folder(tmp_path):
    write(tmp_path, LOANS_CONFIG, "a.yaml")
    write(tmp_path, LOANS_CONFIG, "b.yaml")
    with pytest.raises(ConfigError, match=r"repeated: \['loans'\]"):
        load_dataset_configs(tmp_path)


def test_feature_version_changes_with_the_definition_only(tmp_path):
    base = load_dataset_config(write(tmp_path, LOANS_CONFIG, "a.yaml"))
    same = load_dataset_config(write(tmp_path, {**LOANS_CONFIG, "description": "other words"}, "b.yaml"))
    changed = load_dataset_config(
        write(tmp_path, {**LOANS_CONFIG, "derived_features": {"monthly_debt": "income * debt_ratio"}}, "c.yaml"))
    assert base.feature_version == same.feature_version
    assert base.feature_version != changed.feature_version
