"""Train the LoRA judge. Read top to bottom: config, data, model, loop, calibration, save.

    python training/train.py                              # settings from training/config.yaml
    python training/train.py --out guardrail/adapter      # the shipped default
    python training/train.py --base ~/models/Llama-3.2-1B # another LLaMA-family base
    python training/train.py --max-examples 200 --out /tmp/smoke   # smoke run
    python training/train.py --set model.num_layers=6 --set "model.lora_layers=[2,3,4,5]" \
        --out training/models/smollm2-L6                  # a smaller size (see training/compare.py)
    python training/train.py --init guardrail/adapter --config training/polish.yaml \
        --out training/runs/polish                        # a second, shorter stage from an adapter

Checkpoints go to <out>/checkpoint.pt every ``checkpoint_every`` steps; running the same
command again resumes from there (``--restart`` ignores it).
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from guardrail.inputs import InputConfig  # noqa: E402
from guardrail.modeling import JudgeConfig, new_judge, read_config, save_adapter, warm_start  # noqa: E402
from guardrail.taught import TAUGHT_DIR, taught_meta  # noqa: E402
from guardrail.taxonomy import CATEGORIES, LEVELS  # noqa: E402
from training.prepare_data import OWN_DIR, load_own, norm, read_jsonl, split_of  # noqa: E402


def matches(row: dict, pattern: str) -> bool:
    """Whether a row's source or group (a real source's ``source:group``) matches ``pattern``."""
    return fnmatch.fnmatch(row["source"], pattern) or fnmatch.fnmatch(row.get("group") or "", pattern)


def encode_all(encoder, rows, weights=None):
    """(input ids, level index, category multi-hot, loss weight) per row.

    ``weights`` maps a source or group pattern (fnmatch, e.g. ``own:crisis*`` or
    ``esconv:crisis``) to the weight of its rows in the loss (1 for the rest; the largest
    matching pattern wins): a row of weight 2 pulls as hard as the same row seen twice, at the
    cost of seeing it once."""
    out = []
    for r in rows:
        ids = encoder.encode(r["text"], r["role"], r.get("context") or [])
        cats = [1.0 if c in r["categories"] else 0.0 for c in CATEGORIES]
        w = max((float(v) for p, v in (weights or {}).items() if matches(r, p)), default=1.0)
        out.append((ids, LEVELS.index(r["level"]), cats, w))
    return out


def batches(examples, batch_size, rng):
    """Length-bucketed batches (less padding), in random order."""
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    chunk = batch_size * 32
    result = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start:start + chunk], key=lambda i: len(examples[i][0]))
        result.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(result)
    return result


def collate(encoder, examples, index):
    ids, mask = encoder.pad([examples[i][0] for i in index])
    levels = torch.tensor([examples[i][1] for i in index])
    cats = torch.tensor([examples[i][2] for i in index])
    weights = torch.tensor([examples[i][3] for i in index])
    return ids, mask, levels, cats, weights


@torch.inference_mode()
def predict(judge, encoder, examples, batch_size=32):
    """Level logits and category logits for encoded examples (eval mode)."""
    judge.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    lv = torch.zeros(len(examples), len(LEVELS))
    ct = torch.zeros(len(examples), len(CATEGORIES))
    for s in range(0, len(order), batch_size):
        index = order[s:s + batch_size]
        ids, mask, *_ = collate(encoder, examples, index)
        a, b = judge(ids, mask)
        lv[index], ct[index] = a.float(), b.float()
    return lv, ct


def fit_temperature(logits, labels):
    """One scalar temperature that minimises validation NLL (Guo et al. 2017)."""
    best = (float("inf"), 1.0)
    for t in [x / 20 for x in range(10, 61)]:
        nll = F.cross_entropy(logits / t, labels).item()
        best = min(best, (nll, t))
    return best[1]


def fit_thresholds(probs, targets, own=None, min_positives=20):
    """Per-category threshold maximising F1 on validation, kept in [0.2, 0.8].

    Fitted on the project's own chatbot-style validation turns (``own``, a boolean mask) when
    they hold at least ``min_positives`` of the category: the long source posts pushed the
    suicide_self_harm threshold so high that "I want to kill myself" fell under it (trial v3)."""
    out = {}
    for j, cat in enumerate(CATEGORIES):
        rows = slice(None)
        if own is not None and (targets[own, j] > 0.5).sum().item() >= min_positives:
            rows = own
        p_all, y = probs[rows], targets[rows, j] > 0.5
        best = (-1.0, 0.0, 0.5)  # (F1, closeness to 0.5 as tie-break, threshold)
        for t in [x / 20 for x in range(4, 17)]:
            pred = p_all[:, j] >= t
            tp = (pred & y).sum().item()
            f1 = 2 * tp / max(1, pred.sum().item() + y.sum().item())
            best = max(best, (f1, -abs(t - 0.5), t))
        out[cat] = round(best[2], 3)
    return out


def extra_own_rows(folders, seed, known):
    """Train-split rows of own example files outside ``own/*.jsonl`` (e.g. ``stage2``).

    The same seeded text hash as prepare_data decides the split, so their validation and
    test parts stay unseen; texts already in the training set are skipped."""
    rows = []
    for name in folders:
        folder = OWN_DIR / name
        if not folder.is_dir():
            sys.exit(f"error: train.extra_own names {folder}, which is not a folder")
        for r in load_own(folder):
            key = norm(r["text"]) + "|" + r["role"]
            if split_of(r["text"], seed) == "train" and key not in known:
                known.add(key)
                rows.append(r)
    return rows


def real_pools(tc: dict, seed: int, split: str = "train") -> dict[str, list[dict]]:
    """{cap key of ``train.real``: the ``split`` rows it draws from}, ``drop`` rows and
    ``train.exclude_sources`` left out."""
    from training import real_sources

    caps = tc.get("real") or {}
    exclude = set(tc.get("exclude_sources") or [])
    unknown = exclude - set(real_sources.SOURCES)
    if unknown:
        sys.exit(f"error: train.exclude_sources names {sorted(unknown)}; known: {', '.join(real_sources.SOURCES)}")
    records = real_sources.load_real(real_sources.DEFAULT_SOURCES, commercial_only=tc.get("commercial_only", False))
    pools: dict[str, list[dict]] = {}
    for r in real_sources.split_real(records, seed)[split]:
        if r["level"] == "drop" or r["source"] in exclude:
            continue
        key = next((p for p in caps if fnmatch.fnmatch(r["group"], p)), None) or \
            next((p for p in caps if fnmatch.fnmatch(r["source"], p)), None)
        if key is not None:
            pools.setdefault(key, []).append(r)
    return pools


def real_rows(tc: dict, seed: int, split: str = "train", scale: float = 1.0,
              pools: dict[str, list[dict]] | None = None) -> list[dict]:
    """``split`` rows of the second-round sources (training/real_sources.py), capped
    (``scale`` times the caps: the validation rows use a fraction of them).

    ``train.real`` maps a source or group pattern (fnmatch; a group pattern such as
    ``esconv:crisis`` wins over its source) to the most rows taken from it; sources it does
    not name are not used. ``train.exclude_sources`` leaves sources out (leave-one-source-out
    runs); ``train.commercial_only`` keeps only the sources whose licence allows it;
    ``train.real_hard`` adds the hardest benign rows (see hard_rows). ``pools``: the real_pools()
    result for this ``split``, when the caller has it already (it is shuffled in place)."""
    caps = tc.get("real") or {}
    if not caps:
        return []
    pools = real_pools(tc, seed, split) if pools is None else pools
    rng = random.Random(seed + 7)
    out = []
    for key, items in sorted(pools.items()):
        items.sort(key=lambda r: (r["id"], r["text"]))
        rng.shuffle(items)
        out.extend(items[: max(1, round(caps[key] * scale))])
    if split == "train" and tc.get("real_hard"):
        out += hard_rows(tc["real_hard"], pools, out)
    return out


def hard_rows(wanted: dict, pools: dict[str, list[dict]], chosen: list[dict], path: Path | None = None) -> list[dict]:
    """``train.real_hard``: {cap key: n} more train rows per key, the ones a previous judge
    found hardest (benign turns it flagged most; training/mine_hard.py wrote the list of
    their ids, no text, in training/data/mined/). Rows already sampled are not taken twice."""
    from training import mine_hard

    listed = mine_hard.read_list(path)
    taken = {mine_hard.row_key(r) for r in chosen}
    out = []
    for key, n in sorted(wanted.items()):
        if key not in listed:
            sys.exit(f"error: train.real_hard names {key!r}, which {path or mine_hard.LIST} has no list for "
                     f"(it has {', '.join(sorted(listed)) or 'none'}; re-run training/mine_hard.py)")
        by_key = {mine_hard.row_key(r): r for r in pools.get(key, [])}
        picked = [by_key[k] for k in listed[key] if k in by_key and k not in taken][:n]
        out.extend(picked)
    return out


def wrapped_rows(tc: dict, rows: list[dict], seed: int) -> list[dict]:
    """``train.wrapped`` copies of single user turns put inside an injection text, label
    unchanged: instructions inside a turn must not change its verdict. Half of the bases are
    unsafe, half safe; half of each go in Tensor Trust attacks (their train split), half in
    the project's own training wrappers (training/data/wrappers/*.jsonl)."""
    n = tc.get("wrapped", 0)
    if not n:
        return []
    from training import real_sources

    templates = real_sources.train_templates()
    # Tensor Trust is research-only: a commercial-only recipe wraps in the own templates alone
    pool = [] if tc.get("commercial_only", False) else [
        a for i, a in real_sources.attacks(real_sources.DEFAULT_SOURCES) if real_sources.split_of_id(i, seed) == "train"]
    if not pool and not templates:
        return []
    exclude = set(tc.get("exclude_sources") or [])
    base = [r for r in rows if r["role"] == "user" and not r["context"] and len(r["text"]) < 400
            and r["source"] not in exclude and r["level"] in ("safe", "unsafe")]
    rng = random.Random(seed + 11)
    out = []
    for level in ("unsafe", "safe"):
        items = sorted((r for r in base if r["level"] == level), key=lambda r: r["text"])
        for k, r in enumerate(rng.sample(items, min(len(items), n // 2))):
            # half in Tensor Trust attacks, half in the project's own training wrappers
            text = (real_sources.wrap(r["text"], rng.choice(pool), rng) if pool and (k % 2 or not templates)
                    else real_sources.fill_template(rng.choice(templates), r["text"]))
            out.append({**r, "text": text, "group": r["group"] + "+injection", "source": r["source"]})
    return out


def training_rows(cfg: dict, data: Path, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """The rows one epoch trains on (own rows repeated ``own_repeat`` times) and the own rows.

    Starts from prepare_data's train split, adds the train-split rows of ``extra_own``
    folders, and keeps a seeded ``source_share`` of the public-source rows (a second stage
    replays a sample of them so it does not forget them). ``repeat`` maps a source pattern
    (fnmatch) to how many times its own rows are seen per epoch instead of ``own_repeat``."""
    tc = cfg["train"]
    rows = read_jsonl(data / "train.jsonl")
    known = {norm(r["text"]) + "|" + r["role"] for r in rows}
    rows += extra_own_rows(tc.get("extra_own") or [], cfg["data"]["seed"], known)
    own = [r for r in rows if r["source"].startswith("own:")]
    share = tc.get("source_share", 1.0)
    if share < 1.0:
        others = [r for r in rows if not r["source"].startswith("own:")]
        others = random.Random(tc["seed"]).sample(others, round(len(others) * share))
        rows = own + others
    if tc.get("own_share", 1.0) < 1.0:
        # a later stage replays a sample of the earlier own rows and keeps its own files whole
        kept = [any(fnmatch.fnmatch(r["source"], p) for p in tc.get("own_keep") or []) for r in own]
        keep = [r for r, k in zip(own, kept) if k]
        rest = [r for r, k in zip(own, kept) if not k]
        rest = random.Random(tc["seed"] + 1).sample(rest, round(len(rest) * tc["own_share"]))
        own = keep + rest
        rows = [r for r in rows if not r["source"].startswith("own:")] + own
    real = real_rows(tc, cfg["data"]["seed"])
    rows += real + wrapped_rows(tc, own + real, cfg["data"]["seed"])
    own_repeat = tc.get("own_repeat", 1)
    rows = rows + own * (own_repeat - 1)
    repeat = tc.get("repeat") or {}  # e.g. {"own:hard_negatives*": 2}
    for pattern, times in repeat.items():
        if not any(fnmatch.fnmatch(r["source"], pattern) for r in own):
            sys.exit(f"error: train.repeat names {pattern!r}, which matches no own training rows")
        if not isinstance(times, int) or times < own_repeat:
            sys.exit(f"error: train.repeat[{pattern!r}] is {times!r}; it must be a whole number >= own_repeat ({own_repeat})")
    if repeat:
        # a row matched by several patterns is seen as often as the largest of them says, not their sum
        seen = [max((t for p, t in repeat.items() if fnmatch.fnmatch(r["source"], p)), default=own_repeat)
                for r in own]
        rows += [r for r, times in zip(own, seen) for _ in range(times - own_repeat)]
    if tc.get("max_examples"):
        rng.shuffle(rows)
        rows = rows[: tc["max_examples"]]
    return rows, own


def row_counts(rows: list[dict]) -> dict:
    """{source: {level: n}}: what the model card lists as the data an adapter saw."""
    counts: dict = {}
    for r in rows:
        by_level = counts.setdefault(r["source"], {})
        by_level[r["level"]] = by_level.get(r["level"], 0) + 1
    return dict(sorted(counts.items()))


def load_settings(path: Path) -> dict:
    """A YAML config; ``inherit: other.yaml`` loads that file first and updates it section by section."""
    cfg = yaml.safe_load(path.read_text())
    parent = cfg.pop("inherit", None)
    if parent is None:
        return cfg
    base = load_settings(path.parent / parent)
    for section, values in cfg.items():
        base.setdefault(section, {}).update(values)
    return base


def apply_override(cfg: dict, spec: str) -> None:
    """``section.key=value`` with a YAML value; an unknown key is an error (typos must not pass silently)."""
    key, sep, value = spec.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or section not in cfg or name not in cfg[section]:
        sys.exit(f"error: --set wants SECTION.KEY=VALUE with a key of {Path('training/config.yaml')}, got {spec!r}")
    cfg[section][name] = yaml.safe_load(value)


def main(argv=None):
    p = argparse.ArgumentParser(description="Train the guardrail's LoRA judge")
    p.add_argument("--config", default=str(ROOT / "training" / "config.yaml"))
    p.add_argument("--data", default=str(ROOT / "training" / "build"), help="folder from prepare_data.py")
    p.add_argument("--out", default=str(ROOT / "training" / "runs" / "latest"))
    p.add_argument("--base", default=None, help="local Hugging Face LLaMA-family checkpoint folder")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--init", default=None, metavar="ADAPTER",
                   help="start from this adapter's LoRA weights and heads (a second training stage)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (YAML syntax), e.g. model.num_layers=6")
    args = p.parse_args(argv)

    cfg = load_settings(Path(args.config))
    for spec in args.set:
        apply_override(cfg, spec)
    mc, tc = cfg["model"], cfg["train"]
    if args.max_examples is not None:
        tc["max_examples"] = args.max_examples
    if args.epochs is not None:
        tc["epochs"] = args.epochs
    torch.set_num_threads(tc.get("threads", 2))
    torch.manual_seed(tc["seed"])
    rng = random.Random(tc["seed"])
    data = Path(args.data)
    for split in ("train", "val"):
        if not (data / f"{split}.jsonl").is_file():
            sys.exit(f"error: {data / f'{split}.jsonl'} is missing; run training/prepare_data.py first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # --- model ---------------------------------------------------------------------------
    jc = JudgeConfig(num_layers=mc["num_layers"], lora_r=mc["lora_r"], lora_alpha=mc["lora_alpha"],
                     lora_dropout=mc["lora_dropout"], lora_targets=list(mc["lora_targets"]),
                     lora_layers=mc.get("lora_layers"), borderline_at=mc.get("borderline_at"),
                     inputs=InputConfig(mc["max_length"], mc["turn_budget"], mc["context_turns"]))
    judge, encoder = new_judge(jc, args.base, args.cache_dir)
    stage1 = None
    if args.init:
        before = warm_start(judge, args.init)
        stage1 = {"adapter": read_config(args.init).model_id, "steps": before.get("steps"),
                  "train_seconds": before.get("train_seconds"), "train_examples": before.get("train_examples")}
        print(f"starting from {args.init} ({stage1['adapter']})", file=sys.stderr)

    # --- data ----------------------------------------------------------------------------
    train_rows, own = training_rows(cfg, data, rng)
    val_rows = read_jsonl(data / "val.jsonl")
    if tc.get("max_examples"):
        val_rows = val_rows[: max(50, tc["max_examples"] // 4)]
    # real text calibrates too: the val split of the second-round sources, a fifth of the train caps
    val_rows += real_rows(tc, cfg["data"]["seed"], split="val", scale=0.2)
    weights = tc.get("weight") or {}   # e.g. {"own:crisis*": 2}
    for pattern, w in weights.items():
        left_out = any(fnmatch.fnmatch(x, pattern) for x in tc.get("exclude_sources") or [])
        if not left_out and not any(matches(r, pattern) for r in train_rows):   # a left-out source's weight waits
            sys.exit(f"error: train.weight names {pattern!r}, which matches no training rows' source or group")
        if not isinstance(w, (int, float)) or w <= 0:
            sys.exit(f"error: train.weight[{pattern!r}] is {w!r}; it must be a number > 0")
    train = encode_all(encoder, train_rows, weights)
    val = encode_all(encoder, val_rows)
    plan = []
    whole = math.floor(tc["epochs"])
    for _ in range(whole):
        plan.extend(batches(train, tc["batch_size"], rng))
    if tc["epochs"] > whole:
        extra = batches(train, tc["batch_size"], rng)
        plan.extend(extra[: int(len(extra) * (tc["epochs"] - whole))])
    steps = len(plan)
    print(f"training on {len(train)} examples ({len(own)} own, repeated {tc.get('own_repeat', 1)}x), "
          f"{steps} steps of {tc['batch_size']}; validation {len(val)}", file=sys.stderr)

    lora_params = [p for n, p in judge.backbone.named_parameters() if p.requires_grad]
    head_params = list(judge.level_head.parameters()) + list(judge.category_head.parameters())
    opt = torch.optim.AdamW([{"params": lora_params, "lr": tc["lr"]},
                             {"params": head_params, "lr": tc["head_lr"]}], weight_decay=tc["weight_decay"])
    warm = tc.get("warmup_steps", 0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warm)) * max(0.05, 0.5 * (1 + math.cos(math.pi * s / steps))))

    # --- resume --------------------------------------------------------------------------
    ckpt_path = out / "checkpoint.pt"
    start, elapsed = 0, 0.0
    if ckpt_path.exists() and not args.restart:
        ck = torch.load(ckpt_path, weights_only=False)
        if ck["steps"] == steps:
            judge.load_state_dict(ck["trainable"], strict=False)
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start, elapsed = ck["step"], ck["elapsed"]
            torch.set_rng_state(ck["torch_rng"])
            print(f"resuming from step {start}/{steps}", file=sys.stderr)
        else:
            print("checkpoint is from a different plan; starting over", file=sys.stderr)

    def save_checkpoint(step):
        trainable = {n: p.detach().clone() for n, p in judge.named_parameters() if p.requires_grad}
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"trainable": trainable, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "step": step, "steps": steps, "elapsed": elapsed + time.time() - t0,
                    "torch_rng": torch.get_rng_state()}, tmp)
        tmp.replace(ckpt_path)

    # --- loop ----------------------------------------------------------------------------
    # bf16 autocast: the matrix products in bfloat16 (AVX512-BF16 CPUs run them about 1.3x
    # faster), the loss, the optimiser and the saved weights in fp32
    if tc.get("autocast") not in (None, "bf16"):
        sys.exit(f"error: train.autocast is {tc['autocast']!r}; use bf16 or leave it empty")
    autocast = tc.get("autocast") == "bf16"
    t0 = time.time()
    judge.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train", file=sys.stderr)
    running = None
    for step in bar:
        ids, mask, levels, cats, row_weights = collate(encoder, train, plan[step])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            level_logits, cat_logits = judge(ids, mask)
        level_logits, cat_logits = level_logits.float(), cat_logits.float()
        per_row = F.cross_entropy(level_logits, levels, label_smoothing=tc.get("label_smoothing", 0.0),
                                  reduction="none")
        per_row = per_row + tc.get("category_loss_weight", 1.0) * F.binary_cross_entropy_with_logits(
            cat_logits, cats, reduction="none").mean(1)
        loss = (per_row * row_weights).mean()   # a mean over rows, so weight 1 everywhere is the plain loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora_params + head_params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.set_postfix(loss=f"{running:.3f}")
        if (step + 1) % tc.get("checkpoint_every", 50) == 0 and step + 1 < steps:
            save_checkpoint(step + 1)
    train_seconds = elapsed + time.time() - t0

    # --- calibrate on validation, save ------------------------------------------------------
    lv, ct = predict(judge, encoder, val)
    labels = torch.tensor([e[1] for e in val])
    targets = torch.tensor([e[2] for e in val])
    jc.level_temperature = fit_temperature(lv, labels)
    # thresholds from chatbot-style turns (own and second-round real sources), not long posts
    own_val = torch.tensor([r["source"].startswith("own:") or "id" in r for r in val_rows])
    jc.thresholds = fit_thresholds(torch.sigmoid(ct), targets, own_val)
    acc = (lv.argmax(1) == labels).float().mean().item()
    sources = sorted({r["source"] for r in train_rows})
    jc.training = {"config": cfg, "train_examples": len(train), "own_examples": len(own),
                   "steps": steps, "train_seconds": round(train_seconds, 1), "init": stage1,
                   "sources": sources, "rows": row_counts(train_rows), "val_accuracy": round(acc, 4),
                   "torch_threads": torch.get_num_threads(),
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    save_adapter(judge, encoder, out)
    ckpt_path.unlink(missing_ok=True)
    stale = [m["name"] for m in taught_meta(out) if m.get("judge_model_id") != judge.config.model_id]
    if stale:   # a taught head only fits the judge it was taught on: re-teach from its examples
        for name in stale:
            for suffix in (".json", ".safetensors"):
                (out / TAUGHT_DIR / f"{name}{suffix}").unlink(missing_ok=True)
        print(f"removed taught categories {stale} from {out}: they were taught on the previous judge; "
              f"re-teach them (make teach, or guardrail teach NAME --examples FILE --into {out})", file=sys.stderr)
    print(f"saved {out} in {train_seconds / 60:.1f} min; val accuracy {acc:.3f}, temperature "
          f"{jc.level_temperature}, thresholds {jc.thresholds}", file=sys.stderr)


if __name__ == "__main__":
    main()
