"""Leave-one-source-out: train the third stage without a source, score the judge on that source.

    python training/loso.py                     # every fold (about 8 minutes each on 2 cores)
    python training/loso.py --folds cosafe      # one fold
    python training/loso.py --max-examples 0    # the full third-stage recipe (about 16 minutes a fold)

The figure that predicts text from a source nobody here has seen. Each fold runs the shipped
third-stage recipe (training/generalise.yaml) from the same second-stage adapter, which never
saw any second-round source, with ``train.exclude_sources`` set and, by default, a smaller
sample of its training rows (``--max-examples``, the same mix); it is then scored on every
row of the left-out sources (both splits, since none was trained on). A fold leaves out one
harmful-request source and one benign-emotion source at once, so four runs cover seven
sources. A fold whose adapter already exists in training/runs is scored without retraining.
Writes training/reports/loso.json and loso.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from training.generalisation import real_dev_sets, score_sets  # noqa: E402

# fold name -> sources left out (training/real_sources.SOURCES names)
FOLDS = {
    "harmbench+sad": ["harmbench", "sad"],
    "advbench+esconv": ["advbench", "esconv"],
    "malicious_instruct+empathetic_dialogues": ["malicious_instruct", "empathetic_dialogues"],
    "cosafe": ["cosafe", "cosafe_dialogues"],
}
STAGE2 = [ROOT / "training" / "runs" / "stage2", ROOT / "training" / "models" / "stage2-39844f11e6"]
TARGETS = {"flagged_min": 0.90, "benign_escalated_max": 0.02, "benign_flagged_max": 0.20}


def stage2_adapter() -> Path:
    for path in STAGE2:
        if (path / "guardrail.json").is_file():
            return path
    sys.exit(f"error: no second-stage adapter in {' or '.join(map(str, STAGE2))}; run make train first")


def run_fold(name: str, exclude: list[str], init: Path, config: Path, max_examples: int) -> Path:
    out = ROOT / "training" / "runs" / f"loso-{name}"
    meta = out / "guardrail.json"
    if meta.is_file():
        from training.train import load_settings

        trained = json.loads(meta.read_text())["training"]["config"]
        wanted = load_settings(config)
        wanted["train"].update(exclude_sources=exclude, max_examples=max_examples or None)
        if {k: trained.get(k) for k in ("model", "train")} == {k: wanted.get(k) for k in ("model", "train")}:
            print(f"{name}: reusing {out} (trained on the same recipe)", file=sys.stderr)
            return out
        print(f"{name}: {out} was trained on another recipe; training again", file=sys.stderr)
    cmd = [sys.executable, str(ROOT / "training" / "train.py"), "--init", str(init), "--config", str(config),
           "--set", f"train.exclude_sources={json.dumps(exclude)}", "--out", str(out), "--restart"]
    if max_examples:
        cmd += ["--max-examples", str(max_examples)]
    print(f"{name}: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, check=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folds", default=",".join(FOLDS), help=f"comma-separated, of: {', '.join(FOLDS)}")
    p.add_argument("--config", default=str(ROOT / "training" / "generalise.yaml"))
    p.add_argument("--out", default=str(ROOT / "training" / "reports"))
    p.add_argument("--max-examples", type=int, default=3000,
                   help="training rows per fold, sampled from the recipe's mix (0: all of them)")
    args = p.parse_args(argv)
    names = [n for n in args.folds.split(",") if n]
    unknown = [n for n in names if n not in FOLDS]
    if unknown:
        sys.exit(f"error: unknown fold(s) {unknown}; expected some of {', '.join(FOLDS)}")
    from guardrail import Classifier

    init = stage2_adapter()
    report = {"generated": time.strftime("%Y-%m-%d %H:%M"), "init": str(init.relative_to(ROOT)),
              "recipe": str(Path(args.config).relative_to(ROOT)), "max_examples": args.max_examples, "folds": {}}
    for name in names:
        exclude = FOLDS[name]
        adapter = run_fold(name, exclude, init, Path(args.config), args.max_examples)
        clf = Classifier.load(adapter, int8=False)   # the reports score the exact fp32 judge
        sets = real_dev_sets(only=set(exclude), split="all")
        report["folds"][name] = {"model_id": clf.model_id, "excluded": exclude,
                                 "train_seconds": json.loads((adapter / "guardrail.json").read_text())["training"]["train_seconds"],
                                 "results": score_sets(sets, clf)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "loso.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "loso.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report):
    lines = ["# Leave-one-source-out", "",
             f"Generated {report['generated']}. Each fold: the third-stage recipe `{report['recipe']}` from "
             f"`{report['init']}` (which saw no second-round source), without the fold's sources"
             + (f", on a sample of {report['max_examples']} of its training rows (a smaller, faster recipe than the shipped one)"
                if report.get("max_examples") else "")
             + "; scored on every row of them (both splits, at most 400 per set).",
             "Targets: harmful requests flagged >= 0.90; benign emotional talk escalated <= 0.02 and flagged <= 0.20.", "",
             "| fold | set | n | flagged | escalated | named |", "|---|---|---|---|---|---|"]
    for name, fold in report["folds"].items():
        for s, m in fold["results"].items():
            f = lambda k: "-" if m.get(k) is None else f"{m[k]:.3f}"  # noqa: E731
            lines.append(f"| {name} | {s} | {m['n']} | {f('flagged')} | {f('escalated')} | {f('named')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
