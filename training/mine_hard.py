"""Find the benign real-source turns a judge gets most wrong, for the next judge to learn from.

    python training/mine_hard.py                      # with the shipped adapter
    python training/mine_hard.py --adapter training/runs/stage3 --per-key 3000

The third training stage samples a few hundred rows per benign source at random
(training/generalise.yaml, ``train.real``); the train splits hold thousands more. Most of
them the judge already reads as safe, so a random sample teaches little where it is wrong:
ordinary talk about stress, grief or a breakup that it flags. This script scores a seeded
sample of the train-split rows the random sampling does not take, and writes, per cap key,
the ids of the ones with the highest p(borderline) + p(unsafe), hardest first, to
``training/data/mined/hard_benign.json`` (ids and a hash of the text, never the text).
``train.real_hard`` then adds the top n of a list. Rows with suicide or self-harm words are
already out of the benign sources (training/real_sources.py: RISK_WORDS), so a mined row is
ordinary talk the judge over-reads, not a disclosure with a wrong label.

Rows are scored by the judge as it is deployed (``Classifier.load``'s default, int8 gate/up
projections). The list is committed, so a recipe that uses it reproduces without mining
again; mining is a step taken between adapters, recorded in the list's header (the shipped
recipe, training/generalise.yaml, does not use it yet: docs/training.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LIST = ROOT / "training" / "data" / "mined" / "hard_benign.json"
BENIGN_KEYS = ("toxicchat:benign", "esconv:seeker", "esconv:supporter", "sad", "empathetic_dialogues")


def row_key(r: dict) -> str:
    """A row's identity without its text: its split id and a hash of the text."""
    return f"{r['id']}|{hashlib.sha1(r['text'].encode('utf-8')).hexdigest()[:12]}"


def read_list(path: Path | None = None) -> dict[str, list[str]]:
    """{cap key: row keys, hardest first} of the committed list (or ``path``)."""
    path = Path(path or LIST)
    if not path.is_file():
        sys.exit(f"error: {path} is missing; train.real_hard needs it (python training/mine_hard.py writes it)")
    return json.loads(path.read_text(encoding="utf-8"))["lists"]


def main(argv=None) -> None:
    from training.train import load_settings, real_pools, real_rows

    p = argparse.ArgumentParser(description="List the benign train-split turns a judge flags most")
    p.add_argument("--adapter", default=None, help="adapter folder (default: the shipped one)")
    p.add_argument("--config", default=str(ROOT / "training" / "generalise.yaml"))
    p.add_argument("--per-key", type=int, default=2000, help="unsampled train rows scored per cap key")
    p.add_argument("--keep", type=int, default=400, help="most ids listed per cap key")
    p.add_argument("--min-score", type=float, default=0.25, help="least p(borderline) + p(unsafe) listed")
    p.add_argument("--out", default=str(LIST))
    args = p.parse_args(argv)
    from guardrail import Classifier
    from training.evaluate import model_scorer

    cfg = load_settings(Path(args.config))
    tc = {**cfg["train"], "real_hard": {}}
    seed = cfg["data"]["seed"]
    pools = real_pools(tc, seed)
    sampled = {row_key(r) for r in real_rows(tc, seed, pools=pools)}
    rng = random.Random(seed + 11)
    todo = {}
    for key in BENIGN_KEYS:
        rest = sorted((r for r in pools.get(key, []) if row_key(r) not in sampled and r["level"] == "safe"),
                      key=lambda r: (r["id"], r["text"]))
        rng.shuffle(rest)
        todo[key] = rest[: args.per_key]
    clf = Classifier.load(args.adapter)
    rows = [r for key in BENIGN_KEYS for r in todo[key]]
    t = time.time()
    lp, _ = model_scorer(clf)(rows)
    flagged = lp[:, 1] + lp[:, 2]
    lists, i = {}, 0
    for key in BENIGN_KEYS:
        scored = sorted(zip(flagged[i:i + len(todo[key])], todo[key]), key=lambda x: -x[0])
        i += len(todo[key])
        lists[key] = [row_key(r) for s, r in scored if s >= args.min_score][: args.keep]
        print(f"{key}: {len(todo[key])} scored, {sum(s >= 0.5 for s, _ in scored)} at 0.5 or more, "
              f"{len(lists[key])} listed", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "adapter": clf.model_id, "generated": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python " + " ".join(["training/mine_hard.py"] + (argv or sys.argv[1:])),
        "score": "p(borderline) + p(unsafe), hardest first", "per_key": args.per_key,
        "min_score": args.min_score, "lists": lists}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({sum(map(len, lists.values()))} ids, {time.time() - t:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
