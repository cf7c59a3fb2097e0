"""Guardrail cost per turn as a conversation grows: turn 2 vs turn 40 (issue 3).

Runs a 40-turn conversation through (a) the Guard directly and (b) NeMo Guardrails with
the rails/ config and a fake chat LLM, sending the rails either the whole history or a
window of the last 6 messages. Prints a table and saves benchmarks/results/conversation_cost.json.

    .venv/bin/python benchmarks/conversation_cost.py
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
TURNS = 40
WINDOW = 6
USER = ["how was your weekend?", "i started learning the guitar", "my fingers hurt from the strings lol",
        "any tips for practising every day?", "what songs are good for beginners?"]
REPLY = "That's great! Short daily sessions work best; try simple chord songs first."


def main() -> int:
    import torch
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from nemoguardrails import LLMRails, RailsConfig
    from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

    from guardrail import Guard
    from guardrail.nemo import set_guard

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    guard = Guard.load(ROOT / "policies" / "default.yaml")
    config = RailsConfig.from_path(str(ROOT / "rails"))
    set_guard(guard, config)
    rails = LLMRails(config, llm=LangChainLLMAdapter(FakeListChatModel(responses=[REPLY] * (4 * TURNS))))

    results: dict[str, dict[int, float]] = {"guard": {}, "nemo_window": {}, "nemo_full": {}}
    history: list[dict] = []
    for turn in range(1, TURNS + 1):
        text = USER[turn % len(USER)]
        t = time.perf_counter()
        guard.check_input(text, conversation_id="bench")
        guard.check_output(REPLY, conversation_id="bench")
        results["guard"][turn] = time.perf_counter() - t
        msgs = history + [{"role": "user", "content": text}]
        for name, sent in (("nemo_window", msgs[-WINDOW:]), ("nemo_full", msgs)):
            ctx = [{"role": "context", "content": {"conversation_id": name}}]
            t = time.perf_counter()
            rails.generate(messages=ctx + sent)
            results[name][turn] = time.perf_counter() - t
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": REPLY}]

    def around(series: dict[int, float], turn: int) -> float:  # median of 3 neighbouring turns
        return statistics.median(series[t] for t in (turn - 1, turn, turn + 1) if t in series)

    summary = {}
    print(f"{'path':14} {'turn 2 (ms)':>12} {'turn 40 (ms)':>13} {'ratio':>6}")
    for name, series in results.items():
        a, b = around(series, 2) * 1000, around(series, TURNS - 1) * 1000
        summary[name] = {"turn2_ms": round(a, 1), "turn40_ms": round(b, 1), "ratio": round(b / a, 2)}
        print(f"{name:14} {a:12.1f} {b:13.1f} {b / a:6.2f}")
    out = ROOT / "benchmarks" / "results" / "conversation_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"turns": TURNS, "window_messages": WINDOW, "threads": torch.get_num_threads(),
                               "summary": summary, "per_turn_s": results}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
