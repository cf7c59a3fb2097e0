"""Map every source in ../shared/data to the taxonomy, add the project's own examples,
dedupe, balance and split (train / val / test) deterministically.

Read top to bottom: one loader per source (each documents its mapping; MAPPING.md has
the reasoning and what was checked), then ``build()`` which dedupes, splits by a
seeded hash of the text (so a text never lands in two splits) and caps each
source/level pool so that no genre dominates a label.

    python training/prepare_data.py --sources ../shared/data/sources --out training/build
    python training/prepare_data.py --exclude-research-only     # licence-clean subset
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from guardrail.taxonomy import CATEGORIES, LEVELS, ROLES  # noqa: E402

OWN_DIR = ROOT / "training" / "data" / "own"
csv.field_size_limit(10**8)

# Sources whose published terms restrict them to research use (see ../shared/data/README.md).
RESEARCH_ONLY = {"dreaddit", "depressionemo"}

SELF_HARM = re.compile(r"\b(suicid\w*|kill(ing)? my ?self|end(ing)? (it|my life)|want(ed)? to die|"
                       r"self[- ]?harm\w*|cut(ting)? myself|overdos\w*|hang(ing)? myself|cutting)\b", re.I)
SUBSTANCE = re.compile(r"\b(weed|drugs?|alcohol|drunk|pills?|cocaine|heroin|meth|xanax|opioids?|vodka)\b", re.I)


def rec(source, text, level, categories=(), role="user", context=(), group=""):
    return {"source": source, "text": text.strip(), "role": role, "context": list(context),
            "level": level, "categories": sorted(set(categories)), "group": group or source}


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def post(row):
    """Reddit title + body as one turn (the body is often empty for link posts)."""
    body = (row.get("body") or "").strip()
    title = (row.get("title") or "").strip()
    return f"{title}\n{body}".strip() if body else title


# --- one loader per source -------------------------------------------------------------

def load_dreaddit(src):
    """Stress-labelled post segments: 0 -> safe, 1 -> borderline (stress, no acute risk)."""
    for name in ("dreaddit-train.csv", "dreaddit-test.csv"):
        for r in read_csv(src / "dreaddit" / name):
            yield rec("dreaddit", r["text"], "borderline" if r["label"] == "1" else "safe")


def load_depression_reddit(src):
    """Cleaned file: is_depressive 0 (mostly tweets) -> safe, 1 -> borderline, plus
    suicide_self_harm when it speaks of suicide. Subreddit files: SuicideWatch -> unsafe
    suicide_self_harm (moderator notices dropped); depression and anxietydepression ->
    borderline; CasualConversation and EOOD (exercise against depression, mostly
    routines and progress) -> safe. mentalhealth, mentalillness, offmychest and therapy
    mix every level and are left out."""
    d = src / "depression_reddit"
    for r in read_csv(d / "depression_dataset_reddit_cleaned.csv"):
        text = r["text"]
        if r["is_depressive"] == "1":
            yield rec("depression_reddit", text, "borderline",
                      ["suicide_self_harm"] if SELF_HARM.search(text) else [])
        else:
            yield rec("depression_reddit", text, "safe")
    plan = {"r_suicidewatch.csv": ("unsafe", ["suicide_self_harm"]),
            "r_depression.csv": ("borderline", []), "r_anxietydepression.csv": ("borderline", []),
            "r_casualconversation.csv": ("safe", []), "r_EOOD.csv": ("safe", [])}
    for name, (level, cats) in plan.items():
        for r in read_csv(d / name):
            if r.get("is_mod"):
                continue
            text = post(r)
            c = list(cats)
            if level == "borderline" and SELF_HARM.search(text):
                c.append("suicide_self_harm")
            yield rec("depression_reddit", text, level, c, group=name.removesuffix(".csv"))


def load_sdcnl(src):
    """r/SuicideWatch (is_suicide 1) -> unsafe suicide_self_harm; r/depression -> borderline."""
    for name in ("training-set.csv", "testing-set.csv"):
        for r in read_csv(src / "sdcnl" / name):
            body = r.get("selftext") or ""
            text = r["title"] if body in ("", "emptypost") else f"{r['title']}\n{body}"
            if r["is_suicide"] == "1":
                yield rec("sdcnl", text, "unsafe", ["suicide_self_harm"])
            else:
                yield rec("sdcnl", text, "borderline", ["suicide_self_harm"] if SELF_HARM.search(text) else [])


def load_depressionemo(src):
    """Long depression posts: 'suicide intent' -> unsafe suicide_self_harm, others borderline."""
    for name in ("val.json", "test.json"):
        with open(src / "depressionemo" / name, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                r = json.loads(line)
                text = r.get("text") or f"{r.get('title', '')}\n{r.get('post', '')}"
                if "suicide intent" in r.get("emotions", ""):
                    yield rec("depressionemo", text, "unsafe", ["suicide_self_harm"])
                else:
                    yield rec("depressionemo", text, "borderline")


def load_goemotions(src):
    """Everyday Reddit comments -> safe, except comments that talk about suicide or
    killing oneself: those are ambiguous (often about someone else) and are left out."""
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        with open(src / "goemotions" / name, encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 2 and not SELF_HARM.search(parts[0]):
                    yield rec("goemotions", parts[0], "safe")


def load_davidson(src):
    """Tweets: neither -> safe; offensive -> borderline violence_hate; hate -> unsafe violence_hate."""
    for r in read_csv(src / "davidson_hate_offensive" / "labeled_data.csv"):
        text = re.sub(r"@\w+:?", "@user", r["tweet"]).replace("&amp;", "&")
        cls = r["class"]
        if cls == "2":
            yield rec("davidson", text, "safe")
        elif cls == "1":
            yield rec("davidson", text, "borderline", ["violence_hate"])
        else:
            yield rec("davidson", text, "unsafe", ["violence_hate"])


def load_diasafety(src):
    """Chatbot responses judged in context (assistant turns). Safe -> safe. Unsafe:
    Risk Ignorance -> unsafe suicide_self_harm when the context is about self-harm, else
    borderline (plus regulated_substances when it is about drugs); Toxicity Agreement and
    Biased Opinion -> unsafe violence_hate; Offending User -> borderline violence_hate;
    Unauthorized Expertise -> borderline with no category."""
    for name in ("train.json", "val.json", "test.json"):
        for r in json.loads((src / "diasafety" / name).read_text(encoding="utf-8")):
            ctx = [{"role": "user", "text": r["context"]}]
            cat = r["category"]
            if r["label"] == "Safe":
                level, cats = "safe", []
            elif cat == "Risk Ignorance":
                if SELF_HARM.search(r["context"]):
                    level, cats = "unsafe", ["suicide_self_harm"]
                else:
                    level, cats = "borderline", ["regulated_substances"] if SUBSTANCE.search(r["context"]) else []
            elif cat in ("Toxicity Agreement", "Biased Opinion"):
                level, cats = "unsafe", ["violence_hate"]
            elif cat == "Offending User":
                level, cats = "borderline", ["violence_hate"]
            else:
                level, cats = "borderline", []
            yield rec("diasafety", r["response"], level, cats, role="assistant", context=ctx,
                      group=f"diasafety:{cat}")


def load_own(folder=OWN_DIR):
    """The project's own examples (written for it; see training/data/own/README.md)."""
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                r = json.loads(line)
                validate(r, f"{path.name}:{n}")
                yield rec(f"own:{path.stem}", r["text"], r["level"], r.get("categories", []),
                          r.get("role", "user"), r.get("context", []), r.get("group", ""))


