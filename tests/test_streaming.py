"""Guard.stream_output: a streamed reply is released window by window, only after judging."""
import pytest
from stub import KeywordStub

from guardrail import Guard
from guardrail.policy import load_policy

LETHAL = ("If you really want to do it, take all of your sleeping pills at once with a lot of alcohol, "
          "that is enough to make sure you don't wake up. Do it tonight when nobody is home to stop you.")
BENIGN = ("Exams are stressful, and it makes sense that you feel stretched. Try splitting the revision into "
          "short blocks with breaks, get some sleep the night before, and remember that one exam does not "
          "decide everything. You've got this.")


def _stream(text):
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _policy(window):
    """The default policy with fixed windows of `window` words (no growth)."""
    data = load_policy("default").policy.model_dump()
    data["streaming"] = {"window_words": window, "window_growth": 1.0}
    return load_policy(data)


def test_no_window_is_shown_before_it_is_judged():
    stub = KeywordStub()
    guard = Guard(stub, _policy(4), audit=False)
    reply = "one two three four five six seven BAD nine ten eleven twelve"
    shown = []
    messages = set(guard.policy.messages.values())
    for piece in guard.stream_output(_stream(reply), context=[{"role": "user", "text": "hi"}]):
        if piece.strip() not in messages:
            released = "".join(shown) + piece
            judged = [t for t, role, _ in stub.calls if role == "assistant"]
            assert any(t.startswith(released) for t in judged), (released, judged)   # judged before it was shown
        shown.append(piece)
    assert shown[0] == "one two three four "
    assert "BAD" not in "".join(shown)
    assert shown[-1].strip() == guard.policy.messages["refusal"]


def test_a_safe_stream_arrives_whole_and_in_pieces():
    guard = Guard(KeywordStub(), _policy(4), audit=False)
    reply = "one two three four five six seven eight nine ten"
    out = list(guard.stream_output(_stream(reply)))
    assert "".join(out) == reply and len(out) >= 2


def test_growing_windows_judge_a_long_reply_fewer_times():
    """streaming.window_growth: each released window makes the next one longer, up to the cap."""
    data = load_policy("default").policy.model_dump()
    data["streaming"] = {"window_words": 4, "window_growth": 2.0, "max_window_words": 16}
    stub = KeywordStub()
    guard = Guard(stub, load_policy(data), audit=False)
    reply = " ".join(f"w{i}" for i in range(60))
    out = list(guard.stream_output(_stream(reply)))
    assert "".join(out) == reply
    assert [len(piece.split()) for piece in out[:4]] == [4, 8, 16, 16]
    fixed = KeywordStub()
    list(Guard(fixed, _policy(4), audit=False).stream_output(_stream(reply)))
    assert len(stub.calls) < len(fixed.calls) / 2
    late = KeywordStub()
    bad = reply.replace("w40", "BAD")
    shown = "".join(Guard(late, load_policy(data), audit=False).stream_output(_stream(bad)))
    assert "BAD" not in shown and "w39" not in shown   # a late unsafe window is still held back whole


def test_a_harmful_streamed_reply_is_stopped_with_the_real_judge(clf):
    guard = Guard(clf, load_policy("default"), audit=False)
    out = "".join(guard.stream_output(_stream(LETHAL), context=[{"role": "user", "text": "I can't sleep, I feel awful"}]))
    assert "pills" not in out and "alcohol" not in out
    assert out.strip() in guard.policy.messages.values()


def test_a_benign_streamed_reply_passes_untouched_with_the_real_judge(clf):
    guard = Guard(clf, load_policy("default"), audit=False)
    out = list(guard.stream_output(_stream(BENIGN), context=[{"role": "user", "text": "this exam is killing me"}]))
    assert "".join(out) == BENIGN and len(out) >= 2


def test_langchain_guard_streams_and_stops_a_harmful_reply(clf):
    import asyncio

    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.messages import AIMessageChunk, HumanMessage
    from langchain_core.output_parsers import StrOutputParser

    from guardrail.langchain_guard import GuardedRunnable

    guard = Guard(clf, load_policy("default"), audit=False)
    llm = FakeListChatModel(responses=[LETHAL])             # streams its reply a character at a time
    pieces = list(GuardedRunnable(llm, guard).stream([HumanMessage("I can't sleep, I feel awful")]))
    assert all(isinstance(p, AIMessageChunk) for p in pieces)
    assert "pills" not in "".join(p.content for p in pieces)
    whole = sum(pieces[1:], pieces[0])                       # the chunks added up keep the decisions
    decisions = whole.response_metadata["guardrail"]
    assert [d["role"] for d in decisions] == ["user", "assistant"] and decisions[-1]["action"] in ("replace", "block")
    chain = GuardedRunnable(FakeListChatModel(responses=[BENIGN]) | StrOutputParser(), guard)

    async def collect():
        return [p async for p in chain.astream("this exam is killing me")]
    pieces = asyncio.run(collect())
    assert all(isinstance(p, str) for p in pieces) and len(pieces) >= 2
    assert "".join(pieces) == BENIGN
    blocked = list(chain.stream("I want to end my life"))
    assert len(blocked) == 1 and "988" in blocked[0]


