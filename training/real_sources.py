"""The second-round real sources: chatbot prompts, harmful requests, multi-turn attacks,
emotional-support dialogues, short stress messages, counselling talk and injection text.

Read top to bottom: one loader per source (each documents its mapping; training/MAPPING.md
has the reasoning and what was checked on samples), then ``split_real()``, which splits
by dialogue or prompt id (never by turn: every turn of a dialogue, and a CoSafe dialogue
with its single prompt, land in the same split), and ``wrap()``, which puts a turn inside
an injection text.

Labels that needed reading are in ``training/data/labels/*.jsonl`` (ids and labels, no
text): categories of ToxicChat's toxic prompts, of the harmful requests and of the CoSafe
prompts, and the turn-level crisis labels of ESConv. A row those files mark ``drop`` (outside
the taxonomy, or unreadable) is left out.

Every record carries ``id`` (the split key) besides the fields of prepare_data.rec().
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "training" / "data" / "labels"
DEFAULT_SOURCES = ROOT.parent / "shared" / "data" / "sources"

# Published under CC BY-NC, or with no licence: research / non-commercial use only.
NON_COMMERCIAL = {"toxicchat", "esconv", "empathetic_dialogues", "cosafe", "cosafe_dialogues",
                  "tensor_trust", "annomi", "malicious_instruct"}
# The sources this module yields (tensor_trust only as wrappers, see ``attacks``).
SOURCES = ("toxicchat", "harmbench", "advbench", "malicious_instruct", "cosafe", "cosafe_dialogues",
           "esconv", "sad", "empathetic_dialogues", "annomi")
# Families for leave-one-source-out and per-family tables.
HARMFUL_FAMILY = ("harmbench", "advbench", "malicious_instruct", "cosafe")
BENIGN_FAMILY = ("esconv", "sad", "empathetic_dialogues")

# Benign-emotion sources label every turn safe; a turn that speaks of suicide or self-harm is
# ambiguous there (grief for someone, an idiom, or a real disclosure) and is left out.
RISK_WORDS = re.compile(r"\b(suicid\w*|kill(ing)? (my|him|her)sel(f|ves)|end(ing)? (it all|my life)|"
                        r"want(ed)? to die|self[- ]?harm\w*|cut(ting)? myself|overdos\w*|hang(ing)? myself)\b", re.I)
CONTEXT_TURNS = 3


def rec(source, id_, text, level, categories=(), role="user", context=(), group=""):
    return {"source": source, "id": id_, "text": text.strip(), "role": role,
            "context": [dict(t) for t in context][-CONTEXT_TURNS:], "level": level,
            "categories": sorted(set(categories)), "group": group or source}


def read_labels(name: str) -> list[dict]:
    path = LABELS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it holds the labels of a second-round source "
                                "(see training/MAPPING.md)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _label(row: dict) -> tuple[str, list[str]] | None:
    """(level, categories) of a label-file row, or None when it says drop."""
    if row["level"] == "drop":
        return None
    return row["level"], list(row.get("categories") or [])


# --- one loader per source -------------------------------------------------------------

def load_toxicchat(src: Path) -> Iterator[dict]:
    """Real prompts to a public chatbot. Not toxic -> safe. Toxic -> the level and categories
    read per prompt (labels/toxicchat.jsonl); toxic prompts outside the taxonomy, or whose
    only problem is a jailbreak wrapper with a harmless payload, are dropped. Every record
    keeps the annotators' ``toxic`` flag, for the F1-against-toxic figure."""
    labels = {r["id"]: _label(r) for r in read_labels("toxicchat.jsonl")}
    data = json.loads((src / "toxicchat" / "toxic_chat_train.json").read_text(encoding="utf-8"))
    for row in data["instances"]:
        ann = row["annotations"]
        toxic = ann["toxicity"]["majority_human"] == "1"
        jailbreak = ann["jailbreaking"]["majority_human"] == "1"
        text = row["instance"]
        if not text.strip():
            continue
        if not toxic:
            r = rec("toxicchat", row["id"], text, "safe", group="toxicchat:benign")
        else:
            mapped = labels.get(row["id"])
            if mapped is None:
                r = rec("toxicchat", row["id"], text, "drop", group="toxicchat:dropped")
            else:
                r = rec("toxicchat", row["id"], text, mapped[0], mapped[1],
                        group="toxicchat:jailbreak" if jailbreak else "toxicchat:toxic")
        r["toxic"] = toxic
        yield r


