"""The feature store through its public interface: point-in-time retrieval, versions, time travel, bad input.

Small frames built by hand, so every expected value is visible in the test; one
randomized case is checked against a slow, obviously correct implementation.
"""

from __future__ import annotations

import textwrap
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.config import ConfigError, load_dataset_config
from mlops_assets.data.validation import DataValidationError
from mlops_assets.features.catalog import build_catalog, catalog_markdown, describe, diff, duplicate_features
from mlops_assets.features.definitions import FeatureError, feature_views, view_by_name
from mlops_assets.features.offline_store import OfflineStoreError
from mlops_assets.features.retrieval import RetrievalError
from mlops_assets.features.store import FeatureStore, content_hash
from mlops_assets.features.training_set import split_description
from mlops_assets.settings import PROJECT_ROOT
from tests.datasets import LOANS_CONFIG

SHOP = {
    "name": "shop",
    "source": {"path": "rows.csv"},
    "entity_id": "user_id",
    "event_time": "ts",
    "target": "bought",
    "columns": {
        "user_id": {"type": "string"},
        "ts": {"type": "datetime"},
        "visits": {"type": "integer", "min": 0},
        "spend": {"type": "float", "min": 0, "nullable": True},
        "plan": {"type": "categorical", "values": ["free", "pro", "team"]},
        "bought": {"type": "integer", "values": [0, 1]},
    },
    "features": ["visits", "spend", "plan"],
    "derived_features": {"spend_per_visit": "spend / (visits + 1)"},
    "feature_store": {"views": {
        "activity": {"ttl": "10d", "features": ["visits", "spend_per_visit"], "description": "What users do."},
        "account": {"features": {"spend": "Money spent so far.", "plan": {"description": "Plan.", "tags": ["pii-free"]}}},
    }},
}

T0 = pd.Timestamp("2025-03-01")


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def write_config(folder, config=SHOP, name="shop.yaml"):
    source = folder / config["source"]["path"]
    if not source.exists():  # the config must name an existing file; these tests feed rows directly
        source.write_text(",".join(config["columns"]) + "\n")
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return load_dataset_config(path)


def rows(*records) -> pd.DataFrame:
    """(user, day, visits, spend, plan) tuples as source rows."""
    frame = pd.DataFrame(records, columns=["user_id", "ts", "visits", "spend", "plan"])
    frame["ts"] = [day(d) for d in frame["ts"]]
    frame["bought"] = 0
    return frame


def labels(*pairs) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [u for u, _ in pairs], "ts": [day(d) for _, d in pairs]})


@pytest.fixture
def store(tmp_path):
    return FeatureStore(write_config(tmp_path), home=tmp_path / "home")


def materialize_all(store, frame, **kwargs):
    return {v.name: store.materialize(v.name, frame, **kwargs) for v in store.views}


FEATURES = ["visits", "spend_per_visit", "spend", "plan"]


def test_training_row_never_sees_future_features(store):
    materialize_all(store, rows(("a", 1, 1, 10.0, "free"), ("a", 5, 5, 50.0, "pro"), ("a", 9, 9, 90.0, "team")))
    out = store.get_historical_features(labels(("a", 0), ("a", 1), ("a", 4.99), ("a", 5), ("a", 8), ("a", 9)), FEATURES)
    assert out["visits"].tolist()[1:] == [1, 1, 5, 5, 9]
    assert pd.isna(out["visits"].iloc[0])  # before the first value: explicit null, row kept
    assert out["plan"].tolist()[1:] == ["free", "free", "pro", "pro", "team"]


def test_values_older_than_the_ttl_are_null_and_the_edge_is_inclusive(store):
    materialize_all(store, rows(("a", 0, 3, 30.0, "pro")))
    edge = day(10)
    out = store.get_historical_features(pd.DataFrame({"user_id": ["a", "a"], "ts": [edge, edge + pd.Timedelta("1us")]}),
                                        FEATURES)
    assert out["visits"].iloc[0] == 3 and pd.isna(out["visits"].iloc[1])  # activity: TTL 10 days
    assert out["plan"].tolist() == ["pro", "pro"]  # account: no TTL


