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
from guardrail.taxonomy import LEVELS  # noqa: E402
from training.evaluate import build_sets, model_scorer  # noqa: E402
from training.prepare_data import read_jsonl  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    clf = Classifier.load(argv[0] if argv else None, threads=2)
    data = ROOT / "training" / "build"
    if not (data / "test.jsonl").is_file():
        sys.exit(f"error: {data / 'test.jsonl'} is missing; run training/prepare_data.py first")
    rows = build_sets(data, read_jsonl(data / "train.jsonl"))["hard negatives (held-out)"]
    level_probs, _ = model_scorer(clf)(rows)  # the evaluation's own scoring: same verdicts, same batching
    flagged = [(r, p) for r, p in zip(rows, level_probs) if p.argmax() != 0]
    for r, p in flagged:
        print(f"{LEVELS[p.argmax()]:10s} p(safe) {p[0]:.2f}  {r.get('source', r.get('group'))}  "
              f"[{r['role']}, {len(r.get('context') or [])} context]  {r['text'][:150]!r}")
    print(f"{clf.model_id}: {len(flagged)} of {len(rows)} flagged ({len(flagged) / len(rows):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
