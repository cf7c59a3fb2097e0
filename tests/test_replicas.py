"""Several workers, one conversation: shared state in a real Redis, one audit log in a real
PostgreSQL (both started on loopback by tests/servers.py). The judge is the scripted stub:
these tests check the state and the audit, not classification."""
from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from replica_worker import CRISIS, SCRIPT
from stub import ScriptedClassifier

from guardrail import Guard
from guardrail.audit import counts, read_events
from guardrail.conversation import ConversationState, open_store
from guardrail.policy import load_policy

WORKER = Path(__file__).with_name("replica_worker.py")
KIDDING = "just kidding lol"


class Worker:
    """A worker process speaking JSON lines (tests/replica_worker.py)."""

    def __init__(self, state: str, audit: str):
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "--state", state, "--audit", audit],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert "ready" in json.loads(self.proc.stdout.readline())

    def turn(self, cid: str, text: str, role: str = "user") -> dict:
        self.proc.stdin.write(json.dumps({"id": cid, "text": text, "role": role}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"worker {self.proc.pid} died (exit {self.proc.poll()})"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(20)


@pytest.fixture()
def audit_url(postgres_server):
    """A fresh database per test, so counts are this test's alone."""
    import psycopg

    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server.url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return postgres_server.url.rsplit("/", 1)[0] + "/" + name


def test_redis_store_round_trip_ttl_and_hashed_keys(redis_server):
    store = open_store(redis_server.url, context_turns=3, ttl_seconds=600)
    cid = f"user-{uuid.uuid4().hex}"

    def crisis(s: ConversationState):
        s.add_turn("user", "one")
        s.sticky_left, s.sticky_categories, s.pending = 2, ["suicide_self_harm"], ("check in", "after")
    store.update(cid, crisis)
    for text in ("two", "three", "four"):
        store.add_turn(cid, "user", text)
    s = store.load(cid)
    assert [t.text for t in s.context()] == ["two", "three", "four"]   # bounded to context_turns
    assert (s.sticky_left, s.sticky_categories, s.pending) == (2, ["suicide_self_harm"], ("check in", "after"))
    key = store.key(cid)
    assert 0 < store.client.ttl(key) <= 600
    assert cid not in key and not store.client.keys(f"*{cid}*")          # the operator's id is not written
    store.forget(cid)
    assert cid not in store and store.load(cid).context() == []


def test_racing_updates_lose_nothing(redis_server):
    """Two stores (as two workers) update one conversation at once: every update lands."""
    stores = [open_store(redis_server.url, context_turns=6) for _ in range(2)]
    cid = uuid.uuid4().hex

    def bump(s: ConversationState):
        s.sticky_left += 1
    threads = [threading.Thread(target=lambda st=st: [st.update(cid, bump) for _ in range(100)]) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].load(cid).sticky_left == 200


def test_sticky_risk_across_two_workers_and_whole_audit(redis_server, audit_url):
    a, b = Worker(redis_server.url, audit_url), Worker(redis_server.url, audit_url)
    try:
        cid = uuid.uuid4().hex
        first = a.turn(cid, CRISIS)
        assert first["action"] == "replace" and first["categories"] == ["suicide_self_harm"]
        second = b.turn(cid, KIDDING)   # the other worker: only the shared state knows the crisis
        assert second["sticky"] and second["level"] == "borderline" and second["message"]
        assert "suicide_self_harm" in second["categories"]
        other = b.turn(uuid.uuid4().hex, KIDDING)   # another conversation is not affected
        assert other["action"] == "allow" and not other["sticky"] and not other["message"]
    finally:
        a.close(), b.close()
    events = list(read_events(audit_url))
    assert [(e["conversation_id"], e["level"], e["sticky"]) for e in events] == [(cid, "unsafe", 0), (cid, "borderline", 1)]
    rows = counts(events, "all")
    assert sum(r.count for r in rows if r.category == "suicide_self_harm") == 2
    assert all(e["text"] is None and len(e["text_hash"]) == 64 for e in events)


def test_worker_killed_mid_conversation_loses_nothing_committed(redis_server, audit_url):
    a, b = Worker(redis_server.url, audit_url), Worker(redis_server.url, audit_url)
    try:
        cid = uuid.uuid4().hex
        assert a.turn(cid, CRISIS)["action"] == "replace"
        assert a.turn(cid, KIDDING)["sticky"]
        a.proc.send_signal(signal.SIGKILL)   # no shutdown, no flush: what was decided must be there
        a.proc.wait(10)
        after = b.turn(cid, "ok whatever")   # the conversation goes on on the other worker
        assert after["sticky"] and after["level"] == "borderline"
    finally:
        a.close(), b.close()
    events = list(read_events(audit_url))
    assert [e["sticky"] for e in events if e["conversation_id"] == cid] == [0, 1, 1]


def test_same_text_hashes_alike_on_every_worker(audit_url):
    """Replicas share one HMAC key (kept in the database), so one text hashes alike everywhere."""
    from guardrail.audit import open_audit

    logs = [open_audit(audit_url) for _ in range(2)]
    assert logs[0].text_hash("same words") == logs[1].text_hash("same words")
    for log_ in logs:
        log_.close()


def test_unreachable_redis_gives_a_decision_and_logs_no_text(caplog):
    from servers import free_port

    guard = Guard(ScriptedClassifier(script=SCRIPT), load_policy(), audit=False,
                  state=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.ERROR, logger="guardrail"):
        crisis = guard.check_input(CRISIS, conversation_id="c1")
        benign = guard.check_input("what a lovely sunny day", conversation_id="c1")
    assert crisis.action == "replace"                     # the judge still decides
    # failure mode closed (the default for user turns): held at borderline, as sticky risk would
    # be; with no category known, the policy's borderline rule applies (the default one passes it)
    assert benign.level == "borderline" and benign.sticky and benign.action == "allow"
    assert any("conversation state unavailable" in n for n in benign.notes)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "conversation state unavailable" in logged and "sunny" not in logged and "end my life" not in logged

    open_policy = load_policy({**_default_dict(), "failure_mode": {"user": "open", "assistant": "open"}})
    guard = Guard(ScriptedClassifier(script=SCRIPT), open_policy, audit=False, state=f"redis://127.0.0.1:{free_port()}/0")
    assert guard.check_input("what a lovely sunny day", conversation_id="c1").level == "safe"


def test_state_chosen_by_policy_env_and_argument(redis_server, monkeypatch):
    from guardrail.redis_state import RedisConversationStore
    from guardrail.conversation import ConversationStore

    stub = ScriptedClassifier()
    with_state = load_policy({**_default_dict(), "state": redis_server.url})
    assert isinstance(Guard(stub, with_state, audit=False).store, RedisConversationStore)
    assert isinstance(Guard(stub, with_state, audit=False, state="memory").store, ConversationStore)
    monkeypatch.setenv("GUARDRAIL_STATE", redis_server.url)
    assert isinstance(Guard(stub, load_policy(), audit=False).store, RedisConversationStore)
    with pytest.raises(ValueError, match="state 'mysql://x'"):
        Guard(stub, load_policy(), audit=False, state="mysql://x")


def test_policy_rejects_a_bad_state_or_audit_url():
    from guardrail.policy import PolicyError

    with pytest.raises(PolicyError, match="state"):
        load_policy({**_default_dict(), "state": "memcached://x"})
    with pytest.raises(PolicyError, match="postgresql://"):
        load_policy({**_default_dict(), "audit": {"url": "mysql://x/y"}})


def test_report_reads_postgres(audit_url, capsys):
    from guardrail.cli import main

    guard = Guard(ScriptedClassifier(script=SCRIPT), load_policy(), state="memory",
                  audit=__import__("guardrail.audit", fromlist=["open_audit"]).open_audit(audit_url))
    guard.check_input(CRISIS, conversation_id="r1")
    assert main(["report", "--db", audit_url, "--period", "all"]) == 0
    out = capsys.readouterr().out
    assert "1 events" in out and "suicide_self_harm" in out and "replace" in out


def test_unreadable_postgres_is_a_clear_error():
    from servers import free_port

    from guardrail.audit import AuditError, open_audit

    url = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/none"
    with pytest.raises(AuditError, match="cannot open the audit log postgresql://nobody@127.0.0.1") as e:
        open_audit(url)
    assert "secret" not in str(e.value)


def _default_dict() -> dict:
    import yaml

    from guardrail.policy import DEFAULT_POLICY

    d = yaml.safe_load(DEFAULT_POLICY.read_text())
    d["resources"] = str(DEFAULT_POLICY.parent / d.get("resources", "resources.yaml"))
    return d


def test_audit_reconnects_after_the_connection_is_lost(audit_url):
    """A database restart (here: its backend terminated) costs one reconnect, not the event."""
    import psycopg

    from guardrail.audit import open_audit

    log_ = open_audit(audit_url)
    event = {"event_id": uuid.uuid4().hex, "time": 1.0, "conversation_id": "x", "role": "user", "level": "unsafe",
             "categories": ["suicide_self_harm"], "scores": {}, "category_scores": {}, "action": "replace",
             "rule": "rules[0]", "sticky": False, "backstop": False, "notified": False, "policy_name": "default",
             "policy_version": "1.0", "country": "US"}
    log_.record(event, "first")
    with psycopg.connect(audit_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    log_.record({**event, "event_id": uuid.uuid4().hex, "time": 2.0}, "second")
    assert [e["time"] for e in read_events(audit_url)] == [1.0, 2.0]
    log_.close()
