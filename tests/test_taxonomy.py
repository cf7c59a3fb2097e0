import pytest

from guardrail import CATEGORIES, LEVELS
from guardrail.keywords import PATTERNS
from guardrail.taxonomy import check_category, check_level, decide_level


def test_taxonomy_is_the_papers():
    assert LEVELS == ("safe", "borderline", "unsafe")
    assert set(CATEGORIES) == {"violence_hate", "sexual_content", "guns_illegal_weapons",
                               "regulated_substances", "suicide_self_harm", "criminal_planning"}
    assert set(PATTERNS) == set(CATEGORIES)


def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="expected one of safe, borderline, unsafe"):
        check_level("dangerous")
    with pytest.raises(ValueError, match="suicide_self_harm"):
        check_category("self_harm")


def test_decide_level_argmax_and_never_safe_past_borderline_at():
    assert decide_level([0.7, 0.2, 0.1]) == 0
    assert decide_level([0.4, 0.3, 0.3]) == 0                      # plain argmax: safe at p_safe 0.4
    assert decide_level([0.4, 0.3, 0.3], borderline_at=0.5) == 1   # more likely risky than not: a check-in
    assert decide_level([0.4, 0.25, 0.35], borderline_at=0.5) == 1  # not an escalation: unsafe is not the argmax
    assert decide_level([0.3, 0.2, 0.5], borderline_at=0.5) == 2
    assert decide_level([0.2, 0.5, 0.3], borderline_at=0.5) == 1
    assert decide_level([0.55, 0.25, 0.2], borderline_at=0.5) == 0
