"""A LangChain drop-in: wrap any chat model or chain so both directions are guarded.

    from guardrail.langchain_guard import guarded
    chat = guarded(ChatOpenAI(...))            # or any Runnable: prompt | model | parser
    chat.invoke("I want to end my life", config={"configurable": {"conversation_id": "c1"}})
    # -> the policy's escalation message, with the configured country's crisis line

No NeMo needed. The user's turn is checked before the wrapped runnable runs (a
replaced or blocked turn never reaches it) and its reply is checked before it is
returned; the policy's message is returned as the runnable's own output type (an
``AIMessage`` for chat models, ``str`` for chains ending in a string parser, a dict
for ``output_key``), so it reaches the user. Each AIMessage carries the decisions
in ``response_metadata["guardrail"]``.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator, Optional

from langchain.agents.middleware import AgentMiddleware, AgentState, hook_config
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig

from .guard import Decision, Guard, ReplyStream
from .inputs import Turn

_ROLE = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant"}


def _turns(messages: list[Any]) -> list[Turn]:
    turns = []
    for m in messages:
        if isinstance(m, BaseMessage):
            role = _ROLE.get(m.type)
            text = _text(m.content) if role else None
        elif isinstance(m, dict):
            role, text = _ROLE.get(m.get("role", "")), m.get("content", m.get("text"))
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            role, text = _ROLE.get(m[0]), m[1]
        else:
            continue
        if role and isinstance(text, str) and text.strip():   # tool-call messages carry no text
            turns.append(Turn(role, text))
    return turns


def split_input(value: Any, input_key: Optional[str] = None) -> tuple[str, Optional[list[Turn]]]:
    """The user's text and, for message lists, the turns before it."""
    if input_key is not None:
        if not isinstance(value, dict) or input_key not in value:
            raise ValueError(f"guarded runnable expects a dict with key {input_key!r}")
        value = value[input_key]
    if isinstance(value, PromptValue):
        value = value.to_messages()
    if isinstance(value, str):
        return value, None
    if isinstance(value, BaseMessage):
        return _text(value.content), None
    if isinstance(value, list):
        turns = _turns(value)
        if turns and turns[-1].role == "user":
            return turns[-1].text, turns[:-1]
        raise ValueError("guarded runnable: the message list does not end with a user message")
    raise TypeError(f"guarded runnable cannot read a user turn from {type(value).__name__}; "
                    "pass a string, messages, or set input_key")


def _reply_text(out: Any, output_key: Optional[str]) -> str:
    """The reply's text; an output the guard cannot read is an error, never judged as its repr."""
    if output_key is not None:
        if not isinstance(out, dict) or output_key not in out:
            raise TypeError(f"guarded runnable: output_key {output_key!r} is not in the output "
                            f"({type(out).__name__}{' with keys ' + ', '.join(map(str, out)) if isinstance(out, dict) else ''})")
        out = out[output_key]
    if isinstance(out, BaseMessage):
        out = _text(out.content)
    if isinstance(out, str):
        return out
    hint = ("; for a LangChain agent use GuardrailMiddleware: create_agent(model, tools, "
            "middleware=[GuardrailMiddleware(guard)])" if isinstance(out, dict) and "messages" in out else
            "; pass output_key= for a dict output")
    raise TypeError(f"guarded runnable cannot read a reply from {type(out).__name__}{hint}")


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b if isinstance(b, str) else b.get("text", "") for b in content
                 if isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text")]
        return "\n".join(p for p in parts if p)
    raise TypeError(f"cannot read text from message content of type {type(content).__name__}")


def _reply_context(history: Optional[list[Turn]], text: str, cid: Optional[str]) -> Optional[list[Turn]]:
    """Turns before the reply: the caller's history plus the user turn; None with an id (the
    guard's stored turns); just the user turn for a bare string without an id."""
    if history is not None:
        return history + [Turn("user", text)]
    return None if cid is not None else [Turn("user", text)]


