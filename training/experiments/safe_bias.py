"""Could a bias toward "safe" bring the hard negatives under 5% without losing crisis turns?

    python training/experiments/safe_bias.py                      # the shipped adapter, about 6 minutes
    python training/experiments/safe_bias.py training/runs/polish  # another adapter

Scores the validation and test splits, the challenge sets and the hard negatives once with
the shipped adapter, then adds a bias ``b`` to log p(safe) before the argmax and prints, for
each ``b``: macro-F1 (validation, test, challenge2), the share of hard negatives flagged
(validation look-alikes and the held-out set of training/evaluate.py) and the share of
suicide / self-harm turns still flagged (test + challenge2), and the same two shares on the
blind challenge3 set, which no setting was tuned on. Writes
training/reports/experiments/safe_bias-<model id>.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from guardrail import Classifier  # noqa: E402
from guardrail.taxonomy import LEVELS  # noqa: E402
from training.evaluate import CHALLENGE, CHALLENGE2, CHALLENGE3  # noqa: E402
from training.prepare_data import read_jsonl  # noqa: E402


def main(argv=None) -> int:
    from sklearn.metrics import f1_score

    argv = sys.argv[1:] if argv is None else argv
    clf = Classifier.load(argv[0] if argv else None, threads=2)
    data = ROOT / "training" / "build"
    sets = {"val": read_jsonl(data / "val.jsonl"), "test": read_jsonl(data / "test.jsonl"),
            "challenge": read_jsonl(CHALLENGE), "challenge2": read_jsonl(CHALLENGE2),
            "challenge3": read_jsonl(CHALLENGE3)}
    logp, gold = {}, {}
    for name, rows in sets.items():
        verdicts = clf.classify_batch([{"text": r["text"], "role": r.get("role", "user"),
                                        "context": r.get("context") or []} for r in rows], batch_size=32)
        logp[name] = np.log(np.array([[v.scores[lvl] for lvl in LEVELS] for v in verdicts]) + 1e-6)
        gold[name] = np.array([LEVELS.index(r["level"]) for r in rows])
        print(f"scored {name}: {len(rows)}", file=sys.stderr, flush=True)

    def pick(name, keep):
        idx = [i for i, r in enumerate(sets[name]) if keep(r)]
        return logp[name][idx], gold[name][idx]

    own_hn = lambda r: r.get("source", "").startswith("own:hard_negatives")  # noqa: E731
    hn_val = pick("val", own_hn)
    hn_test = [pick("test", own_hn), pick("challenge", lambda r: r.get("group") == "hard_negative"),
               pick("challenge2", lambda r: r.get("group") == "look_alike")]
    crisis = lambda r: r["level"] != "safe" and "suicide_self_harm" in r.get("categories", [])  # noqa: E731
    crisis_sets = [pick("test", crisis), pick("challenge2", crisis)]
    blind_hn = [pick("challenge3", lambda r: r.get("group") == "look_alike")]
    blind_crisis = [pick("challenge3", crisis)]

    def flagged(parts, b):
        pred = np.concatenate([(x + [b, 0, 0]).argmax(1) for x, _ in parts])
        return float((pred != 0).mean())

    rows = []
    for b in [-0.25, 0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0]:
        f1 = {k: round(float(f1_score(gold[k], (logp[k] + [b, 0, 0]).argmax(1), labels=[0, 1, 2],
                                      average="macro", zero_division=0)), 4) for k in ("val", "test", "challenge2")}
        rows.append({"bias": b, "macro_f1": f1, "hard_negatives_flagged_val": round(flagged([hn_val], b), 4),
                     "hard_negatives_flagged_heldout": round(flagged(hn_test, b), 4),
                     "crisis_turns_flagged": round(flagged(crisis_sets, b), 4),
                     "challenge3_look_alikes_flagged": round(flagged(blind_hn, b), 4),
                     "challenge3_crisis_turns_flagged": round(flagged(blind_crisis, b), 4)})
        print(json.dumps(rows[-1]))
    out = ROOT / "training" / "reports" / "experiments" / f"safe_bias-{clf.model_id.rsplit('-', 1)[-1]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model_id": clf.model_id, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
