"""The public API: ``Classifier.load()`` and ``classify()``.

    from guardrail import Classifier
    clf = Classifier.load()                       # the embedded default adapter
    v = clf.classify("I want to kill myself")
    v.level, v.scores, v.categories, v.flagged

One forward pass per turn; a lock makes one instance safe to share between threads
(torch already uses every core for a single pass, so threads queue rather than race).
"""
from __future__ import annotations

import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .inputs import Turn
from .taxonomy import CATEGORIES, LEVELS, check_role, decide_level

DEFAULT_ADAPTER = Path(__file__).resolve().parent / "adapter"
ADAPTER_ENV = "GUARDRAIL_ADAPTER"


@dataclass(frozen=True)
class Verdict:
    """What the judge says about one turn."""

    level: str                                  # safe | borderline | unsafe
    scores: dict[str, float]                    # level -> probability (sums to 1)
    categories: dict[str, float]                # category -> probability (independent); taught ones on their role's turns
    flagged: list[str]                          # categories over their thresholds, most likely first
    model_id: str
    role: str = "user"
    notes: list[str] = field(default_factory=list)  # e.g. "empty input"

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "scores": self.scores, "categories": self.categories,
                "flagged": self.flagged, "model_id": self.model_id, "role": self.role, "notes": self.notes}


# common English words that are not also common words of nearby languages ("no", "a", "in", "will"...)
_ENGLISH = frozenset("""the an and or but to of on at for with is are was were be been you he she it we they
my your our their this that what how why when where who do does did not can can't don't i'm it's just if have
has had would should could about from up out get like want feel know think i me am so""".split())
NON_ENGLISH_NOTE = "possibly not English: the judge was trained on English, treat this verdict as low confidence"


