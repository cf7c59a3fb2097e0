"""The audit log: a durable record of every non-safe verdict and every action taken.

SQLite in WAL mode, one row per event, committed before the guard returns its
decision, so a crash or SIGKILL right after a crisis turn loses nothing already
decided. The message text is stored only when the policy says so
(``audit.include_text``); otherwise a keyed hash (HMAC-SHA256) lets an operator see
that two events concern the same text without keeping it. The key comes from
$GUARDRAIL_AUDIT_KEY or a key file created next to the database (mode 0600).

    guardrail report --db audit.sqlite3 --period month --csv counts.csv

Several workers or replicas write one log in PostgreSQL instead (guardrail/audit_postgres.py:
``audit.url`` in the policy or $GUARDRAIL_AUDIT_URL), same table, same report:

    guardrail report --db postgresql://guardrail@db.internal/guardrail
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("guardrail")

AUDIT_DB_ENV = "GUARDRAIL_AUDIT_DB"
AUDIT_URL_ENV = "GUARDRAIL_AUDIT_URL"
AUDIT_KEY_ENV = "GUARDRAIL_AUDIT_KEY"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL,              -- seconds since the epoch, UTC
    conversation_id TEXT NOT NULL,
    role TEXT NOT NULL,
    level TEXT NOT NULL,
    categories TEXT NOT NULL,        -- JSON list
    scores TEXT NOT NULL,            -- JSON {level: p}
    category_scores TEXT NOT NULL,   -- JSON {category: p}
    action TEXT NOT NULL,
    rule TEXT NOT NULL,
    sticky INTEGER NOT NULL,
    backstop INTEGER NOT NULL,
    notified INTEGER NOT NULL,
    policy_name TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    country TEXT,
    text_hash TEXT,                  -- HMAC-SHA256 of the text (when the text is not kept)
    text TEXT                        -- only when the policy enables it
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

COLUMNS = ["event_id", "time", "conversation_id", "role", "level", "categories", "scores", "category_scores",
           "action", "rule", "sticky", "backstop", "notified", "policy_name", "policy_version", "country",
           "text_hash", "text"]


def default_path() -> Path:
    """$GUARDRAIL_AUDIT_DB, else the user's state folder (XDG)."""
    if os.environ.get(AUDIT_DB_ENV):
        return Path(os.environ[AUDIT_DB_ENV]).expanduser()
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "guardrail" / "audit.sqlite3"


class AuditError(RuntimeError):
    """The audit store cannot be opened or read; the message says which file and why."""


def is_database_url(target: str | os.PathLike) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def open_audit(target: str | os.PathLike, include_text: bool = False, synchronous: str = "FULL",
               retention_days: float | None = None):
    """The audit log at ``target``: a PostgreSQL URL or an SQLite file path."""
    if is_database_url(target):
        from .audit_postgres import PostgresAuditLog

        return PostgresAuditLog(str(target), include_text=include_text, retention_days=retention_days)
    return AuditLog(target, include_text=include_text, synchronous=synchronous, retention_days=retention_days)


def _key_for(path: Path) -> bytes:
    """The HMAC key: $GUARDRAIL_AUDIT_KEY, else a random key kept in ``<db>.key`` (0600)."""
    if os.environ.get(AUDIT_KEY_ENV):
        return os.environ[AUDIT_KEY_ENV].encode()
    key_file = path.with_name(path.name + ".key")
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return key_file.read_text().strip().encode()


