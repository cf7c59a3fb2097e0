"""The guardrail: classifier verdict + policy + conversation state -> a decision.

    from guardrail import Guard
    guard = Guard.load()                                  # default adapter and policy
    d = guard.check_input("I want to end my life", conversation_id="c1")
    if not d.allowed:
        reply = d.message                                 # e.g. the escalation template
    else:
        reply = my_chatbot(...)
        reply = guard.check_output(reply, conversation_id="c1").apply(reply)

Every integration (NeMo rails, the LangChain guard, the demo) goes through here, so
the policy behaves the same everywhere. The core imports no NeMo and no LangChain.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .audit import AuditLog, default_path, AUDIT_DB_ENV
from .classifier import clean_text
from .conversation import ConversationStore
from .inputs import Turn
from .keywords import keyword_screen
from .notify import fire, resolve
from .policy import LoadedPolicy, load_policy
from .taxonomy import CATEGORIES, LEVELS, check_role

log = logging.getLogger("guardrail")
_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}


@dataclass
class Decision:
    """What to do with one turn, and why."""

    role: str
    action: str                      # allow | replace | block
    level: str                       # effective level (sticky risk and policy thresholds applied)
    categories: list[str]            # effective categories, most likely first
    message: str | None = None       # the policy message (rendered), if any
    position: str = "after"          # where an allow-message goes: before | after the reply
    scores: dict[str, float] = field(default_factory=dict)
    category_scores: dict[str, float] = field(default_factory=dict)
    rule: str = "default"            # which policy rule matched
    sticky: bool = False             # raised by an earlier unsafe turn
    backstop: bool = False           # the model failed; the keyword backstop (or fail-open) decided
    notified: bool = False
    policy: str = ""
    notes: list[str] = field(default_factory=list)
    pending: tuple[str, str] | None = None   # input-rail message carried to the reply

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    def apply(self, reply: str) -> str:
        """The text the user should see instead of (or around) ``reply``."""
        if self.action in ("replace", "block"):
            return self.message or ""
        text = reply
        for message, position in [p for p in [(self.message, self.position), self.pending] if p and p[0]]:
            text = f"{message}\n\n{text}" if position == "before" else f"{text}\n\n{message}"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("pending")
        return d


class Guard:
    """Apply one policy to a classifier's verdicts, per conversation."""

    def __init__(self, classifier, policy: LoadedPolicy, max_conversations: int = 10_000,
                 audit: AuditLog | bool | None = None):
        """``audit``: an AuditLog, False for none, or None to open the one the policy configures."""
        self.classifier = classifier
        self.policy = policy
        p = policy.policy
        if audit is None:
            audit = self._open_audit(policy) if p.audit.enabled else False
        self.audit: AuditLog | None = audit or None
        self.store = ConversationStore(max_conversations, context_turns=p.context_turns)
        self.thresholds = {**getattr(classifier, "thresholds", {}), **p.thresholds}
        self._hook = resolve(p.notify) if p.notify else None
        self._own_messages = set(policy.messages.values())
        if not policy.country_found:
            log.warning("country %r is not in the resources table %s; using its fallback",
                        policy.country, policy.resources.version)

    @staticmethod
    def _open_audit(policy: LoadedPolicy) -> AuditLog:
        a = policy.policy.audit
        if os.environ.get(AUDIT_DB_ENV) or not a.path:
            path = default_path()
        else:
            path = Path(a.path).expanduser()
            if not path.is_absolute() and policy.path is not None:
                path = policy.path.parent / path
        return AuditLog(path, include_text=a.include_text, synchronous=a.synchronous,
                        retention_days=a.retention_days)

    @classmethod
    def load(cls, policy: str | os.PathLike | dict | None = None, country: str | None = None,
             adapter: str | os.PathLike | None = None, classifier=None, audit: AuditLog | bool | None = None,
             **load_kwargs) -> "Guard":
        """Load a policy (default policies/default.yaml) and a classifier (default: the shipped one).

        The policy is validated first, so a bad policy fails before the model loads.
        """
        loaded = load_policy(policy, country=country)
        if classifier is None:
            from .classifier import Classifier

            classifier = Classifier.load(adapter, **load_kwargs)
        return cls(classifier, loaded, audit=audit)

    # --- public API ----------------------------------------------------------------------

    def check_input(self, text: str, conversation_id: str = "default",
                    context: Sequence[Turn | Mapping[str, Any]] | None = None) -> Decision:
        """Judge a user turn. ``context`` (previous turns) overrides the stored conversation."""
        return self._check(text, "user", conversation_id, context)

    def check_output(self, text: str, conversation_id: str = "default",
                     context: Sequence[Turn | Mapping[str, Any]] | None = None) -> Decision:
        """Judge an assistant reply; the decision also carries any check-in from the input rail."""
        return self._check(text, "assistant", conversation_id, context)

    async def acheck_input(self, *args, **kwargs) -> Decision:
        """``check_input`` off the event loop (the model call is CPU-bound)."""
        return await asyncio.to_thread(self.check_input, *args, **kwargs)

    async def acheck_output(self, *args, **kwargs) -> Decision:
        return await asyncio.to_thread(self.check_output, *args, **kwargs)

    def is_policy_message(self, text: str) -> bool:
        """True for the guard's own rendered messages (they need no judging)."""
        return text.strip() in self._own_messages

    # --- the decision --------------------------------------------------------------------

    def _check(self, text: str, role: str, conversation_id: str,
               context: Sequence[Turn | Mapping[str, Any]] | None) -> Decision:
        check_role(role)
        text, cleaning = clean_text(text)  # bytes decoded, type checked: the same rules as the classifier
        cid = str(conversation_id)
        store = self.store
        with store.lock:
            state = store.get(cid)
            turns = [Turn.coerce(t) for t in context] if context is not None else state.context()
            pending = state.pending if role == "assistant" else None
            if role == "assistant":
                state.pending = None
        p = self.policy.policy

        if role == "assistant" and self.is_policy_message(text):
            d = Decision(role, "allow", "safe", [], rule="policy message", policy=self._policy_id())
            store.add_turn(cid, role, text)
            return d

        notes: list[str] = []
        backstop = False
        scores: dict[str, float] = {}
        cat_scores: dict[str, float] = {}
        if "empty input" in cleaning:
            level, cats, notes = "safe", [], cleaning
        else:
            try:
                verdict = self._judge(text, role, turns[-p.context_turns:] if p.context_turns else [])
                level, cats = self._effective(verdict)
                scores, cat_scores, notes = verdict.scores, verdict.categories, list(verdict.notes)
            except Exception as e:  # the model could not run: the policy's failure mode decides
                log.error("classifier failed on a %s turn (%s: %s); failure mode %s", role,
                          type(e).__name__, e, p.failure_mode.get(role, "closed"))
                backstop = True
                if p.failure_mode.get(role, "closed") == "closed":
                    level, cats = keyword_screen(text)
                    notes = [f"model failed ({type(e).__name__}); keyword backstop decided"]
                else:
                    level, cats = "safe", []
                    notes = [f"model failed ({type(e).__name__}); fail-open"]

        sticky = False
        with store.lock:
            if role == "user":
                if level == "unsafe":
                    # a recent crisis keeps its categories, so "just kidding" after it is
                    # handled as part of the crisis, not refused as some other risk
                    if state.sticky_left > 0:
                        cats = cats + [c for c in state.sticky_categories if c not in cats]
                    state.sticky_left = p.sticky_turns
                    state.sticky_categories = list(cats)
                elif state.sticky_left > 0:
                    state.sticky_left -= 1
                    sticky = _RANK[level] < _RANK["borderline"]
                    level = max(level, "borderline", key=_RANK.get)
                    cats = cats + [c for c in state.sticky_categories if c not in cats]

        rule = p.rule_for(role, level, cats)
        index = p.rules.index(rule) if rule in p.rules else None
        decision = Decision(
            role=role, action=rule.action, level=level, categories=cats,
            message=self.policy.messages.get(rule.message) if rule.message else None,
            position=rule.position, scores=scores, category_scores=cat_scores,
            rule=f"rules[{index}]" if index is not None else "default", sticky=sticky,
            backstop=backstop, policy=self._policy_id(), notes=notes, pending=pending)

        # remember what the user will see, so the next turn has the right context
        store.add_turn(cid, role, text if role == "user" else decision.apply(text))
        if role == "user":
            if decision.action == "allow" and decision.message:
                with store.lock:
                    state.pending = (decision.message, decision.position)
            elif decision.action != "allow":
                store.add_turn(cid, "assistant", decision.message or "")
        notify = bool(rule.notify and self._hook)
        audit = bool(self.audit and (level != "safe" or decision.action != "allow" or decision.message))
        if notify or audit:   # plain safe turns build no event
            event = self._event(cid, decision, text)   # one event id for the hook and the audit log
            if notify:
                decision.notified = True
                fire(self._hook, event)
            if audit:
                self._record(event, decision, text)
        return decision

    def _record(self, event: dict[str, Any], d: Decision, text: str) -> None:
        """Commit the event to the audit log before the decision is returned. A failed write
        must not take the chat down: the event (without text) goes to the error log instead."""
        event = {k: v for k, v in event.items() if k != "text"}
        event.update(policy_name=event.pop("policy"), category_scores=d.category_scores,
                     backstop=d.backstop, notified=d.notified)
        try:
            self.audit.record(event, text)
        except Exception as e:  # noqa: BLE001
            log.error("audit log write failed (%s: %s); event: %s", type(e).__name__, e, event)

    def _judge(self, text: str, role: str, turns: list[Turn]):
        """The classifier's verdict. With ``reply_alone`` an assistant reply is also judged without
        the conversation, in the same batch, and the riskier verdict is kept: a harmful reply is
        harmful whatever came before, and an ordinary-looking user turn before it can make the
        judge read it as ordinary advice (benchmarks/reply_alone.py, adapter 39844f11e6: on 194
        held-out replies, 52 of 56 unsafe ones caught instead of 51, 4 of the 97 safe ones flagged either way)."""
        if not (role == "assistant" and turns and self.policy.policy.reply_alone):
            return self.classifier.classify(text, role=role, context=turns)
        both = self.classifier.classify_batch([{"text": text, "role": role, "context": turns},
                                               {"text": text, "role": role, "context": []}])
        worst = max(both, key=lambda v: (_RANK[v.level], v.scores.get("unsafe", 0.0)))
        cats = {c: max(v.categories.get(c, 0.0) for v in both) for c in both[0].categories}
        notes = list(worst.notes) + (["the reply judged on its own was riskier"] if worst is both[1] else [])
        return dataclasses.replace(worst, categories=cats, notes=notes)

    def _effective(self, verdict) -> tuple[str, list[str]]:
        """Level and flagged categories under the policy's thresholds."""
        cats = sorted((c for c in CATEGORIES if verdict.categories.get(c, 0.0) >= self.thresholds.get(c, 0.5)),
                      key=lambda c: -verdict.categories[c])
        level = verdict.level
        # A category the operator made stricter raises a safe turn to borderline.
        if level == "safe" and any(c in self.policy.policy.thresholds for c in cats):
            level = "borderline"
        if level != "safe" and not cats:
            cats = [max(CATEGORIES, key=lambda c: verdict.categories.get(c, 0.0))]
        return level, (cats if level != "safe" else [])

    def _policy_id(self) -> str:
        return f"{self.policy.name}@{self.policy.version}"

    def _event(self, cid: str, d: Decision, text: str) -> dict[str, Any]:
        event = {"event_id": uuid.uuid4().hex, "time": time.time(), "conversation_id": cid, "role": d.role,
                 "level": d.level, "categories": d.categories, "scores": d.scores, "action": d.action,
                 "rule": d.rule, "sticky": d.sticky, "policy": self.policy.name,
                 "policy_version": self.policy.version, "country": self.policy.country}
        if self.policy.policy.notify and self.policy.policy.notify.include_text:
            event["text"] = text
        return event
