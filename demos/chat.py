"""A guarded terminal chat: SmolLM2-135M-Instruct (through LangChain) is the chatbot,
the emotional-safety guardrail checks every user turn and every reply.

    make demo                                   # or: python demos/chat.py
    make demo ARGS=--web                        # the same chat as a page on http://127.0.0.1:8765/
    python demos/chat.py --show-verdicts --country UK
    echo "I want to end my life" | make demo    # scripted: one turn per line

Replies stream: the words appear as each window of them passes the guard (hold-back mode,
policy key ``streaming``); --no-stream prints each reply whole. Everything runs offline on
the CPU. Type /quit (or Ctrl-D) to leave.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def describe(d: dict) -> str:
    """One line per decision: level, top categories with probabilities, action."""
    if d["rule"] == "policy message":
        return f"{d['role']:9} policy message, not judged"
    cats = ", ".join(f"{c} {d['category_scores'].get(c, 0):.2f}" for c in d["categories"][:3]) or "-"
    level_p = d["scores"].get(d["level"]) if d["scores"] else None
    extra = [x for x, on in (("sticky", d["sticky"]), ("backstop", d["backstop"]),
                             ("operator notified", d["notified"])) if on]
    action = d["action"] + (" + check-in" if d["action"] == "allow" and d["message"] else "")
    return (f"{d['role']:9} {d['level']}{f' {level_p:.2f}' if level_p is not None else ''} | {cats} | "
            f"{action} ({d['rule']}){' | ' + ', '.join(extra) if extra else ''}")


def say(chat, messages, whole: bool):
    """Print the guarded reply after ``bot> ``, whole or as it streams; return it as one message
    (with the decisions in ``response_metadata["guardrail"]``)."""
    print("bot> ", end="", flush=True)
    if whole:
        reply = chat.invoke(messages)
        print(reply.content)
        return reply
    reply = None
    try:
        for piece in chat.stream(messages):
            print(piece.content, end="", flush=True)
            reply = piece if reply is None else reply + piece
    finally:
        print()
    if reply is None:   # the stream yielded nothing
        from langchain_core.messages import AIMessageChunk
        reply = AIMessageChunk(content="")
    return reply


def main(argv: list[str] | None = None) -> int:
    if "--web" in (sys.argv[1:] if argv is None else argv):   # the browser version (demos/web.py)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import web
        return web.main([a for a in (sys.argv[1:] if argv is None else argv) if a != "--web"])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--show-verdicts", action="store_true", help="print each turn's verdict and action")
    p.add_argument("--policy", help="policy file or name in policies/ (default: policies/default.yaml)")
    p.add_argument("--country", help="country for crisis resources (default: the policy's)")
    p.add_argument("--adapter", help="judge adapter folder (default: the shipped one)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--no-stream", action="store_true",
                   help="print each reply whole (default: its words appear as each window passes the guard)")
    p.add_argument("--verbose", action="store_true", help="show operator-hook events and library logs")
    p.add_argument("--web", action="store_true", help="serve the chat as a web page instead (demos/web.py: --port, --host)")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR, format="%(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("guardrail.events").setLevel(logging.ERROR)
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    from langchain_core.messages import AIMessage, HumanMessage

    from guardrail import Guard, PolicyError
    from guardrail.audit import AuditError
    from guardrail.chat_model import SmolChatModel
    from guardrail.langchain_guard import GuardedRunnable

    interactive = sys.stdin.isatty()
    try:
        guard = Guard.load(args.policy, country=args.country, adapter=args.adapter)
    except (PolicyError, AuditError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chat = GuardedRunnable(SmolChatModel(max_new_tokens=args.max_new_tokens), guard, conversation_id="demo")
    pol = guard.policy
    print(f"Guarded chat: SmolLM2-135M-Instruct + {guard.classifier.model_id}, policy {pol.name} v{pol.version}, "
          f"resources for {pol.resource.name}.", file=sys.stderr)
    if not pol.country_found:
        print(f"note: country {pol.country!r} is not in the resources table (v{pol.resources.version}); crisis "
              f"messages use its fallback ({pol.resource.website}). Known: {', '.join(sorted(pol.resources.countries))}.",
              file=sys.stderr)
    if interactive:
        print("Type a message (/quit to leave).", file=sys.stderr)

    history: list = []
    window = max(0, pol.policy.context_turns)
    while True:
        try:
            line = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            break
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if not text:
            continue
        if not interactive:
            print(f"you> {text}")
        messages = history[-window:] + [HumanMessage(text)] if window else [HumanMessage(text)]
        try:
            reply = say(chat, messages, args.no_stream)
        except Exception as e:  # never end the chat on one bad turn
            print(f"[error: {type(e).__name__}: {e}]", file=sys.stderr)
            continue
        if args.show_verdicts:
            for d in reply.response_metadata.get("guardrail", []):
                print(f"     [{describe(d)}]")
        history += [HumanMessage(text), AIMessage(reply.content)]
    return 0


if __name__ == "__main__":
    sys.exit(main())