class AuditLog:
    """Append-only event store. Thread-safe; one connection guarded by a lock."""

    PRUNE_EVERY = 500  # records between two retention passes (plus one at open)

    def __init__(self, path: str | os.PathLike, include_text: bool = False, synchronous: str = "FULL",
                 retention_days: float | None = None):
        self.path = Path(path).expanduser()
        self.include_text = include_text
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._since_prune = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._key = None if include_text else _key_for(self.path)
            self.prune()
        except (sqlite3.Error, OSError) as e:
            raise AuditError(f"cannot open the audit log {self.path}: {e}. Set `audit.path` in the policy "
                             f"or ${AUDIT_DB_ENV} to a writable file, or `audit.enabled: false`.") from None

    def text_hash(self, text: str) -> str:
        return hmac.new(self._key or b"", text.encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def record(self, event: dict[str, Any], text: str | None = None) -> None:
        """Write one event and commit it (durable when this returns)."""
        row = dict(event)
        row["text"] = text if self.include_text else None
        row["text_hash"] = None if self.include_text or text is None else self.text_hash(text)
        for k in ("categories", "scores", "category_scores"):
            row[k] = json.dumps(row.get(k) or ({} if k != "categories" else []))
        for k in ("sticky", "backstop", "notified"):
            row[k] = int(bool(row.get(k)))
        values = [row.get(c) for c in COLUMNS]
        with self._lock:
            self._db.execute(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                             values)
            self._since_prune += 1
        if self.retention_days and self._since_prune >= self.PRUNE_EVERY:
            self.prune()

    def prune(self, now: float | None = None) -> int:
        """Delete events older than ``retention_days`` (policy ``audit.retention_days``); returns how many."""
        if not self.retention_days:
            return 0
        cutoff = (now if now is not None else datetime.now(timezone.utc).timestamp()) - self.retention_days * 86400
        with self._lock:
            self._since_prune = 0
            return self._db.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --- reading and reporting --------------------------------------------------------------

def read_events(path: str | os.PathLike, since: float | None = None, until: float | None = None) -> Iterator[dict]:
    """Events in time order, JSON fields decoded. Opens the store read-only; ``path`` may be
    a PostgreSQL URL."""
    if is_database_url(path):
        from .audit_postgres import read_events as read_postgres

        yield from read_postgres(str(path), since, until)
        return
    path = Path(path).expanduser()
    if not path.is_file():
        raise AuditError(f"audit log not found: {path} (the guard creates it at the first non-safe turn; "
                         f"see `audit.path` in the policy or ${AUDIT_DB_ENV})")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        sql, args = "SELECT * FROM events WHERE time >= ? AND time < ? ORDER BY time, id", \
            (since if since is not None else float("-inf"), until if until is not None else float("inf"))
        for r in db.execute(sql, args):
            d = dict(r)
            for k in ("categories", "scores", "category_scores"):
                d[k] = json.loads(d[k])
            yield d
        db.close()
    except sqlite3.DatabaseError as e:
        raise AuditError(f"{path} is not a readable audit log: {e}") from None


_PERIODS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m", "quarter": None, "year": "%Y"}


def period_of(t: float, period: str) -> str:
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    if period == "quarter":
        return f"{dt.year}-Q{(dt.month - 1) // 3 + 1}"
    if period == "all":
        return "all"
    return dt.strftime(_PERIODS[period])


@dataclass(frozen=True)
class CountRow:
    period: str
    role: str
    level: str
    category: str
    action: str
    count: int


def counts(events: Iterable[dict], period: str = "month") -> list[CountRow]:
    """Events per (period, role, level, category, action). An event with several categories
    counts once under each; one with none counts under ``-``."""
    if period not in (*_PERIODS, "all"):
        raise ValueError(f"unknown period {period!r}; use one of {', '.join([*_PERIODS, 'all'])}")
    c: Counter = Counter()
    for e in events:
        for cat in e["categories"] or ["-"]:
            c[(period_of(e["time"], period), e["role"], e["level"], cat, e["action"])] += 1
    return [CountRow(*k, n) for k, n in sorted(c.items())]


def write_counts_csv(rows: list[CountRow], out) -> None:
    w = csv.writer(out)
    w.writerow(["period", "role", "level", "category", "action", "count"])
    for r in rows:
        w.writerow([r.period, r.role, r.level, r.category, r.action, r.count])


def write_events_csv(events: Iterable[dict], out) -> None:
    w = csv.writer(out)
    cols = ["time_utc", *[c for c in COLUMNS if c != "time"]]
    w.writerow(cols)
    for e in events:
        stamp = datetime.fromtimestamp(e["time"], tz=timezone.utc).isoformat(timespec="seconds")
        w.writerow([stamp, *[json.dumps(e[c]) if isinstance(e[c], (list, dict)) else e[c]
                             for c in COLUMNS if c != "time"]])


def parse_date(value: str) -> float:
    """``YYYY-MM-DD`` (UTC midnight) or an ISO timestamp, as epoch seconds."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()

