"""NVIDIA NeMo Guardrails rail actions: ``emotional_safety_check_input|output``.

They follow NeMo's ``library/<feature>/`` convention (the flows are in
rails/flows.co and in :data:`FLOWS`), run the classifier off the event loop, apply
the policy, and return a ``RailOutcome``:

* input: ``block`` with the policy message as ``reason`` when the policy replaces or
  blocks the turn (the flow says it with ``bot $message``); ``allow`` otherwise, a
  check-in being carried to the reply;
* output: ``transform`` of ``bot_message`` when the policy replaces the reply or adds a
  message to it; ``allow`` otherwise.

Settings come from ``custom_data: emotional_safety:`` in config.yml (``policy``,
``country``, ``adapter``); relative paths are relative to the config folder.

Conversation state (sticky risk, a pending check-in) comes from the conversation NeMo
hands the action as ``events``: the server and RunnableRails send the whole conversation
with every request, so two users who open with the same words never share anything. A
``conversation_id`` context variable (``{"role": "context", "content":
{"conversation_id": "..."}}``) only labels the audit events.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from nemoguardrails.actions import action
from nemoguardrails.actions.rail_outcome import RailOutcome, TransformTarget

from .guard import Decision, Guard
from .inputs import Turn

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
log = logging.getLogger("guardrail.nemo")

FLOWS = """
define flow emotional safety check input
  $emotional_safety = execute emotional_safety_check_input
  if $emotional_safety.is_blocked
    $emotional_safety_message = $emotional_safety.reason
    bot $emotional_safety_message
    stop

define flow emotional safety check output
  $emotional_safety = execute emotional_safety_check_output
  if $emotional_safety.is_transform
    $bot_message = $emotional_safety.transform_text["bot_message"]
"""

_guards: dict[tuple, Guard] = {}
_guards_lock = threading.Lock()

OUTPUT_FLOW = "emotional safety check output"
STREAM_KEY = "emotional_safety_stream"   # context variable naming one stream (see stream_async)
_MIN_OVERLAP = 8      # characters two successive chunks must share to count as overlapping


class _Stream:
    """What the output rail keeps about one stream between NeMo's chunks: the reply so far
    (rebuilt from the chunks, which may overlap), its judging session, and the policy message
    once a chunk is blocked."""

    def __init__(self, guard: Guard):
        self.text = ""
        self.session = guard.judging_session()
        self.message: Optional[str] = None
        self.allowed = ""   # the last text judged allowed

    def add(self, chunk: str) -> None:
        """Append ``chunk``, less the part it shares with the end of the reply so far (NeMo's
        ``context_size`` repeats the previous chunk's tail; an 8-character minimum keeps a
        chance match of a letter or two from eating text)."""
        for k in range(min(len(chunk), len(self.text)), _MIN_OVERLAP - 1, -1):
            if self.text.endswith(chunk[:k]):
                self.text += chunk[k:]
                return
        self.text += chunk


_streams: "OrderedDict[str, _Stream]" = OrderedDict()
_streams_lock = threading.Lock()
_STREAMS_MAX = 1024   # streams abandoned before their end leave an entry; the oldest go first


def _stream_state(stream: Optional[str], guard: Guard) -> Optional[_Stream]:
    if not stream:
        return None
    with _streams_lock:
        state = _streams.get(stream)
        if state is None:
            state = _streams[stream] = _Stream(guard)
            while len(_streams) > _STREAMS_MAX:
                _streams.popitem(last=False)
        return state


def settings(config: Any) -> dict[str, Any]:
    """``custom_data.emotional_safety`` of config.yml, with paths resolved."""
    data = dict((getattr(config, "custom_data", None) or {}).get("emotional_safety") or {})
    base = Path(getattr(config, "config_path", None) or ".")
    if base.is_file():
        base = base.parent
    for key in ("policy", "adapter"):
        value = data.get(key)
        if value and not Path(value).is_absolute() and (base / value).exists():
            data[key] = str(base / value)
    return data


def get_guard(config: Any = None) -> Guard:
    """One shared Guard per (policy, country, adapter): the model loads once per process."""
    s = settings(config) if config is not None else {}
    key = (s.get("policy"), s.get("country"), s.get("adapter"))
    with _guards_lock:
        if key not in _guards:
            _guards[key] = Guard.load(s.get("policy"), country=s.get("country"), adapter=s.get("adapter"))
        return _guards[key]


def set_guard(guard: Guard, config: Any = None) -> None:
    """Use an already loaded Guard for this config (tests, or apps that build their own)."""
    s = settings(config) if config is not None else {}
    with _guards_lock:
        _guards[(s.get("policy"), s.get("country"), s.get("adapter"))] = guard


def history(events: Optional[list[dict]]) -> list[Turn]:
    """The conversation's finished turns, oldest first, from NeMo's event list."""
    turns: list[Turn] = []
    for e in events or []:
        kind = e.get("type")
        if kind in ("UserMessage", "UtteranceUserActionFinished"):
            text = e.get("text", e.get("final_transcript"))
            # a UserMessage follows its UtteranceUserActionFinished: keep one
            if isinstance(text, str) and not (turns and turns[-1].role == "user" and turns[-1].text == text):
                turns.append(Turn("user", text))
        elif kind in ("StartUtteranceBotAction", "BotMessage"):
            text = e.get("script", e.get("text"))
            if isinstance(text, str) and not (turns and turns[-1].role == "assistant" and turns[-1].text == text):
                turns.append(Turn("assistant", text))
    return turns


def conversation_id(context: Optional[dict]) -> Optional[str]:
    """The caller's ``conversation_id`` context variable, if it sent one (audit label only)."""
    cid = (context or {}).get("conversation_id")
    return str(cid) if cid else None


