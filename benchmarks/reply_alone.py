"""Does judging a reply on its own as well help? (the policy's ``reply_alone`` setting)

    python benchmarks/reply_alone.py        # writes benchmarks/results/reply_alone.json

Held-out assistant replies with their conversation (both challenge sets and the own
turns of the test split) are judged three ways: with the conversation (as the judge was
trained), on their own, and both with the riskier verdict kept (what the Guard does).
Reports accuracy, safe replies flagged and unsafe replies caught for each.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from guardrail.taxonomy import LEVELS  # noqa: E402
from training.evaluate import CHALLENGE, CHALLENGE2  # noqa: E402
from training.prepare_data import read_jsonl  # noqa: E402

RANK = {lvl: i for i, lvl in enumerate(LEVELS)}


def main() -> int:
    from guardrail import Classifier

    test = ROOT / "training" / "build" / "test.jsonl"
    if not test.is_file():
        sys.exit(f"error: {test} is missing; run training/prepare_data.py (make data) first")
    rows = read_jsonl(CHALLENGE2) + read_jsonl(CHALLENGE)
    rows += [r for r in read_jsonl(test) if r["source"].startswith("own:")]
    rows = [r for r in rows if r["role"] == "assistant" and r.get("context")]
    clf = Classifier.load()
    ctx = clf.classify_batch([{"text": r["text"], "role": "assistant", "context": r["context"]} for r in rows])
    alone = clf.classify_batch([{"text": r["text"], "role": "assistant", "context": []} for r in rows])
    ways = {"with the conversation": [v.level for v in ctx], "on its own": [v.level for v in alone],
            "riskier of both (Guard default)": [max(a.level, b.level, key=RANK.get) for a, b in zip(ctx, alone)]}
    report = {"model_id": clf.model_id, "replies": len(rows),
              "safe": sum(r["level"] == "safe" for r in rows), "unsafe": sum(r["level"] == "unsafe" for r in rows),
              "ways": {}}
    for name, pred in ways.items():
        report["ways"][name] = {
            "accuracy": round(sum(p == r["level"] for p, r in zip(pred, rows)) / len(rows), 3),
            "safe_flagged": sum(p != "safe" for p, r in zip(pred, rows) if r["level"] == "safe"),
            "unsafe_caught": sum(p == "unsafe" for p, r in zip(pred, rows) if r["level"] == "unsafe")}
        print(name, report["ways"][name])
    out = ROOT / "benchmarks" / "results" / "reply_alone.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
