"""Per-conversation state: recent turns, sticky risk and a pending check-in.

Risk is sticky: after an unsafe user turn the next ``sticky_turns`` user turns keep
at least borderline handling, so "just kidding" right after a crisis message does
not reset it at once. Only the last few turns are kept (the judge sees no more).

Two stores behind one small interface (``load`` a copy, ``update`` atomically):

* :class:`ConversationStore`, in this process's memory (the default): least recently used
  conversations are dropped beyond ``max_conversations``, idle ones after ``ttl_seconds``.
* :class:`guardrail.redis_state.RedisConversationStore`, shared by workers and replicas
  (``state: redis://HOST:PORT/DB`` in the policy, ``$GUARDRAIL_STATE``, or
  ``Guard.load(..., state=...)``); :func:`open_store` picks one from a URL.

``update`` runs a function on the current state and saves what it left; a store may run it
more than once (Redis retries when another worker changed the conversation meanwhile), so the
function must only read and change the state it is given.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

from .inputs import Turn

STATE_ENV = "GUARDRAIL_STATE"
T = TypeVar("T")


class StateError(RuntimeError):
    """The conversation store cannot be reached or read; the message names the store, never
    a message text. The guard then judges the turn without it (the policy's failure mode)."""


@dataclass
class ConversationState:
    turns: deque = field(default_factory=lambda: deque(maxlen=6))   # Turn, oldest first
    sticky_left: int = 0                  # user turns still held at >= borderline
    sticky_categories: list[str] = field(default_factory=list)
    pending: tuple[str, str] | None = None  # (message, position) from the input rail, for the reply
    last_seen: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)   # about this turn's state (never stored)

    def context(self) -> list[Turn]:
        return list(self.turns)

    def add_turn(self, role: str, text: str) -> None:
        self.turns.append(Turn(role=role, text=text))

    def to_dict(self) -> dict:
        return {"turns": [[t.role, t.text] for t in self.turns], "sticky_left": self.sticky_left,
                "sticky_categories": list(self.sticky_categories),
                "pending": list(self.pending) if self.pending else None, "last_seen": self.last_seen}

    @classmethod
    def from_dict(cls, d: dict, context_turns: int) -> "ConversationState":
        pending = d.get("pending")
        return cls(turns=deque((Turn(role, text) for role, text in d.get("turns", [])), maxlen=max(1, context_turns)),
                   sticky_left=int(d.get("sticky_left", 0)), sticky_categories=list(d.get("sticky_categories", [])),
                   pending=tuple(pending) if pending else None, last_seen=float(d.get("last_seen", time.time())))

    def copy(self, context_turns: int) -> "ConversationState":
        return ConversationState.from_dict(self.to_dict(), context_turns)


class StateStore(Protocol):
    """What the guard needs of a conversation store."""

    context_turns: int

    def load(self, conversation_id: str) -> ConversationState:
        """A copy of the conversation's state (a fresh one when it is new)."""

    def update(self, conversation_id: str, fn: Callable[[ConversationState], T]) -> T:
        """Run ``fn`` on the current state and save what it left, atomically; returns its result."""

    def forget(self, conversation_id: str) -> None: ...

    def close(self) -> None: ...


class ConversationStore:
    """The in-memory store: a thread-safe LRU map ``conversation id -> ConversationState``."""

    def __init__(self, max_conversations: int = 10_000, context_turns: int = 6,
                 ttl_seconds: float | None = None):
        if max_conversations < 1:
            raise ValueError("max_conversations must be at least 1")
        self.max_conversations = max_conversations
        self.context_turns = context_turns
        self.ttl_seconds = ttl_seconds
        self._states: OrderedDict[str, ConversationState] = OrderedDict()
        self.lock = threading.RLock()

    def _get(self, conversation_id: str) -> ConversationState:
        state = self._states.get(conversation_id)
        now = time.time()
        if state is not None and self.ttl_seconds and now - state.last_seen > self.ttl_seconds:
            state = None   # idle past its time to live: a new conversation, as in Redis
        if state is None:
            state = ConversationState(turns=deque(maxlen=max(1, self.context_turns)))
            self._states[conversation_id] = state
            while len(self._states) > self.max_conversations:
                self._states.popitem(last=False)
        self._states.move_to_end(conversation_id)
        state.last_seen = now
        return state

    def get(self, conversation_id: str) -> ConversationState:
        """A copy of the state (the same as ``load``; kept for callers that inspect it)."""
        return self.load(conversation_id)

    def load(self, conversation_id: str) -> ConversationState:
        with self.lock:
            return self._get(conversation_id).copy(self.context_turns)

    def update(self, conversation_id: str, fn: Callable[[ConversationState], T]) -> T:
        with self.lock:
            return fn(self._get(conversation_id))

    def add_turn(self, conversation_id: str, role: str, text: str) -> None:
        self.update(conversation_id, lambda s: s.add_turn(role, text))

    def forget(self, conversation_id: str) -> None:
        with self.lock:
            self._states.pop(conversation_id, None)

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, conversation_id: str) -> bool:
        return conversation_id in self._states

    def describe(self) -> str:
        return "memory"


def open_store(url: str | None, max_conversations: int = 10_000, context_turns: int = 6,
               ttl_seconds: float | None = None) -> StateStore:
    """The store a URL names: empty or ``memory`` for this process's memory, ``redis://``,
    ``rediss://`` (TLS) or ``unix://`` for a Redis server. An unknown scheme is an error."""
    url = (url or "").strip()
    if not url or url == "memory":
        return ConversationStore(max_conversations, context_turns, ttl_seconds)
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        from .redis_state import RedisConversationStore

        return RedisConversationStore(url, context_turns=context_turns, ttl_seconds=ttl_seconds)
    raise ValueError(f"conversation state {url!r}: use 'memory' or a redis://HOST:PORT/DB URL "
                     f"(policy key `state`, ${STATE_ENV}, or Guard.load(state=...))")


def state_url(explicit: str | None, policy_value: str | None) -> str | None:
    """Which store to use: the caller's, else $GUARDRAIL_STATE, else the policy's."""
    return explicit or os.environ.get(STATE_ENV) or policy_value