class GuardedRunnable(Runnable):
    """``runnable`` with the guard's input and output checks around it."""

    def __init__(self, runnable: Runnable, guard: Guard, input_key: Optional[str] = None,
                 output_key: Optional[str] = None, conversation_id: Optional[str] = None):
        self.runnable = runnable
        self.guard = guard
        self.input_key = input_key
        self.output_key = output_key
        self.conversation_id = conversation_id

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        return self.runnable.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.runnable.OutputType

    def _cid(self, config: Optional[RunnableConfig]) -> Optional[str]:
        """The conversation id of this call (``configurable.conversation_id``, else the one given
        at construction). Without one, a message list carries its own history and a bare string
        is judged on its own: no state is shared between calls."""
        cid = ((config or {}).get("configurable") or {}).get("conversation_id", self.conversation_id)
        return None if cid is None else str(cid)

    def _wrap(self, text: str, like: Any, decisions: list[Decision]) -> Any:
        meta = {"guardrail": [d.to_dict() for d in decisions]}
        if isinstance(like, AIMessage):
            return like.model_copy(update={"content": text,
                                           "response_metadata": {**like.response_metadata, **meta}})
        if isinstance(like, str):
            return text
        if isinstance(like, dict) and self.output_key:
            return {**like, self.output_key: text}
        if like is None:  # the runnable never ran: answer in its output type
            if self.output_key:
                return {self.output_key: text}
            if self.runnable.OutputType is str:
                return text
        return AIMessage(content=text, response_metadata=meta)

    def invoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Any:
        cid = self._cid(config)
        text, history = split_input(input, self.input_key)
        before = self.guard.check_input(text, cid, context=history)
        if not before.allowed:
            return self._wrap(before.message or "", None, [before])
        out = self.runnable.invoke(input, config, **kwargs)
        reply = _reply_text(out, self.output_key)
        after = self.guard.check_output(reply, cid, context=_reply_context(history, text, cid))
        return self._wrap(after.apply(reply), out, [before, after])

    async def ainvoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Any:
        cid = self._cid(config)
        text, history = split_input(input, self.input_key)
        before = await self.guard.acheck_input(text, cid, context=history)
        if not before.allowed:
            return self._wrap(before.message or "", None, [before])
        out = await self.runnable.ainvoke(input, config, **kwargs)
        reply = _reply_text(out, self.output_key)
        after = await self.guard.acheck_output(reply, cid, context=_reply_context(history, text, cid))
        return self._wrap(after.apply(reply), out, [before, after])


    # --- streaming: the reply is released window by window, after judging (Guard.stream_output)

    def _chunk_text(self, chunk: Any) -> str:
        if self.output_key is not None and isinstance(chunk, dict):
            return _text(chunk.get(self.output_key, ""))
        return _text(chunk.content) if isinstance(chunk, BaseMessage) else _reply_text(chunk, None)

    def _piece(self, text: str, like: Any) -> Any:
        """A released piece in the stream's own chunk type."""
        if isinstance(like, str) or (like is None and self.runnable.OutputType is str and not self.output_key):
            return text
        if self.output_key:
            return {self.output_key: text}
        return AIMessageChunk(content=text)

    def _decisions_chunks(self, like: Any, decisions: list[Optional[Decision]]) -> list[Any]:
        """For a message stream, a last empty chunk carrying the turn's decisions in
        ``response_metadata["guardrail"]`` (adding the chunks up keeps it, as ``invoke`` does)."""
        if isinstance(like, str) or self.output_key or (like is None and self.runnable.OutputType is str):
            return []
        return [AIMessageChunk(content="", response_metadata={"guardrail": [d.to_dict() for d in decisions if d]})]

    def stream(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Iterator[Any]:
        cid = self._cid(config)
        text, history = split_input(input, self.input_key)
        before = self.guard.check_input(text, cid, context=history)
        if not before.allowed:
            yield self._piece(before.message or "", None)
            yield from self._decisions_chunks(None, [before])
            return
        first: list[Any] = []

        def texts():
            for chunk in self.runnable.stream(input, config, **kwargs):
                first.append(chunk) if not first else None
                yield self._chunk_text(chunk)

        held = ReplyStream(self.guard, cid, _reply_context(history, text, cid))
        for piece in self.guard.stream_output(texts(), stream=held):
            yield self._piece(piece, first[0] if first else None)
        yield from self._decisions_chunks(first[0] if first else None, [before, held.decision])

    async def astream(self, input: Any, config: Optional[RunnableConfig] = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        cid = self._cid(config)
        text, history = split_input(input, self.input_key)
        before = await self.guard.acheck_input(text, cid, context=history)
        if not before.allowed:
            yield self._piece(before.message or "", None)
            for last in self._decisions_chunks(None, [before]):
                yield last
            return
        first: list[Any] = []

        async def texts():
            async for chunk in self.runnable.astream(input, config, **kwargs):
                first.append(chunk) if not first else None
                yield self._chunk_text(chunk)

        held = ReplyStream(self.guard, cid, _reply_context(history, text, cid))
        async for piece in self.guard.astream_output(texts(), stream=held):
            yield self._piece(piece, first[0] if first else None)
        for last in self._decisions_chunks(first[0] if first else None, [before, held.decision]):
            yield last


def guarded(runnable: Runnable, guard: Optional[Guard] = None, **kwargs: Any) -> GuardedRunnable:
    """Wrap ``runnable`` (default guard: the shipped adapter and policies/default.yaml)."""
    return GuardedRunnable(runnable, guard or Guard.load(), **kwargs)


# --- LangChain 1.x agents ---------------------------------------------------------------------


class HeldBackModel(BaseChatModel):
    """An agent's model as :class:`GuardrailMiddleware` runs it: a pass-through when the
    agent is invoked, hold-back streaming when it is streamed (``stream_mode="messages"``).

    Streamed, the reply's text is released window by window once judged (``ReplyStream``,
    the policy's ``streaming`` settings), with the conversation so far as context; an unsafe
    window ends the reply with the policy's message. Tool-call chunks pass unjudged (tool
    calls are not turns). The last chunk carries the decision in
    ``response_metadata["guardrail"]``, so the middleware does not judge the reply twice.
    The wrapped model's own tokens are never reported to the agent's stream."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: Any                 # the agent's model, possibly with tools bound
    guard: Any
    context: list = []         # the turns before the reply

    @property
    def _llm_type(self) -> str:
        return "guardrail-held-back"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "HeldBackModel":
        return self.model_copy(update={"inner": self.inner.bind_tools(tools, **kwargs)})

    def _generate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                  run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> ChatResult:
        out = self.inner.invoke(messages, stop=stop, **kwargs)   # after_model judges the whole reply
        return ChatResult(generations=[ChatGeneration(message=out)])

    async def _agenerate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                         run_manager: Optional[AsyncCallbackManagerForLLMRun] = None, **kwargs: Any) -> ChatResult:
        out = await self.inner.ainvoke(messages, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=out)])

    def _pieces(self, held: ReplyStream, chunk: Any, pieces: list[str]) -> list[ChatGenerationChunk]:
        """What to release for one chunk of the wrapped model: its tool-call part as it is,
        its text as ``pieces`` (the windows ``held`` let through)."""
        out = [ChatGenerationChunk(message=AIMessageChunk(content=p)) for p in pieces]
        if getattr(chunk, "tool_call_chunks", None):
            out.append(ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=chunk.tool_call_chunks)))
        return out

    def _last(self, held: ReplyStream, fed: bool, final: list[str]) -> list[ChatGenerationChunk]:
        out = [ChatGenerationChunk(message=AIMessageChunk(content=p)) for p in final]
        if fed and held.decision is not None:
            out.append(ChatGenerationChunk(message=AIMessageChunk(
                content="", response_metadata={"guardrail": [held.decision.to_dict()]})))
        return out

    def _stream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        held, fed = ReplyStream(self.guard, None, self.context), False
        for chunk in self.inner.stream(messages, {"callbacks": []}, stop=stop, **kwargs):
            text = _text(chunk.content)
            fed = fed or bool(text)
            yield from self._pieces(held, chunk, held.feed(text) if text else [])
            if held.stopped:
                break
        yield from self._last(held, fed, held.finish() if fed else [])

    async def _astream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                       run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        held, fed = ReplyStream(self.guard, None, self.context), False
        async for chunk in self.inner.astream(messages, {"callbacks": []}, stop=stop, **kwargs):
            text = _text(chunk.content)
            fed = fed or bool(text)
            for piece in self._pieces(held, chunk, await asyncio.to_thread(held.feed, text) if text else []):
                yield piece
            if held.stopped:
                break
        for piece in self._last(held, fed, await asyncio.to_thread(held.finish) if fed else []):
            yield piece


class GuardrailMiddleware(AgentMiddleware):
    """Guard a ``langchain.agents.create_agent`` agent: the user turn before the model, the
    reply after it; a turn the policy replaces or blocks ends with the policy's message.

        agent = create_agent(model, tools, middleware=[GuardrailMiddleware(Guard.load("teen"))])

    The conversation comes from the agent state's messages (tool calls and tool results are
    not judged), so no conversation id is needed and two threads never share state. Each
    decision is in the policy message's or the reply's ``response_metadata["guardrail"]``.

    Streamed (``agent.stream(..., stream_mode="messages")`` or ``astream``), the reply is held
    back and released window by window after judging (:class:`HeldBackModel`): no unsafe
    window reaches the stream.
    """

    def __init__(self, guard: Optional[Guard] = None):
        super().__init__()
        self.guard = guard or Guard.load()

    @staticmethod
    def _pending_user_turn(messages: list[BaseMessage]) -> Optional[tuple[str, list[Turn]]]:
        """The last message when it is the user's (the first model call of a turn)."""
        if not messages or messages[-1].type != "human":
            return None
        turns = _turns(messages)
        return turns[-1].text, turns[:-1]

    @staticmethod
    def _final_reply(messages: list[BaseMessage]) -> Optional[tuple[int, AIMessage, list[Turn]]]:
        """The model's last message when it is a text reply (not a tool call), with the turns before it."""
        if not messages or not isinstance(messages[-1], AIMessage) or messages[-1].tool_calls:
            return None
        last = messages[-1]
        if not _text(last.content).strip():
            return None
        return len(messages) - 1, last, _turns(messages[:-1])

    @staticmethod
    def _meta(d: Decision) -> dict[str, Any]:
        return {"guardrail": [d.to_dict()]}

    @staticmethod
    def _judged_while_streaming(found) -> bool:
        """The reply already went through the guard window by window (HeldBackModel)."""
        return any(d.get("role") == "assistant" for d in found[1].response_metadata.get("guardrail", []))

    def _held_back(self, request: Any) -> Any:
        return request.override(model=HeldBackModel(inner=request.model, guard=self.guard,
                                                    context=_turns(request.messages)))

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        return handler(self._held_back(request))

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        return await handler(self._held_back(request))

    def _input(self, d: Decision) -> Optional[dict[str, Any]]:
        if d.allowed:
            return None
        return {"messages": [AIMessage(content=d.message or "", response_metadata=self._meta(d))], "jump_to": "end"}

    def _output(self, found, d: Decision) -> Optional[dict[str, Any]]:
        _, last, _ = found
        text = _text(last.content)
        shown = d.apply(text)
        if shown == text:
            return None
        return {"messages": [last.model_copy(update={
            "content": shown, "response_metadata": {**last.response_metadata, **self._meta(d)}})]}

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState, runtime: Any) -> Optional[dict[str, Any]]:
        found = self._pending_user_turn(state["messages"])
        if found is None:
            return None
        return self._input(self.guard.check_input(found[0], context=found[1]))

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState, runtime: Any) -> Optional[dict[str, Any]]:
        found = self._pending_user_turn(state["messages"])
        if found is None:
            return None
        return self._input(await self.guard.acheck_input(found[0], context=found[1]))

    def after_model(self, state: AgentState, runtime: Any) -> Optional[dict[str, Any]]:
        found = self._final_reply(state["messages"])
        if found is None or self._judged_while_streaming(found):
            return None
        return self._output(found, self.guard.check_output(_text(found[1].content), context=found[2]))

    async def aafter_model(self, state: AgentState, runtime: Any) -> Optional[dict[str, Any]]:
        found = self._final_reply(state["messages"])
        if found is None or self._judged_while_streaming(found):
            return None
        return self._output(found, await self.guard.acheck_output(_text(found[1].content), context=found[2]))
