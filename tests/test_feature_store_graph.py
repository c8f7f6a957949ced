"""The feature store inside the Dagster graph: the churn home the main job materialized, and blocking checks."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from mlops_assets.cli import main
from mlops_assets.config import load_dataset_config, load_dataset_configs
from mlops_assets.features.assets import build_feature_assets
from mlops_assets.features.store import FeatureStore, content_hash
from mlops_assets.features.training_set import rebuild_training_set
from mlops_assets.io_manager import ParquetJsonIOManager
from mlops_assets.pipeline.runs import load_definitions
from mlops_assets.settings import use_home
from tests.test_feature_store import SHOP, rows

pytestmark = pytest.mark.slow


def latest_metadata(key: list[str]) -> dict:
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_registered_model_rebuilds_its_training_set_byte_for_byte_after_newer_materializations(in_home, tmp_path):
    settings, _ = in_home
    config = load_dataset_configs(settings.configs)[0]
    tags = MlflowClient(settings.mlflow_tracking_uri).get_model_version("churn_model", "1").tags
    manifest = json.loads(tags["feature_store.manifest"])
    assert tags["feature_store.content_hash"] == manifest["content_hash"]
    stored = load_definitions(settings).load_asset_value(["churn", "training_set"], instance=dg.DagsterInstance.get())
    assert content_hash(stored) == manifest["content_hash"]
    # A copy of the store (the shared home stays as it is) gets newer versions of every view.
    copy = tmp_path / "home"
    shutil.copytree(settings.home / "feature_store", copy / "feature_store")
    store = FeatureStore(config, home=copy)
    raw = pd.read_parquet(settings.asset_storage / "churn" / "raw_rows.parquet")
    raw.loc[raw.index[:50], "monthly_charges"] += 1.0
    raw.loc[raw.index[:50], "logins_last_30d"] += 1
    newer = {v.name: store.materialize(v.name, raw) for v in store.views}
    assert all(m.write.table_version == manifest["views"][name]["table_version"] + 1 and m.validated
               for name, m in newer.items())
    rebuilt = rebuild_training_set(store, manifest)
    assert content_hash(rebuilt) == manifest["content_hash"]
    assert rebuilt.drop(columns="split").equals(stored.drop(columns="split"))


def test_offline_and_online_agree_in_the_materialized_home(in_home):
    settings, _ = in_home
    store = FeatureStore(load_dataset_configs(settings.configs)[0])
    entities = pd.read_parquet(settings.asset_storage / "churn" / "raw_rows.parquet")["customer_id"].sample(
        25, random_state=1).tolist() + ["C9999999"]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    offline = store.get_historical_features(pd.DataFrame({"customer_id": entities, "event_time": now.tz_localize(None)}),
                                            store.config.model_features)
    online = store.get_online_features(entities, store.config.model_features, now=now.to_pydatetime())
    columns = ["customer_id", *store.config.model_features]
    assert online[columns].astype(object).where(online[columns].notna(), None).values.tolist() == \
        offline[columns].astype(object).where(offline[columns].notna(), None).values.tolist()
    assert online.iloc[-1, 1:].isna().all() and online.iloc[0, 1:].notna().all()


def test_feature_assets_show_lineage_versions_catalog_and_split_in_dagster(in_home):
    metadata = latest_metadata(["churn", "billing_features"])
    lineage = metadata["dagster/column_lineage"].deps_by_column
    assert [d.column_name for d in lineage["charges_per_tenure_month"]] == ["tenure_months", "total_charges"]
    assert sorted(d.column_name for d in lineage["account_age_days"]) == ["event_time", "signup_date"]
    assert lineage["region"][0].asset_key == dg.AssetKey(["churn", "raw_rows"])
    assert metadata["validated"] is True and metadata["table_version"] == 0 and metadata["entities"] == 6000
    catalog = latest_metadata(["churn", "feature_catalog"])["catalog"]
    assert "| minutes_online_30d | usage | float |" in catalog and "No feature is defined twice" in catalog
    online = latest_metadata(["churn", "online_features"])
    assert online["entities"] == 6000 and online["online_store"].startswith("sqlite:///")
    split = latest_metadata(["churn", "training_set"])
    assert "by event time ('event_time')" in split["split"]
    assert set(split["feature_views"]) == {"usage", "billing"}


def test_mlops_features_commands_read_the_catalog(in_home):
    settings, _ = in_home
    runner = CliRunner()
    listed = runner.invoke(main, ["features", "list"])
    assert listed.exit_code == 0, listed.output
    assert "churn: 17 features in 2 views" in listed.output and "| account_age_days | billing | integer |" in listed.output
    described = runner.invoke(main, ["features", "describe", "usage:support_calls_per_login"])
    assert "expression: support_calls_90d / (logins_last_30d + 1)" in described.output
    assert "table v0 (validated" in described.output
    version = FeatureStore(load_dataset_configs(settings.configs)[0]).view("usage").version
    same = runner.invoke(main, ["features", "diff", version, f"usage@{version[:5]}"])
    assert same.exit_code == 0 and "| data_usage_gb |" in same.output
    missing = runner.invoke(main, ["features", "describe", "monthly_charge"])
    assert missing.exit_code != 0 and "did you mean ['monthly_charges'" in missing.output


def test_a_failed_distribution_check_blocks_the_online_store_and_training_in_the_same_run(tmp_path):
    """A CSV dataset materialized twice; the second batch shifts, so its checks fail and nothing downstream runs."""
    folder = tmp_path / "configs"
    folder.mkdir()
    config_body = {**SHOP, "sensitive_attributes": [], "split": {"validation": 0.2, "test": 0.2}}
    (folder / "shop.yaml").write_text(yaml.safe_dump(config_body))
    source = rows(*[(f"u{i}", i / 10, i % 7, float(10 + i % 13), "free" if i % 3 else "pro") for i in range(80)])
    source["bought"] = [i % 2 for i in range(80)]
    source.to_csv(folder / "rows.csv", index=False)
    with use_home(tmp_path / "home", folder) as settings:
        config = load_dataset_config(folder / "shop.yaml")
        assets = build_feature_assets(config)
        resources = {"io_manager": ParquetJsonIOManager(base_dir=str(settings.asset_storage))}
        first = dg.materialize(assets, resources=resources, raise_on_error=False)
        assert first.success
        store = FeatureStore(config)
        before = store.get_online_features(["u3"], ["plan", "visits"])
        source.assign(plan="team", visits=source["visits"] * 10).to_csv(folder / "rows.csv", index=False)
        second = dg.materialize(assets, resources=resources, raise_on_error=False)
        materialized = {e.asset_key.path[-1] for e in second.get_asset_materialization_events()}
        assert {"account_features", "activity_features"} <= materialized
        assert not {"online_features", "training_set"} & materialized
        failed = {e.check_name: e.metadata["failing_columns"].value
                  for e in second.get_asset_check_evaluations() if not e.passed}
        assert failed == {"account_distribution": ["plan"], "activity_distribution": ["spend_per_visit", "visits"]}
        pd.testing.assert_frame_equal(store.get_online_features(["u3"], ["plan", "visits"]), before)