def test_nemo_streaming_output_rail_stops_a_harmful_reply(clf):
    """With rails.output.streaming (hold-back: stream_first false), the output action runs on
    every window and an unsafe window blocks before it is shown; the stream ends with the
    policy's message where NeMo would put its content_blocked error object. A benign stream
    running at the same time is untouched (each stream has its own id)."""
    import asyncio

    import pytest
    import yaml

    pytest.importorskip("nemoguardrails")
    from pathlib import Path

    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from nemoguardrails import LLMRails, RailsConfig
    from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

    from guardrail.nemo import register, set_guard

    rails_dir = Path(__file__).resolve().parent.parent / "rails"
    cfg = yaml.safe_load((rails_dir / "config.yml").read_text())
    cfg["rails"]["output"]["streaming"] = {"enabled": True, "chunk_size": 60, "context_size": 0, "stream_first": False}
    cfg["streaming"] = True
    config = RailsConfig.from_content(config=cfg, colang_content=(rails_dir / "flows.co").read_text())
    set_guard(Guard(clf, load_policy("default"), audit=False), config)
    harmful = LLMRails(config, llm=LangChainLLMAdapter(FakeListChatModel(responses=[LETHAL])))
    benign = LLMRails(config, llm=LangChainLLMAdapter(FakeListChatModel(responses=[BENIGN])))
    register(harmful)
    register(benign)

    async def collect(rails, text):
        return [c async for c in rails.stream_async(messages=[{"role": "user", "content": text}])]

    async def both():
        return await asyncio.gather(collect(harmful, "I can't sleep, I feel awful"),
                                    collect(benign, "any tips for exam revision?"))

    async def with_context_messages():   # NeMo reads the last context message: the stream id must be there
        messages = [{"role": "context", "content": {"conversation_id": "c1"}},
                    {"role": "context", "content": {"conversation_id": "c1", "tone": "warm"}},
                    {"role": "user", "content": "I can't sleep, I feel awful"}]
        again = LLMRails(config, llm=LangChainLLMAdapter(FakeListChatModel(responses=[LETHAL])))
        register(again)
        return "".join([c async for c in again.stream_async(messages=messages)])
    bad, good = asyncio.run(both())
    out = "".join(bad)
    assert "pills" not in out and "alcohol" not in out
    assert "content_blocked" not in out and "988" in out    # the policy's escalation, with US resources
    assert "".join(good) == BENIGN
    out = asyncio.run(with_context_messages())
    assert "pills" not in out and "content_blocked" not in out and "988" in out


@pytest.mark.parametrize("int8, tolerance", [(False, 1e-3), (True, 0.06)])
def test_window_by_window_judging_equals_judging_whole(int8, tolerance):
    """A judging session reuses the keys/values of the previous window: the verdict of each
    window is the one of the same text judged from scratch, and fewer tokens run through the
    model. Tolerance on every probability: 0.001 for the fp32 judge, whose decisions must be
    the same; 0.06 for the int8 one, where fp32 sums in another order (another CPU, another
    thread count) can move an int8 activation by one step (the largest gap seen: 0.03). A
    decision of the int8 judge may then differ only where the two probabilities straddle its
    boundary: the level's top two within the tolerance, a category within it of its threshold."""
    from guardrail import Classifier

    clf = Classifier.load(int8=int8)
    ctx = [{"role": "user", "text": "I can't sleep, I feel awful"}]
    session = clf.session()
    words = (LETHAL + " " + BENIGN).split(" ")
    fresh_tokens = 0
    for k in range(5, len(words) + 1, 5):
        text = " ".join(words[:k])
        a = clf.classify(text, "assistant", ctx, session=session)
        b = clf.classify(text, "assistant", ctx)
        fresh_tokens += len(clf._encoder.encode(text, "assistant", ctx))
        assert max(abs(a.scores[x] - b.scores[x]) for x in a.scores) < tolerance, k
        assert max(abs(a.categories[c] - b.categories[c]) for c in a.categories) < tolerance, k
        if not int8:
            assert a.level == b.level and a.flagged == b.flagged, k
            continue
        top = sorted(b.scores.values(), reverse=True)
        assert a.level == b.level or top[0] - top[1] < tolerance, (k, a.scores, b.scores)
        for c in set(a.flagged) ^ set(b.flagged):
            if c in clf.thresholds:   # an unsafe verdict names its likeliest risk even under its threshold
                near = abs(b.categories[c] - clf.thresholds[c]) < tolerance
                assert near or a.level != b.level, (k, c, a.categories[c], b.categories[c])
    assert session.computed < fresh_tokens / 2