def test_every_label_row_is_kept_in_order_duplicates_and_unknown_entities_included(store):
    materialize_all(store, rows(("a", 1, 1, 10.0, "free"), ("b", 1, 2, 20.0, "pro")))
    request = labels(("b", 3), ("nobody", 3), ("a", 3), ("b", 3), ("a", 3))
    request.index = [10, 11, 12, 13, 14]
    out = store.get_historical_features(request, FEATURES)
    assert out.index.tolist() == [10, 11, 12, 13, 14]
    assert out["user_id"].tolist() == ["b", "nobody", "a", "b", "a"]
    assert out["visits"].tolist()[0] == 2 and out["visits"].tolist()[2:] == [1, 2, 1]
    assert out.loc[11, FEATURES].isna().all()


def test_the_entity_frames_own_columns_come_back_unchanged_whatever_their_types(store):
    materialize_all(store, rows(("a", 1, 1, 10.0, "free")))
    request = labels(("a", 3), ("a", 3)).assign(
        segment=pd.Categorical(["x", "y"]), seen=pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True),
        note=pd.array(["n1", None], dtype="string"), weight=[0.5, 1.5])
    request.index = [7, 7]  # a repeated index label too
    out = store.get_historical_features(request, FEATURES)
    pd.testing.assert_frame_equal(out[request.columns], request)
    assert list(out.columns) == [*request.columns, *FEATURES]
    # Duplicate column names cannot go through a dict: they are kept all the same.
    doubled = pd.concat([request[["user_id", "ts"]], request[["weight", "weight"]]], axis=1)
    out = store.get_historical_features(doubled, ["visits"])
    assert list(out.columns) == ["user_id", "ts", "weight", "weight", "visits"] and out["visits"].tolist() == [1, 1]


def test_equal_event_times_are_broken_by_ingestion_time_and_old_versions_stay_readable(store):
    first = materialize_all(store, rows(("a", 1, 1, 10.0, "free")))
    corrected = materialize_all(store, rows(("a", 1, 7, 10.0, "free")))  # same entity and event time, new value
    assert corrected["activity"].write.corrections == 1 and corrected["account"].write.rows_appended == 0
    request = labels(("a", 2))
    assert store.get_historical_features(request, ["visits"])["visits"].tolist() == [7]
    before = {"activity": first["activity"].write.table_version}
    assert store.get_historical_features(request, ["visits"], as_of=before)["visits"].tolist() == [1]


def test_a_late_arriving_row_is_seen_by_new_reads_but_not_as_of_the_earlier_version(store):
    first = materialize_all(store, rows(("a", 1, 1, 10.0, "free"), ("a", 6, 6, 60.0, "free")))
    materialize_all(store, rows(("a", 3, 3, 30.0, "pro")))  # arrives late, event time between the others
    request = labels(("a", 4))
    assert store.get_historical_features(request, ["visits", "plan"]).iloc[0][["visits", "plan"]].tolist() == [3, "pro"]
    old = {name: m.write.table_version for name, m in first.items()}
    assert store.get_historical_features(request, ["visits", "plan"], as_of=old).iloc[0][["visits", "plan"]].tolist() == [1, "free"]


def test_duplicate_keys_within_one_materialization_keep_the_last_row(store):
    result = materialize_all(store, rows(("a", 1, 1, 10.0, "free"), ("a", 1, 4, 10.0, "free")))
    assert result["activity"].write.duplicate_keys_in_batch == 1
    assert store.get_historical_features(labels(("a", 1)), ["visits"])["visits"].tolist() == [4]