def likely_non_english(text: str) -> bool:
    """A cheap script-and-stopword check (no language model): flags text the judge is weak on."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 8:
        return False
    if sum(not c.isascii() for c in letters) / len(letters) > 0.3:
        return True
    words = re.findall(r"[a-z']+", text.lower())
    return len(words) >= 4 and not any(w in _ENGLISH for w in words)


def clean_text(text: Any) -> tuple[str, list[str]]:
    """Coerce input to text, never raising for content: bytes are decoded with replacement.
    Returns the text and notes ("empty input", decoding, language). The Guard uses it too."""
    notes = []
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
        notes.append("decoded bytes as UTF-8 with replacement")
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        notes.append("empty input")
    elif likely_non_english(text):
        notes.append(NON_ENGLISH_NOTE)
    return text, notes


class Classifier:
    """A loaded judge. Build it with :meth:`load`."""

    def __init__(self, judge, encoder, adapter_path: Path, warnings_: Sequence[str] = (), taught: Sequence = ()):
        self._judge = judge
        self._encoder = encoder
        self._lock = threading.Lock()
        self.adapter_path = adapter_path
        self.config = judge.config
        self.model_id: str = judge.config.model_id
        self.taught = list(taught)      # TaughtHead per category taught into the adapter (guardrail/taught.py)
        self.thresholds: dict[str, float] = dict(judge.config.thresholds)
        self.thresholds.update({h.name: h.threshold for h in self.taught})
        self.load_warnings = list(warnings_)

    @property
    def categories(self) -> tuple[str, ...]:
        """The built-in risk categories, then the taught ones: every name a policy may use."""
        return CATEGORIES + tuple(h.name for h in self.taught)

    @property
    def judge(self):
        """The torch module (backbone + heads); for benchmarks and export, not for classification."""
        return self._judge

    @property
    def encoder(self):
        """Turns text (+ context) into input ids; see guardrail/inputs.py."""
        return self._encoder

    @staticmethod
    def default_path() -> Path:
        """The adapter ``load()`` uses without a path: $GUARDRAIL_ADAPTER, else the shipped one."""
        return Path(os.environ.get(ADAPTER_ENV) or DEFAULT_ADAPTER).expanduser()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, base: str | os.PathLike | None = None,
             cache_dir: str | os.PathLike | None = None, threads: int | None = None,
             strict_base: bool = False, int8: bool | str = True, engine: str = "auto") -> "Classifier":
        """Load an adapter folder (default: the one shipped in the package, or $GUARDRAIL_ADAPTER).

        ``base`` is a local checkpoint folder to use instead of the default SmolLM2 base;
        ``threads`` sets torch's intra-op threads (default: torch's choice);
        ``int8`` (on by default) runs the MLP's gate and up projections in int8
        (``modeling.INT8_DEFAULT``; or name a scheme: "per_channel", "per_tensor", "w8a8", or
        "w8a8_smooth", every projection after SmoothQuant folding, docs/performance.md):
        about a third faster, and on the real sources' dev splits within half a point of fp32
        on harmful-request recall and on escalations of ordinary emotional talk (the rule for
        defaulting it on; training/reports/experiments/real-9998249ac0-int8-*.md). ``int8=False``
        is the exact fp32 judge (what training, teaching and the reports use);
        ``engine`` is "auto" (the lean one-file LLaMA in guardrail/llama.py when the base allows),
        "lean" or "transformers" (transformers + peft: slower to start, same scores).
        """
        import torch

        from .modeling import load_judge
        from .taught import load_heads

        if threads:
            torch.set_num_threads(threads)
        folder = Path(path).expanduser() if path else cls.default_path()
        judge, encoder, notes = load_judge(folder, base=base, cache=cache_dir, strict_base=strict_base, int8=int8,
                                           engine=engine)
        for note in notes:
            warnings.warn(note, stacklevel=2)
        return cls(judge, encoder, folder, notes, load_heads(folder, judge.config.model_id, judge.level_head.in_features))

    # --- classification ------------------------------------------------------------------

    def classify(self, text: str, role: str = "user",
                 context: Sequence[Turn | Mapping[str, Any]] | None = None,
                 session: "JudgeSession | None" = None) -> Verdict:
        """Judge one turn said by ``role`` after ``context`` (previous turns, oldest first)."""
        return self.classify_batch([{"text": text, "role": role, "context": context or []}], session=session)[0]

    def session(self) -> "JudgeSession":
        """A judging session for one stream (a reply judged window by window): each call
        reuses the keys/values of the session's previous inputs for the tokens they share, so
        a window costs only its new tokens. Verdicts equal ``classify_batch``'s. One per
        stream: a session holds that stream's text."""
        return JudgeSession()

    def classify_batch(self, items: Sequence[Mapping[str, Any]], batch_size: int = 16,
                       session: "JudgeSession | None" = None) -> list[Verdict]:
        """Judge many turns; each item is ``{"text", "role"?, "context"?}``. Order is kept.
        With ``session`` (see :meth:`session`), item ``i`` reuses the keys/values of item ``i``
        of the session's previous call."""
        import torch

        from .taught import head_input

        prepared = []
        for item in items:
            text, notes = clean_text(item.get("text"))
            role = check_role(item.get("role") or "user")
            context = [Turn.coerce(t) for t in (item.get("context") or [])]
            prepared.append((self._encoder.encode(text, role, context), role, notes))
        verdicts: list[Verdict | None] = [None] * len(prepared)
        for i, (_, role, notes) in enumerate(prepared):
            if "empty input" in notes:  # nothing to judge: a fixed safe verdict, no model call
                verdicts[i] = Verdict("safe", {"safe": 1.0, "borderline": 0.0, "unsafe": 0.0},
                                      {c: 0.0 for c in CATEGORIES} | {h.name: 0.0 for h in self.taught if h.role == role},
                                      [], self.model_id, role, notes)
        order = sorted((i for i in range(len(prepared)) if verdicts[i] is None), key=lambda i: len(prepared[i][0]))
        temp = self.config.level_temperature or 1.0
        cached = session is not None and self._judge.can_cache
        for start in range(0, len(order), 1 if cached else batch_size):
            index = order[start:start + (1 if cached else batch_size)]
            ids, mask = self._encoder.pad([prepared[i][0] for i in index])
            with self._lock, torch.inference_mode():
                if cached:   # one row, its keys/values kept in the session
                    pooled, mean = self._judge.cached_pass(prepared[index[0]][0], session.cache(index[0]),
                                                           with_mean=bool(self.taught))
                    taught_p = ([] if not self.taught else
                                [torch.sigmoid(head_input(pooled, mean) @ h.weight + h.bias).tolist() for h in self.taught])
                elif self.taught:   # their input needs one more vector from the same pass
                    pooled, mean = self._judge.states(ids, mask)
                    both = head_input(pooled, mean)
                    taught_p = [torch.sigmoid(both @ h.weight + h.bias).tolist() for h in self.taught]
                else:
                    pooled, taught_p = self._judge.features(ids, mask), []
                level_logits, cat_logits = self._judge.level_head(pooled), self._judge.category_head(pooled)
            level_p = torch.softmax(level_logits.float() / temp, dim=-1).tolist()
            cat_p = torch.sigmoid(cat_logits.float()).tolist()
            for row, i in enumerate(index):
                role = prepared[i][1]
                taught = {h.name: p[row] for h, p in zip(self.taught, taught_p) if h.role == role}
                verdicts[i] = self._verdict(level_p[row], cat_p[row], role, prepared[i][2], taught)
        return verdicts  # type: ignore[return-value]

    def _verdict(self, level_p: list[float], cat_p: list[float], role: str, notes: list[str],
                 taught: Mapping[str, float] | None = None) -> Verdict:
        scores = {lvl: round(p, 4) for lvl, p in zip(LEVELS, level_p)}
        risk = {c: round(p, 4) for c, p in zip(CATEGORIES, cat_p)}
        level = LEVELS[decide_level(level_p, self.config.borderline_at)]
        flagged = sorted((c for c in CATEGORIES if risk[c] >= self.thresholds.get(c, 0.5)),
                         key=lambda c: -risk[c])
        if level == "unsafe" and not flagged:  # an unsafe verdict always names the risk it is about
            flagged = [max(risk, key=risk.get)]
        # taught categories are not risks: flagged on their own threshold, whatever the level,
        # and never change the level (guardrail/taught.py)
        cats = {**risk, **{name: round(p, 4) for name, p in (taught or {}).items()}}
        flagged += sorted((n for n in (taught or {}) if cats[n] >= self.thresholds[n]), key=lambda n: -cats[n])
        return Verdict(level, scores, cats, flagged, self.model_id, role, notes)


class JudgeSession:
    """The keys/values one stream keeps between judge calls (see :meth:`Classifier.session`).
    ``computed`` counts the tokens actually run through the model, reused ones not counted."""

    def __init__(self) -> None:
        self._caches: dict[int, Any] = {}

    def cache(self, index: int) -> Any:
        from .llama import KVCache

        return self._caches.setdefault(index, KVCache())

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self._caches.values())
