"""Policies: the shipped files validate, templates get the configured country's resources,
and malformed policies fail at load time with errors naming the file, the key and the fix."""
import pytest

from guardrail.policy import POLICY_DIR, PolicyError, load_policy, load_resources

LINES = {"US": "988", "CA": "988", "UK": "116 123", "IE": "116 123", "AU": "13 11 14"}
EMERGENCY = {"US": "911", "CA": "911", "UK": "999", "IE": "112", "AU": "000"}


@pytest.mark.parametrize("name", ["default", "teen", "log_only"])
def test_shipped_policies_load(name):
    p = load_policy(name)
    assert p.name == name and p.country_found


@pytest.mark.parametrize("country", sorted(LINES))
def test_escalation_has_the_countrys_resources(country):
    msg = load_policy("default", country=country).messages["escalation"]
    assert LINES[country] in msg and EMERGENCY[country] in msg
    assert "{" not in msg


def test_escalation_follows_the_crisis_checklist():
    msg = load_policy("default").messages["escalation"]
    lowered = msg.lower()
    assert "an ai" in lowered                                   # says it is an AI
    assert "call 988" in msg and "text 988" in msg              # call and text options
    assert msg.index("988") < len(msg) // 2                     # early
    assert "keep talking" in lowered                            # stays in the conversation
    for word in ("method", "dose", "pills", "confidential", "won't tell"):
        assert word not in lowered


def test_unknown_country_uses_the_versioned_fallback():
    p = load_policy("default", country="ZZ")
    assert not p.country_found
    assert "findahelpline.com" in p.messages["escalation"]
    assert p.resources.version


def test_country_from_environment(monkeypatch):
    monkeypatch.setenv("GUARDRAIL_COUNTRY", "AU")
    assert "13 11 14" in load_policy().messages["escalation"]


def test_rules_match_first_hit():
    p = load_policy().policy
    assert p.rule_for("user", "unsafe", ["suicide_self_harm"]).message == "escalation"
    assert p.rule_for("user", "borderline", ["suicide_self_harm"]).message == "check_in"
    assert p.rule_for("user", "unsafe", ["criminal_planning"]).action == "block"
    assert p.rule_for("assistant", "unsafe", ["regulated_substances"]).action == "replace"
    assert p.rule_for("user", "safe", []).action == "allow"


def minimal(**overrides):
    data = {"name": "t", "version": "1", "messages": {"m": "call {crisis_line}"},
            "rules": [{"when": {"level": "unsafe"}, "action": "replace", "message": "m"}]}
    data.update(overrides)
    return data


def write(tmp_path, data, name="p.yaml"):
    import yaml

    (tmp_path / "resources.yaml").write_text((POLICY_DIR / "resources.yaml").read_text())
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


BAD = [
    (minimal(colour="red"), "colour", "unknown key"),
    ({"version": "1", "messages": {}, "rules": []}, "name", "missing"),
    (minimal(rules=[{"when": {"categories": ["self_harm"]}, "action": "block", "message": "m"}]),
     "rules.0.when.categories", "unknown category 'self_harm'"),
    (minimal(thresholds={"suicide_self_harm": 1.5}), "thresholds", "between 0 and 1"),
    (minimal(thresholds={"weapons": 0.5}), "thresholds", "unknown category 'weapons'"),
    (minimal(rules=[{"action": "replace", "message": "nope"}]), "rules.0.message", "not defined under `messages`"),
    (minimal(rules=[{"action": "replace"}]), "rules.0", "needs a message"),
    (minimal(rules=[{"action": "shout"}]), "rules.0.action", "Input should be"),
    (minimal(messages={"m": "call {hotline}"}), "messages.m", "unknown placeholder"),
    (minimal(rules=[{"action": "allow", "notify": True}]), "rules.0.notify", "no `notify` hook"),
    (minimal(notify={"callable": "no_colon"}), "notify", "module:function"),
    (minimal(sticky_turns=-1), "sticky_turns", "greater than or equal"),
]


@pytest.mark.parametrize("data,key,what", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_malformed_policy_names_file_key_and_problem(tmp_path, data, key, what):
    path = write(tmp_path, data)
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    assert str(path) in str(e.value) and key in str(e.value) and what in str(e.value)


def test_invalid_yaml_and_missing_files(tmp_path):
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "name: [unclosed"))
    with pytest.raises(PolicyError, match="expected a mapping"):
        load_policy(write(tmp_path, "- a list"))
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="resources file not found"):
        load_policy(write(tmp_path, minimal(resources="nowhere.yaml")))


def test_malformed_resources(tmp_path):
    (tmp_path / "r.yaml").write_text("version: '1'\ncountries: {US: {name: x}}\n")
    with pytest.raises(PolicyError, match=r"fallback: required key is missing"):
        load_resources(tmp_path / "r.yaml")


def test_notify_callable_must_import(tmp_path):
    from guardrail.notify import resolve
    from guardrail.policy import Notify

    with pytest.raises(PolicyError, match="cannot be imported"):
        resolve(Notify(callable="guardrail.nowhere:fn"))
