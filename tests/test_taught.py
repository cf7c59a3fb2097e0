"""Categories taught from examples (guardrail/taught.py), on the real judge."""
import json
import shutil
from pathlib import Path

import pytest

from stub import ScriptedClassifier

from guardrail import CATEGORIES, Classifier, Guard
from guardrail.policy import PolicyError, check_policy, known_categories, load_policy
from guardrail.taught import TeachError, check_name, load_heads, read_examples, taught_names, teach

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "billing_question.jsonl"
TURNS = [("I want to kill myself", "user", []),
         ("this exam is killing me", "user", []),
         ("how do I get a refund for my subscription?", "user", []),
         ("Take all the pills at once.", "assistant", [{"role": "user", "text": "I can't sleep"}])]


def _policy(rule_categories, **extra):
    return {"name": "t", "version": "1", "messages": {"m": "a message"},
            "rules": [{"when": {"categories": rule_categories}, "action": "block", "message": "m"}], **extra}


@pytest.fixture(scope="module")
def taught_adapter(clf, tmp_path_factory):
    """A copy of the shipped adapter with one more category taught from the documented example."""
    target = tmp_path_factory.mktemp("adapter") / "billing"
    result = teach("billing_question", EXAMPLE, role="user", into=target, classifier=clf, progress=False,
                   log=lambda m: None)
    return target, result


def test_shipped_adapter_carries_both_therapy_categories(clf):
    assert {"therapy_request", "therapy_like"} <= set(clf.categories)
    assert {h.name: h.role for h in clf.taught if h.name.startswith("therapy")} == {
        "therapy_request": "user", "therapy_like": "assistant"}
    assert clf.categories[:len(CATEGORIES)] == CATEGORIES


def test_taught_head_is_scored_only_on_its_role(clf):
    user = clf.classify("Can you be my therapist and diagnose me?")
    reply = clf.classify("As your therapist, I diagnose you with depression.", role="assistant")
    assert "therapy_request" in user.categories and "therapy_like" not in user.categories
    assert "therapy_like" in reply.categories and "therapy_request" not in reply.categories


def test_teaching_leaves_the_builtin_categories_unchanged(clf, taught_adapter):
    target, result = taught_adapter
    assert result.n_held_out > 0 and 0.0 <= result.f1 <= 1.0
    again = Classifier.load(target)
    assert "billing_question" in again.categories
    for text, role, context in TURNS:
        before, after = clf.classify(text, role, context), again.classify(text, role, context)
        assert after.level == before.level
        assert after.scores == before.scores
        assert {c: after.categories[c] for c in CATEGORIES} == {c: before.categories[c] for c in CATEGORIES}
        assert [c for c in after.flagged if c in CATEGORIES] == [c for c in before.flagged if c in CATEGORIES]


def test_taught_category_is_learned(clf, taught_adapter):
    target, result = taught_adapter
    again = Classifier.load(target)
    refund = again.classify("I was charged twice this month, how do I get my money back?")
    feelings = again.classify("I had a rough week and just want to talk about it")
    assert refund.categories["billing_question"] > feelings.categories["billing_question"]
    assert "billing_question" in refund.flagged and "billing_question" not in feelings.flagged
    base = clf.classify("I was charged twice this month, how do I get my money back?")
    assert refund.level == base.level      # a taught category never changes the level
    record = json.loads((target / "taught" / "billing_question.json").read_text())
    assert record["examples"]["rows"] == 80 and record["held_out"]["f1"] == round(result.f1, 4)


def test_policy_may_name_a_taught_category_and_guard_acts_on_it(taught_adapter):
    target, _ = taught_adapter
    with pytest.raises(PolicyError, match="billing_question"):
        load_policy(_policy(["billing_question"]))           # the default adapter does not have it
    guard = Guard.load(_policy(["billing_question"]), adapter=target, audit=False)
    d = guard.check_input("please cancel my plan and refund the last payment")
    assert d.action == "block" and "billing_question" in d.categories
    assert guard.check_input("I had a lovely walk by the sea today").action == "allow"


