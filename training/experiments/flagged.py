"""List the hard negatives (benign look-alikes) an adapter flags, with their p(safe).

    python training/experiments/flagged.py [ADAPTER]     # default: the shipped adapter

The set is training/evaluate.py's "hard negatives (held-out)"; the last line is the share
flagged. Needs training/build from prepare_data.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from guardrail import Classifier  # noqa: E402
from training.evaluate import build_sets  # noqa: E402
from training.prepare_data import read_jsonl  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    clf = Classifier.load(argv[0] if argv else None, threads=2)
    data = ROOT / "training" / "build"
    rows = build_sets(data, read_jsonl(data / "train.jsonl"))["hard negatives (held-out)"]
    verdicts = clf.classify_batch([{"text": r["text"], "role": r.get("role", "user"),
                                    "context": r.get("context") or []} for r in rows])
    flagged = [(r, v) for r, v in zip(rows, verdicts) if v.level != "safe"]
    for r, v in flagged:
        print(f"{v.level:10s} p(safe) {v.scores['safe']:.2f}  {r.get('source', r.get('group'))}  "
              f"[{r.get('role', 'user')}, {len(r.get('context') or [])} context]  {r['text'][:150]!r}")
    print(f"{clf.model_id}: {len(flagged)} of {len(rows)} flagged ({len(flagged) / len(rows):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