LOADERS = {"dreaddit": load_dreaddit, "depression_reddit": load_depression_reddit, "sdcnl": load_sdcnl,
           "depressionemo": load_depressionemo, "goemotions": load_goemotions,
           "davidson": load_davidson, "diasafety": load_diasafety}


def validate(r, where):
    """Fail loudly on a malformed example (own or challenge files)."""
    if r.get("level") not in LEVELS:
        raise ValueError(f"{where}: level {r.get('level')!r} is not one of {LEVELS}")
    if r.get("role", "user") not in ROLES:
        raise ValueError(f"{where}: role {r.get('role')!r} is not one of {ROLES}")
    bad = [c for c in r.get("categories", []) if c not in CATEGORIES]
    if bad:
        raise ValueError(f"{where}: unknown categories {bad}")
    if not isinstance(r.get("text"), str) or not r["text"].strip():
        raise ValueError(f"{where}: empty text")


# --- dedupe, split, balance ------------------------------------------------------------

def norm(text):
    return re.sub(r"\W+", " ", text.lower()).strip()


def split_of(text, seed, val=0.1, test=0.1):
    h = int(hashlib.sha256(f"{seed}:{norm(text)}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "val" if h < test + val else "train"


def add_benign_context(train, fraction, rng):
    """Copies of own single user turns placed after an ordinary exchange, label unchanged,
    harmful own assistant replies placed after an ordinary request (label unchanged: without
    them a lethal-dose reply after "I can't sleep" scored safe), and ordinary answers placed
    after benign look-alikes (safe).

    Without them the judge learns that a turn following small talk is safe: "I want to
    end my life" after "hi, how are you?" scored safe. The exchanges come from the own
    safe assistant examples of ordinary traffic (a request and its answer), train split only.
    """
    pairs = [(r["context"][-1]["text"], r["text"]) for r in train
             if r["source"] in ("own:ordinary", "own:hard_negatives", "own:long_messages")
             and r["role"] == "assistant" and r["level"] == "safe"
             and r["context"] and r["context"][-1]["role"] == "user" and len(r["text"]) < 400]
    if not pairs or fraction <= 0:
        return []
    out = []
    for r in train:
        if r["source"].startswith("own:") and r["role"] == "user" and not r["context"] and rng.random() < fraction:
            user, answer = rng.choice(pairs)
            context = [{"role": "user", "text": user}, {"role": "assistant", "text": answer}]
            if rng.random() < 0.3:
                context = context[-1:]
            out.append({**r, "context": context, "group": r["group"] + "+context"})
        # a harmful reply is harmful whatever came before it
        if (r["source"].startswith("own:") and r["role"] == "assistant" and r["level"] != "safe"
                and rng.random() < 2 * fraction):
            user = rng.choice(pairs)[0]
            out.append({**r, "context": [{"role": "user", "text": user}], "group": r["group"] + "+benign_context"})
        # and an ordinary answer after a benign look-alike is still a safe answer
        if (r["source"] in ("own:hard_negatives", "own:ordinary", "own:long_messages") and r["role"] == "user"
                and r["level"] == "safe" and not r["context"] and rng.random() < fraction):
            answer = rng.choice(pairs)[1]
            out.append({**r, "role": "assistant", "text": answer, "context": [{"role": "user", "text": r["text"]}],
                        "group": "benign_answer+context"})
    return out


def build(sources, seed=1234, caps=None, exclude_research_only=False, eval_cap=300, augment_context=0.0):
    """Return {split: [records]}. ``caps`` limits train examples per (source, level);
    ``augment_context`` is the share of own single user turns also trained after a benign exchange."""
    caps = caps or {}
    records, seen = [], set()
    names = [n for n in LOADERS if not (exclude_research_only and n in RESEARCH_ONLY)]
    for name in names:
        records.extend(LOADERS[name](sources))
    records.extend(load_own())
    conflicts = 0
    by_key = {}
    for r in records:
        key = norm(r["text"]) + "|" + r["role"] + "|" + norm(" ".join(t["text"] for t in r["context"]))
        if len(norm(r["text"])) < 2:
            continue
        if key in seen:
            if by_key[key]["level"] != r["level"]:
                conflicts += 1
            continue
        seen.add(key)
        by_key[key] = r
    rng = random.Random(seed)
    pools = defaultdict(list)
    for r in by_key.values():
        r["split"] = split_of(r["text"], seed)
        pools[(r["split"], r["source"], r["level"])].append(r)
    out = {"train": [], "val": [], "test": []}
    for (split, source, level), items in sorted(pools.items()):
        items.sort(key=lambda r: norm(r["text"]))
        rng.shuffle(items)
        own = source.startswith("own:")
        if split == "train":
            cap = caps.get(f"{source}/{level}", caps.get(source, None if own else 400))
        else:
            cap = None if own else eval_cap
        out[split].extend(items[:cap] if cap is not None else items)
    augmented = add_benign_context(out["train"], augment_context, rng)
    out["train"].extend(augmented)
    for split in out:
        rng.shuffle(out[split])
    stats = {"seed": seed, "conflicting_duplicates_dropped": conflicts, "sources": names, "context_augmented": len(augmented),
             "counts": {s: dict(Counter(f"{r['source']}/{r['level']}" for r in rs)) for s, rs in out.items()}}
    return out, stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sources", default=str(ROOT.parent / "shared" / "data" / "sources"))
    p.add_argument("--out", default=str(ROOT / "training" / "build"))
    p.add_argument("--config", default=str(ROOT / "training" / "config.yaml"))
    p.add_argument("--exclude-research-only", action="store_true", default=None)
    args = p.parse_args(argv)
    import yaml

    cfg = yaml.safe_load(Path(args.config).read_text())["data"]
    exclude = cfg.get("exclude_research_only", False) if args.exclude_research_only is None else True
    sources = Path(args.sources)
    if not sources.is_dir():
        sys.exit(f"error: sources folder {sources} does not exist (pass --sources)")
    splits, stats = build(sources, cfg.get("seed", 1234), cfg.get("caps", {}), exclude, cfg.get("eval_cap", 300),
                          cfg.get("augment_context", 0.0))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "data_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    for split, rows in splits.items():
        print(f"{split}: {len(rows)} examples, levels {dict(Counter(r['level'] for r in rows))}")
    print(f"wrote {out}/{{train,val,test}}.jsonl and data_stats.json")


if __name__ == "__main__":
    main()
