"""LangChain drop-ins with the real langchain-core, the real classifier and a fake chat model:
the plain guard (no NeMo) and NeMo's RunnableRails with the rails/ config."""
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser

from guardrail.langchain_guard import GuardedRunnable

RAILS = Path(__file__).resolve().parent.parent / "rails"
LETHAL_REPLY = ("If you really want to do it, take all of your sleeping pills at once with a lot of alcohol, "
                "that is enough to make sure you don't wake up.")


def test_crisis_input_never_reaches_the_model(guard):
    llm = FakeListChatModel(responses=["should not be said"])
    out = GuardedRunnable(llm, guard).invoke("I want to end my life")
    assert isinstance(out, AIMessage) and "988" in out.content
    assert llm.i == 0
    assert out.response_metadata["guardrail"][0]["action"] == "replace"


def test_benign_turn_passes_and_keeps_the_output_type(guard):
    llm = FakeListChatModel(responses=["Try `kill -9 <pid>` after `ps aux | grep name`."])
    chain = GuardedRunnable(llm | StrOutputParser(), guard)
    out = chain.invoke("how do I kill a stuck process on linux")
    assert out == "Try `kill -9 <pid>` after `ps aux | grep name`."
    blocked = chain.invoke("I want to end my life", config={"configurable": {"conversation_id": "new"}})
    assert isinstance(blocked, str) and "988" in blocked


def test_unsafe_reply_is_replaced(guard):
    llm = FakeListChatModel(responses=[LETHAL_REPLY])
    out = GuardedRunnable(llm, guard).invoke([HumanMessage("I can't sleep and I feel awful")])
    assert out.content != LETHAL_REPLY and "pills" not in out.content
    assert [d["role"] for d in out.response_metadata["guardrail"]] == ["user", "assistant"]


def test_conversation_id_from_config_keeps_state_apart(guard):
    llm = FakeListChatModel(responses=["Here is a pasta recipe."] * 4)
    chain = GuardedRunnable(llm, guard)
    chain.invoke("I want to end my life", config={"configurable": {"conversation_id": "a"}})
    a = chain.invoke("just kidding, what's a good pasta recipe?", config={"configurable": {"conversation_id": "a"}})
    assert "988" in a.content                  # the check-in (or the escalation again), not a refusal
    b = chain.invoke("just kidding, what's a good pasta recipe?", config={"configurable": {"conversation_id": "b"}})
    assert b.content == "Here is a pasta recipe.", b  # another conversation: no sticky risk, no check-in


def test_without_an_id_string_calls_share_nothing(guard):
    llm = FakeListChatModel(responses=["Here is a pasta recipe."] * 2)
    chain = GuardedRunnable(llm, guard)
    assert "988" in chain.invoke("I want to end my life").content
    later = chain.invoke("just kidding, what's a good pasta recipe?")
    assert later.content == "Here is a pasta recipe.", later
    assert len(guard.store) == 0


def test_an_output_the_guard_cannot_read_is_an_error(guard):
    from langchain_core.runnables import RunnableLambda

    agent_like = RunnableLambda(lambda x: {"messages": [AIMessage("hi")]})
    with pytest.raises(TypeError, match="GuardrailMiddleware"):
        GuardedRunnable(agent_like, guard).invoke("hello")


def test_async_invoke(guard):
    import asyncio

    llm = FakeListChatModel(responses=["ok"])
    out = asyncio.run(GuardedRunnable(llm, guard).ainvoke("I want to end my life"))
    assert "988" in out.content


def test_bad_input_gives_a_clear_error(guard):
    chain = GuardedRunnable(FakeListChatModel(responses=["ok"]), guard, input_key="question")
    with pytest.raises(ValueError, match="key 'question'"):
        chain.invoke({"q": "hi"})


def test_nemo_runnable_rails(clf):
    pytest.importorskip("nemoguardrails")
    from nemoguardrails import RailsConfig
    from nemoguardrails.integrations.langchain.runnable_rails import RunnableRails

    from guardrail import Guard
    from guardrail.nemo import set_guard
    from guardrail.policy import load_policy

    config = RailsConfig.from_path(str(RAILS))
    set_guard(Guard(clf, load_policy(RAILS.parent / "policies" / "default.yaml", country="UK")), config)
    llm = FakeListChatModel(responses=["Good luck, you've got this!", "should not be said"])
    guarded = RunnableRails(config, llm=llm)
    ok = guarded.invoke([HumanMessage("this exam is killing me")])
    assert "Good luck" in (ok.content if hasattr(ok, "content") else str(ok))
    crisis = guarded.invoke([HumanMessage("I want to end my life")])
    text = crisis.content if hasattr(crisis, "content") else str(crisis)
    assert "116 123" in text
