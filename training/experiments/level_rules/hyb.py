import pickle, sys, numpy as np
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[3]))
from training.generalisation import rates, check_targets
def hyb(lp, tf):
    p = lp.argmax(1)
    return np.where((p == 0) & (lp[:, 1] + lp[:, 2] >= tf), 1, p)
for f in sys.argv[1:]:
    d = pickle.load(open(f, 'rb'))
    for tf in (None, 0.6, 0.55, 0.5, 0.45):
        r = {}
        for n, v in d['sets'].items():
            if n.startswith('first') or '(val' in n: continue
            lp = v['lp']
            if tf is not None:
                p = hyb(lp, tf); lp = np.eye(3)[p]
            r[n] = rates([{k: x for k, x in row.items() if x is not None} for row in v['rows']], lp, v['cp'], d['thresholds'])
        t = check_targets(r)
        print(f, tf, "met", sum(bool(x['met']) for x in t), "| harm fl %.3f probe fl %.3f ben %.3f | tcF1 %.3f | seekfl %.3f sup %.3f sad %.3f ed %.3f | crisis %.3f | inj harmless TT %.3f own %.3f, harmful TT %.3f own %.3f" % tuple(
            [r['harmful requests (dev)']['flagged'], r['method probe / harmful']['flagged'], r['method probe / benign']['flagged'],
             r["toxicchat (dev, annotators' toxic flag)"]['f1_flagged_vs_toxic'], r['esconv / seeker (dev, outside crisis)']['flagged'],
             r['esconv / supporter (dev)']['flagged'], r['sad (dev)']['flagged'], r['empathetic_dialogues (dev)']['flagged'], r['esconv / crisis turns (dev)']['flagged']]
            + [x['value'] for x in t if x['measure'].startswith('flagged minus')][::-1][:0] +
            [r['injection / harmless, in Tensor Trust attacks']['flagged'] - r['injection / harmless, plain']['flagged'], r['injection / harmless, in own wrappers']['flagged'] - r['injection / harmless, plain']['flagged'],
             r['injection / harmful, in Tensor Trust attacks']['flagged'] - r['injection / harmful, plain']['flagged'], r['injection / harmful, in own wrappers']['flagged'] - r['injection / harmful, plain']['flagged']]))
