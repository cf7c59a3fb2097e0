"""One worker of a replicated chatbot, for the replica tests and benchmarks/replicas.py.

Reads JSON lines ``{"id": conversation id, "text": ..., "role": "user"}`` on stdin and
answers each with one JSON line (the decision) on stdout, through a Guard whose conversation
state and audit log are the shared servers given on the command line. The judge is the
scripted stub (the tests check state and audit, not classification) unless ``--real``.

    python tests/replica_worker.py --state redis://127.0.0.1:6379/0 --audit postgresql://...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CRISIS = "I can't do this anymore, I want to end my life tonight"
SCRIPT = {CRISIS: ("unsafe", {"suicide_self_harm": 0.97})}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--state", required=True)
    p.add_argument("--audit", required=True)
    p.add_argument("--real", action="store_true", help="the shipped judge instead of the scripted stub")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the judge (with --real)")
    args = p.parse_args()
    os.environ["GUARDRAIL_AUDIT_URL"] = args.audit
    from guardrail import Guard

    if args.real:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        guard = Guard.load(state=args.state)
    else:
        from stub import ScriptedClassifier

        guard = Guard.load(classifier=ScriptedClassifier(script=SCRIPT), state=args.state)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        turn = json.loads(line)
        check = guard.check_input if turn.get("role", "user") == "user" else guard.check_output
        d = check(turn["text"], conversation_id=turn["id"])
        print(json.dumps({"action": d.action, "level": d.level, "categories": d.categories, "sticky": d.sticky,
                          "message": d.message, "rule": d.rule, "notes": d.notes}), flush=True)


if __name__ == "__main__":
    main()
