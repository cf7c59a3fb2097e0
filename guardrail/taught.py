"""Categories taught from examples: a small head over the frozen judge.

    guardrail teach therapy_request --examples therapy_request.jsonl --role user --into my-adapter/

A taught category is one more logistic head over the frozen judge, fitted on a few dozen
to a few thousand labelled turns in seconds on a CPU. It reads two vectors of the judge's
one forward pass (``Judge.states``): the last token's state, which the level and category
heads read and which is tuned for risk, and the mean of the states entering the top layer
over the input after the system prefix, which keeps what a turn is about when that is not
a risk (on the therapy examples it lifted cross-validated F1 by 3-4 points over the last
token alone). The backbone and the six built-in heads are not touched, so teaching never
changes their scores, and a taught head costs one dot product per turn.

A taught head lives in the adapter folder, ``taught/NAME.safetensors`` (weight, bias)
next to ``taught/NAME.json`` (role, threshold, the judge it was taught on, the examples'
checksum and the held-out figures). ``Classifier.load`` picks them up: the adapter
extends the taxonomy, no code edit. A head is only valid on the judge it was taught on
(the features would differ), so loading it on another judge is an error that says to
re-teach (``make teach`` re-teaches the shipped heads from their example files).

Taught categories are not risks: they never change a turn's level. They are flagged
whenever their probability reaches their threshold, on turns of their role, and policies
name them in rules like any category (see policies/no_therapy.yaml).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .inputs import Turn
from .taxonomy import CATEGORIES, LEVELS, ROLES

TAUGHT_DIR = "taught"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
MIN_PER_LABEL = 8          # fewer positives or negatives than this cannot give a threshold
L2_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 0.3, 1.0)
FEATURES = "last-token state + mean entering the top layer, v1"   # what a head reads; saved with it


class TeachError(ValueError):
    """Examples, a name or a target folder that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Example:
    """One labelled turn: ``text`` said by ``role`` after ``context``; ``label`` 1 or 0."""

    text: str
    label: int
    role: str
    context: tuple[Turn, ...] = ()
    group: str = ""

    def key(self) -> str:
        """A stable identity for the held-out split (the text and what came before it)."""
        ctx = "\x1e".join(f"{t.role}\x1f{t.text}" for t in self.context)
        return hashlib.sha256(f"{self.role}\x1d{ctx}\x1d{self.text}".encode()).hexdigest()


@dataclass
class TaughtHead:
    """A taught category as it is saved: a logistic head on the judge's verdict state."""

    name: str
    role: str                       # the turns it applies to: user or assistant
    threshold: float
    weight: Any                     # torch tensor (2 * hidden,): see head_input
    bias: float
    judge_model_id: str             # the judge whose features it was fitted on
    description: str = ""
    record: dict = field(default_factory=dict)   # examples, split, figures, time

    def meta(self) -> dict:
        return {"name": self.name, "role": self.role, "threshold": self.threshold, "bias": self.bias,
                "judge_model_id": self.judge_model_id, "features": FEATURES, "description": self.description,
                **self.record}


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise TeachError(f"category name {name!r}: use 2-48 lowercase letters, digits or _, starting with a letter")
    if name in CATEGORIES or name in LEVELS or name in ROLES:
        raise TeachError(f"category name {name!r} is taken by the built-in taxonomy; choose another name")
    return name


# --- examples ---------------------------------------------------------------------------

