import pytest

from guardrail import CATEGORIES, LEVELS
from guardrail.keywords import PATTERNS
from guardrail.taxonomy import check_category, check_level


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
