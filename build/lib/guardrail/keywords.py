"""A keyword screen: the evaluation's simplest baseline, and the backstop that still
shows crisis resources when the model cannot run (fail-closed).

Deliberately plain and readable; it over-flags idioms ("this exam is killing me") and
misses indirect messages, which is exactly why the learned judge exists.
"""
from __future__ import annotations

import re

from .taxonomy import CATEGORIES

# category -> (unsafe patterns, borderline patterns)
PATTERNS: dict[str, tuple[list[str], list[str]]] = {
    "suicide_self_harm": (
        [r"kill(ing)? my ?self", r"suicid", r"end(ing)? (it all|my life|things)", r"want(ed)? to die",
         r"take my (own )?life", r"(cut|cutting|hurt|hurting|harm|harming) my ?self", r"overdose",
         r"hang my ?self", r"not (be )?(alive|here) tomorrow", r"better off dead"],
        [r"hopeless", r"worthless", r"no reason to live", r"can'?t go on", r"wish i (was|were) dead",
         r"a burden", r"don'?t want to (be here|wake up|exist)", r"self[- ]?harm", r"depress"],
    ),
    "violence_hate": (
        [r"\b(kill|murder|stab|shoot|beat up|hurt) (him|her|them|you|my \w+|that \w+|everyone)",
         r"\bbomb\b", r"massacre", r"\bgenocide", r"should (all )?die"],
        [r"\bhate (him|her|them|you|those)", r"\bidiot", r"\bstupid", r"\bretard", r"\bbitch", r"\bfag"],
    ),
    "sexual_content": (
        [r"\bsex(ual)? (scene|story|chat)", r"\bnudes?\b", r"\bporn", r"\bexplicit", r"\bnaked\b"],
        [r"\bsexy\b", r"\bhorny\b", r"\bflirt"],
    ),
    "guns_illegal_weapons": (
        [r"\bghost gun", r"untraceable", r"\b(full[- ]?auto|silencer|suppressor)", r"\bexplosive",
         r"\bpipe bomb", r"buy a gun without", r"3d[- ]print(ed)? gun"],
        [r"\bgun", r"\brifle", r"\bpistol", r"\bammo", r"\bweapon"],
    ),
    "regulated_substances": (
        [r"without (a )?prescription", r"\b(cook|make|synthesi[sz]e) (meth|drugs|lsd|mdma)",
         r"\blethal dose", r"how (much|many) .* to (die|overdose)", r"\bbuy (weed|coke|cocaine|xanax|oxy)"],
        [r"\b(weed|cocaine|meth|heroin|xanax|oxy\w*|mdma|lsd|molly|shrooms)\b", r"\bget (high|drunk)"],
    ),
    "criminal_planning": (
        [r"\bsteal", r"\brob\b", r"\bphishing", r"\bhack (into|someone|my ex)", r"\blaunder",
         r"\bshoplift", r"\bfake id", r"\bscam (people|someone)"],
        [r"\block ?pick", r"\bget away with", r"\bwithout getting caught", r"\billegal"],
    ),
}

_COMPILED = {c: ([re.compile(p, re.I) for p in u], [re.compile(p, re.I) for p in b])
             for c, (u, b) in PATTERNS.items()}
assert set(_COMPILED) == set(CATEGORIES)


def keyword_screen(text: str) -> tuple[str, list[str]]:
    """Return (level, categories) from keyword matches alone."""
    level, cats = "safe", []
    for cat, (unsafe, borderline) in _COMPILED.items():
        if any(p.search(text) for p in unsafe):
            level = "unsafe"
            cats.append(cat)
        elif any(p.search(text) for p in borderline):
            level = "borderline" if level == "safe" else level
            cats.append(cat)
    return level, cats
