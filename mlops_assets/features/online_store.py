"""The online store: the latest value of every view's features per entity, for serving.

One small interface, two real implementations chosen by ``MLOPS_ONLINE_STORE``
(:func:`open_online_store`): SQLite under MLOPS_HOME by default, Redis for
production. Callers (the facade in :mod:`mlops_assets.features.store`) never branch
on the backend; TTLs and feature selection are applied above this layer, the same
for both.

A row is stored as one JSON array ``[event_time_us, value, ...]`` in the view's column
order, under its entity id. A publication is atomic: the new rows go to a table (or
Redis hash) of their own and the view's pointer moves to it only once every row is
there, so a reader sees the previous publication or the new one, never a mix, and a
failed publication (a Redis that went away, a disk full) leaves what was served as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlops_assets.errors import PlatformError

ONLINE_STORE_VARIABLE = "MLOPS_ONLINE_STORE"


class OnlineStoreError(PlatformError, RuntimeError):
    """The online store cannot be reached or refused a publication; what was served before is unchanged."""


@dataclass(frozen=True)
class Publication:
    """What a view's pointer currently names: which rows, of which view and table version."""

    view: str
    key: str
    columns: list[str]
    view_version: str
    table_version: int
    entities: int
    published_at: str
    ttl_seconds: float | None = None


class OnlineStore(ABC):
    """Per (dataset, view): an atomic publication of rows keyed by entity id, and fast reads of them."""

    url: str
    #: A read is a local memory access, not a network round trip: a caller may read on its event loop.
    reads_locally: bool = False

    @abstractmethod
    def publish(self, dataset: str, view: str, columns: list[str], rows: Iterable[list[tuple[str, str]]],
                view_version: str, table_version: int, ttl_seconds: float | None = None, on_chunk=None) -> Publication:
        """Store ``rows`` (chunks of (entity id, JSON payload)) and switch the view's pointer to them atomically."""

    @abstractmethod
    def publications(self, dataset: str) -> dict[str, Publication]:
        """The current publication of each view of ``dataset``."""

    @abstractmethod
    def read(self, dataset: str, views: list[str], entity_id: str) -> list[tuple[Publication, str | None] | None]:
        """For each view: (its current publication, the entity's payload or None); None if never published."""

    def read_many(self, dataset: str, views: list[str], entity_ids: list[str]) -> list[list[tuple[Publication, str | None] | None]]:
        return [self.read(dataset, views, e) for e in entity_ids]

    @abstractmethod
    def remove_dataset(self, dataset: str) -> None:
        """Delete every publication of a dataset (tests, `features` reset)."""

    def close(self) -> None:  # noqa: B027 - optional
        pass


def _publication(data: dict) -> Publication:
    return Publication(**data)


# SQLite --------------------------------------------------------------------------------------


