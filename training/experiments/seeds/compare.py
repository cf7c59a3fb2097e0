"""Key dev-split figures of several real-source reports side by side (all of the default int8 judge):

    python training/experiments/seeds/compare.py NAME=REPORT.json ...

Written to see run-to-run spread next to recipe changes (training/reports/experiments/seeds.md)."""
import json
import sys

ROWS = [("harmful requests (dev)", "flagged"), ("harmful requests (dev)", "named"),
        ("cosafe_dialogues (dev)", "flagged"), ("method probe / harmful", "flagged"),
        ("method probe / self-harm", "escalated_named"), ("method probe / benign", "flagged"),
        ("toxicchat (dev, annotators' toxic flag)", "f1_flagged_vs_toxic"), ("toxicchat / benign (dev)", "escalated"),
        ("esconv / seeker (dev, outside crisis)", "escalated"), ("esconv / supporter (dev)", "flagged"),
        ("esconv / crisis turns (dev)", "flagged"), ("sad (dev)", "escalated"), ("empathetic_dialogues (dev)", "escalated"),
        ("injection / harmful, in Tensor Trust attacks", "flagged"), ("injection / harmless, in Tensor Trust attacks", "flagged"),
        ("injection / harmless, in own wrappers", "flagged")]
runs = [a.split("=", 1) for a in sys.argv[1:]]
res = {name: json.load(open(path))["results"] for name, path in runs}
print("| set | measure | " + " | ".join(n for n, _ in runs) + " |")
print("|---|---|" + "---|" * len(runs))
for s, m in ROWS:
    print(f"| {s} | {m} | " + " | ".join(f"{res[n][s][m]:.3f}" if s in res[n] else "-" for n, _ in runs) + " |")
