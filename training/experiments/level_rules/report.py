"""A generalisation-style report (json + md in training/reports/experiments) from a dump.py pickle:

    python training/experiments/level_rules/report.py OUT.pkl ADAPTER NAME [BORDERLINE_AT]

The rates are training/generalisation.py's, on the probabilities dump.py saved (the default
int8 judge), so the report says so."""
import json
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from training.generalisation import check_targets, markdown, rates, write_report  # noqa: E402

pkl, adapter, name = sys.argv[1:4]
at = float(sys.argv[4]) if len(sys.argv) > 4 else None
d = pickle.load(open(pkl, 'rb'))
cfg = json.loads((Path(adapter) / 'guardrail.json').read_text())
res = {n: rates([{k: x for k, x in row.items() if x is not None} for row in v['rows']], v['lp'], v['cp'], d['thresholds'], at)
       for n, v in d['sets'].items() if not n.startswith('first') and '(val' not in n}
report = {"model_id": cfg['model_id'], "int8": "w8a8", "generated": time.strftime("%Y-%m-%d %H:%M"),
          "command": f"training/experiments/level_rules/dump.py {adapter}, then report.py"
                     + (f" with borderline_at {at}" if at is not None else ""),
          "results": res, "targets": check_targets(res)}
write_report(report, ROOT / 'training' / 'reports' / 'experiments', name, markdown)