def _before(events: Optional[list[dict]], role: str, text: str) -> list[Turn]:
    """The turns before the judged one (NeMo's events may already hold it as the last turn)."""
    turns = history(events)
    if turns and turns[-1].role == role and turns[-1].text == text:
        turns = turns[:-1]
    return turns


def _metadata(d: Decision) -> dict[str, Any]:
    return {"level": d.level, "categories": d.categories, "action": d.action, "rule": d.rule,
            "sticky": d.sticky, "scores": d.scores, "policy": d.policy, "backstop": d.backstop}


@action(name="emotional_safety_check_input")
async def emotional_safety_check_input(context: Optional[dict] = None, events: Optional[list] = None,
                                       config: Any = None, **_: Any) -> RailOutcome:
    text = (context or {}).get("user_message") or ""
    turns = _before(events, "user", text)
    d = await get_guard(config).acheck_input(text, conversation_id(context), context=turns)
    if d.action in ("replace", "block"):
        return RailOutcome.block(reason=d.message or "", metadata=_metadata(d))
    return RailOutcome.allow(metadata=_metadata(d))


@action(name="emotional_safety_check_output")
async def emotional_safety_check_output(context: Optional[dict] = None, events: Optional[list] = None,
                                        config: Any = None, **_: Any) -> RailOutcome:
    """Also the streaming output rail (``rails.output.streaming``): NeMo then calls it once per
    window with extra parameters (llm, model_name, ...) and no events, and ``bot_message`` is
    the window; the user turn it answers comes from ``user_message``."""
    context = context or {}
    text = context.get("bot_message") or ""
    turns = _before(events, "assistant", text)
    if events is None and context.get("user_message"):
        turns = [Turn("user", str(context["user_message"]))]
    guard = get_guard(config)
    if events is None and "triggered_output_rail" in context:
        return await _streamed_chunk(guard, text, turns, context)
    d = await guard.acheck_output(text, conversation_id(context), context=turns)
    final = d.apply(text)
    if final != text:
        return RailOutcome.transform([(TransformTarget.BOT_MESSAGE, final)], metadata=_metadata(d))
    return RailOutcome.allow(metadata=_metadata(d))


STUB = 3   # letters of a word cut by a chunk boundary that are left out of the judged text


def without_stub(text: str) -> str:
    """``text`` less a last word of at most STUB letters cut by a chunk boundary. The judge
    reads such a stub ("ni" of "night") as what it is not, and NeMo releases it once the
    chunk is allowed, so a longer cut word is judged as it stands: at most three letters of
    a word reach the user before the word is judged."""
    if not text or not text[-1].isalnum():
        return text
    cut = max(text.rfind(" "), text.rfind("\n"))
    return text[: cut + 1] if 0 < cut and len(text) - cut - 1 <= STUB else text


