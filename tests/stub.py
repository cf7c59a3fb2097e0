"""A scripted stand-in for the judge, for tests of the policy and guard logic only.

It returns the verdict written for each text (``script``), so those tests run in
milliseconds and can reach cases the real model cannot be steered into (a score just
under a threshold, a level with no category over its threshold). It never stands in for
classification: the tests that check what the judge says use the real adapter.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from guardrail.classifier import Verdict
from guardrail.taxonomy import CATEGORIES

ADAPTER_THRESHOLDS = {c: 0.5 for c in CATEGORIES}


@dataclass
class ScriptedClassifier:
    """``script``: text -> (level, {category: probability}); unknown texts are safe."""

    script: dict[str, tuple[str, dict[str, float]]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=lambda: dict(ADAPTER_THRESHOLDS))
    model_id: str = "scripted-stub"
    calls: list[tuple[str, str, int]] = field(default_factory=list)   # (text, role, context length)

    def classify(self, text, role="user", context=None) -> Verdict:
        self.calls.append((text, role, len(context or [])))
        level, cats = self.script.get(text, ("safe", {}))
        probs = {c: float(cats.get(c, 0.01)) for c in CATEGORIES}
        scores = {lvl: (0.9 if lvl == level else 0.05) for lvl in ("safe", "borderline", "unsafe")}
        flagged = sorted((c for c in CATEGORIES if probs[c] >= self.thresholds[c]), key=lambda c: -probs[c])
        return Verdict(level, scores, probs, flagged, self.model_id, role)

    def classify_batch(self, items, batch_size=16):
        return [self.classify(i["text"], i.get("role", "user"), i.get("context")) for i in items]


class KeywordStub(ScriptedClassifier):
    """Scripted for the streaming window logic: any text containing BAD is unsafe violence_hate."""

    def classify(self, text, role="user", context=None) -> Verdict:
        self.calls.append((text, role, len(context or [])))
        bad = "BAD" in text
        probs = {c: (0.9 if bad and c == "violence_hate" else 0.01) for c in CATEGORIES}
        level = "unsafe" if bad else "safe"
        scores = {lvl: (0.9 if lvl == level else 0.05) for lvl in ("safe", "borderline", "unsafe")}
        return Verdict(level, scores, probs, ["violence_hate"] if bad else [], self.model_id, role)
