"""Negatives for the taught therapy categories, drawn from real conversations.

    python training/taught_negatives.py          # writes training/build/taught/*.jsonl

Taught on the project's own examples alone, the therapy heads flagged a quarter of ESConv's
supporter turns as therapy-like, casual one-liners included: every turn they had seen was
written by the same hands, so text in another voice fell outside what they knew. Real
turns that are ordinary support talk, and not therapy by the model card's definitions,
teach them that voice as a negative:

- therapy_like (assistant turns): ESConv supporter turns (peer emotional support);
- therapy_request (user turns): ESConv help-seekers outside crisis, SAD stress messages,
  EmpatheticDialogues situations and AnnoMI client turns (clients talking in counselling
  are not asking a chatbot for therapy), a quarter each.

Only the train split of each source is drawn from (training/real_sources.py splits by
dialogue id; the dev split stays for training/therapy_eval.py). AnnoMI therapist turns
are left out: they are real counselling, which these definitions neither clearly include
nor exclude turn by turn. The sources hold no real therapy requests or therapy-like
replies, so the positives stay the project's own (a gap the model card states). ESConv,
EmpatheticDialogues and AnnoMI are non-commercial: the heads are as non-commercial as the
adapter. The files are derived data: written under training/build/ (not committed).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from training import real_sources  # noqa: E402

OUT = ROOT / "training" / "build" / "taught"
SEED = 1234          # the real sources' split seed (training/generalisation.py)
PER_CATEGORY = 300

POOLS = {
    "therapy_like": ("assistant", [("esconv", "esconv:supporter")]),
    "therapy_request": ("user", [("esconv", "esconv:seeker"), ("sad", None), ("empathetic_dialogues", None),
                                 ("annomi", "annomi:client")]),
}


def draw(records: list[dict], role: str, pools: list[tuple[str, str | None]], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for source, group in pools:
        rows = sorted((r for r in records if r["source"] == source and r["role"] == role
                       and r["level"] == "safe" and (group is None or r["group"] == group)),
                      key=lambda r: (r["id"], r["text"]))
        rng.shuffle(rows)
        out += rows[: n // len(pools)]
    return [{"text": r["text"], "label": 0, "role": role, "context": r["context"], "group": r["group"] or r["source"]}
            for r in out]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Real-conversation negatives for the taught therapy categories")
    p.add_argument("--sources", default=str(real_sources.DEFAULT_SOURCES))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--n", type=int, default=PER_CATEGORY, help="negatives per category")
    args = p.parse_args(argv)
    sources = {s for _, pools in POOLS.values() for s, _ in pools}
    records = real_sources.split_real(real_sources.load_real(Path(args.sources), names=sources), SEED)["train"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (role, pools) in POOLS.items():
        rows = draw(records, role, pools, args.n, SEED)
        path = out / f"{name}_real_negatives.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} {role} turns to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