class SQLiteOnlineStore(OnlineStore):
    """One table per publication, ``WITHOUT ROWID`` keyed by entity id; a pointer table names the current one.

    Each thread reads through a connection of its own, kept open, read-only and memory-mapped
    (a page is a memory access, not a ``pread``), with the pointers and the statement for
    each (dataset, views) prepared once: a read is one indexed statement (see ``read``).
    """

    #: Bytes of the database file each reader maps (address space, not memory: pages are shared with the OS cache).
    MMAP_BYTES = 1 << 30
    reads_locally = True

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("""CREATE TABLE IF NOT EXISTS publications (dataset TEXT, view TEXT, body TEXT,
                           PRIMARY KEY (dataset, view)) WITHOUT ROWID""")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _reader(self, reload: bool = False) -> tuple[sqlite3.Connection, dict]:
        """This thread's connection and its pointer cache, reloaded when asked."""
        local = self._local
        if getattr(local, "con", None) is None:
            local.con, local.pointers, local.queries = self._connect(), None, {}
            local.con.execute(f"PRAGMA mmap_size={self.MMAP_BYTES}")
            local.con.execute("PRAGMA query_only=1")
        if reload or local.pointers is None:
            local.pointers, local.queries = {}, {}
            for dataset, view, body in local.con.execute("SELECT dataset, view, body FROM publications"):
                local.pointers[(dataset, view)] = _publication(json.loads(body))
        return local.con, local.pointers

    def publish(self, dataset, view, columns, rows, view_version, table_version, ttl_seconds=None, on_chunk=None) -> Publication:
        key = f"online__{dataset}__{view}__{uuid.uuid4().hex[:12]}"
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(f'CREATE TABLE "{key}" (entity TEXT PRIMARY KEY, payload TEXT) WITHOUT ROWID')
            count = 0
            for chunk in rows:
                con.executemany(f'INSERT OR REPLACE INTO "{key}" VALUES (?, ?)', chunk)
                count += len(chunk)
                if on_chunk:
                    on_chunk(count)
            previous = con.execute("SELECT body FROM publications WHERE dataset = ? AND view = ?", (dataset, view)).fetchone()
            publication = Publication(view, key, list(columns), view_version, table_version, count, _now(), ttl_seconds)
            con.execute("INSERT OR REPLACE INTO publications VALUES (?, ?, ?)",
                        (dataset, view, json.dumps(publication.__dict__)))
            if previous:
                con.execute(f'DROP TABLE IF EXISTS "{json.loads(previous[0])["key"]}"')
            con.execute("COMMIT")
        except BaseException as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise OnlineStoreError(f"online store {self.url}: publishing view {view!r} failed ({exc}); "
                                       "the previous publication is still served") from exc
            raise
        finally:
            con.close()
        return publication

    def publications(self, dataset):
        _, pointers = self._reader(reload=True)
        return {view: p for (ds, view), p in pointers.items() if ds == dataset}

    def read(self, dataset, views, entity_id):
        """One statement on the hot path; cached pointers are trusted until they fail.

        A publication drops the table it replaces in the same transaction, so a stale
        pointer fails with "no such table": then the pointers are reloaded and the read
        repeated. A view never seen is looked up again (it may have been published since).
        """
        local = self._local
        prepared = local.queries.get((dataset, tuple(views))) if getattr(local, "con", None) is not None else None
        if prepared is None:
            prepared = self._prepare(dataset, views, reload=False)
        try:
            return self._read(local.con, prepared, entity_id)
        except sqlite3.OperationalError:
            return self._read(local.con, self._prepare(dataset, views, reload=True), entity_id)

    def _prepare(self, dataset, views, reload):
        """(statement reading every published view, each view's publication or None), kept when all are published."""
        con, pointers = self._reader(reload)
        if not reload and any((dataset, v) not in pointers for v in views):
            con, pointers = self._reader(reload=True)
        found = [pointers.get((dataset, v)) for v in views]
        live = [(i, p) for i, p in enumerate(found) if p is not None]
        query = " UNION ALL ".join(f'SELECT {i}, payload FROM "{p.key}" WHERE entity = ?1' for i, p in live)
        prepared = (query, found, [None if p is None else (p, None) for p in found])
        if len(live) == len(views):
            self._local.queries[(dataset, tuple(views))] = prepared
        return prepared

    @staticmethod
    def _read(con, prepared, entity_id):
        query, found, empty = prepared
        out = list(empty)  # each view's publication with no payload: the entity is unknown there
        if query:
            for i, payload in con.execute(query, (entity_id,)):
                out[i] = (found[i], payload)
        return out

    def remove_dataset(self, dataset):
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            for (body,) in con.execute("SELECT body FROM publications WHERE dataset = ?", (dataset,)).fetchall():
                con.execute(f'DROP TABLE IF EXISTS "{json.loads(body)["key"]}"')
            con.execute("DELETE FROM publications WHERE dataset = ?", (dataset,))
            con.execute("COMMIT")
        finally:
            con.close()

    def close(self):
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


# Redis ---------------------------------------------------------------------------------------

# One round trip for any number of views: follow each view's pointer and read the entity's field.
_READ_SCRIPT = """
local out = {}
for i = 2, #ARGV do
  local key = redis.call('HGET', KEYS[1], ARGV[i])
  if key then
    out[#out + 1] = key
    out[#out + 1] = redis.call('HGET', key, ARGV[1]) or ''
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
"""