def slow_point_in_time(history: list[pd.DataFrame], request: pd.DataFrame, feature: str, ttl: pd.Timedelta | None):
    """Obviously correct: for each label, scan every stored row by hand."""
    stored = [(r.user_id, r.ts, batch_number, position, getattr(r, feature))
              for batch_number, batch in enumerate(history) for position, r in enumerate(batch.itertuples())]
    answers = []
    for label in request.itertuples():
        candidates = [s for s in stored if s[0] == label.user_id and s[1] <= label.ts]
        if not candidates:
            answers.append(None)
            continue
        latest_time = max(s[1] for s in candidates)
        winner = max((s for s in candidates if s[1] == latest_time), key=lambda s: (s[2], s[3]))
        fresh = ttl is None or label.ts - winner[1] <= ttl
        answers.append(winner[4] if fresh else None)
    return answers


def test_retrieval_matches_a_slow_reference_on_random_data_with_corrections_and_ties(store):
    rng = np.random.default_rng(11)
    history = []
    for _ in range(3):
        n = 120
        batch = rows(*[(f"u{rng.integers(0, 15)}", float(rng.integers(0, 40)), int(rng.integers(0, 50)),
                        float(rng.integers(0, 500)), str(rng.choice(["free", "pro", "team"]))) for _ in range(n)])
        history.append(batch)
        materialize_all(store, batch)
    request = labels(*[(f"u{rng.integers(0, 17)}", float(rng.integers(-2, 55)) + rng.choice([0, 0.5])) for _ in range(400)])
    # Random batches differ a lot, so the distribution checks may refuse them: read the newest versions explicitly.
    newest = {v.name: store.offline.latest_version(v.name, v.version) for v in store.views}
    out = store.get_historical_features(request, ["visits", "plan"], as_of=newest)
    for feature, ttl in (("visits", pd.Timedelta("10d")), ("plan", None)):
        expected = slow_point_in_time(history, request, feature, ttl)
        got = [None if pd.isna(v) else v for v in out[feature]]
        assert got == expected, feature


def test_a_view_version_hashes_the_definition_including_transformation_code(tmp_path):
    base = {v.name: v.version for v in feature_views(write_config(tmp_path))}
    reworded = {**SHOP, "feature_store": {"views": {**SHOP["feature_store"]["views"],
                                                     "activity": {**SHOP["feature_store"]["views"]["activity"],
                                                                  "description": "other words"}}}}
    spaced = {**SHOP, "derived_features": {"spend_per_visit": "spend/(visits+1)"}}
    changed = {**SHOP, "derived_features": {"spend_per_visit": "spend / (visits + 2)"}}
    versions = {name: {v.name: v.version for v in feature_views(write_config(tmp_path, cfg, f"{name}.yaml"))}
                for name, cfg in (("reworded", reworded), ("spaced", spaced), ("changed", changed))}
    assert versions["reworded"] == versions["spaced"] == base
    assert versions["changed"]["activity"] != base["activity"] and versions["changed"]["account"] == base["account"]

    def with_transformation(body: str, name: str):
        module = tmp_path / f"{name}.py"
        module.write_text(textwrap.dedent(f"""
            import pandas as pd
            from mlops_assets.features.transformations import transformation

            @transformation("loyalty", inputs=["visits"], outputs={{"loyal": "boolean"}})
            def loyalty(rows):
                return pd.DataFrame({{"loyal": {body}}})
        """))
        sys.path.insert(0, str(tmp_path))
        try:
            config = {**SHOP, "feature_store": {"transformation_modules": [name], "views": {
                **SHOP["feature_store"]["views"], "loyalty": {"transformations": ["loyalty"], "features": ["loyal"]}}}}
            return view_by_name(write_config(tmp_path, config, f"{name}.yaml"), "loyalty")
        finally:
            sys.path.remove(str(tmp_path))

    first = with_transformation('rows["visits"] > 10', "loyal_a")
    same_code = with_transformation('rows["visits"] > 10', "loyal_b")
    new_code = with_transformation('rows["visits"] > 20', "loyal_c")
    assert first.version == same_code.version != new_code.version


