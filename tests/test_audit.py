"""The audit log: every non-safe verdict and action is committed durably, text kept private."""
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from guardrail.policy import PolicyError

from guardrail import Guard
from guardrail.audit import AuditError, AuditLog, read_events
from guardrail.cli import main as cli_main
from guardrail.policy import load_policy

CRISIS = "I want to end my life tonight"


def _guard(clf, tmp_path, **audit):
    data = load_policy("default").policy.model_dump()
    data["audit"] = {"path": str(tmp_path / "audit.sqlite3"), **audit}
    return Guard(clf, load_policy(data), audit=None)


def test_crisis_turn_is_recorded_without_its_text(clf, tmp_path, monkeypatch):
    monkeypatch.delenv("GUARDRAIL_AUDIT_DB")
    g = _guard(clf, tmp_path)
    d = g.check_input(CRISIS, conversation_id="c1")
    g.check_input("what's a good pasta recipe?", conversation_id="c2")   # safe: not recorded
    events = list(read_events(tmp_path / "audit.sqlite3"))
    assert len(events) == 1
    e = events[0]
    assert (e["conversation_id"], e["role"], e["level"], e["action"]) == ("c1", "user", d.level, d.action)
    assert e["categories"] == d.categories and "suicide_self_harm" in e["categories"]
    assert e["policy_name"] == "default" and e["policy_version"] == g.policy.version
    assert e["text"] is None and len(e["text_hash"]) == 64
    raw = (tmp_path / "audit.sqlite3").read_bytes() + (tmp_path / "audit.sqlite3-wal").read_bytes()
    assert b"end my life" not in raw
    assert sqlite3.connect(tmp_path / "audit.sqlite3").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_text_same_hash_and_text_kept_only_when_the_policy_says(clf, tmp_path, monkeypatch):
    monkeypatch.delenv("GUARDRAIL_AUDIT_DB")
    g = _guard(clf, tmp_path)
    g.check_input(CRISIS, conversation_id="a")
    g.check_input(CRISIS, conversation_id="b")
    hashes = {e["text_hash"] for e in read_events(tmp_path / "audit.sqlite3")}
    assert len(hashes) == 1
    kept = tmp_path / "kept"
    kept.mkdir()
    g2 = _guard(clf, kept, include_text=True)
    g2.check_input(CRISIS, conversation_id="a")
    assert [e["text"] for e in read_events(kept / "audit.sqlite3")] == [CRISIS]


def test_a_failed_audit_write_does_not_break_the_chat(clf, tmp_path, caplog):
    log = AuditLog(tmp_path / "a.sqlite3")
    log.close()                                   # every write now fails
    g = Guard(clf, load_policy("default"), audit=log)
    d = g.check_input(CRISIS, conversation_id="x")
    assert d.action == "replace" and "988" in d.message
    assert "audit log write failed" in caplog.text and "end my life" not in caplog.text


def test_unwritable_audit_path_fails_at_load_with_the_fix(clf, tmp_path, monkeypatch):
    monkeypatch.delenv("GUARDRAIL_AUDIT_DB")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    data = load_policy("default").policy.model_dump()
    data["audit"] = {"path": str(blocker / "audit.sqlite3")}
    with pytest.raises(AuditError, match="audit.path"):
        Guard(clf, load_policy(data))


CHILD = textwrap.dedent("""
    import sys, time
    from guardrail.audit import AuditLog
    log = AuditLog(sys.argv[1])
    n = 0
    while True:
        n += 1
        log.record({"event_id": f"e{n}", "time": time.time(), "conversation_id": "k", "role": "user",
                    "level": "unsafe", "categories": ["suicide_self_harm"], "scores": {}, "action": "replace",
                    "rule": "rules[0]", "policy_name": "default", "policy_version": "1"}, "some text")
        print(n, flush=True)
""")


def test_no_committed_event_is_lost_on_sigkill(tmp_path):
    """A child process writes events as fast as it can; SIGKILL mid-stream; every event it
    reported as committed is in the store, and the store is intact."""
    db = tmp_path / "audit.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    last = 0
    for line in child.stdout:
        last = int(line)
        if last >= 200:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] >= last >= 200


def test_guard_events_survive_sigkill_of_the_chat_process(tmp_path):
    """The real guard in a child process: crisis turns, then SIGKILL while it waits."""
    db = tmp_path / "audit.sqlite3"
    script = textwrap.dedent(f"""
        import sys
        from guardrail import Guard
        g = Guard.load()
        for i in range(3):
            g.check_input({CRISIS!r}, conversation_id=f"c{{i}}")
            print("decided", i, flush=True)
        sys.stdin.read()          # mid-conversation: wait to be killed
    """)
    env = {**os.environ, "GUARDRAIL_AUDIT_DB": str(db)}
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=env)
    seen = [child.stdout.readline() for _ in range(3)]
    assert seen[-1].startswith("decided 2")
    child.kill()
    child.wait()
    events = list(read_events(db))
    assert [e["conversation_id"] for e in events] == ["c0", "c1", "c2"]
    assert all(e["action"] == "replace" for e in events)


def test_report_counts_and_csv(clf, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GUARDRAIL_AUDIT_DB")
    g = _guard(clf, tmp_path)
    for i in range(2):
        g.check_input(CRISIS, conversation_id=f"r{i}")
    db = str(tmp_path / "audit.sqlite3")
    out = tmp_path / "counts.csv"
    events = tmp_path / "events.csv"
    assert cli_main(["report", "--db", db, "--period", "year", "--csv", str(out), "--events-csv", str(events)]) == 0
    printed = capsys.readouterr().out
    assert "2 events" in printed and "suicide_self_harm" in printed
    rows = list(csv.DictReader(out.open()))
    sh = [r for r in rows if r["category"] == "suicide_self_harm" and r["role"] == "user"]
    assert sh and int(sh[0]["count"]) == 2 and sh[0]["level"] == "unsafe"
    ev = list(csv.DictReader(events.open()))
    assert len(ev) == 2 and ev[0]["text"] == "" and json.loads(ev[0]["categories"])


def test_report_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["report", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    assert "audit log not found" in capsys.readouterr().err
    bad = tmp_path / "bad.sqlite3"
    bad.write_text("not sqlite")
    assert cli_main(["report", "--db", str(bad)]) == 2
    assert "not a readable audit log" in capsys.readouterr().err


def test_retention_deletes_only_old_events(tmp_path):
    log = AuditLog(tmp_path / "a.sqlite3", retention_days=30)
    base = {"conversation_id": "c", "role": "user", "level": "unsafe", "categories": ["suicide_self_harm"],
            "scores": {}, "category_scores": {}, "action": "escalate", "rule": "r", "sticky": False,
            "backstop": False, "notified": False, "policy_name": "p", "policy_version": "1", "country": None}
    now = 2_000_000_000.0
    for i, age_days in enumerate((90, 31, 29, 0)):
        log.record({**base, "event_id": f"e{i}", "time": now - age_days * 86400}, text="x")
    assert log.prune(now=now) == 2
    assert [e["event_id"] for e in read_events(tmp_path / "a.sqlite3")] == ["e2", "e3"]
    log.close()
    with pytest.raises(PolicyError, match="retention_days"):
        data = load_policy("default").policy.model_dump()
        data["audit"] = {"retention_days": -1}
        load_policy(data)
