"""Conversation state in Redis, shared by every worker and replica of a chatbot.

One key per conversation (``guardrail:conv:<sha256 of the id>``: the operator's ids, which may
name a user, are not written), a JSON value, and a time to live renewed at every turn. An
update is an optimistic transaction (WATCH / MULTI / EXEC, retried by redis-py when another
worker wrote the same conversation in between), so two turns of one conversation racing on two
workers both land and neither's sticky risk is lost. Memory is bounded by the time to live
and by the few turns kept per conversation.

Any Redis failure becomes a :class:`~guardrail.conversation.StateError` naming the server,
never a message text; the guard then judges the turn without the stored conversation. After
a failure the server is not tried again for ``retry_after_s`` seconds, so a dead server costs
the chat one timeout, not one per turn.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from .conversation import ConversationState, StateError

T = TypeVar("T")
DEFAULT_TTL_SECONDS = 24 * 3600
KEY_PREFIX = "guardrail:conv:"


class RedisConversationStore:
    """``StateStore`` on a Redis server (``redis://HOST:PORT/DB``)."""

    def __init__(self, url: str, context_turns: int = 6, ttl_seconds: float | None = None,
                 timeout_s: float = 2.0, prefix: str = KEY_PREFIX, retry_after_s: float = 5.0):
        try:
            import redis
        except ImportError:
            raise StateError("conversation state in Redis needs the redis package: "
                             "pip install 'emotional-safety-guardrail[replicas]'") from None
        self._redis = redis
        self.url = url
        self.context_turns = context_turns
        self.ttl_seconds = int(ttl_seconds or DEFAULT_TTL_SECONDS)
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        # a short timeout: a turn must not hang on a dead server (the failure mode decides instead)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def describe(self) -> str:
        """The server without credentials, for logs and errors."""
        parts = urlsplit(self.url)
        host = parts.hostname or parts.path or "?"
        return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path if parts.hostname else ''}"

    def key(self, conversation_id: str) -> str:
        return self.prefix + hashlib.sha256(conversation_id.encode("utf-8", "replace")).hexdigest()[:32]

    def _decode(self, raw: bytes | None) -> ConversationState:
        if raw is None:
            return ConversationState.from_dict({}, self.context_turns)
        try:
            return ConversationState.from_dict(json.loads(raw), self.context_turns)
        except (ValueError, TypeError, KeyError) as e:
            raise StateError(f"conversation state in {self.describe()} is not readable ({type(e).__name__})") from None

    def _fail(self, e: Exception) -> StateError:
        self._down_until = time.monotonic() + self.retry_after_s
        return StateError(f"conversation state store {self.describe()} failed: {type(e).__name__}: {e}")

    def _check_up(self) -> None:
        if time.monotonic() < self._down_until:
            raise StateError(f"conversation state store {self.describe()} failed recently; "
                             f"retrying in {self._down_until - time.monotonic():.1f} s")

    def load(self, conversation_id: str) -> ConversationState:
        self._check_up()
        try:
            return self._decode(self.client.get(self.key(conversation_id)))
        except self._redis.RedisError as e:
            raise self._fail(e) from None

    def update(self, conversation_id: str, fn: Callable[[ConversationState], T]) -> T:
        self._check_up()
        key = self.key(conversation_id)

        def attempt(pipe) -> T:
            state = self._decode(pipe.get(key))   # WATCHed: a write by another worker retries this
            result = fn(state)
            state.last_seen = time.time()
            pipe.multi()
            pipe.set(key, json.dumps(state.to_dict()), ex=self.ttl_seconds)
            return result

        try:
            return self.client.transaction(attempt, key, value_from_callable=True)
        except self._redis.RedisError as e:
            raise self._fail(e) from None

    def add_turn(self, conversation_id: str, role: str, text: str) -> None:
        self.update(conversation_id, lambda s: s.add_turn(role, text))

    def forget(self, conversation_id: str) -> None:
        try:
            self.client.delete(self.key(conversation_id))
        except self._redis.RedisError as e:
            raise self._fail(e) from None

    def __contains__(self, conversation_id: str) -> bool:
        try:
            return bool(self.client.exists(self.key(conversation_id)))
        except self._redis.RedisError as e:
            raise self._fail(e) from None

    def close(self) -> None:
        self.client.close()