def read_examples(path: str | os.PathLike, role: str | None = None, both_labels: bool = True) -> list[Example]:
    """Read and check a JSONL file of ``{"text", "label", "role"?, "context"?, "group"?}``.

    Every problem is reported at once, as ``file:line: what is wrong``. ``role`` is the
    role of the category: lines without one get it, lines with another are an error."""
    path = Path(path)
    if not path.is_file():
        raise TeachError(f"examples file not found: {path}")
    examples, problems, seen = [], [], {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not JSON ({e.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: expected an object with text and label")
            continue
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: 'text' must be a non-empty string")
            continue
        if isinstance(label, bool):
            label = int(label)
        if label not in (0, 1):
            problems.append(f"{where}: 'label' must be 1 (the category applies) or 0, got {label!r}")
            continue
        line_role = row.get("role") or role or "user"
        if line_role not in ROLES:
            problems.append(f"{where}: 'role' must be user or assistant, got {line_role!r}")
            continue
        if role and line_role != role:
            problems.append(f"{where}: role {line_role!r}, but the category is taught on {role} turns")
            continue
        try:
            context = tuple(Turn.coerce(t) for t in (row.get("context") or []))
        except (TypeError, ValueError) as e:
            problems.append(f"{where}: bad 'context' ({e})")
            continue
        ex = Example(text, label, line_role, context, str(row.get("group") or ""))
        if ex.key() in seen:   # an exact repeat adds nothing; with the other label it is a contradiction
            first_line, first_label = seen[ex.key()]
            if first_label != label:
                problems.append(f"{where}: the same turn and context are on line {first_line} with the other label")
            continue
        seen[ex.key()] = (n, label)
        examples.append(ex)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise TeachError("the examples file has problems:\n  " + "\n  ".join(shown))
    roles = {e.role for e in examples}
    if len(roles) > 1:
        raise TeachError(f"{path}: examples mix user and assistant turns; a category is taught on one role "
                         f"(give --role, or split the file)")
    if both_labels:
        check_counts(examples, str(path))
    return examples


def check_counts(examples: Sequence[Example], where: str) -> None:
    pos = sum(e.label for e in examples)
    if pos < MIN_PER_LABEL or len(examples) - pos < MIN_PER_LABEL:
        raise TeachError(f"{where}: {pos} positive and {len(examples) - pos} negative examples; at least "
                         f"{MIN_PER_LABEL} of each are needed (a few dozen of each is a good start)")


def read_many(paths: Sequence[str | os.PathLike], role: str | None = None) -> list[Example]:
    """Several example files as one set (e.g. written examples plus negatives drawn from real
    conversations). Each file is checked on its own; a turn in two files with two labels is
    an error, an exact repeat is kept once."""
    if len(paths) == 1:
        return read_examples(paths[0], role)
    out: dict[str, tuple[Example, str]] = {}
    problems = []
    for path in paths:
        for e in read_examples(path, role, both_labels=False):
            first = out.get(e.key())
            if first and first[0].label != e.label:
                problems.append(f"{path}: a turn of {first[1]} is here with the other label: {e.text[:40]!r}...")
            out.setdefault(e.key(), (e, str(path)))
    if problems:
        raise TeachError("the examples files contradict each other:\n  " + "\n  ".join(problems[:20]))
    examples = [e for e, _ in out.values()]
    if len({e.role for e in examples}) > 1:
        raise TeachError("the examples files mix user and assistant turns; a category is taught on one role")
    check_counts(examples, ", ".join(str(p) for p in paths))
    return examples


def held_out(example: Example, share: float) -> bool:
    """Whether an example is in the held-out part: by a hash of its text and context, so the
    split does not depend on the file's order and a report can find the same part again."""
    return int(example.key()[:8], 16) / 0xFFFFFFFF < share


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- the head -----------------------------------------------------------------------------

def features(classifier, examples: Sequence[Example], batch_size: int = 16,
             progress: bool = True):
    """What a taught head reads for every example, shape (n, 2 * hidden): see :func:`head_input`."""
    import torch
    from tqdm.auto import tqdm

    encoded = [classifier.encoder.encode(e.text, e.role, list(e.context)) for e in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = [None] * len(encoded)
    bar = tqdm(total=len(encoded), desc="reading examples", unit="turn", disable=not progress)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        ids, mask = classifier.encoder.pad([encoded[i] for i in index])
        with torch.inference_mode():
            pooled = head_input(*classifier.judge.states(ids, mask))
        for row, i in enumerate(index):
            out[i] = pooled[row]
        bar.update(len(index))
    bar.close()
    return torch.stack(out)


def head_input(last, mean):
    """The vector a taught head reads, from ``Judge.states``: both states side by side."""
    import torch

    return torch.cat([last.float(), mean.float()], dim=-1)


def _fit(X, y, l2: float, steps: int = 100):
    """Class-balanced L2 logistic regression on standardised features; returns the weight and
    bias on the raw features (the standardisation folded in)."""
    import torch

    mu, sd = X.mean(0), X.std(0).clamp_min(1e-4)
    Z = (X - mu) / sd
    w = torch.zeros(X.size(1), requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    pos = float(y.sum())
    pos_weight = torch.tensor((len(y) - pos) / max(pos, 1.0))
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def closure():
        opt.zero_grad()
        loss = loss_fn(Z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = (w / sd).detach()
    b_raw = float((b - (mu / sd * w).sum()).detach())
    return w_raw, b_raw


def _prf(p, y, threshold: float) -> tuple[float, float, float]:
    pred = p >= threshold
    tp = float((pred & (y == 1)).sum())
    fp = float((pred & (y == 0)).sum())
    fn = float((~pred & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _best_threshold(p, y) -> tuple[float, float]:
    """The threshold with the best F1 (ties: the one nearest 0.5)."""
    best = (-1.0, 0.5)
    for t in [i / 100 for i in range(5, 96)]:
        f1 = _prf(p, y, t)[2]
        if f1 > best[0] + 1e-9 or (abs(f1 - best[0]) <= 1e-9 and abs(t - 0.5) < abs(best[1] - 0.5)):
            best = (f1, t)
    return best[1], best[0]


def fit_head(X, y, folds: int = 5, seed: int = 1234) -> dict:
    """Pick the L2 strength and the threshold by cross-validation on the teaching part, then fit
    on all of it. Returns weight, bias, threshold, l2 and the cross-validated F1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    fold_of = torch.empty(len(y), dtype=torch.long)
    fold_of[perm] = torch.arange(len(y)) % folds
    best = None
    for l2 in L2_GRID:
        oof = torch.empty(len(y))
        for k in range(folds):
            train, test = fold_of != k, fold_of == k
            w, b = _fit(X[train], y[train], l2)
            oof[test] = torch.sigmoid(X[test] @ w + b)
        threshold, f1 = _best_threshold(oof, y)
        if best is None or f1 > best["cv_f1"] + 1e-9:
            best = {"l2": l2, "threshold": threshold, "cv_f1": f1}
    w, b = _fit(X, y, best["l2"])
    return {**best, "weight": w, "bias": b}


# --- saving and loading -------------------------------------------------------------------

def save_head(head: TaughtHead, adapter_dir: str | os.PathLike) -> Path:
    from safetensors.torch import save_file
    import torch

    folder = Path(adapter_dir) / TAUGHT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"weight": head.weight.detach().float().contiguous(), "bias": torch.tensor([head.bias])},
              str(folder / f"{head.name}.safetensors"))
    (folder / f"{head.name}.json").write_text(json.dumps(head.meta(), indent=2) + "\n")
    return folder / f"{head.name}.json"


def taught_meta(adapter_dir: str | os.PathLike) -> list[dict]:
    """The taught categories of an adapter folder, from their JSON files alone (no model, no
    torch): what ``guardrail policy check`` needs to know which names a policy may use."""
    folder = Path(adapter_dir) / TAUGHT_DIR
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(path.read_text())
        except ValueError as e:
            raise TeachError(f"{path} is not valid JSON ({e}); re-teach the category or delete the file") from None
        if not isinstance(meta, dict) or meta.get("name") != path.stem or meta.get("role") not in ROLES:
            raise TeachError(f"{path}: expected a taught-category record named {path.stem!r} with a role")
        out.append(meta)
    return out


def taught_names(adapter_dir: str | os.PathLike) -> list[str]:
    return [m["name"] for m in taught_meta(adapter_dir)]


def load_heads(adapter_dir: str | os.PathLike, judge_model_id: str, hidden: int = 0) -> list[TaughtHead]:
    """Every taught head of an adapter folder; a head taught on another judge (or for other
    features, or of the wrong size for a judge of width ``hidden``) is an error."""
    from safetensors.torch import load_file

    heads = []
    for meta in taught_meta(adapter_dir):
        name = meta["name"]
        if meta.get("judge_model_id") != judge_model_id:
            raise TeachError(f"taught category {name!r} in {Path(adapter_dir) / TAUGHT_DIR} was taught on judge "
                             f"{meta.get('judge_model_id')!r}, but this adapter's judge is {judge_model_id!r}; "
                             f"re-teach it (guardrail teach {name} --examples ... or make teach)")
        if meta.get("features") != FEATURES:
            raise TeachError(f"taught category {name!r} in {Path(adapter_dir) / TAUGHT_DIR} reads "
                             f"{meta.get('features')!r}, this version reads {FEATURES!r}; re-teach it "
                             f"(guardrail teach {name} --examples ... or make teach)")
        path = Path(adapter_dir) / TAUGHT_DIR / f"{name}.safetensors"
        try:
            weights = load_file(str(path))
            weight, bias = weights["weight"], weights["bias"]
        except Exception as e:  # noqa: BLE001  (a truncated or foreign file)
            raise TeachError(f"cannot read {path} ({type(e).__name__}: {e}); re-teach {name!r}") from None
        if weight.dim() != 1 or (hidden and weight.numel() != 2 * hidden):
            raise TeachError(f"{path}: weight of shape {tuple(weight.shape)}, expected ({2 * hidden},); re-teach {name!r}")
        record = {k: v for k, v in meta.items()
                  if k not in ("name", "role", "threshold", "bias", "judge_model_id", "features", "description")}
        heads.append(TaughtHead(name, meta["role"], float(meta["threshold"]), weight.float(),
                                float(bias[0]), judge_model_id, meta.get("description", ""), record))
    return heads


# --- teaching -----------------------------------------------------------------------------

@dataclass
class TeachResult:
    name: str
    role: str
    path: Path
    threshold: float
    precision: float
    recall: float
    f1: float
    n_teach: int
    n_held_out: int
    seconds: float

    def summary(self) -> str:
        return (f"{self.name} ({self.role} turns): threshold {self.threshold:.2f}; held-out "
                f"{self.n_held_out} examples: precision {self.precision:.3f}, recall {self.recall:.3f}, "
                f"F1 {self.f1:.3f}; taught on {self.n_teach} in {self.seconds:.0f} s; saved to {self.path}")


def prepare_target(into: str | os.PathLike | None, source: Path) -> Path:
    """The adapter folder the head goes into. A new or empty folder gets a copy of the
    ``source`` adapter first, so the result is a whole adapter that loads on its own."""
    from .modeling import CONFIG_FILE

    if into is None:
        target = source
    else:
        target = Path(into).expanduser()
        if target.exists() and not target.is_dir():
            raise TeachError(f"--into {target} is a file; give an adapter folder")
        if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
            raise TeachError(f"--into {target} is neither empty nor an adapter folder (no {CONFIG_FILE})")
        if not (target / CONFIG_FILE).is_file():
            shutil.copytree(source, target, dirs_exist_ok=True)
    if not os.access(target, os.W_OK):
        raise TeachError(f"cannot write to the adapter folder {target}; give --into a folder of your own")
    return target


def teach(name: str, examples_path: str | os.PathLike | Sequence[str | os.PathLike], role: str | None = None,
          into: str | os.PathLike | None = None, adapter: str | os.PathLike | None = None,
          description: str = "", held_out_share: float = 0.2, seed: int = 1234,
          progress: bool = True, classifier=None, log: Callable[[str], None] = print) -> TeachResult:
    """Teach category ``name`` from a JSONL file of labelled turns and save its head.

    The judge is ``classifier`` or the adapter at ``adapter`` (default: the shipped one);
    the head goes into ``into`` (default: that adapter's folder; a new folder gets a copy of
    the adapter first). A held-out share of the examples (by hash) is never used to fit or to
    pick the threshold; its precision, recall and F1 are reported and saved with the head."""
    import torch

    from .classifier import Classifier

    started = time.time()
    check_name(name)
    if not 0.05 <= held_out_share <= 0.5:
        raise TeachError(f"held-out share {held_out_share}: use 0.05 to 0.5 (0.2 keeps a fifth of the examples out)")
    paths = [examples_path] if isinstance(examples_path, (str, os.PathLike)) else list(examples_path)
    if not paths:
        raise TeachError("no examples file given")
    examples = read_many(paths, role)
    shown = ", ".join(str(p) for p in paths)
    role = examples[0].role
    if classifier is None:
        classifier = Classifier.load(adapter, int8=False)   # taught on the exact (fp32) judge's features
    source = Path(classifier.adapter_path)
    target = prepare_target(into, source)
    if into is not None and target != source:
        from .modeling import read_config
        if read_config(target).model_id != classifier.model_id:
            raise TeachError(f"--into {target} holds another judge ({read_config(target).model_id}) than the "
                             f"one teaching ({classifier.model_id}); give an empty folder or that judge's folder")
    is_held = [held_out(e, held_out_share) for e in examples]
    teach_part = [e for e, o in zip(examples, is_held) if not o]
    test_part = [e for e, o in zip(examples, is_held) if o]
    for part, what in ((teach_part, "teaching"), (test_part, "held-out")):
        labels = {e.label for e in part}
        if labels != {0, 1}:
            raise TeachError(f"the {what} part of {shown} has only label(s) {sorted(labels)}; "
                             f"add more examples of both labels")
    log(f"teaching {name!r} on {len(teach_part)} {role} turns ({sum(e.label for e in teach_part)} positive), "
        f"holding out {len(test_part)}")
    X = features(classifier, examples, progress=progress)
    y = torch.tensor([float(e.label) for e in examples])
    is_test = torch.tensor(is_held)
    fit = fit_head(X[~is_test], y[~is_test], seed=seed)
    p_test = torch.sigmoid(X[is_test] @ fit["weight"] + fit["bias"])
    precision, recall, f1 = _prf(p_test, y[is_test], fit["threshold"])
    seconds = time.time() - started
    record = {
        "examples": {"files": [{"file": Path(p).name, "sha256": file_sha256(p),
                                "rows": sum(1 for line in Path(p).read_text(encoding="utf-8").splitlines() if line.strip())}
                               for p in paths],
                     "rows": len(examples), "positive": int(y.sum())},
        "split": {"held_out_share": held_out_share, "rule": "sha256(role, context, text)[:8] / 0xFFFFFFFF < share",
                  "teach_rows": len(teach_part), "held_out_rows": len(test_part)},
        "fit": {"kind": f"logistic regression (class-balanced, L2) on the judge's {FEATURES}",
                "l2": fit["l2"], "cv_f1": round(fit["cv_f1"], 4), "threshold_from": "5-fold cross-validation F1"},
        "held_out": {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)},
        "seconds": round(seconds, 1),
        "taught_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    head = TaughtHead(name, role, float(fit["threshold"]), fit["weight"], fit["bias"], classifier.model_id,
                      description, record)
    save_head(head, target)
    return TeachResult(name, role, target, head.threshold, precision, recall, f1, len(teach_part),
                       len(test_part), seconds)