async def _streamed_chunk(guard: Guard, chunk: str, turns: list[Turn], context: dict) -> RailOutcome:
    """One chunk of NeMo's streaming output rails (they pass no events). Inside
    :func:`stream_async` (a stream id in the context) the reply so far is rebuilt from the
    chunks and judged whole, with the user turn and the stream's judging session, as
    ``Guard.stream_output`` does; without one, the chunk alone (see :func:`without_stub`
    for a cut last word). Streaming applies no replacement text, so an unsafe reply
    must block, which stops the stream before the chunk; stream_async then puts the policy
    message where NeMo's error object would be."""
    state = _stream_state(context.get(STREAM_KEY), guard)
    if state is not None:
        state.add(chunk)
    text = without_stub(state.text if state is not None else chunk)
    session = state.session if state is not None else None
    if not text.strip() or (state is not None and text == state.allowed):   # nothing new since the last check
        return RailOutcome.allow()
    if await asyncio.to_thread(guard.window_allowed, text, turns, session):
        if state is not None:
            state.allowed = text
        return RailOutcome.allow()
    d = await asyncio.to_thread(guard._check, text, "assistant", conversation_id(context), turns, session)
    if d.allowed:   # the window check and the decision disagree only on a policy message
        return RailOutcome.allow(metadata=_metadata(d))
    if state is not None:
        state.message = d.message or ""
    return RailOutcome.block(reason=d.message or "", metadata=_metadata(d))


def _blocked_by_us(chunk: Any) -> bool:
    """Is ``chunk`` NeMo's end-of-stream error object for a window this rail blocked?"""
    if isinstance(chunk, dict):
        data = chunk
    elif isinstance(chunk, str) and chunk.startswith('{"error"'):
        try:
            data = json.loads(chunk)
        except ValueError:
            return False
    else:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    return (isinstance(error, dict) and error.get("code") == "content_blocked"
            and str(error.get("param", "")).startswith(OUTPUT_FLOW))


async def stream_async(rails: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """``rails.stream_async(...)``, except that when this rail blocks a streamed window the
    stream ends with the policy's message (escalation with resources, or refusal) instead of
    NeMo's ``content_blocked`` error object. :func:`register` installs it as the app's own
    ``stream_async``, so ``guardrail serve`` and direct callers both get it.

    Each call adds a context message with a fresh stream id, so the action can leave the
    message for this stream alone: two users streaming at once never see each other's."""
    original = getattr(rails.stream_async, "__wrapped__", rails.stream_async)
    stream = uuid.uuid4().hex
    messages = kwargs.get("messages")
    if messages is None and len(args) >= 2:
        args = list(args)
        messages = args.pop(1)
    if messages is not None:
        # NeMo hands the action the last context message's variables: the id goes there
        messages = list(messages)
        last = max((i for i, m in enumerate(messages) if m.get("role") == "context"), default=None)
        if last is not None and isinstance(messages[last].get("content"), dict):
            ctx = messages[last]
            messages[last] = {**ctx, "content": {**ctx["content"], STREAM_KEY: stream}}
        else:
            messages.insert(0 if last is None else last + 1, {"role": "context", "content": {STREAM_KEY: stream}})
        kwargs["messages"] = messages
    try:
        async for chunk in original(*args, **kwargs):
            if _blocked_by_us(chunk):
                with _streams_lock:
                    state = _streams.get(stream)
                message = state.message if state is not None else None
                if message is None:   # called without messages: no stream id reached the action
                    message = get_guard(rails.config).policy.messages.get("refusal", "")
                yield message
                return
            yield chunk
    finally:
        with _streams_lock:
            _streams.pop(stream, None)


def register(app: Any) -> None:
    """Register both actions on an ``LLMRails`` app (call it from your config.py ``init``), and
    wrap the app's ``stream_async`` (:func:`stream_async`) so a blocked stream ends with the
    policy's message."""
    app.register_action(emotional_safety_check_input, "emotional_safety_check_input")
    app.register_action(emotional_safety_check_output, "emotional_safety_check_output")
    if not hasattr(app.stream_async, "__wrapped__"):
        original = app.stream_async

        @functools.wraps(original)
        def guarded(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            return stream_async(app, *args, **kwargs)

        guarded.__wrapped__ = original
        app.stream_async = guarded
