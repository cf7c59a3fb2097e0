"""Score an adapter once on the real dev and val splits, the probe, injection sets and the first-round
val/test splits, and pickle the level and category probabilities:
    python training/experiments/level_rules/dump.py [ADAPTER] [OUT.pkl]
then grid.py OUT.pkl (threshold rules) and hyb.py OUT.pkl... (borderline_at); figures in
training/reports/experiments/level-rule.md. Needs training/build (make data)."""
import sys, json, pickle, time
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[3]))
import numpy as np
from training import generalisation as g
from training.prepare_data import read_jsonl
from training.evaluate import model_scorer
from guardrail import Classifier
adapter = sys.argv[1] if len(sys.argv) > 1 else None
out = sys.argv[2] if len(sys.argv) > 2 else '/tmp/probs/ship.pkl'
clf = Classifier.load(adapter)
sets = {}
sets.update({k: v for k, v in g.real_dev_sets(split="val").items()})
dev = g.real_dev_sets()
sets.update(dev)
sets.update(g.probe_sets())
sets.update(g.injection_sets(dev | g.probe_sets()))
for sp in ("val", "test"):
    rows = read_jsonl(fstr(__import__('pathlib').Path(__file__).resolve().parents[3]) + '/training/build/{sp}.jsonl')
    sets[f"first {sp}"] = rows
unique = list({id(r): r for rows in sets.values() for r in rows}.values())
print(len(unique), "rows", file=sys.stderr)
t = time.time()
lp, cp = model_scorer(clf)(unique)
print(time.time() - t, file=sys.stderr)
where = {id(r): i for i, r in enumerate(unique)}
res = {name: {"rows": [{k: r.get(k) for k in ("level", "categories", "source", "toxic", "group", "role")} for r in rows],
              "lp": lp[[where[id(r)] for r in rows]], "cp": cp[[where[id(r)] for r in rows]]} for name, rows in sets.items()}
pickle.dump({"thresholds": clf.thresholds, "T": clf.config.level_temperature if hasattr(clf, 'config') else None, "sets": res}, open(out, "wb"))
