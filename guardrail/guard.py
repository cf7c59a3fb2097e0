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
import threading
from collections import OrderedDict
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .audit import AUDIT_DB_ENV, AUDIT_URL_ENV, AuditLog, default_path, open_audit
from .classifier import clean_text
from .conversation import ConversationState, StateError, StateStore, open_store, state_url
from .inputs import Turn
from .keywords import keyword_screen
from .notify import fire, resolve
from .policy import LoadedPolicy, PolicyError, known_categories, load_policy
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
        for message, position in self.messages():
            text = f"{message}\n\n{text}" if position == "before" else f"{text}\n\n{message}"
        return text

    def messages(self) -> list[tuple[str, str]]:
        """(message, position) of an allowed turn: its own check-in, then one carried from the input rail."""
        return [p for p in [(self.message, self.position), self.pending] if p and p[0]]

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("pending")
        return d


class ReplyStream:
    """The hold-back state of one streamed reply (see ``Guard.stream_output``): ``feed`` each
    chunk and show what it returns; once ``stopped``, stop generating; ``finish`` at the end."""

    def __init__(self, guard: "Guard", conversation_id: str | None,
                 context: Sequence[Turn | Mapping[str, Any]] | None):
        self.guard, self.conversation_id, self.context = guard, conversation_id, context
        self.settings = guard.policy.policy.streaming
        self.window = self.settings.window_words
        if context is not None:
            self.turns = [Turn.coerce(t) for t in context]
        elif conversation_id is not None:
            try:
                self.turns = guard.store.load(str(conversation_id)).context()
            except StateError as e:
                self.turns = guard._without_state(e, "assistant").context()
        else:
            self.turns = []
        self.shown, self.held, self.stopped = "", "", False
        self.decision: Decision | None = None
        self.session = guard.judging_session()   # each window costs its new tokens

    def feed(self, chunk: Any) -> list[str]:
        if self.stopped:
            return []
        self.held += chunk if isinstance(chunk, str) else clean_text(chunk)[0]
        if len(self.held.split()) < self.window:
            return []
        if not self.guard.window_allowed(self.shown + self.held, self.turns, self.session):
            return self._stop()
        piece, self.shown, self.held = self.held, self.shown + self.held, ""
        self.window = min(round(self.window * self.settings.window_growth),   # growth >= 1: never shrinks
                          max(self.settings.max_window_words, self.settings.window_words))
        return [piece]

    def finish(self) -> list[str]:
        if self.stopped:
            return []
        d = self.decision = self._check_whole()
        if not d.allowed:
            return self._stop(d)
        out = [self.held] if self.held else []
        self.stopped = True
        return out + [f"\n\n{m}" for m, _ in d.messages()]

    def _check_whole(self) -> Decision:
        """``check_output`` of the reply so far (audit, conversation state), reusing the session."""
        return self.guard._check(self.shown + self.held, "assistant", self.conversation_id, self.context,
                                 session=self.session)

    def _stop(self, d: Decision | None = None) -> list[str]:
        if d is None:
            d = self._check_whole()
        self.decision, self.stopped = d, True
        return [("\n\n" if self.shown else "") + (d.message or "")]


@dataclass(frozen=True)
class _Judged:
    """One turn as the judge and the policy's thresholds see it, before sticky risk."""

    level: str
    categories: list[str]
    scores: dict[str, float]
    category_scores: dict[str, float]
    notes: list[str]
    backstop: bool


