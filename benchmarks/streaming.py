"""What a streamed reply costs the guard (a benchmark, not a test).

    python benchmarks/streaming.py                # writes benchmarks/results/streaming.json
    python benchmarks/streaming.py --quick        # fewer repetitions

A benign reply of about 256 tokens (the issue's size), after a user turn, is released by ``Guard.stream_output``
in hold-back mode (the policy's ``streaming.window_words``) from a fake stream of one word at
a time, and compared with judging the same reply once, whole (``Guard.check_output``):
* the time the guard adds before the first token reaches the user (the first window's
  judge call), against one judge call of a window-sized reply;
* the total judging time of the stream, with the keys/values kept between windows (the
  default: ``Classifier.session``) and without (each window judged from scratch), as a
  multiple of judging the reply once whole;
* the tokens run through the model, both ways.
The judge reads at most ``max_length`` tokens (a longer reply is cut in its middle), so
past that length each window re-reads the cut reply's tail: the figures say how much.
The default policy's windows grow (``streaming.window_growth: 2``, up to
``max_window_words``), so a long reply is judged a few times; the lever beside it is fixed
windows (``window_growth: 1``), every ``window_words``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPLY = ("That sounds like a really full week, and it makes sense that you feel stretched. One thing that "
         "helps many people is to write down everything that is on your mind, then pick the two or three "
         "things that matter most for tomorrow and leave the rest for later. Try to keep regular meals and "
         "a fixed bedtime, even when work is busy, because tiredness makes every task look bigger. If you "
         "notice that you keep putting something off, break it into a first step that takes five minutes, "
         "like opening the document or sending one email. Short walks between tasks can clear your head. "
         "It can also help to tell a friend or a colleague how things are going, so you are not carrying it "
         "alone. And be kind to yourself: a hard week does not mean you are failing, it means you are busy. "
         "When the week is over, look back at what went well as well as what did not, and keep one small "
         "habit that helped. Plan something you enjoy for the weekend, even something simple like cooking a "
         "favourite meal, calling someone you like, or going for a longer walk somewhere green. If the "
         "pressure keeps building week after week, it is worth talking to your manager about priorities, "
         "because a workload that never fits is a problem to solve together, not a personal weakness. ")
USER = [{"role": "user", "text": "my week has been a lot, any ideas to get back on track?"}]


def words(text: str) -> list[str]:
    ws = text.split(" ")
    return [w + (" " if i < len(ws) - 1 else "") for i, w in enumerate(ws)]


class Timed:
    """Wraps a classifier and adds up the time of its calls (what the guard spends judging)."""

    def __init__(self, clf, sessions: bool):
        self.clf, self.sessions, self.seconds, self.calls, self.opened = clf, sessions, 0.0, [], None

    def __getattr__(self, name):
        if name == "session":
            if not self.sessions:   # the guard then judges each window from scratch
                raise AttributeError(name)
            return self._session
        return getattr(self.clf, name)

    def _session(self):
        self.opened = self.clf.session()   # the stream's session: its ``computed`` tokens are reported
        return self.opened

    def _timed(self, fn, *a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        self.calls.append(time.perf_counter() - t)
        self.seconds += self.calls[-1]
        return out

    def classify(self, *a, **kw):
        return self._timed(self.clf.classify, *a, **kw)

    def classify_batch(self, *a, **kw):
        return self._timed(self.clf.classify_batch, *a, **kw)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adapter", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "streaming.json"))
    args = p.parse_args(argv)

    import torch

    from guardrail import Classifier, Guard
    from guardrail.policy import load_policy

    torch.set_num_threads(args.threads)
    clf = Classifier.load(args.adapter)
    policy = load_policy("default")
    window = policy.policy.streaming.window_words
    tokens = len(clf._encoder.tokenizer.ids(REPLY))
    reps = 3 if args.quick else 10
    first_words = " ".join(REPLY.split(" ")[:window])

    def run(sessions: bool):
        timed = Timed(clf, sessions)
        guard = Guard(timed, policy, audit=False)
        t0 = time.perf_counter()
        first_at = None
        shown = []
        for piece in guard.stream_output(words(REPLY), context=USER):
            if first_at is None:
                first_at = time.perf_counter() - t0
            shown.append(piece)
        assert "".join(shown) == REPLY, "the benign reply was not released whole"
        return timed, first_at

    def whole():
        timed = Timed(clf, False)
        Guard(timed, policy, audit=False).check_output(REPLY, context=USER)
        return timed.seconds

    def one_window():
        timed = Timed(clf, False)
        Guard(timed, policy, audit=False).check_output(first_words, context=USER)
        return timed.seconds

    # the lever against the default policy's growing windows: every window window_words long
    from guardrail.policy import LoadedPolicy
    fixed = LoadedPolicy(policy.policy.model_copy(update={"streaming": policy.policy.streaming.model_copy(
        update={"window_growth": 1.0})}), policy.resources, policy.country, policy.path)

    def run_fixed():
        timed = Timed(clf, True)
        shown = [piece for piece in Guard(timed, fixed, audit=False).stream_output(words(REPLY), context=USER)]
        assert "".join(shown) == REPLY
        return timed

    run(True), whole()   # warm-up
    res = {"cached": [], "fresh": [], "whole": [], "first": [], "window": [], "fixed": []}
    for _ in range(reps):
        res["whole"].append(whole())
        res["window"].append(one_window())
        timed_cached, first_at = run(True)
        res["cached"].append(timed_cached.seconds)
        res["first"].append(first_at)
        timed_fresh, _ = run(False)
        res["fresh"].append(timed_fresh.seconds)
        timed_fixed = run_fixed()
        res["fixed"].append(timed_fixed.seconds)
    windows = len(timed_fresh.calls)
    computed = timed_cached.opened.computed   # the tokens one cached stream ran through the model
    whole_tokens = len(clf._encoder.encode(REPLY, "assistant", USER))
    med = {k: statistics.median(v) for k, v in res.items()}
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
        "adapter": clf.model_id, "reply_tokens": tokens, "window_words": window,
        "window_growth": policy.policy.streaming.window_growth,
        "max_window_words": policy.policy.streaming.max_window_words,
        "judge_calls_per_stream": windows, "max_length": clf._encoder.config.max_length,
        "reply_alone": policy.policy.reply_alone,
        "whole_ms": round(1000 * med["whole"], 1),
        "stream_cached_ms": round(1000 * med["cached"], 1),
        "stream_fresh_ms": round(1000 * med["fresh"], 1),
        "stream_cached_x_whole": round(med["cached"] / med["whole"], 2),
        "stream_fresh_x_whole": round(med["fresh"] / med["whole"], 2),
        "fixed_windows": {"window_growth": 1.0, "judge_calls_per_stream": len(timed_fixed.calls),
                          "tokens_computed": timed_fixed.opened.computed,
                          "stream_cached_x_whole": round(med["fixed"] / med["whole"], 2)},
        "first_token_added_ms": round(1000 * med["first"], 1),
        "one_window_judge_ms": round(1000 * med["window"], 1),
        "tokens_computed_cached": computed,
        "tokens_whole_once": whole_tokens * (2 if policy.policy.reply_alone else 1),
        "repetitions": reps,
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python " + " ".join(["benchmarks/streaming.py"] + (argv or sys.argv[1:])),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
