"""Print the model card's training-data table from an adapter's guardrail.json: every source
the last stage trained on, its licence, and its rows per level (what the adapter saw).

    python training/card_rows.py                 # the shipped adapter
    python training/card_rows.py training/runs/stage3
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LICENCES = {
    "goemotions": "Apache-2.0 (data CC BY 4.0)", "davidson": "MIT", "diasafety": "Apache-2.0",
    "depression_reddit": "none stated (Kaggle origin)", "sdcnl": "none stated",
    "dreaddit": "research only", "depressionemo": "research only (permission for apps)",
    "toxicchat": "CC BY-NC 4.0 (non-commercial)", "esconv": "CC BY-NC 4.0 (non-commercial)",
    "empathetic_dialogues": "CC BY-NC 4.0 (non-commercial)", "sad": "MIT",
    "harmbench": "MIT", "advbench": "MIT (llm-attacks)", "malicious_instruct": "none stated (research only)",
    "cosafe": "none stated (research only)", "cosafe_dialogues": "none stated (research only)",
    "annomi": "none stated (research only)", "tensor_trust": "none stated (research only)",
}


def table(adapter: Path) -> str:
    meta = json.loads((adapter / "guardrail.json").read_text())
    rows = meta["training"]["rows"]
    lines = ["| source | licence | safe | borderline | unsafe |", "|---|---|---|---|---|"]
    own = {"safe": 0, "borderline": 0, "unsafe": 0}
    for source, by_level in rows.items():
        if source.startswith("own:"):
            for k, v in by_level.items():
                own[k] += v
            continue
        lines.append(f"| {source} | {LICENCES.get(source, '?')} | " + " | ".join(
            str(by_level.get(k, 0)) for k in ("safe", "borderline", "unsafe")) + " |")
    lines.append("| own examples (`training/data/own/`, all files) | the project's (Apache-2.0) | "
                 + " | ".join(str(own[k]) for k in ("safe", "borderline", "unsafe")) + " |")
    total = sum(sum(v.values()) for v in rows.values())
    lines.append(f"\n{total} rows in the last stage ({meta['training']['train_examples']} encoded examples, "
                 f"{meta['training']['steps']} steps, {meta['training']['train_seconds'] / 60:.1f} min); "
                 "injection-wrapped copies count under the source of the turn inside them.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "guardrail" / "adapter"))
