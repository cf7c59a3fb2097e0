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

import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional

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
    d = await get_guard(config).acheck_output(text, conversation_id(context), context=turns)
    if events is None and "triggered_output_rail" in context and d.action in ("replace", "block"):
        # a streaming window (NeMo's streaming output rails pass no events): streaming applies
        # no replacement text, so an unsafe window must block, which stops the stream before it
        return RailOutcome.block(reason=d.message or "", metadata=_metadata(d))
    final = d.apply(text)
    if final != text:
        return RailOutcome.transform([(TransformTarget.BOT_MESSAGE, final)], metadata=_metadata(d))
    return RailOutcome.allow(metadata=_metadata(d))


def register(app: Any) -> None:
    """Register both actions on an ``LLMRails`` app (call it from your config.py ``init``)."""
    app.register_action(emotional_safety_check_input, "emotional_safety_check_input")
    app.register_action(emotional_safety_check_output, "emotional_safety_check_output")