def test_time_travel_by_time_reads_the_version_validated_by_then(store):
    materialize_all(store, rows(("a", 1, 1, 10.0, "free")))
    between = pd.Timestamp.now(tz="UTC")
    materialize_all(store, rows(("a", 2, 2, 20.0, "pro")))
    request = labels(("a", 5))
    assert store.get_historical_features(request, ["visits"], as_of=between)["visits"].tolist() == [1]
    assert store.get_historical_features(request, ["visits"])["visits"].tolist() == [2]
    with pytest.raises(RetrievalError, match="no validated materialization committed by"):
        store.get_historical_features(request, ["visits"], as_of="2000-01-01")


def test_a_training_set_rebuilds_byte_for_byte_after_newer_materializations(tmp_path):
    from mlops_assets.features.training_set import build_training_set, label_events, rebuild_training_set

    config = write_config(tmp_path)
    store = FeatureStore(config, home=tmp_path / "home")
    rng = np.random.default_rng(3)
    source = rows(*[(f"u{i % 40}", float(i) / 4, int(rng.integers(0, 9)), float(rng.integers(1, 90)),
                     str(rng.choice(["free", "pro"]))) for i in range(200)])
    source["bought"] = rng.integers(0, 2, len(source))
    materialize_all(store, source)
    training_set, manifest = build_training_set(store, label_events(source, config))
    changed = source.copy()
    changed.loc[:9, "visits"] += 1
    changed.loc[:9, "plan"] = "team"
    materialize_all(store, changed, ingested_at=None)  # newer versions of both views
    assert build_training_set(store, label_events(source, config))[1]["views"] != manifest["views"]
    rebuilt = rebuild_training_set(FeatureStore(config, home=tmp_path / "home"), manifest)
    assert content_hash(rebuilt) == content_hash(training_set) == manifest["content_hash"]
    assert rebuilt.to_parquet() == training_set.to_parquet()


@pytest.mark.parametrize(
    ("request_frame", "message"),
    [
        (pd.DataFrame({"ts": [day(1)]}), r"entity_df lacks column\(s\) \['user_id'\]"),
        (pd.DataFrame({"user_id": ["a"]}), r"lacks column\(s\) \['ts'\]"),
        (pd.DataFrame({"user_id": ["a", "a"], "ts": [day(1), pd.Timestamp("2025-03-02", tz="UTC")]}),
         "mixes timezone-naive and timezone-aware"),
        (pd.DataFrame({"user_id": ["a"], "ts": [pd.Timestamp("2025-03-02", tz="Europe/Paris")]}),
         "is timezone-aware but the feature store's event times are timezone-naive"),
        (pd.DataFrame({"user_id": ["a", "a"], "ts": [day(1), None]}), "has 1 missing timestamps"),
        (pd.DataFrame({"user_id": [1], "ts": [day(1)]}), "holds BIGINT values but view 'activity' keys its entities by VARCHAR"),
        (pd.DataFrame({"user_id": ["a"], "ts": [day(1)], "visits": [3]}), r"already has column\(s\) \['visits'\]"),
    ],
    ids=["no-entity", "no-timestamp", "naive-and-aware", "aware-vs-naive-store", "missing-time", "entity-type",
         "column-clash"],
)
def test_a_bad_entity_frame_is_refused_with_what_is_wrong(store, request_frame, message):
    materialize_all(store, rows(("a", 1, 1, 10.0, "free")))
    with pytest.raises(RetrievalError, match=message):
        store.get_historical_features(request_frame, ["visits", "plan"])


@pytest.mark.parametrize(("features", "message"), [
    (["visit"], r"unknown feature 'visit'; did you mean \['visits'\]"),
    (["billing:visits"], "unknown feature view 'billing'"),
    (["account:visits"], "view 'account' has no feature 'visits'"),
])
def test_unknown_features_and_views_are_named(store, features, message):
    materialize_all(store, rows(("a", 1, 1, 10.0, "free")))
    with pytest.raises(RetrievalError, match=message):
        store.get_historical_features(labels(("a", 2)), features)


