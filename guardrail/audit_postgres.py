"""The audit log in PostgreSQL, for several workers or replicas writing one record.

The same table and columns as the SQLite log (guardrail/audit.py), so ``guardrail report``
reads either. Each event is committed in its own transaction before the guard returns its
decision (PostgreSQL's default ``synchronous_commit``: durable once the commit returns), so a
worker killed with SIGKILL loses nothing it already decided.

The HMAC key that hashes texts must be the same on every replica, or the same text would
hash differently: $GUARDRAIL_AUDIT_KEY where set, else a random key stored once in the
database's ``meta`` table (whoever can read the database can then test guesses of a text
against its hash: set $GUARDRAIL_AUDIT_KEY to keep the key elsewhere).

    audit:
      url: postgresql://guardrail@db.internal/guardrail    # or $GUARDRAIL_AUDIT_URL
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import urlsplit

from .audit import AUDIT_KEY_ENV, COLUMNS, SCHEMA_VERSION, AuditError

log = logging.getLogger("guardrail")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        time DOUBLE PRECISION NOT NULL,
        conversation_id TEXT NOT NULL,
        role TEXT NOT NULL,
        level TEXT NOT NULL,
        categories TEXT NOT NULL,
        scores TEXT NOT NULL,
        category_scores TEXT NOT NULL,
        action TEXT NOT NULL,
        rule TEXT NOT NULL,
        sticky INTEGER NOT NULL,
        backstop INTEGER NOT NULL,
        notified INTEGER NOT NULL,
        policy_name TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        country TEXT,
        text_hash TEXT,
        text TEXT)""",
    "CREATE INDEX IF NOT EXISTS events_time ON events(time)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]


def describe(url: str) -> str:
    """The database without its password, for messages and logs."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise AuditError("an audit log in PostgreSQL needs psycopg: "
                         "pip install 'emotional-safety-guardrail[replicas]'") from None
    return psycopg


class PostgresAuditLog:
    """Append-only event store in PostgreSQL; thread-safe (one connection, one lock), and it
    reconnects once when the connection was lost (a database restart)."""

    PRUNE_EVERY = 500

    def __init__(self, url: str, include_text: bool = False, retention_days: float | None = None,
                 connect_timeout_s: int = 5):
        self.url, self.path = url, describe(url)   # ``path``: what messages name, as for SQLite
        self.include_text = include_text
        self.retention_days = retention_days
        self._timeout = connect_timeout_s
        self._lock = threading.Lock()
        self._since_prune = 0
        self._psycopg = _psycopg()
        try:
            self._db = self._connect()
            with self._db.transaction():
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute("INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
                                 (str(SCHEMA_VERSION),))
            self._key = None if include_text else self._shared_key()
            self.prune()
        except self._psycopg.Error as e:
            raise AuditError(f"cannot open the audit log {self.path}: {type(e).__name__}: {e}. Check `audit.url` "
                             f"in the policy or $GUARDRAIL_AUDIT_URL, or set `audit.enabled: false`.") from None

    def _connect(self):
        return self._psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)

    def _shared_key(self) -> bytes:
        if os.environ.get(AUDIT_KEY_ENV):
            return os.environ[AUDIT_KEY_ENV].encode()
        self._db.execute("INSERT INTO meta VALUES ('hmac_key', %s) ON CONFLICT DO NOTHING", (secrets.token_hex(32),))
        return self._db.execute("SELECT value FROM meta WHERE key = 'hmac_key'").fetchone()[0].encode()

    def text_hash(self, text: str) -> str:
        return hmac.new(self._key or b"", text.encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def _execute(self, sql: str, values=()):
        """One statement, committed; on a lost connection, reconnect and try once more."""
        with self._lock:
            try:
                return self._db.execute(sql, values)
            except self._psycopg.OperationalError:
                if not self._db.closed and not self._db.broken:
                    raise
                log.warning("audit log %s: connection lost; reconnecting", self.path)
                self._db = self._connect()
                return self._db.execute(sql, values)

    def record(self, event: dict[str, Any], text: str | None = None) -> None:
        """Write one event and commit it (durable when this returns)."""
        row = dict(event)
        row["text"] = text if self.include_text else None
        row["text_hash"] = None if self.include_text or text is None else self.text_hash(text)
        for k in ("categories", "scores", "category_scores"):
            row[k] = json.dumps(row.get(k) or ({} if k != "categories" else []))
        for k in ("sticky", "backstop", "notified"):
            row[k] = int(bool(row.get(k)))
        self._execute(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                      [row.get(c) for c in COLUMNS])
        self._since_prune += 1
        if self.retention_days and self._since_prune >= self.PRUNE_EVERY:
            self.prune()

    def prune(self, now: float | None = None) -> int:
        if not self.retention_days:
            return 0
        cutoff = (now if now is not None else datetime.now(timezone.utc).timestamp()) - self.retention_days * 86400
        self._since_prune = 0
        return self._execute("DELETE FROM events WHERE time < %s", (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_events(url: str, since: float | None = None, until: float | None = None) -> Iterator[dict]:
    """Events in time order, JSON fields decoded (as guardrail.audit.read_events)."""
    psycopg = _psycopg()
    try:
        with psycopg.connect(url, connect_timeout=5) as db:
            cur = db.cursor(row_factory=psycopg.rows.dict_row)
            cur.execute("SELECT * FROM events WHERE time >= %s AND time < %s ORDER BY time, id",
                        (since if since is not None else float("-inf"), until if until is not None else float("inf")))
            for d in cur:
                for k in ("categories", "scores", "category_scores"):
                    d[k] = json.loads(d[k])
                yield d
    except psycopg.errors.UndefinedTable:
        raise AuditError(f"{describe(url)} holds no audit log yet (the guard creates it when it starts)") from None
    except psycopg.Error as e:
        raise AuditError(f"cannot read the audit log {describe(url)}: {type(e).__name__}: {e}") from None
