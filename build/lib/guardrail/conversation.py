"""Per-conversation state: recent turns and sticky risk, bounded in memory.

Risk is sticky: after an unsafe user turn the next ``sticky_turns`` user turns keep
at least borderline handling, so "just kidding" right after a crisis message does
not reset it at once. Only the last few turns are kept (the judge sees no more),
and the least recently used conversations are dropped beyond ``max_conversations``.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .inputs import Turn


@dataclass
class ConversationState:
    turns: deque = field(default_factory=lambda: deque(maxlen=6))   # Turn, oldest first
    sticky_left: int = 0                  # user turns still held at >= borderline
    sticky_categories: list[str] = field(default_factory=list)
    pending: tuple[str, str] | None = None  # (message, position) from the input rail, for the reply
    last_seen: float = field(default_factory=time.time)

    def context(self) -> list[Turn]:
        return list(self.turns)


class ConversationStore:
    """Thread-safe LRU map ``conversation id -> ConversationState``."""

    def __init__(self, max_conversations: int = 10_000, context_turns: int = 6):
        if max_conversations < 1:
            raise ValueError("max_conversations must be at least 1")
        self.max_conversations = max_conversations
        self.context_turns = context_turns
        self._states: OrderedDict[str, ConversationState] = OrderedDict()
        self.lock = threading.RLock()

    def get(self, conversation_id: str) -> ConversationState:
        """The state of a conversation (created when new); marks it recently used."""
        with self.lock:
            state = self._states.get(conversation_id)
            if state is None:
                state = ConversationState(turns=deque(maxlen=max(1, self.context_turns)))
                self._states[conversation_id] = state
                while len(self._states) > self.max_conversations:
                    self._states.popitem(last=False)
            else:
                self._states.move_to_end(conversation_id)
            state.last_seen = time.time()
            return state

    def add_turn(self, conversation_id: str, role: str, text: str) -> None:
        with self.lock:
            self.get(conversation_id).turns.append(Turn(role=role, text=text))

    def forget(self, conversation_id: str) -> None:
        with self.lock:
            self._states.pop(conversation_id, None)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, conversation_id: str) -> bool:
        return conversation_id in self._states