class Guard:
    """Apply one policy to a classifier's verdicts, per conversation."""

    def __init__(self, classifier, policy: LoadedPolicy, max_conversations: int = 10_000,
                 audit: AuditLog | bool | None = None, state: str | StateStore | None = None):
        """``audit``: an AuditLog, False for none, or None to open the one the policy configures.
        ``state``: where conversations are kept, a store or a URL (``memory``,
        ``redis://HOST:PORT/DB``); None: $GUARDRAIL_STATE, else the policy's ``state``, else memory."""
        self.classifier = classifier
        self.policy = policy
        p = policy.policy
        if audit is None:
            audit = self._open_audit(policy) if p.audit.enabled else False
        self.audit: AuditLog | None = audit or None
        if state is None or isinstance(state, str):
            state = open_store(state_url(state, p.state), max_conversations, context_turns=p.context_turns,
                               ttl_seconds=p.state_ttl_hours * 3600)
        self.store: StateStore = state
        # user-turn verdicts by (text, turns before it), so a transcript sent again costs nothing
        self._verdicts: OrderedDict[tuple, _Judged] = OrderedDict()
        self._cache_size = 4 * max_conversations
        self._cache_lock = threading.Lock()
        self._check_names(classifier, policy)
        self.thresholds = {**getattr(classifier, "thresholds", {}), **p.thresholds}
        self._hook = resolve(p.notify) if p.notify else None
        self._own_messages = set(policy.messages.values())
        if not policy.country_found:
            log.warning("country %r is not in the resources table %s; using its fallback",
                        policy.country, policy.resources.version)

    @staticmethod
    def _check_names(classifier, policy: LoadedPolicy) -> None:
        """A policy loaded against another adapter may name a taught category this
        classifier lacks: a rule that can never match is an error, not a silent gap."""
        known = set(getattr(classifier, "categories", CATEGORIES))
        p = policy.policy
        used = [(f"rules.{i}.when.categories", c) for i, r in enumerate(p.rules) for c in r.when.categories]
        used += [(f"default.when.categories", c) for c in p.default.when.categories]
        used += [("thresholds", c) for c in p.thresholds]
        for where, c in used:
            if c not in known:
                raise PolicyError(f"{policy.path or 'policy'}: {where}: category {c!r} is not one of this "
                                  f"classifier's ({', '.join(sorted(known))}); teach it into the adapter "
                                  f"(guardrail teach) or load the adapter that has it")

    @staticmethod
    def _open_audit(policy: LoadedPolicy) -> AuditLog:
        a = policy.policy.audit
        url = os.environ.get(AUDIT_URL_ENV) or (None if os.environ.get(AUDIT_DB_ENV) else a.url)
        if url:
            return open_audit(url, include_text=a.include_text, retention_days=a.retention_days)
        if os.environ.get(AUDIT_DB_ENV) or not a.path:
            path = default_path()
        else:
            path = Path(a.path).expanduser()
            if not path.is_absolute() and policy.path is not None:
                path = policy.path.parent / path
        return open_audit(path, include_text=a.include_text, synchronous=a.synchronous,
                          retention_days=a.retention_days)

    @classmethod
    def load(cls, policy: str | os.PathLike | dict | None = None, country: str | None = None,
             adapter: str | os.PathLike | None = None, classifier=None, audit: AuditLog | bool | None = None,
             state: str | StateStore | None = None, **load_kwargs) -> "Guard":
        """Load a policy (default policies/default.yaml) and a classifier (default: the shipped one).

        The policy is validated first, so a bad policy fails before the model loads; the
        category names it may use are the built-in ones and those taught into the adapter.
        """
        names = getattr(classifier, "categories", None) if classifier is not None else known_categories(adapter)
        loaded = load_policy(policy, country=country, categories=names)
        if classifier is None:
            from .classifier import Classifier

            classifier = Classifier.load(adapter, **load_kwargs)
        return cls(classifier, loaded, audit=audit, state=state)

    # --- public API ----------------------------------------------------------------------

    def check_input(self, text: str, conversation_id: str | None = None,
                    context: Sequence[Turn | Mapping[str, Any]] | None = None) -> Decision:
        """Judge a user turn.

        Two ways to say which conversation it belongs to; nothing is ever shared between
        callers that give neither:

        * ``context``: the whole conversation before this turn (what the NeMo server,
          RunnableRails and LangChain message lists send). Sticky risk and a pending
          check-in are derived from that transcript (verdicts of turns already judged are
          reused from a cache), so no id is needed.
        * ``conversation_id`` alone: the guard keeps the conversation's recent turns and
          sticky risk itself, for callers that send one turn at a time.

        With neither, the turn is judged on its own, and no state is kept."""
        return self._check(text, "user", conversation_id, context)

    def check_output(self, text: str, conversation_id: str | None = None,
                     context: Sequence[Turn | Mapping[str, Any]] | None = None) -> Decision:
        """Judge an assistant reply (``context``: the conversation before it, ending with the
        user turn it answers); the decision also carries any check-in from the input rail."""
        return self._check(text, "assistant", conversation_id, context)

    async def acheck_input(self, *args, **kwargs) -> Decision:
        """``check_input`` off the event loop (the model call is CPU-bound)."""
        return await asyncio.to_thread(self.check_input, *args, **kwargs)

    async def acheck_output(self, *args, **kwargs) -> Decision:
        return await asyncio.to_thread(self.check_output, *args, **kwargs)

    def stream_output(self, chunks: Iterable[str], conversation_id: str | None = None,
                      context: Sequence[Turn | Mapping[str, Any]] | None = None,
                      stream: ReplyStream | None = None) -> Iterator[str]:
        """Guard a reply as it streams: yields the text the user may see, piece by piece.

        Hold-back mode (the policy's ``streaming``): chunks are held until ``window_words``
        more words have arrived, then the reply so far is judged with the conversation; only
        text of a window judged allowed is released. When a window is not allowed, the
        stream stops there and the policy's message (escalation, refusal) is yielded
        instead, through ``check_output`` so the audit log and conversation state see it.
        At the end the whole reply goes through ``check_output`` as usual; a message it adds
        (a check-in) follows the reply. Text already released cannot be taken back: if only
        the whole reply is flagged, its message is yielded after it. The caller stops
        pulling from ``chunks`` once the stream has stopped. ``stream``: a ReplyStream built
        by the caller instead of one for ``conversation_id`` and ``context``, to read its
        ``decision`` afterwards."""
        stream = stream or ReplyStream(self, conversation_id, context)
        for chunk in chunks:
            yield from stream.feed(chunk)
            if stream.stopped:
                return
        yield from stream.finish()

    async def astream_output(self, chunks, conversation_id: str | None = None,
                             context: Sequence[Turn | Mapping[str, Any]] | None = None,
                             stream: ReplyStream | None = None):
        """``stream_output`` over an async iterable; the judging runs off the event loop."""
        stream = stream or ReplyStream(self, conversation_id, context)
        async for chunk in chunks:
            for piece in await asyncio.to_thread(stream.feed, chunk):
                yield piece
            if stream.stopped:
                return
        for piece in await asyncio.to_thread(stream.finish):
            yield piece

    def judging_session(self) -> Any:
        """A judging session for one streamed reply (``Classifier.session``: keys/values kept
        between its windows), or None for a classifier that keeps none."""
        return self.classifier.session() if hasattr(self.classifier, "session") else None

    def window_allowed(self, text: str, context: Sequence[Turn | Mapping[str, Any]], session: Any = None) -> bool:
        """Would the policy let a streamed reply's text so far through? Judged with the
        conversation before it, on a throwaway state: no audit event, no state change (the
        stream's end, or its stop, goes through ``check_output``). ``session``: the stream's
        judging session (``Classifier.session``), which keeps keys/values between windows."""
        j = self._judged_turn(text, "assistant", [Turn.coerce(t) for t in context], session=session)
        return self._decide("assistant", j, ConversationState(), None).allowed

    def is_policy_message(self, text: str) -> bool:
        """True for the guard's own rendered messages (they need no judging)."""
        return text.strip() in self._own_messages

    # --- the decision --------------------------------------------------------------------

    def _check(self, text: str, role: str, conversation_id: str | None,
               context: Sequence[Turn | Mapping[str, Any]] | None, session: Any = None) -> Decision:
        """The decision for one turn; ``session``: a streamed reply's judging session (ReplyStream).

        With a stored conversation the state is read once for the judge's context, and the
        decision is then applied to the state in one atomic ``update`` (which a shared store
        may re-run on a newer state: the verdict is kept, only the policy step is repeated)."""
        check_role(role)
        text, cleaning = clean_text(text)  # bytes decoded, type checked: the same rules as the classifier
        cid = "" if conversation_id is None else str(conversation_id)
        stored = context is None and conversation_id is not None
        if context is not None:
            # the caller sent the conversation: derive its state from the transcript
            turns = [Turn.coerce(t) for t in context]
            state = self._replay(turns)
        elif stored:
            try:
                state = self.store.load(cid)
            except StateError as e:
                state, stored = self._without_state(e, role), False
            turns = state.context()
        else:
            turns, state = [], ConversationState()

        if role == "assistant" and self.is_policy_message(text):
            d = Decision(role, "allow", "safe", [], rule="policy message", policy=self._policy_id())

            def keep(st: ConversationState) -> Decision:
                st.pending = None
                st.add_turn(role, text)
                return d
            return self._apply(cid, keep, state, stored, role)

        if role == "user" and "empty input" not in cleaning:
            judged = self._cached(text, turns)   # a later transcript replay reuses this verdict
        else:
            judged = self._judged_turn(text, role, turns, cleaning, session)
        if state.notes:
            judged = dataclasses.replace(judged, notes=judged.notes + state.notes)

        def decide(st: ConversationState) -> Decision:
            pending = st.pending if role == "assistant" else None
            if role == "assistant":
                st.pending = None
            decision = self._decide(role, judged, st, pending)
            # remember what the user will see, so the next turn has the right context
            st.add_turn(role, text if role == "user" else decision.apply(text))
            if role == "user" and decision.action != "allow":
                st.add_turn("assistant", decision.message or "")
            return decision

        decision = self._apply(cid, decide, state, stored, role)
        self._after(cid, decision, text)
        return decision

    def _apply(self, cid: str, fn, state: ConversationState, stored: bool, role: str) -> Decision:
        """``fn`` on the stored conversation (atomically), or on the local ``state``."""
        if stored:
            try:
                return self.store.update(cid, fn)
            except StateError as e:   # the decision still comes, from the state read before
                state = self._without_state(e, role, state)
        return fn(state)

    def _without_state(self, error: Exception, role: str, state: ConversationState | None = None) -> ConversationState:
        """The state to decide on when the conversation store failed: the copy read before the
        failure, or a fresh one. The policy's failure mode decides: ``closed`` holds a user turn
        at least borderline, as sticky risk would (an earlier crisis turn cannot be ruled out);
        ``open`` judges it on its own. Logged without message text; the turn is not stored."""
        mode = self.policy.policy.failure_mode.get(role, "closed")
        log.error("conversation state unavailable on a %s turn (%s); failure mode %s", role, error, mode)
        state = state or ConversationState()
        if mode == "closed" and role == "user" and state.sticky_left <= 0:
            state.sticky_left = 1
        state.notes = [f"conversation state unavailable ({type(error).__name__}); failure mode {mode}"]
        return state

    def _judged_turn(self, text: str, role: str, turns: list[Turn], cleaning: list[str] = (),
                     session: Any = None) -> "_Judged":
        """Level and flagged categories of one turn under the policy's thresholds, before
        sticky risk; the model's failure goes to the policy's failure mode."""
        p = self.policy.policy
        if "empty input" in cleaning:
            return _Judged("safe", [], {}, {}, list(cleaning), False)
        try:
            verdict = self._judge(text, role, turns[-p.context_turns:] if p.context_turns else [], session)
            level, cats = self._effective(verdict)
            return _Judged(level, cats, verdict.scores, verdict.categories, list(verdict.notes), False)
        except Exception as e:  # the model could not run: the policy's failure mode decides
            log.error("classifier failed on a %s turn (%s: %s); failure mode %s", role,
                      type(e).__name__, e, p.failure_mode.get(role, "closed"))
            if p.failure_mode.get(role, "closed") == "closed":
                level, cats = keyword_screen(text)
                return _Judged(level, list(cats), {}, {}, [f"model failed ({type(e).__name__}); keyword backstop decided"], True)
            return _Judged("safe", [], {}, {}, [f"model failed ({type(e).__name__}); fail-open"], True)

    def _decide(self, role: str, j: "_Judged", state: ConversationState,
                pending: tuple[str, str] | None) -> Decision:
        """Sticky risk, then the policy rule; updates ``state`` (sticky counters, pending).

        Sticky risk raises a later user turn to at least borderline; the rule is picked by
        the turn's own flagged risk categories, and by the sticky ones only when the turn has
        none of its own ("just kidding" after a crisis gets the crisis check-in; a weapons
        request after it gets the weapons rule and is not counted as a crisis referral).
        Taught categories (guardrail/taught.py) are the turn's own only: never carried."""
        p = self.policy.policy
        level, sticky = j.level, False
        risk = [c for c in j.categories if c in CATEGORIES]
        taught = [c for c in j.categories if c not in CATEGORIES]
        if role == "user":
            if level == "unsafe":
                if not risk and state.sticky_left > 0:
                    risk = list(state.sticky_categories)
                state.sticky_left = p.sticky_turns
                state.sticky_categories = list(risk)
            elif state.sticky_left > 0:
                state.sticky_left -= 1
                sticky = _RANK[level] < _RANK["borderline"]
                level = max(level, "borderline", key=_RANK.get)
                if not risk:
                    risk = list(state.sticky_categories)
        cats = risk + taught
        rule = p.rule_for(role, level, cats)
        index = p.rules.index(rule) if rule in p.rules else None
        decision = Decision(
            role=role, action=rule.action, level=level, categories=cats,
            message=self.policy.messages.get(rule.message) if rule.message else None,
            position=rule.position, scores=j.scores, category_scores=j.category_scores,
            rule=f"rules[{index}]" if index is not None else "default", sticky=sticky,
            backstop=j.backstop, policy=self._policy_id(), notes=j.notes, pending=pending)
        if role == "user":
            state.pending = (decision.message, decision.position) if decision.allowed and decision.message else None
        return decision

    def _replay(self, turns: list[Turn]) -> ConversationState:
        """The conversation state at the end of a transcript: its recent user turns are run
        through the same decision (cached verdicts, no audit, no hook), so sticky risk and a
        pending check-in come from the text the caller sent, not from memory shared by id."""
        p = self.policy.policy
        state = ConversationState()
        users = [i for i, t in enumerate(turns) if t.role == "user"]
        # sticky risk reaches back at most sticky_turns user turns; twice that covers a crisis
        # whose categories were themselves carried from an earlier one
        first = users[-(2 * p.sticky_turns + 1)] if len(users) > 2 * p.sticky_turns + 1 else 0
        for i in range(first, len(turns)):
            t = turns[i]
            if t.role == "assistant":
                state.pending = None   # the reply to the last user turn was already sent
                continue
            if self.is_policy_message(t.text):
                continue
            j = self._cached(t.text, turns[max(0, i - p.context_turns):i])
            self._decide("user", j, state, None)
        return state

    def _cached(self, text: str, before: list[Turn]) -> "_Judged":
        key = (text, tuple(before[-self.policy.policy.context_turns:]) if self.policy.policy.context_turns else ())
        with self._cache_lock:
            hit = self._verdicts.get(key)
            if hit is not None:
                self._verdicts.move_to_end(key)
                return hit
        j = self._judged_turn(clean_text(text)[0], "user", before)
        if not j.backstop:
            with self._cache_lock:
                self._verdicts[key] = j
                while len(self._verdicts) > self._cache_size:
                    self._verdicts.popitem(last=False)
        return j

    def _after(self, cid: str, decision: Decision, text: str) -> None:
        """The operator hook and the audit log, for the turns that need them."""
        p = self.policy.policy
        rule = p.rules[int(decision.rule[6:-1])] if decision.rule.startswith("rules[") else p.default
        notify = bool(rule.notify and self._hook)
        audit = bool(self.audit and (decision.level != "safe" or decision.action != "allow" or decision.message))
        if notify or audit:   # plain safe turns build no event
            event = self._event(cid, decision, text)   # one event id for the hook and the audit log
            if notify:
                decision.notified = True
                fire(self._hook, event)
            if audit:
                self._record(event, decision, text)

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

    def _judge(self, text: str, role: str, turns: list[Turn], session: Any = None):
        """The classifier's verdict. With ``reply_alone`` an assistant reply is also judged without
        the conversation, in the same batch, and the riskier verdict is kept: a harmful reply is
        harmful whatever came before, and an ordinary-looking user turn before it can make the
        judge read it as ordinary advice (benchmarks/reply_alone.py, adapter 39844f11e6: on 194
        held-out replies, 52 of 56 unsafe ones caught instead of 51, 4 of the 97 safe ones flagged either way)."""
        kw = {"session": session} if session is not None else {}   # a streamed reply's judging session
        if not (role == "assistant" and turns and self.policy.policy.reply_alone):
            return self.classifier.classify(text, role=role, context=turns, **kw)
        both = self.classifier.classify_batch([{"text": text, "role": role, "context": turns},
                                               {"text": text, "role": role, "context": []}], **kw)
        worst = max(both, key=lambda v: (_RANK[v.level], v.scores.get("unsafe", 0.0)))
        cats = {c: max(v.categories.get(c, 0.0) for v in both) for c in both[0].categories}
        notes = list(worst.notes) + (["the reply judged on its own was riskier"] if worst is both[1] else [])
        return dataclasses.replace(worst, categories=cats, notes=notes)

    def _effective(self, verdict) -> tuple[str, list[str]]:
        """Level and flagged categories under the policy's thresholds.

        The level is the judge's. A category is flagged only at or above its threshold (the
        policy's override, else the adapter's), so a non-safe turn may flag none (a level-only
        rule then applies). An override stricter than the adapter's threshold raises a safe
        turn to borderline when that category passes it; a looser one never raises anything.
        Taught categories are flagged at their threshold whatever the level, and never move it."""
        adapter = getattr(self.classifier, "thresholds", {})
        flagged = lambda names: sorted((c for c in names if verdict.categories.get(c, 0.0) >= self.thresholds.get(c, 0.5)),
                                       key=lambda c: -verdict.categories[c])
        cats = flagged(CATEGORIES)
        taught = flagged([c for c in verdict.categories if c not in CATEGORIES])
        level = verdict.level
        stricter = {c for c, t in self.policy.policy.thresholds.items() if t < adapter.get(c, 0.5) and c in CATEGORIES}
        if level == "safe" and stricter & set(cats):
            level = "borderline"
        return level, (cats if level != "safe" else []) + taught

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
