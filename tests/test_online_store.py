"""The online store, SQLite and Redis through the same facade: agreement with offline, TTL, atomic publications.

Redis runs at 127.0.0.1:6379 (skipped with the reason without it, failing in CI); each
test uses its own key prefix and removes only its keys. The "Redis goes away" case
starts a redis-server of its own on a free port and kills it mid-publication.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from mlops_assets.features.online_store import OnlineStoreError, RedisOnlineStore, SQLiteOnlineStore, open_online_store
from mlops_assets.features.store import FeatureStore
from mlops_assets.serving import free_port
from tests.conftest import require_service
from tests.test_feature_store import day, labels, materialize_all, rows, write_config

FEATURES = ["visits", "spend_per_visit", "spend", "plan"]


def redis_store(url: str = "redis://127.0.0.1:6379/0") -> RedisOnlineStore:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        require_service(f"Redis at {url}", str(exc))
    return RedisOnlineStore(url, prefix=f"mlops-test-{uuid.uuid4().hex[:8]}:")


@pytest.fixture(params=["sqlite", "redis"])
def online(request, tmp_path):
    store = SQLiteOnlineStore(tmp_path / "online.db") if request.param == "sqlite" else redis_store()
    yield store
    store.remove_dataset("shop")
    store.close()


def history_frame(n_users: int = 30, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return rows(*[(f"u{i % n_users}", float(i % 9), int(rng.integers(0, 20)), float(rng.integers(1, 200)),
                   str(rng.choice(["free", "pro"]))) for i in range(4 * n_users)])


def test_online_and_offline_agree_for_the_same_entity_and_time(tmp_path, online):
    store = FeatureStore(write_config(tmp_path), home=tmp_path / "home", online=online)
    materialize_all(store, history_frame())
    store.publish_online()
    users = [f"u{i}" for i in range(30)] + ["stranger"]
    moment = day(12)  # some values are older than activity's 10-day TTL by then, some are not
    offline = store.get_historical_features(pd.DataFrame({"user_id": users, "ts": [moment] * len(users)}), FEATURES)
    served = store.get_online_features(users, FEATURES, now=moment.to_pydatetime())
    expected = offline[["user_id", *FEATURES]].astype(object).where(offline.notna(), None)
    assert served.astype(object).where(served.notna(), None).to_dict("records") == expected.to_dict("records")
    assert expected["visits"].isna().any() and expected["visits"].notna().any()  # both sides of the TTL occur
    one = store.online_features_one("u3", FEATURES, now=moment.to_pydatetime())
    assert one == {k: v for k, v in served.iloc[3].items() if k != "user_id"}


def test_ttl_is_enforced_online_at_read_time(tmp_path, online):
    store = FeatureStore(write_config(tmp_path), home=tmp_path / "home", online=online)
    materialize_all(store, rows(("a", 0, 4, 40.0, "pro")))
    store.publish_online()
    fresh = store.online_features_one("a", ["visits", "plan"], now=day(10).to_pydatetime())
    stale = store.online_features_one("a", ["visits", "plan"], now=(day(10) + pd.Timedelta("1ms")).to_pydatetime())
    assert fresh == {"visits": 4, "plan": "pro"}
    assert stale == {"visits": None, "plan": "pro"}  # activity has a 10-day TTL, account none
    assert store.online_features_one("nobody", ["visits", "plan"]) == {"visits": None, "plan": None}


def test_a_new_publication_replaces_the_previous_one_whole(tmp_path, online):
    store = FeatureStore(write_config(tmp_path), home=tmp_path / "home", online=online)
    crowd = [(f"u{i}", 1, i % 5, 10.0 + i, "free") for i in range(40)]
    materialize_all(store, rows(("a", 1, 1, 10.0, "free"), *crowd))
    first = store.publish_online()
    assert first["activity"]["published"] and first["activity"]["entities"] == 41
    assert store.publish_online()["activity"]["published"] is False  # nothing new: left alone
    materialize_all(store, rows(("a", 2, 2, 10.0, "free"), *crowd))  # one entity changed
    assert store.publish_online()["activity"]["published"] is True
    read = store.get_online_features(["a", "u3"], ["visits"], now=day(3).to_pydatetime())
    assert read["visits"].tolist() == [2, 3]
    assert set(online.publications("shop")) == {"activity", "account"}


def test_open_online_store_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MLOPS_ONLINE_STORE", raising=False)
    assert isinstance(open_online_store(tmp_path), SQLiteOnlineStore)
    assert open_online_store(tmp_path).url == f"sqlite:///{tmp_path / 'feature_store' / 'online.db'}"
    monkeypatch.setenv("MLOPS_ONLINE_STORE", "redis://127.0.0.1:6379/0?prefix=abc:")
    redis_backend = open_online_store(tmp_path)
    assert isinstance(redis_backend, RedisOnlineStore) and redis_backend.prefix == "abc:"
    monkeypatch.setenv("MLOPS_ONLINE_STORE", "mysql://x")
    with pytest.raises(OnlineStoreError, match="give redis://host:port/db or sqlite:///path"):
        open_online_store(tmp_path)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of our own (append-only file, so a restart brings its data back), on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        require_service("redis-server binary", "not on PATH")
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "yes",
               "--appendfsync", "always", "--save", ""]

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port, socket_connect_timeout=0.2).ping()
                return process
            except redis.RedisError:
                time.sleep(0.05)
        process.kill()
        raise RuntimeError("redis-server did not start")

    state = {"process": start()}
    yield port, state, start
    state["process"].kill()
    state["process"].wait(5)


def test_a_redis_that_goes_away_mid_publication_leaves_the_served_values_as_they_were(tmp_path, own_redis):
    port, state, start = own_redis
    online = RedisOnlineStore(f"redis://127.0.0.1:{port}/0", prefix="t:")
    store = FeatureStore(write_config(tmp_path), home=tmp_path / "home", online=online)
    users = [f"u{i}" for i in range(3000)]
    base = rows(*[(u, 1, 1, 10.0, "free") for u in users])
    materialize_all(store, base)
    store.publish_online()
    moment = day(2).to_pydatetime()
    before = store.get_online_features(users[:5], FEATURES, now=moment)

    def kill_after_first_chunk(written: int) -> None:
        state["process"].kill()
        state["process"].wait(5)

    materialize_all(store, base.assign(ts=day(1.5), visits=2, spend=11.0))
    with pytest.raises(OnlineStoreError, match="Redis went away while publishing view 'account'.*previous publication"):
        store.publish_online(on_chunk=kill_after_first_chunk, chunk_rows=500)
    state["process"] = start()  # same data folder: what was written before the crash comes back
    reopened = FeatureStore(write_config(tmp_path), home=tmp_path / "home",
                            online=RedisOnlineStore(f"redis://127.0.0.1:{port}/0", prefix="t:"))
    after = reopened.get_online_features(users[:5], FEATURES, now=moment)
    pd.testing.assert_frame_equal(after, before)
    # The next publication succeeds and clears what the failed one left behind.
    reopened.publish_online()
    assert reopened.get_online_features(["u0"], ["visits", "spend"], now=moment).iloc[0].tolist() == ["u0", 2, 11.0]
    import redis

    client = redis.Redis(port=port)
    assert not client.smembers("t:{shop}:staging")
    assert len(list(client.scan_iter("t:{shop}:account:*"))) == 1


def test_a_request_with_only_an_entity_id_is_completed_and_inline_features_win(tmp_path):
    from mlops_assets.features.serving import EntityFeatures, FeatureLookupError, merge_request

    config = write_config(tmp_path)
    store = FeatureStore(config, home=tmp_path / "home", online=SQLiteOnlineStore(tmp_path / "online.db"))
    yesterday = (pd.Timestamp.now() - day(0)).days - 1  # fresh under activity's 10-day TTL
    materialize_all(store, rows(("a", yesterday, 4, 40.0, "pro")))
    store.publish_online()
    lookup = EntityFeatures(config, store)
    by_id = lookup.complete({}, "a")
    assert by_id.values == {"visits": 4, "spend": 40.0, "plan": "pro"} and sorted(by_id.fetched) == ["plan", "spend", "visits"]
    mixed = lookup.complete({"visits": 9, "spend": None}, "a", sent={"visits", "spend"})
    assert mixed.values == {"visits": 9, "spend": None, "plan": "pro"} and mixed.fetched == ["plan"]
    assert lookup.complete({"visits": 1, "spend": 2.0, "plan": "free"}, None).fetched == []
    with pytest.raises(FeatureLookupError, match=r"'stranger': no value for \['visits', 'plan'\].*no features for it"):
        lookup.complete({"spend": 1.0}, "stranger")
    with pytest.raises(FeatureLookupError, match="names no entity_id"):
        lookup.complete({"visits": 1}, None)
    assert merge_request({"a": None, "b": 2}, None, {"a": 1, "b": 3, "c": 4}) == {"a": None, "b": 2, "c": 4}


def test_a_batch_is_completed_in_one_read_and_each_record_that_cannot_be_is_named(tmp_path, online):
    from mlops_assets.features.serving import EntityFeatures, FeatureLookupError

    config = write_config(tmp_path)
    store = FeatureStore(config, home=tmp_path / "home", online=online)
    yesterday = (pd.Timestamp.now() - day(0)).days - 1
    materialize_all(store, rows(("a", yesterday, 4, 40.0, "pro"), ("old", 0, 2, 5.0, "free")))
    store.publish_online()
    reads = []
    original = online.read_many
    online.read_many = lambda *args: reads.append(args[2]) or original(*args)
    outcomes = EntityFeatures(config, store).complete_many(
        [{}, {"visits": 1, "spend": 2.0, "plan": "free"}, {}, {"spend": 3.0}, {"visits": 5, "plan": "team"}, {}],
        ["a", None, "nobody", "old", None, "old"])
    assert reads == [["a", "nobody", "old", "old"]]  # one read for every record that lacks something
    assert outcomes[0].values == {"visits": 4, "spend": 40.0, "plan": "pro"}
    assert outcomes[1].values == {"visits": 1, "spend": 2.0, "plan": "free"} and outcomes[1].fetched == []
    assert isinstance(outcomes[2], FeatureLookupError) and outcomes[2].reason == "unknown_entity"
    assert outcomes[2].missing == ["visits", "plan"]
    assert isinstance(outcomes[3], FeatureLookupError) and outcomes[3].reason == "missing_values"
    assert outcomes[3].missing == ["visits"]  # activity's 10-day TTL has passed; account has none
    assert outcomes[4].values == {"visits": 5, "plan": "team", "spend": None}  # nullable, no entity id: scored as null
    assert isinstance(outcomes[5], FeatureLookupError) and "older than their view's TTL" in str(outcomes[5])