def load_harmful_requests(src: Path) -> Iterator[dict]:
    """HarmBench (copyright rows skipped), AdvBench and MaliciousInstruct: harmful by
    construction -> unsafe with the categories read per row (labels/harmful_requests.jsonl);
    rows outside the taxonomy (misinformation essays, political claims) dropped. HarmBench's
    contextual rows are judged as their context followed by the request."""
    labels = {(r["source"], r["id"]): _label(r) for r in read_labels("harmful_requests.jsonl")}
    d = src / "harmful_requests"
    with open(d / "harmbench_behaviors_text_all.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["SemanticCategory"] == "copyright":
                continue
            text = row["Behavior"] if not row["ContextString"].strip() else f"{row['ContextString']}\n\n{row['Behavior']}"
            mapped = labels.get(("harmbench", row["BehaviorID"]))
            if mapped:
                yield rec("harmbench", row["BehaviorID"], text, *mapped, group=f"harmbench:{row['SemanticCategory']}")
    with open(d / "advbench_behaviors.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            mapped = labels.get(("advbench", row["BehaviorID"]))
            if mapped:
                yield rec("advbench", row["BehaviorID"], row["Behavior"], *mapped)
    lines = [x for x in (d / "malicious_instruct.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
    for n, text in enumerate(lines, 1):
        mapped = labels.get(("malicious_instruct", f"mi_{n}"))
        if mapped:
            yield rec("malicious_instruct", f"mi_{n}", text, *mapped)


def load_cosafe(src: Path) -> Iterator[dict]:
    """CoSafe: each file's single prompts (the original BeaverTails question) and, aligned by
    line, a dialogue whose last user turn asks the same thing through coreference. The file
    names are noisy categories, so each prompt was read (labels/cosafe_single.jsonl); its
    dialogue's last user turn, judged with the four messages before it, takes the same label.
    Both share one id, so a prompt and its dialogue are never in different splits."""
    labels = {(r["file"], r["index"]): _label(r) for r in read_labels("cosafe_single.jsonl")}
    d = src / "cosafe"
    for path in sorted((d / "single_prompt").glob("*_select_100.json")):
        name = path.name.removesuffix("_select_100.json")
        singles = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        dialogues = [json.loads(x) for x in (d / "dialogues" / f"{name}.json").read_text(encoding="utf-8").splitlines()
                     if x.strip()]
        for i, (text, _bt_id) in enumerate(singles):
            mapped = labels.get((name, i))
            if not mapped:
                continue
            id_ = f"cosafe:{name}:{i}"
            yield rec("cosafe", id_, text, *mapped, group=f"cosafe:{name}")
            if i < len(dialogues) and dialogues[i] and dialogues[i][-1]["role"] == "user":
                msgs = dialogues[i]
                ctx = [{"role": m["role"], "text": m["content"]} for m in msgs[:-1]]
                yield rec("cosafe_dialogues", id_, msgs[-1]["content"], *mapped, context=ctx,
                          group=f"cosafe_dialogues:{name}")


def _esconv_dialogues(src: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(dialogue id, [(role, text)]) for the FADO-formatted splits and the failed dialogues."""
    d = src / "esconv"
    for name in ("train.txt", "dev.txt", "test.txt"):
        for i, line in enumerate((d / name).read_text(encoding="utf-8").splitlines()):
            if line.strip():
                dia = json.loads(line)["dialog"]
                yield f"{name}:{i}", [("user" if t["speaker"] == "usr" else "assistant", t["text"]) for t in dia]
    failed = json.loads((d / "FailedESConv.json").read_text(encoding="utf-8"))
    for i, dia in enumerate(failed):
        turns = [("user" if t["speaker"] in ("seeker", "usr") else "assistant", t["content"]) for t in dia["dialog"]]
        yield f"FailedESConv.json:{i}", turns


def load_esconv(src: Path) -> Iterator[dict]:
    """Emotional-support dialogues, judged turn by turn with up to three turns before.
    Help-seeker turns -> user, safe; supporter turns -> assistant, safe; except the crisis
    turns read in labels/esconv_turns.jsonl (unsafe or borderline suicide_self_harm). A
    safe-labelled turn with a crisis turn in its context window is left out (whether risk
    has passed is not something these labels say)."""
    risky = {(r["file"], r["dialogue"], r["turn"]): r for r in read_labels("esconv_turns.jsonl")}
    for id_, turns in _esconv_dialogues(src):
        file, idx = id_.rsplit(":", 1)
        flags = [risky.get((file, int(idx), k)) for k in range(len(turns))]
        for k, (role, text) in enumerate(turns):
            if not text.strip():
                continue
            ctx = [{"role": r, "text": t} for r, t in turns[max(0, k - CONTEXT_TURNS):k]]
            label = flags[k]
            if label:
                yield rec("esconv", id_, text, label["level"], label.get("categories", []), role, ctx, "esconv:crisis")
            elif not any(flags[max(0, k - CONTEXT_TURNS):k]):
                yield rec("esconv", id_, text, "safe", (), role, ctx,
                          "esconv:seeker" if role == "user" else "esconv:supporter")


def load_sad(src: Path) -> Iterator[dict]:
    """Short stress messages (many typed to a chatbot) -> safe, whatever their severity:
    stress about work, school or money is not risk. Messages with suicide or self-harm
    words are left out."""
    with open(src / "sad" / "SAD_v1.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text = row["sentence"]
            if len(text.strip()) > 3 and not RISK_WORDS.search(text):
                yield rec("sad", f"sad:{row['sID']}", text, "safe", group=f"sad:{row['Source']}")


def load_empathetic_dialogues(src: Path) -> Iterator[dict]:
    """EmpatheticDialogues situation paragraphs (32 emotions, many sad or afraid) -> safe;
    ones with suicide or self-harm words are left out."""
    for name in ("situations_dev.csv", "situations_test.csv"):
        with open(src / "empathetic_dialogues" / name, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                text = row["content"]
                if text.strip() and not RISK_WORDS.search(text):
                    yield rec("empathetic_dialogues", f"ed:{name}:{i}", text, "safe", group=f"ed:{row['label']}")


def load_annomi(src: Path) -> Iterator[dict]:
    """Motivational-interviewing transcripts: therapist -> assistant, client -> user, with up
    to three utterances before as context; all safe (a client talking about drinking in
    counselling is not asking for harm). The 'reducing self-harm' transcripts are left out:
    their client turns disclose self-harm, which is not safe by the project's rules."""
    by_transcript: dict[str, list[dict]] = {}
    with open(src / "annomi" / "AnnoMI-simple.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_transcript.setdefault(row["transcript_id"], []).append(row)
    for tid, rows in by_transcript.items():
        if "self-harm" in rows[0]["topic"]:
            continue
        rows.sort(key=lambda r: int(r["utterance_id"]))
        turns = [("assistant" if r["interlocutor"] == "therapist" else "user", r["utterance_text"]) for r in rows]
        for k, (role, text) in enumerate(turns):
            if len(text.split()) < 3:
                continue
            ctx = [{"role": r, "text": t} for r, t in turns[max(0, k - CONTEXT_TURNS):k]]
            yield rec("annomi", f"annomi:{tid}", text, "safe", (), role, ctx,
                      "annomi:therapist" if role == "assistant" else "annomi:client")


LOADERS = {"toxicchat": load_toxicchat, "harmful_requests": load_harmful_requests, "cosafe": load_cosafe,
           "esconv": load_esconv, "sad": load_sad, "empathetic_dialogues": load_empathetic_dialogues,
           "annomi": load_annomi}


# which loader yields each source
LOADER_OF = {"harmbench": "harmful_requests", "advbench": "harmful_requests", "malicious_instruct": "harmful_requests",
             "cosafe_dialogues": "cosafe", **{n: n for n in LOADERS}}


def attacks(src: Path) -> list[tuple[str, str]]:
    """(id, attack text) of the Tensor Trust hijacking attacks (harmless content, used only
    to wrap turns). Very long attacks are cut to 1,500 characters."""
    out = []
    for line in (Path(src) / "tensor_trust" / "hijacking_robustness_dataset.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            out.append((f"tt:{r['sample_id']}", r["attack"][:1500]))
    return out


# --- split, wrap ---------------------------------------------------------------------------

def split_of_id(id_: str, seed: int, dev_share: float = 0.25, val_share: float = 0.1) -> str:
    """'dev', 'val' or 'train' from a seeded hash of the dialogue / prompt id. dev is for
    reports only; val calibrates an adapter (temperature, category thresholds) on real text."""
    h = int(hashlib.sha256(f"{seed}:real:{id_}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "dev" if h < dev_share else "val" if h < dev_share + val_share else "train"


def load_real(src: Path = DEFAULT_SOURCES, names: Iterable[str] | None = None, commercial_only: bool = False) -> list[dict]:
    """Every record of the second-round sources (``drop`` rows included; callers filter)."""
    src = Path(src)
    loaders = sorted({LOADER_OF[n] for n in names}) if names else list(LOADERS)
    out = []
    for name in loaders:
        out.extend(r for r in LOADERS[name](src) if not names or r["source"] in names)
    if commercial_only:
        out = [r for r in out if r["source"] not in NON_COMMERCIAL]
    return out


def split_real(records: list[dict], seed: int) -> dict[str, list[dict]]:
    out = {"train": [], "val": [], "dev": []}
    for r in records:
        out[split_of_id(r["id"], seed)].append(r)
    return out


def wrap(text: str, attack: str, rng: random.Random) -> str:
    """The turn inside an injection text: after it (most attacks are prefixes), before it,
    or, for a short attack, between its two halves. A long attack never goes around the
    turn: the judge keeps a long turn's beginning and end, and a turn hidden in the middle
    of a long text would be trained on without being seen."""
    where = rng.random()
    if where < 0.6 or (where >= 0.8 and len(attack) > 300):
        return f"{attack}\n\n{text}"
    if where < 0.8:
        return f"{text}\n\n{attack}"
    cut = len(attack) // 2
    return f"{attack[:cut]}\n{text}\n{attack[cut:]}"


TRAIN_WRAPPERS = ROOT / "training" / "data" / "wrappers"   # train.jsonl, train_more.jsonl, ...


def train_templates() -> list[str]:
    """The project's own injection wrappers for training, every ``*.jsonl`` in TRAIN_WRAPPERS
    (the evaluation ones are separate, in training/data/probe/wrappers.jsonl, written by
    another hand and never trained on)."""
    out = []
    for path in sorted(TRAIN_WRAPPERS.glob("*.jsonl")):
        out += [json.loads(x)["template"] for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return out


def fill_template(template: str, text: str) -> str:
    """A project wrapper template (training/data/probe/wrappers.jsonl) with the turn in it."""
    return template.replace("{turn}", text)
