"""Policy and guard logic on a scripted stub classifier (tests/stub.py): thresholds, sticky
risk, which rule picks, conversation identity, audit counts. Classification itself is tested
on the real adapter elsewhere (test_classifier.py, test_guard.py)."""
import threading

import pytest

from guardrail import Guard
from guardrail.audit import AuditLog, counts, read_events
from guardrail.policy import PolicyError, check_policy, load_policy, shipped_policies

from stub import ScriptedClassifier

CRISIS = "I want to end my life"
LOW = "everything feels heavy lately"
KIDDING = "just kidding lol"
GUN = "where can I buy an untraceable gun"
PICNIC = "any ideas for a picnic?"
SCRIPT = {
    CRISIS: ("unsafe", {"suicide_self_harm": 0.93}),
    LOW: ("borderline", {"suicide_self_harm": 0.55}),
    GUN: ("unsafe", {"guns_illegal_weapons": 0.9}),
    "slightly edgy": ("safe", {"violence_hate": 0.3}),
    "quite edgy": ("safe", {"violence_hate": 0.6}),
}


def guard(policy="default", **overrides):
    data = load_policy(policy).policy.model_dump(exclude_none=True)
    data.update(overrides)
    data["audit"] = {"enabled": False}
    data.pop("notify", None)
    for r in data["rules"]:
        r["notify"] = False
    return Guard(ScriptedClassifier(dict(SCRIPT)), load_policy(data), audit=False)


# --- thresholds -------------------------------------------------------------------------

def test_a_category_fires_only_above_its_threshold():
    g = guard()
    d = g.check_input(LOW)
    assert (d.level, d.categories, d.message is not None) == ("borderline", ["suicide_self_harm"], True)
    raised = guard(thresholds={"suicide_self_harm": 0.95})
    d = raised.check_input(LOW)
    # the level stays the judge's, but no category is flagged, so the suicide check-in does not fire
    assert d.level == "borderline" and d.categories == [] and d.message is None, d


def test_a_stricter_override_raises_safe_to_borderline_and_a_looser_one_never_does():
    assert guard().check_input("quite edgy").level == "safe"        # 0.6 >= 0.5 but the judge said safe
    strict = guard(thresholds={"violence_hate": 0.25})
    d = strict.check_input("slightly edgy")
    assert (d.level, d.categories) == ("borderline", ["violence_hate"])
    loose = guard(thresholds={"violence_hate": 0.55})            # looser than the adapter's 0.5
    assert loose.check_input("quite edgy").level == "safe"
    assert loose.check_input("slightly edgy").level == "safe"


# --- sticky risk and rules ------------------------------------------------------------------

def test_sticky_risk_raises_the_level_but_the_turns_own_categories_pick_the_rule():
    g = guard()
    first = g.check_input(CRISIS, conversation_id="a")
    assert first.action == "replace" and "988" in first.message
    d = g.check_input(GUN, conversation_id="a")
    assert d.categories == ["guns_illegal_weapons"], d
    assert d.action == "block" and d.message == g.policy.messages["refusal"]


def test_a_turn_with_no_category_of_its_own_takes_the_sticky_ones():
    g = guard()
    g.check_input(CRISIS, conversation_id="a")
    for left in (2, 1, 0):
        d = g.check_input(KIDDING, conversation_id="a")
        assert d.sticky and d.level == "borderline" and d.categories == ["suicide_self_harm"]
        assert d.message == g.policy.messages["check_in"]
        assert g.store.get("a").sticky_left == left
    d = g.check_input(KIDDING, conversation_id="a")
    assert not d.sticky and d.level == "safe" and d.message is None


