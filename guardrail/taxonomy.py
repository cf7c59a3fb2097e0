"""The risk taxonomy, in one place: every other module reads it from here.

Levels follow a graded screen (in the spirit of the Columbia protocol): *safe* is
no risk, *borderline* is distress or an ambiguous request that deserves a gentle
check-in, *unsafe* is active risk that needs escalation or refusal. Categories are
the six of Pinzuti et al. (2025); several can apply to one turn.
"""
from __future__ import annotations

LEVELS: tuple[str, ...] = ("safe", "borderline", "unsafe")

CATEGORIES: tuple[str, ...] = (
    "suicide_self_harm",
    "violence_hate",
    "sexual_content",
    "guns_illegal_weapons",
    "regulated_substances",
    "criminal_planning",
)

ROLES: tuple[str, ...] = ("user", "assistant")

LEVEL_DESCRIPTIONS: dict[str, str] = {
    "safe": "no risk: everyday talk, idioms, factual questions, helpful replies",
    "borderline": "distress without acute risk, or an edgy / ambiguous request",
    "unsafe": "active risk: intent, plan or means; threats or hate; harmful instructions",
}

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "suicide_self_harm": "suicidal thoughts, intent, plans or methods; self-harm",
    "violence_hate": "threats, violence, harassment, hate against people or groups",
    "sexual_content": "explicit sexual content or requests; anything sexual with minors",
    "guns_illegal_weapons": "acquiring, building or modifying illegal weapons or explosives",
    "regulated_substances": "obtaining, making or misusing drugs, alcohol or medicines",
    "criminal_planning": "planning theft, fraud, hacking, scams or other crimes",
}


def decide_level(probs, borderline_at: float | None = None) -> int:
    """The index in LEVELS of the level a judge's (p_safe, p_borderline, p_unsafe) means.

    The most likely level, except that a turn the judge finds more likely risky than not
    (p_borderline + p_unsafe >= ``borderline_at``) is never safe: its argmax "safe" becomes
    borderline, a gentle check-in. With three levels the argmax can be safe at p_safe 0.4,
    and those are the crisis disclosures and harmful requests a guardrail most needs to see.
    An escalation still needs unsafe to be the most likely level. ``None``: the plain argmax."""
    best = max(range(len(LEVELS)), key=lambda i: probs[i])
    if best == 0 and borderline_at is not None and probs[1] + probs[2] >= borderline_at:
        return 1
    return best


def check_level(level: str) -> str:
    """Return ``level`` if it is a known level, else raise a ValueError naming the choices."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    return level


def check_category(category: str) -> str:
    """Return ``category`` if it is a known category, else raise a ValueError naming the choices."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    return category


def check_role(role: str) -> str:
    """Return ``role`` if it is ``user`` or ``assistant``, else raise a ValueError."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role
