"""Paper-style comparison: every setting on the same held-out turns, one command.

    python training/compare.py                  # -> training/reports/compare.{json,md} + plots/ (~25 min)
    python training/compare.py --sample 500 --cap 0     # bigger sets (the prompted judges
                                                       # take about 1.3 s a turn on 2 cores)
    python training/compare.py --adapter "LoRA L6=training/runs/L6"   # add another size
                                                # (default: training/models/smollm2-L6, from make train-small)

Settings (in the spirit of Pinzuti et al. 2025, scaled down to this machine):
keyword list; MiniLM-L6 embeddings + logistic regression (the BERT-class baseline);
SmolLM2-135M-Instruct prompted zero-shot and few-shot (5 worked examples), scored from the
label tokens' probabilities like an LLM self-check rail (training/llm_judge.py); the shipped
LoRA judge (12 of 30 layers); the same with int8 weights; any extra adapter given.

Sets: a seeded sample of the held-out test split (stratified by source), the held-out
hard negatives (benign look-alikes), and the blind challenge2 set. Each setting runs in
its own process, so its peak memory (max RSS) is its own; latency is the median of single
64-token user turns with 3 turns of context, batch 1, 2 threads.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from guardrail.taxonomy import CATEGORIES, LEVELS  # noqa: E402
from training.evaluate import build_sets, keyword_scorer, metrics, minilm_scorer  # noqa: E402
from training.prepare_data import read_jsonl  # noqa: E402

SETTINGS = ["keywords", "MiniLM + LR", "SmolLM2-135M zero-shot", "SmolLM2-135M few-shot (5)",
            "LoRA SmolLM2-135M L12 (shipped)", "LoRA L12 int8 gate/up"]
SMALL = ROOT / "training" / "models" / "smollm2-L6"   # the second model size (make train-small)
LATENCY_TURN = {"role": "user", "text": ("I have been feeling a bit off this week, work is busy and I keep putting off "
                                         "the things I need to do, so I wanted to ask for some ideas on how to get "
                                         "back on track without burning out again"),
                "context": [{"role": "user", "text": "hi, can I ask you something?"},
                            {"role": "assistant", "text": "Of course, I'm happy to help. What's on your mind?"},
                            {"role": "user", "text": "it's about my week, it has been a lot"}]}


def comparison_sets(data: Path, sample: int, cap: int | None = None, seed: int = 1234) -> dict[str, list[dict]]:
    """The test sample plus the hard negatives and challenge2, each cut to ``cap`` turns (seeded)."""
    train = read_jsonl(data / "train.jsonl")
    full = build_sets(data, train)
    by_source = defaultdict(list)
    for r in full["test (all)"]:
        by_source[r["source"]].append(r)
    rng = random.Random(seed)
    total = len(full["test (all)"])
    test = []
    for src in sorted(by_source):
        rows = by_source[src]
        test += rng.sample(rows, min(len(rows), max(1, round(sample * len(rows) / total))))
    hard, ch2 = full["hard negatives (held-out)"], full.get("challenge2 (blind, all)", [])
    if cap:
        hard, ch2 = (rng.sample(rows, min(cap, len(rows))) for rows in (hard, ch2))
    return {f"test (sample of {len(test)})": test, "hard negatives (held-out)": hard, "challenge2 (blind)": ch2}


# --- one setting, in its own process -------------------------------------------------------

def load_setting(name: str, adapters: dict[str, str], data: Path):
    """(scorer(rows) -> (level probs, category probs), thresholds, borderline_at: the level
    rule, guardrail.taxonomy.decide_level; None for the plain argmax)."""
    import torch

    torch.set_num_threads(2)
    if name == "keywords":
        return keyword_scorer, {c: 0.5 for c in CATEGORIES}, None
    if name == "MiniLM + LR":
        return minilm_scorer(read_jsonl(data / "train.jsonl")), {c: 0.5 for c in CATEGORIES}, None
    if name.startswith("SmolLM2-135M"):
        from training.llm_judge import PromptJudge

        judge = PromptJudge.load(few_shot=5 if "few-shot" in name else 0)
        return (lambda rows: judge.score(rows, progress=len(rows) > 1)), {c: 0.3 for c in CATEGORIES}, None
    from guardrail import Classifier
    from training.evaluate import model_scorer

    clf = Classifier.load(adapters.get(name), int8=name.endswith("int8 gate/up"))
    return model_scorer(clf), clf.thresholds, clf.config.borderline_at


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries it over exec, so a child
    would report its parent's peak when that is higher."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(name: str, sets: dict, adapters: dict[str, str], data: Path, out: Path) -> None:
    t0 = time.time()
    scorer, thresholds, borderline_at = load_setting(name, adapters, data)
    load_s = time.time() - t0
    unique = list({json.dumps(r, sort_keys=True): r for rows in sets.values() for r in rows}.values())
    where = {json.dumps(r, sort_keys=True): i for i, r in enumerate(unique)}
    lp, cp = scorer(unique)
    lat = []
    for _ in range(12):
        t = time.perf_counter()
        scorer([LATENCY_TURN])
        lat.append(1000 * (time.perf_counter() - t))
    result = {"setting": name, "load_s": round(load_s, 1), "latency_ms_p50": round(statistics.median(lat[2:]), 1),
              "peak_rss_mb": round(peak_rss_mb(), 1),
              "thresholds": thresholds, "sets": {}}
    probs = {}
    for set_name, rows in sets.items():
        idx = [where[json.dumps(r, sort_keys=True)] for r in rows]
        result["sets"][set_name] = metrics(rows, lp[idx], cp[idx], thresholds, borderline_at)
        probs[set_name] = {"level": lp[idx].tolist(), "categories": cp[idx].tolist()}
    result["probs"] = probs
    out.write_text(json.dumps(result))


# --- report --------------------------------------------------------------------------------

def markdown(report) -> str:
    sets = list(report["sets"])
    test, hard, ch2 = sets[0], sets[1], sets[2]
    lines = ["# Paper-style comparison", "",
             f"Generated {report['generated']} by `{report['command']}` on {report['machine']}.", "",
             f"Sets: {test}, {hard} ({report['sizes'][hard]} turns), {ch2} ({report['sizes'][ch2]} turns). "
             "Latency: median single 64-token user turn with 3 context turns, batch 1, 2 threads. "
             "Memory: the setting's own process, peak RSS.", "",
             f"| setting | macro-F1 test | suicide F1 test | macro-F1 challenge2 | suicide F1 challenge2 | "
             f"hard-negative FPR | latency ms | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        s = r["sets"]
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        sh = lambda k: s[k]["categories"]["suicide_self_harm"].get("f1")  # noqa: E731
        lines.append(f"| {r['setting']} | {f(s[test]['macro_f1'])} | {f(sh(test))} | {f(s[ch2]['macro_f1'])} | "
                     f"{f(sh(ch2))} | {f(s[hard]['safe_fpr'])} | {r['latency_ms_p50']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", f"Per-category F1 on {test}:", "",
              "| setting | " + " | ".join(CATEGORIES) + " |", "|---|" + "---|" * len(CATEGORIES)]
    for r in report["results"]:
        cats = r["sets"][test]["categories"]
        lines.append(f"| {r['setting']} | " + " | ".join(
            f"{cats[c].get('f1', 0):.2f}" if cats[c]["support"] else "-" for c in CATEGORIES) + " |")
    lines += ["", "Plots: `plots/confusion.png`, `plots/pr_suicide.png`, `plots/f1_latency.png`.", ""]
    return "\n".join(lines)


def plots(report, sets, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    folder.mkdir(parents=True, exist_ok=True)
    test = list(sets)[0]
    rows = sets[test]
    y = np.array([LEVELS.index(r["level"]) for r in rows])
    results = report["results"]

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.4))
    for ax, r in zip(np.atleast_1d(axes), results):
        cm = np.array(r["sets"][test]["confusion"])
        ax.imshow(cm / np.maximum(1, cm.sum(1, keepdims=True)), cmap="Blues", vmin=0, vmax=1)
        for i in range(3):
            for j in range(3):
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=8)
        ax.set_xticks(range(3), ["safe", "bord.", "unsafe"], fontsize=7)
        ax.set_yticks(range(3), ["safe", "bord.", "unsafe"], fontsize=7)
        ax.set_title(r["setting"], fontsize=7)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "confusion.png", dpi=110)
    plt.close(fig)

    t = np.array(["suicide_self_harm" in r["categories"] for r in rows])
    j = CATEGORIES.index("suicide_self_harm")
    fig, ax = plt.subplots(figsize=(5, 4))
    for r in results:
        p, rc, _ = precision_recall_curve(t, np.array(report["probs"][r["setting"]][test]["categories"])[:, j])
        ax.plot(rc, p, label=r["setting"], lw=1.2)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"suicide_self_harm, {test}", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(folder / "pr_suicide.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    points = [(max(0.01, r["latency_ms_p50"]), r["sets"][test]["macro_f1"], r["setting"]) for r in results]
    for x, f1, name in points:
        ax.scatter(x, f1)
        # of two points close in latency, the higher one is labelled above and the lower one below
        others = [(abs(np.log10(x) - np.log10(x2)), f2) for x2, f2, n2 in points if n2 != name]
        above = not others or f1 >= min(others)[1]
        ax.annotate(name, (x, f1), fontsize=6, xytext=(4, 4 if above else -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("latency per turn, ms (log)")
    ax.set_ylabel(f"macro-F1, {test}")
    fig.tight_layout()
    fig.savefig(folder / "f1_latency.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT / "training" / "build"))
    p.add_argument("--sample", type=int, default=150, help="test-split turns (stratified by source)")
    p.add_argument("--cap", type=int, default=100, help="cut the hard negatives and challenge2 to this many turns")
    p.add_argument("--out", default=str(ROOT / "training" / "reports"))
    p.add_argument("--settings", nargs="*", default=None, help=f"subset of: {', '.join(SETTINGS)}")
    p.add_argument("--adapter", action="append", default=[], help='extra adapter, "NAME=PATH"')
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--one-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "test.jsonl").is_file():
        sys.exit(f"error: {data / 'test.jsonl'} is missing; run training/prepare_data.py (make data) first")
    if not args.adapter and (SMALL / "guardrail.json").is_file():
        args.adapter = [f"LoRA SmolLM2-135M L6={SMALL}"]
    adapters = {}
    for spec in args.adapter:
        if "=" not in spec or not Path(spec.split("=", 1)[1]).is_dir():
            sys.exit(f"error: --adapter wants NAME=PATH to an adapter folder, got {spec!r}")
        name, path = spec.split("=", 1)
        adapters[name] = path
    sets = comparison_sets(data, args.sample, args.cap)
    if args.one:
        run_one(args.one, sets, adapters, data, Path(args.one_out))
        return 0

    settings = args.settings or SETTINGS + list(adapters)
    unknown = [s for s in settings if s not in SETTINGS and s not in adapters]
    if unknown:
        sys.exit(f"error: unknown setting(s) {unknown}; choose from {SETTINGS + list(adapters)}")
    results, probs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in settings:
            t = time.time()
            part = Path(tmp) / "one.json"
            cmd = [sys.executable, __file__, "--one", name, "--one-out", str(part), "--data", str(data),
                   "--sample", str(args.sample)] + ["--cap", str(args.cap)] + [x for spec in args.adapter for x in ("--adapter", spec)]
            subprocess.run(cmd, check=True, env={**os.environ, "NEMO_GUARDRAILS_NO_USAGE_STATS": "1"})
            r = json.loads(part.read_text())
            probs[name] = r.pop("probs")
            results.append(r)
            first = next(iter(r["sets"]))
            print(f"{name}: macro-F1 {r['sets'][first]['macro_f1']:.3f}, latency {r['latency_ms_p50']} ms, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB ({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    import platform

    report = {"generated": time.strftime("%Y-%m-%d %H:%M"),
              "command": "python " + " ".join(["training/compare.py"] + (argv if argv is not None else sys.argv[1:])),
              "machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
              "sets": list(sets), "sizes": {k: len(v) for k, v in sets.items()}, "results": results, "probs": probs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots(report, sets, out / "plots")
    (out / "compare.json").write_text(json.dumps({k: v for k, v in report.items() if k != "probs"}, indent=1) + "\n")
    (out / "compare.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'compare.json'}, {out / 'compare.md'} and {out / 'plots'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