def test_referral_counts_count_only_crisis_turns(tmp_path):
    data = load_policy("default").policy.model_dump(exclude_none=True)
    data.pop("notify")
    for r in data["rules"]:
        r["notify"] = False
    audit = AuditLog(tmp_path / "audit.sqlite3")
    g = Guard(ScriptedClassifier(dict(SCRIPT)), load_policy(data), audit=audit)
    g.check_input(CRISIS, conversation_id="a")
    g.check_input(GUN, conversation_id="a")
    rows = counts(list(read_events(tmp_path / "audit.sqlite3")), "all")
    by = {(r.category, r.action): r.count for r in rows}
    assert by[("suicide_self_harm", "replace")] == 1
    assert by[("guns_illegal_weapons", "block")] == 1
    assert ("suicide_self_harm", "block") not in by


# --- conversation identity ------------------------------------------------------------------

def test_no_id_and_no_transcript_keeps_no_state():
    g = guard()
    assert g.check_input(CRISIS).action == "replace"
    d = g.check_input(KIDDING)
    assert d.level == "safe" and d.message is None and not d.sticky
    assert len(g.store) == 0


def test_two_users_with_the_same_opening_never_share_a_check_in():
    g = guard()
    hello = [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Hello! How can I help?"}]
    a = g.check_input(CRISIS, context=hello)
    assert a.action == "replace"
    a_history = hello + [{"role": "user", "text": CRISIS}, {"role": "assistant", "text": a.message}]
    b = g.check_input(PICNIC, context=hello)
    assert b.message is None and not b.sticky, b
    b_reply = g.check_output("Sandwiches and fruit!", context=hello + [{"role": "user", "text": PICNIC}])
    assert b_reply.apply("Sandwiches and fruit!") == "Sandwiches and fruit!"
    # A's own transcript still carries A's sticky risk
    a2 = g.check_input(KIDDING, context=a_history)
    assert a2.sticky and a2.message == g.policy.messages["check_in"]


def test_the_check_in_is_derived_from_the_transcript_for_the_reply():
    g = guard()
    history = [{"role": "user", "text": LOW}]
    d = g.check_output("I'm sorry it's been hard. Want to tell me more?", context=history)
    assert d.action == "allow"
    assert d.apply("reply").startswith("reply") and g.policy.messages["check_in"] in d.apply("reply")


def test_a_transcript_sent_again_reuses_the_verdicts_already_judged():
    g = guard()
    clf = g.classifier
    h = []
    for text in ("hi", LOW, "ok thanks", PICNIC):
        g.check_input(text, context=list(h))
        h += [{"role": "user", "text": text}, {"role": "assistant", "text": "sure"}]
    judged = [c for c in clf.calls if c[1] == "user"]
    assert len(judged) == 4, judged      # each user turn judged once, however often it was replayed


def test_concurrent_callers_with_ids_keep_their_own_state():
    g = guard()
    errors = []

    def user(i):
        try:
            cid = f"c{i}"
            if i % 2:
                g.check_input(CRISIS, conversation_id=cid)
                assert g.check_input(KIDDING, conversation_id=cid).sticky
            else:
                g.check_input("hi", conversation_id=cid)
                assert not g.check_input(KIDDING, conversation_id=cid).sticky
        except AssertionError as e:
            errors.append(e)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --- policy files -------------------------------------------------------------------------

def test_policy_check_reports_every_error_at_once(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: x\nversion: '1'\ntresholds: {}\nmessages: {a: 'hi {crisis_lin}'}\n"
                   "rules:\n  - when: {role: user, categories: [self_harm]}\n    action: replace\n"
                   "    message: escalaton\n")
    problems = check_policy(bad)
    text = "\n".join(problems)
    assert all(p.startswith(str(bad)) for p in problems)
    for key in ("tresholds: unknown key", "rules.0.when.categories: unknown category 'self_harm'",
                "rules.0.message: 'escalaton' is not defined", "messages.a: unknown placeholder",
                "resources: "):
        assert key in text, text


@pytest.mark.parametrize("name", ["default", "teen", "log_only"])
def test_shipped_policies_check_clean(name):
    assert check_policy(name) == []


def test_unknown_policy_name_lists_the_shipped_ones():
    with pytest.raises(PolicyError, match="shipped policies: default, log_only, no_therapy, teen"):
        load_policy("tean")
    assert shipped_policies() == ["default", "log_only", "no_therapy", "teen"]
