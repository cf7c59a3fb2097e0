"""First-round look-alikes and suicide recall per adapter, with the argmax and with borderline_at 0.5:
    python training/experiments/level_rules/lookalikes.py ship ADAPTER...   (run from the repository root; needs training/build)"""
import sys
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[3]))
from pathlib import Path
import numpy as np
from guardrail import Classifier
from training.evaluate import build_sets, model_scorer, levels_of
from training.prepare_data import read_jsonl
data = Path('training/build')
sets = build_sets(data, read_jsonl(data / 'train.jsonl'))
names = ['hard negatives (held-out)', 'challenge2 / look_alike', 'challenge3 / look_alike', 'test / suicide_self_harm unsafe', 'challenge / hard_negative']
for ad in sys.argv[1:]:
    clf = Classifier.load(None if ad == 'ship' else ad, int8=False)
    rows = [r for n in names for r in sets[n]]
    lp, _ = model_scorer(clf)(rows)
    i = 0
    out = []
    for n in names:
        k = len(sets[n]); x = lp[i:i+k]; i += k
        for at in (None, 0.5):
            p = levels_of(x, at)
            v = (p == 2).mean() if 'suicide' in n else (p != 0).mean()
            out.append(f"{n[:22]}@{at}: {v:.3f}")
    print(ad, ' | '.join(out), flush=True)
