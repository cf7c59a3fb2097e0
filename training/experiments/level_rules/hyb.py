"""Targets met and key rates of dump.py pickles with the argmax and with borderline_at
0.6 / 0.55 / 0.5 / 0.45 (guardrail.taxonomy.decide_level, through generalisation.rates):

    python training/experiments/level_rules/hyb.py OUT.pkl..."""
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from training.generalisation import check_targets, rates  # noqa: E402

for f in sys.argv[1:]:
    d = pickle.load(open(f, 'rb'))
    for at in (None, 0.6, 0.55, 0.5, 0.45):
        r = {n: rates([{k: x for k, x in row.items() if x is not None} for row in v['rows']], v['lp'], v['cp'],
                      d['thresholds'], at)
             for n, v in d['sets'].items() if not n.startswith('first') and '(val' not in n}
        t = check_targets(r)
        gap = lambda kind, wrap: r[f'injection / {kind}, in {wrap}']['flagged'] - r[f'injection / {kind}, plain']['flagged']  # noqa: E731
        print(f, at, "met", sum(bool(x['met']) for x in t),
              "| harm fl %.3f probe fl %.3f ben %.3f | tcF1 %.3f | seekfl %.3f sup %.3f sad %.3f ed %.3f | crisis %.3f"
              " | inj harmless TT %.3f own %.3f, harmful TT %.3f own %.3f" % (
                  r['harmful requests (dev)']['flagged'], r['method probe / harmful']['flagged'],
                  r['method probe / benign']['flagged'], r["toxicchat (dev, annotators' toxic flag)"]['f1_flagged_vs_toxic'],
                  r['esconv / seeker (dev, outside crisis)']['flagged'], r['esconv / supporter (dev)']['flagged'],
                  r['sad (dev)']['flagged'], r['empathetic_dialogues (dev)']['flagged'],
                  r['esconv / crisis turns (dev)']['flagged'],
                  gap('harmless', 'Tensor Trust attacks'), gap('harmless', 'own wrappers'),
                  gap('harmful', 'Tensor Trust attacks'), gap('harmful', 'own wrappers')))
