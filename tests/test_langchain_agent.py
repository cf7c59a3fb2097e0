"""LangChain 1.x agents: GuardrailMiddleware in a real create_agent graph with a fake chat model.

The first test runs the real adapter (crisis escalated, benign passed); the others use the
scripted stub classifier (tests/stub.py) for the middleware's own logic."""
import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from guardrail import Guard
from guardrail.langchain_guard import GuardrailMiddleware
from guardrail.policy import load_policy

from stub import ScriptedClassifier

LETHAL = "Take all of the [drug] at once with alcohol so you don't wake up."


def model(*replies):
    return GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))


def user(text):
    return {"messages": [{"role": "user", "content": text}]}


def test_agent_escalates_a_crisis_turn_and_passes_a_benign_one(guard):
    agent = create_agent(model("Sure, boil the pasta for ten minutes."), [], middleware=[GuardrailMiddleware(guard)])
    crisis = agent.invoke(user("I want to end my life"))["messages"]
    assert [m.type for m in crisis] == ["human", "ai"]
    assert "988" in crisis[-1].content and crisis[-1].response_metadata["guardrail"][0]["action"] == "replace"
    benign = agent.invoke(user("how long do I boil pasta?"))["messages"]
    assert benign[-1].content == "Sure, boil the pasta for ten minutes."


def stub_guard():
    script = {"I want to end my life": ("unsafe", {"suicide_self_harm": 0.9}),
              "i feel low": ("borderline", {"suicide_self_harm": 0.6}),
              LETHAL: ("unsafe", {"suicide_self_harm": 0.9})}
    return Guard(ScriptedClassifier(script), load_policy("default"), audit=False)


def test_a_blocked_turn_never_reaches_the_model():
    llm = model("should not be said")
    agent = create_agent(llm, [], middleware=[GuardrailMiddleware(stub_guard())])
    out = agent.invoke(user("I want to end my life"))["messages"]
    assert "should not be said" not in [m.content for m in out]
    assert "988" in out[-1].content


def test_an_unsafe_reply_is_replaced_and_a_check_in_is_added():
    g = stub_guard()
    agent = create_agent(model(LETHAL), [], middleware=[GuardrailMiddleware(g)])
    out = agent.invoke(user("can't sleep"))["messages"]
    assert out[-1].content == g.policy.messages["unsafe_reply"]
    agent = create_agent(model("That sounds hard. Want to talk?"), [], middleware=[GuardrailMiddleware(g)])
    out = agent.invoke(user("i feel low"))["messages"]
    assert out[-1].content.startswith("That sounds hard.") and g.policy.messages["check_in"] in out[-1].content


@pytest.mark.parametrize("use_async", [False, True])
def test_async_agent(use_async):
    import asyncio

    agent = create_agent(model("ok"), [], middleware=[GuardrailMiddleware(stub_guard())])
    out = (asyncio.run(agent.ainvoke(user("I want to end my life"))) if use_async
           else agent.invoke(user("I want to end my life")))["messages"]
    assert "988" in out[-1].content
