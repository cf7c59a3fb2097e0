"""The console script's contract, run as a real subprocess."""
import json
import subprocess
import sys

import pytest

GUARDRAIL = [sys.executable, "-m", "guardrail.cli"]


def run(*args, stdin=None):
    return subprocess.run(GUARDRAIL + list(args), capture_output=True, text=True, input=stdin, timeout=300)


def test_classify_text_readable_and_json():
    r = run("classify", "I want to kill myself")
    assert r.returncode == 0, r.stderr
    assert "level: UNSAFE" in r.stdout and "suicide_self_harm" in r.stdout
    r = run("classify", "--json", "this exam is killing me")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["level"] == "safe" and set(out["scores"]) == {"safe", "borderline", "unsafe"}


def test_jsonl_file_with_bad_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": 1, "role": "user", "text": "I want to end my life"}),
        "{not json",
        json.dumps({"id": 3, "role": "assistant", "text": "Here is a banana bread recipe.",
                    "context": [{"role": "user", "text": "recipe please"}]}),
        json.dumps({"id": 4, "role": "robot", "text": "hi"}),
        json.dumps({"id": 5, "text": "how do I kill a stuck process"}),
    ]
    src.write_text("\n".join(lines) + "\n")
    dst = tmp_path / "out.jsonl"
    r = run("classify", "--input", str(src), "--output", str(dst))
    assert r.returncode == 0, r.stderr
    assert "line 2: not valid JSON" in r.stderr
    assert "line 4: 'role' must be one of user, assistant" in r.stderr
    assert "Traceback" not in r.stderr
    rows = [json.loads(x) for x in dst.read_text().splitlines()]
    assert [row["id"] for row in rows] == [1, 3, 5]
    assert rows[0]["level"] == "unsafe" and rows[0]["categories"]["suicide_self_harm"] > 0.5
    assert rows[1]["context"] == [{"role": "user", "text": "recipe please"}]
    assert all(set(row["scores"]) == {"safe", "borderline", "unsafe"} for row in rows)


def test_strict_stops_at_first_bad_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "text": "hello"}) + "\n[1, 2]\n" + json.dumps({"id": 3, "text": "x"}) + "\n")
    dst = tmp_path / "out.jsonl"
    r = run("classify", "--input", str(src), "--output", str(dst), "--strict")
    assert r.returncode == 2
    assert "line 2: expected a JSON object" in r.stderr and "Traceback" not in r.stderr
    assert [json.loads(x)["id"] for x in dst.read_text().splitlines()] == [1]


@pytest.mark.parametrize("args, message", [
    (["classify", "--input", "/no/such/file.jsonl"], "does not exist"),
    (["classify", "--adapter", "/no/such/adapter", "hi"], "adapter folder /no/such/adapter does not exist"),
    (["classify", "--context", "not json", "hi"], "--context must be a JSON list"),
])
def test_user_mistakes_are_one_line_errors(args, message):
    r = run(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_piped_prompt_keeps_context():
    r = run("classify", stdin="hello\nthis exam is killing me\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("level:") == 2