def test_nothing_materialized_yet_says_what_to_do(store):
    with pytest.raises(RetrievalError, match="has no validated materialization; materialize the features first"):
        store.get_historical_features(labels(("a", 2)), ["visits"])


def test_a_type_change_without_a_new_version_is_refused_and_nothing_is_written(store):
    materialize_all(store, rows(("a", 1, 1, 10.0, "free")))
    view = store.view("activity")
    batch = view.compute(rows(("a", 2, 2, 20.0, "free")))
    retyped = batch.set_column(2, "visits", batch.column("visits").cast("double"))
    with pytest.raises(OfflineStoreError, match="feature 'visits' changed type from int64 to double without a new view"):
        store.write_view("activity", retyped)
    assert store.offline.latest_version(view.name, view.version) == 0


def test_a_value_that_does_not_fit_its_declared_type_is_refused_naming_the_feature(store):
    with pytest.raises(FeatureError, match=r"view 'activity': feature 'visits' \(integer\).*1.5"):
        store.materialize("activity", rows(("a", 1, 1.5, 10.0, "free")))


def test_a_transformation_that_raises_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    module = tmp_path / "broken_transform.py"
    module.write_text(textwrap.dedent("""
        from mlops_assets.features.transformations import transformation

        @transformation("broken", inputs=["visits"], outputs={"ratio": "float"})
        def broken(rows):
            raise ZeroDivisionError("no visits to divide by")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = write_config(tmp_path, {**SHOP, "feature_store": {"transformation_modules": ["broken_transform"], "views": {
        **SHOP["feature_store"]["views"], "ratios": {"transformations": ["broken"], "features": ["ratio"]}}}})
    store = FeatureStore(config, home=tmp_path / "home")
    with pytest.raises(FeatureError, match="view 'ratios': transformation 'broken' raised ZeroDivisionError: no visits"):
        store.materialize("ratios", rows(("a", 1, 1, 10.0, "free")))
    assert store.offline.table("ratios", store.view("ratios").version) is None


def test_rows_failing_the_view_schema_are_refused_before_anything_is_written(store):
    with pytest.raises(DataValidationError, match="plan"):
        store.materialize("account", rows(("a", 1, 1, 10.0, "enterprise")))
    assert store.offline.table("account", store.view("account").version) is None


def test_a_distribution_shift_keeps_training_and_serving_on_the_validated_version(store):
    base = rows(*[(f"u{i}", 1, i % 7, float(10 + i % 13), "free" if i % 3 else "pro") for i in range(60)])
    materialize_all(store, base)
    store.publish_online()
    shifted = base.assign(ts=day(2), plan="team", visits=base["visits"] * 10)  # new category, big mean shift
    result = materialize_all(store, shifted)
    assert not result["account"].validated and not result["activity"].validated
    failures = {(f["column"], f["check"]) for m in result.values() for f in m.distribution.failures}
    assert {("plan", "new categories"), ("visits", "mean shift")} <= failures
    example = next(f for f in result["account"].distribution.failures if f["check"] == "new categories")["examples"][0]
    assert example["plan"] == "team" and example["user_id"].startswith("u")
    read = store.get_historical_features(labels(("u3", 3)), ["visits", "plan"])
    assert read[["visits", "plan"]].iloc[0].tolist() == [3, "pro"]
    assert store.publish_online()["account"]["published"] is False
    assert store.online_features_one("u3", ["plan", "visits"], now=day(3)) == {"plan": "pro", "visits": 3}


def test_the_config_short_form_is_one_view_of_every_model_feature(tmp_path):
    config = write_config(tmp_path, LOANS_CONFIG, "loans.yaml")  # write_config makes the named source file
    (view,) = feature_views(config)
    assert view.name == "all" and view.feature_names == config.model_features
    assert (view.entity_column, view.time_column) == ("row_id", "load_time")


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["feature_store"]["views"]["account"]["features"].update({"visits": ""}),
     "feature 'visits' is defined by views 'account' and 'activity'"),
    (lambda c: c["feature_store"]["views"]["activity"].update(features=["visits"]),
     r"model features \['spend_per_visit'\] are in no feature view"),
    (lambda c: c["feature_store"]["views"]["activity"].update(transformations=["nope"]),
     "no transformation named 'nope' is registered"),
    (lambda c: c["feature_store"]["views"]["activity"].update(features=["visits", "spend_per_visit", "colour"]),
     "feature 'colour' is not a declared column, a derived feature or an output"),
    (lambda c: c["feature_store"]["views"]["activity"].update(ttl="ten days"), "ttl 'ten days' must be a number"),
    (lambda c: c["feature_store"].update(transformation_modules=["no.such.module"]), "cannot import 'no.such.module'"),
])
def test_a_bad_feature_view_is_refused_naming_the_file(tmp_path, change, message):
    config = yaml.safe_load(yaml.safe_dump(SHOP))
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "rows.csv").write_text("user_id\n")
    with pytest.raises(ConfigError, match=message) as error:
        feature_views(load_dataset_config(path))
    assert str(path) in str(error.value)


def test_the_catalog_lists_features_with_stats_and_reports_features_defined_twice(tmp_path):
    config = write_config(tmp_path, {**SHOP, "derived_features": {**SHOP["derived_features"],
                                                                  "visit_count": "visits", "ratio": "spend/(visits+1)"},
                                     "features": SHOP["features"],
                                     "feature_store": {"views": {**SHOP["feature_store"]["views"],
                                                                 "copies": {"features": ["visit_count", "ratio"]}}}})
    store = FeatureStore(config, home=tmp_path / "home")
    materialize_all(store, rows(("a", 1, 1, 10.0, "free"), ("b", 1, 3, 30.0, "pro")))
    catalog = build_catalog(store)
    visits = catalog.rows.set_index("feature").loc["visits"]
    assert visits["view"] == "activity" and visits["type"] == "integer" and visits["null_rate"] == 0
    assert "mean=2" in visits["stats"]
    assert sorted(sorted(d["features"]) for d in catalog.duplicates) == [
        ["activity:spend_per_visit", "copies:ratio"], ["activity:visits", "copies:visit_count"]]
    assert duplicate_features(feature_views(write_config(tmp_path))) == []
    text = catalog_markdown(store, catalog)
    assert "## Defined twice" in text and "Plan." in text
    assert "expression: spend / (visits + 1)" in describe(store, "spend_per_visit")


def test_diff_shows_two_versions_of_a_view_side_by_side(tmp_path):
    first = FeatureStore(write_config(tmp_path), home=tmp_path / "home")
    materialize_all(first, rows(("a", 1, 1, 10.0, "free")))
    second = FeatureStore(write_config(tmp_path, {**SHOP, "derived_features": {"spend_per_visit": "spend / visits"}},
                                       "v2.yaml"), home=tmp_path / "home")
    materialize_all(second, rows(("a", 1, 1, 10.0, "free")))
    a, b = first.view("activity").version, second.view("activity").version
    text = diff(second, f"activity@{a[:6]}", b)
    assert "float expression: spend / (visits + 1)" in text and "float expression: spend / visits" in text
    assert "| spend_per_visit |" in text and "yes" in text
    with pytest.raises(FeatureError, match="registered view version matches 'zzz'"):
        diff(second, "zzz", b)


def test_split_description_says_what_was_done():
    churn = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")
    assert "by event time ('event_time')" in split_description(churn) and "the newest" in split_description(churn)


def test_split_description_without_event_time_says_file_order(tmp_path):
    loans = write_config(tmp_path, LOANS_CONFIG, "loans.yaml")
    text = split_description(loans)
    assert "row order in the source" in text and "not necessarily the newest" in text
