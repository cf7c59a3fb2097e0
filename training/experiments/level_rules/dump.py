"""Score an adapter once on the real dev and val splits, the probe, injection sets and the first-round
val/test splits, and pickle the level and category probabilities:

    python training/experiments/level_rules/dump.py [ADAPTER] [OUT.pkl]

with the default judge (``Classifier.load``: int8 gate/up projections), then grid.py OUT.pkl
(threshold rules), hyb.py OUT.pkl... (borderline_at) and report.py (a generalisation-style
report); figures in training/reports/experiments/level-rule.md. Needs training/build (make data)."""
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from guardrail import Classifier  # noqa: E402
from training import generalisation as g  # noqa: E402
from training.evaluate import model_scorer  # noqa: E402
from training.prepare_data import read_jsonl  # noqa: E402

adapter = sys.argv[1] if len(sys.argv) > 1 else None
out = sys.argv[2] if len(sys.argv) > 2 else '/tmp/probs/ship.pkl'
clf = Classifier.load(adapter)
sets = dict(g.real_dev_sets(split="val"))
dev = g.real_dev_sets()
sets.update(dev)
sets.update(g.probe_sets())
sets.update(g.injection_sets(dev | g.probe_sets()))   # as generalisation.py: dev + probe turns, wrapped
for sp in ("val", "test"):
    sets[f"first {sp}"] = read_jsonl(ROOT / "training" / "build" / f"{sp}.jsonl")
unique = list({id(r): r for rows in sets.values() for r in rows}.values())
print(len(unique), "rows", file=sys.stderr)
t = time.time()
lp, cp = model_scorer(clf)(unique)
print(f"scored in {time.time() - t:.0f} s", file=sys.stderr)
where = {id(r): i for i, r in enumerate(unique)}
res = {name: {"rows": [{k: r.get(k) for k in ("level", "categories", "source", "toxic", "group", "role")} for r in rows],
              "lp": lp[[where[id(r)] for r in rows]], "cp": cp[[where[id(r)] for r in rows]]} for name, rows in sets.items()}
pickle.dump({"thresholds": clf.thresholds, "T": clf.config.level_temperature, "sets": res}, open(out, "wb"))
