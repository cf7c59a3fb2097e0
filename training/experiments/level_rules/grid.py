"""Threshold rules on a dump.py pickle: unsafe if p(unsafe) >= tu, else borderline if
p(borderline) + p(unsafe) >= tf, else safe (``None None``: the argmax):

    python training/experiments/level_rules/grid.py OUT.pkl [dev|val]"""
import pickle
import sys

import numpy as np

d = pickle.load(open(sys.argv[1] if len(sys.argv) > 1 else '/tmp/probs/ship.pkl', 'rb'))
S = d['sets']
sp = sys.argv[2] if len(sys.argv) > 2 else 'dev'


def dec(lp, tu, tf):
    if tu is None:
        return lp.argmax(1)
    pu = lp[:, 2]
    pf = lp[:, 1] + lp[:, 2]
    return np.where(pu >= tu, 2, np.where(pf >= tf, 1, 0))


def m(n, tu, tf):
    p = dec(S[n]['lp'], tu, tf)
    return np.mean(p > 0), np.mean(p == 2)


def first_recall(tu, tf):
    rows = S['first test']['rows']
    p = dec(S['first test']['lp'], tu, tf)
    su = np.array([r['level'] == 'unsafe' and 'suicide_self_harm' in r['categories'] for r in rows])
    hn = np.array([r['source'].startswith('own:hard_neg') for r in rows])
    return np.mean(p[su] == 2), np.mean(p[hn] > 0)


def tc_f1(tu, tf):
    n = f"toxicchat ({sp}, annotators' toxic flag)"
    p = dec(S[n]['lp'], tu, tf) > 0
    t = np.array([r['toxic'] for r in S[n]['rows']])
    return 2 * (p & t).sum() / (p.sum() + t.sum())


print("tu   tf  | harm fl esc | probe fl sh_esc ben_fl | tcF1 tcb_esc | esS fl esc | sup fl | sad fl esc | ed fl esc | suic_rec hn_fl")
for tu, tf in [(None, None), (0.5, 0.5), (0.45, 0.4), (0.5, 0.4), (0.55, 0.45), (0.6, 0.5), (0.6, 0.45), (0.65, 0.5),
               (0.7, 0.5), (0.7, 0.45), (0.7, 0.4), (0.75, 0.5), (0.6, 0.55), (0.7, 0.6)]:
    h = m(f'harmful requests ({sp})', tu, tf)
    pr = m('method probe / harmful', tu, tf)
    sh = m('method probe / self-harm', tu, tf)
    pb = m('method probe / benign', tu, tf)
    tb = m(f'toxicchat / benign ({sp})', tu, tf)
    es = m(f'esconv / seeker ({sp}, outside crisis)', tu, tf)
    su = m(f'esconv / supporter ({sp})', tu, tf)
    sa = m(f'sad ({sp})', tu, tf)
    ed = m(f'empathetic_dialogues ({sp})', tu, tf)
    fr = first_recall(tu, tf)
    print(f"{tu} {tf} | {h[0]:.3f} {h[1]:.3f} | {pr[0]:.3f} {sh[1]:.3f} {pb[0]:.3f} | {tc_f1(tu, tf):.3f} {tb[1]:.3f} | "
          f"{es[0]:.3f} {es[1]:.3f} | {su[0]:.3f} | {sa[0]:.3f} {sa[1]:.3f} | {ed[0]:.3f} {ed[1]:.3f} | {fr[0]:.3f} {fr[1]:.3f}")