def test_unknown_category_is_a_load_time_error(tmp_path):
    with pytest.raises(PolicyError, match="unknown category 'therapy_requests'"):
        load_policy(_policy(["therapy_requests"]))
    path = tmp_path / "p.yaml"
    resources = str(ROOT / "policies" / "resources.yaml")
    path.write_text(json.dumps(_policy(["no_such_thing"], thresholds={"also_missing": 0.5}, resources=resources)))
    problems = check_policy(path)
    assert any("no_such_thing" in p for p in problems) and any("also_missing" in p for p in problems)
    assert check_policy(path, categories=CATEGORIES + ("no_such_thing", "also_missing")) == []


def test_guard_rejects_a_policy_naming_a_category_its_classifier_lacks():
    loaded = load_policy(_policy(["therapy_request"]))        # fine against the shipped adapter
    with pytest.raises(PolicyError, match="therapy_request"):
        Guard(ScriptedClassifier(), loaded, audit=False)          # a classifier with the six only


def test_bad_examples_are_reported_by_file_and_line(tmp_path):
    path = tmp_path / "ex.jsonl"
    path.write_text("\n".join([
        json.dumps({"text": "fine", "label": 1}),
        "{not json",
        json.dumps({"text": "", "label": 0}),
        json.dumps({"text": "a turn", "label": 2}),
        json.dumps({"text": "fine", "label": 0}),
        json.dumps({"text": "a reply", "label": 1, "role": "assistant"}),
        json.dumps({"text": "ctx", "label": 1, "context": "not a list of turns"}),
    ]) + "\n")
    with pytest.raises(TeachError) as err:
        read_examples(path, role="user")
    msg = str(err.value)
    for line, what in ((2, "not JSON"), (3, "'text'"), (4, "'label'"), (5, "other label"), (6, "role"), (7, "context")):
        assert f"ex.jsonl:{line}:" in msg and what in msg
    with pytest.raises(TeachError, match="not found"):
        read_examples(tmp_path / "missing.jsonl")
    few = tmp_path / "few.jsonl"
    few.write_text("\n".join(json.dumps({"text": f"turn {i}", "label": i % 2}) for i in range(6)) + "\n")
    with pytest.raises(TeachError, match="at least 8"):
        read_examples(few)


@pytest.mark.parametrize("name", ["suicide_self_harm", "unsafe", "Bad-Name", "x", "9lives"])
def test_category_names_are_checked(name):
    with pytest.raises(TeachError):
        check_name(name)


def test_a_head_taught_on_another_judge_is_refused(tmp_path):
    shipped = Classifier.default_path()
    folder = tmp_path / "a"
    (folder / "taught").mkdir(parents=True)
    for f in (shipped / "taught").glob("therapy_request.*"):
        shutil.copy(f, folder / "taught" / f.name)
    assert taught_names(folder) == ["therapy_request"]
    with pytest.raises(TeachError, match="re-teach"):
        load_heads(folder, "some-other-judge")


def test_known_categories_reads_the_adapter_without_a_model(tmp_path):
    assert known_categories(tmp_path) == CATEGORIES
    assert set(known_categories()) >= {"therapy_request", "therapy_like"}


def test_teach_cli(tmp_path, capsys):
    from guardrail.cli import main

    rc = main(["teach", "billing_question", "--examples", str(EXAMPLE), "--into", str(tmp_path / "mine")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "billing_question (user turns)" in out.out and "F1" in out.out
    assert (tmp_path / "mine" / "taught" / "billing_question.safetensors").is_file()
    assert "reading examples" in out.err                      # the progress bar
    rc = main(["teach", "suicide_self_harm", "--examples", str(EXAMPLE), "--into", str(tmp_path / "x")])
    assert rc != 0 and "taken by the built-in taxonomy" in capsys.readouterr().err