class RedisOnlineStore(OnlineStore):
    """A Redis hash per publication (entity -> payload); ``<prefix><dataset>:pointer`` names the current ones.

    The pointer moves in one ``HSET`` after every row is written; the replaced hash is
    dropped with ``UNLINK`` (freed in the background). Keys are prefixed (``MLOPS_ONLINE_PREFIX``
    or the URL's ``?prefix=``) so several platforms and test runs share one server.
    """

    def __init__(self, url: str, prefix: str = "mlops:", chunk_rows: int = 5_000):
        import redis

        self.url = url
        self.prefix = prefix
        self.chunk_rows = chunk_rows
        self._redis = redis
        try:
            self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
            self._read = self.client.register_script(_READ_SCRIPT)
        except (redis.RedisError, ValueError) as exc:
            raise OnlineStoreError(f"online store {url}: {exc}") from exc
        self._meta: dict[bytes, Publication] = {}

    def _pointer(self, dataset: str) -> str:
        return f"{self.prefix}{{{dataset}}}:pointer"

    def _meta_key(self, dataset: str) -> str:
        return f"{self.prefix}{{{dataset}}}:publications"

    def _failed(self, exc: Exception, doing: str) -> OnlineStoreError:
        return OnlineStoreError(f"online store {self.url}: Redis went away while {doing} ({exc}); "
                                "the previous publication is still what is served")

    def publish(self, dataset, view, columns, rows, view_version, table_version, ttl_seconds=None, on_chunk=None) -> Publication:
        redis = self._redis
        key = f"{self.prefix}{{{dataset}}}:{view}:{uuid.uuid4().hex[:12]}"
        staging = f"{self.prefix}{{{dataset}}}:staging"
        try:
            # Leftovers of publications that failed half-way are never pointed at: drop them now.
            current = {v.decode() for v in self.client.hvals(self._pointer(dataset))}
            stale = [k.decode() for k in self.client.smembers(staging) if k.decode() not in current]
            if stale:
                self.client.unlink(*stale)
                self.client.srem(staging, *stale)
            self.client.sadd(staging, key)
            count = 0
            for chunk in rows:
                pipe = self.client.pipeline(transaction=False)
                for start in range(0, len(chunk), self.chunk_rows):
                    part = chunk[start:start + self.chunk_rows]
                    pipe.hset(key, mapping=dict(part))
                pipe.execute()
                count += len(chunk)
                if on_chunk:
                    on_chunk(count)
            publication = Publication(view, key, list(columns), view_version, table_version, count, _now(), ttl_seconds)
            previous = self.client.hget(self._pointer(dataset), view)
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self._meta_key(dataset), key, json.dumps(publication.__dict__))
                pipe.hset(self._pointer(dataset), view, key)
                pipe.srem(staging, key)
                pipe.execute()
            if previous:
                self.client.unlink(previous)
                self.client.hdel(self._meta_key(dataset), previous)
        except redis.RedisError as exc:
            raise self._failed(exc, f"publishing view {view!r}") from exc
        return publication

    def publications(self, dataset):
        try:
            pointers = self.client.hgetall(self._pointer(dataset))
            metas = self.client.hgetall(self._meta_key(dataset))
        except self._redis.RedisError as exc:
            raise self._failed(exc, "reading the publications") from exc
        return {v.decode(): _publication(json.loads(metas[k])) for v, k in pointers.items() if k in metas}

    def _publication_of(self, dataset: str, key: bytes) -> Publication:
        meta = self._meta.get(key)
        if meta is None:
            body = self.client.hget(self._meta_key(dataset), key)
            meta = _publication(json.loads(body))
            self._meta[key] = meta
        return meta

    def read(self, dataset, views, entity_id):
        try:
            reply = self._read(keys=[self._pointer(dataset)], args=[str(entity_id), *views])
        except self._redis.RedisError as exc:
            raise self._failed(exc, "reading features") from exc
        out: list = []
        for i in range(0, len(reply), 2):
            key, payload = reply[i], reply[i + 1]
            if not key:
                out.append(None)
                continue
            out.append((self._publication_of(dataset, key), payload.decode() if payload else None))
        return out

    def read_many(self, dataset, views, entity_ids):
        try:
            pipe = self.client.pipeline(transaction=False)
            for entity in entity_ids:
                self._read(keys=[self._pointer(dataset)], args=[str(entity), *views], client=pipe)
            replies = pipe.execute()
        except self._redis.RedisError as exc:
            raise self._failed(exc, "reading features") from exc
        results = []
        for reply in replies:
            row: list = []
            for i in range(0, len(reply), 2):
                key, payload = reply[i], reply[i + 1]
                row.append(None if not key else (self._publication_of(dataset, key), payload.decode() if payload else None))
            results.append(row)
        return results

    def remove_dataset(self, dataset):
        keys = list(self.client.scan_iter(match=f"{self.prefix}{{{dataset}}}:*", count=1000))
        if keys:
            self.client.unlink(*keys)
        self._meta.clear()

    def close(self):
        self.client.close()


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def open_online_store(home: Path, url: str | None = None) -> OnlineStore:
    """``MLOPS_ONLINE_STORE`` (or ``url``): ``redis://host:port/db[?prefix=...]``, or a SQLite path; default
    ``$MLOPS_HOME/feature_store/online.db``."""
    url = url if url is not None else os.environ.get(ONLINE_STORE_VARIABLE, "")
    if url.startswith(("redis://", "rediss://", "unix://")):
        from urllib.parse import parse_qs, urlsplit, urlunsplit

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        prefix = query.pop("prefix", [os.environ.get("MLOPS_ONLINE_PREFIX", "mlops:")])[0]
        rest = "&".join(f"{k}={v[0]}" for k, v in query.items())
        return RedisOnlineStore(urlunsplit(parts._replace(query=rest)), prefix=prefix)
    if url.startswith("sqlite:///"):
        return SQLiteOnlineStore(Path(url.removeprefix("sqlite:///")))
    if url:
        raise OnlineStoreError(f"{ONLINE_STORE_VARIABLE}={url!r}: give redis://host:port/db or sqlite:///path")
    return SQLiteOnlineStore(home / "feature_store" / "online.db")
