"""Command line: ``guardrail classify``, ``report``, ``policy check``, ``rails init``, ``serve``.

    guardrail classify "some text"               readable verdict
    guardrail classify --json "some text"        one JSON object
    guardrail classify --input in.jsonl --output out.jsonl
    guardrail classify                           interactive prompt (one turn per line)
    guardrail report --period year --csv counts.csv    audit-log counts (and CSV export)
    guardrail policy check mine.yaml other.yaml  every problem of each file, no model loaded
    guardrail rails init my_config               a ready NeMo Guardrails config folder
    guardrail serve --port 8000                  NeMo's OpenAI-compatible server with these rails

User mistakes (bad lines, missing files, a broken adapter) end in a one-line error on
stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterator, TextIO

from .taxonomy import ROLES

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""



def json_line(obj) -> str:
    """JSON on one line, UTF-8 kept readable, but U+0085, U+2028 and U+2029 escaped: readers
    that split lines the Unicode way (Python's str.splitlines) would otherwise cut a record."""
    text = json.dumps(obj, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")

def _bar(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="turn", file=sys.stderr, disable=None)


def format_verdict(verdict) -> str:
    top = sorted(verdict.categories.items(), key=lambda kv: -kv[1])[:3]
    lines = [f"level: {verdict.level.upper()}   "
             + "  ".join(f"{k} {v:.2f}" for k, v in verdict.scores.items()),
             "flagged: " + (", ".join(verdict.flagged) if verdict.flagged else "none"),
             "top categories: " + ", ".join(f"{k} {v:.2f}" for k, v in top)]
    if verdict.notes:
        lines.append("notes: " + "; ".join(verdict.notes))
    return "\n".join(lines)


def parse_line(line: str, number: int) -> dict[str, Any]:
    """Validate one input line; raises UserError naming the line and the problem."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"line {number}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise UserError(f"line {number}: expected a JSON object, got {type(obj).__name__}")
    if not isinstance(obj.get("text"), str):
        raise UserError(f"line {number}: 'text' must be a string")
    role = obj.get("role", "user")
    if role not in ROLES:
        raise UserError(f"line {number}: 'role' must be one of {', '.join(ROLES)}, got {role!r}")
    context = obj.get("context", [])
    if not isinstance(context, list) or not all(
            isinstance(t, dict) and isinstance(t.get("text"), str) and t.get("role", "user") in ROLES
            for t in context):
        raise UserError(f"line {number}: 'context' must be a list of {{\"role\", \"text\"}} objects")
    return obj


def read_lines(fh: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(fh, 1):
        if line.strip():
            yield number, line


def classify_file(clf, src: TextIO, dst: TextIO, batch_size: int, strict: bool, total: int | None) -> tuple[int, int]:
    """Stream ``src`` to ``dst``; returns (written, skipped)."""
    written = skipped = 0
    pending: list[dict[str, Any]] = []

    def flush():
        nonlocal written
        if not pending:
            return
        for obj, verdict in zip(pending, clf.classify_batch(pending, batch_size=batch_size)):
            obj.update(level=verdict.level, scores=verdict.scores, categories=verdict.categories,
                       flagged=verdict.flagged)
            dst.write(json_line(obj) + "\n")
        dst.flush()
        written += len(pending)
        bar.update(len(pending))
        pending.clear()

    with _bar(total, "classify") as bar:
        for number, line in read_lines(src):
            try:
                pending.append(parse_line(line, number))
            except UserError as exc:
                if strict:
                    flush()
                    raise
                print(f"guardrail: skipped {exc}", file=sys.stderr)
                skipped += 1
                bar.update(1)
                continue
            if len(pending) >= batch_size:
                flush()
        flush()
    return written, skipped


def cmd_classify(args) -> int:
    context = []
    if args.context:
        try:
            context = json.loads(args.context)
            parse_line(json.dumps({"text": "", "context": context}), 0)
        except (json.JSONDecodeError, UserError):
            raise UserError("--context must be a JSON list of {\"role\", \"text\"} objects") from None
    if args.input and not os.path.isfile(args.input) and args.input != "-":
        raise UserError(f"input file {args.input} does not exist")
    clf = load_classifier(args)
    if args.input:
        total = None
        if args.input != "-":
            with open(args.input, encoding="utf-8", errors="replace") as fh:
                total = sum(1 for line in fh if line.strip())
        src = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", errors="replace")
        dst = sys.stdout if args.output in (None, "-") else open(args.output, "w", encoding="utf-8")
        try:
            written, skipped = classify_file(clf, src, dst, args.batch_size, args.strict, total)
        finally:
            if src is not sys.stdin:
                src.close()
            if dst is not sys.stdout:
                dst.close()
        print(f"guardrail: classified {written} lines, skipped {skipped} bad lines"
              + (f"; wrote {args.output}" if args.output not in (None, "-") else ""), file=sys.stderr)
        return 1 if skipped and args.strict else 0
    if args.text is not None:
        show(clf, args.text, args.role, context, args.json)
        return 0
    interactive(clf, args)
    return 0


def show(clf, text: str, role: str, context: list, as_json: bool) -> None:
    verdict = clf.classify(text, role=role, context=context)
    print(json_line(verdict.to_dict()) if as_json else format_verdict(verdict))


def interactive(clf, args) -> None:
    """One turn per line; previous lines become context (type /reset to clear)."""
    tty = sys.stdin.isatty()
    if tty:
        print(f"guardrail classify ({clf.model_id}). Type a message, /reset to clear context, Ctrl-D to quit.")
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("> " if tty else "")
        except EOFError:
            break
        if line.strip() == "/reset":
            history.clear()
            continue
        if not tty:
            print(f"> {line}")
        show(clf, line, args.role, history, args.json)
        history.append({"role": args.role, "text": line})
        del history[:-clf.config.inputs.context_turns]  # the judge sees no more than this


def load_classifier(args):
    from .base_model import BaseModelError
    from .classifier import Classifier
    from .modeling import AdapterError

    try:
        return Classifier.load(args.adapter, base=args.base, cache_dir=args.cache_dir, threads=args.threads,
                               int8=not getattr(args, "fp32", False))
    except (BaseModelError, AdapterError) as exc:
        raise UserError(str(exc)) from None


def cmd_report(args) -> int:
    """Counts of audited events per period, role, level, category and action."""
    from .audit import (AUDIT_URL_ENV, AuditError, counts, default_path, is_database_url, parse_date, read_events,
                        write_counts_csv, write_events_csv)

    path = args.db or os.environ.get(AUDIT_URL_ENV) or default_path()
    try:
        since = parse_date(args.since) if args.since else None
        until = parse_date(args.until) if args.until else None
        events = list(read_events(path, since, until))
        rows = counts(events, args.period)
    except (AuditError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if args.csv:
        with _open_out(args.csv) as fh:
            write_counts_csv(rows, fh)
    if args.events_csv:
        with _open_out(args.events_csv) as fh:
            write_events_csv(events, fh)
    if args.csv == "-" or args.events_csv == "-":
        return 0
    if is_database_url(path):
        from .audit_postgres import describe
        path = describe(path)   # no password on screen
    print(f"audit log {path}: {len(events)} events"
          + (f" from {args.since}" if args.since else "") + (f" until {args.until}" if args.until else ""))
    if rows:
        widths = [max(len(h), *(len(str(getattr(r, h))) for r in rows))
                  for h in ("period", "role", "level", "category", "action", "count")]
        header = ("period", "role", "level", "category", "action", "count")
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(
                (r.period, r.role, r.level, r.category, r.action, r.count), widths)))
    for what, target in (("counts", args.csv), ("events", args.events_csv)):
        if target:
            print(f"wrote {what} CSV to {target}")
    return 0


def _open_out(target: str):
    import contextlib

    if target == "-":
        return contextlib.nullcontext(sys.stdout)
    try:
        return open(target, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}") from None


def cmd_policy_check(args) -> int:
    """Every problem of each policy file, without loading the model; exit 1 if any."""
    from .policy import check_policy

    from .policy import known_categories
    from .taught import TeachError

    try:
        names = known_categories(args.adapter)
    except TeachError as exc:
        raise UserError(str(exc)) from None
    bad = 0
    for name in args.files:
        problems = check_policy(name, categories=names)
        if problems:
            bad += 1
            print("\n".join(problems))
        else:
            print(f"{name}: ok")
    return 1 if bad else 0


def cmd_teach(args) -> int:
    """Teach a category from labelled turns and save its head into an adapter folder."""
    from .taught import TeachError, teach

    try:
        classifier = load_classifier(args)
        result = teach(args.name, args.examples, role=args.role, into=args.into, description=args.description or "",
                       held_out_share=args.held_out, classifier=classifier,
                       log=lambda m: print(m, file=sys.stderr))
    except TeachError as exc:
        raise UserError(str(exc)) from None
    print(result.summary())
    where = "" if result.path == classifier.adapter_path else f" --adapter {result.path}"
    print(f"use it in a policy rule: when: {{role: {result.role}, categories: [{result.name}]}}; "
          f"try: guardrail classify{where} --role {result.role} \"...\"")
    return 0


def cmd_rails_init(args) -> int:
    """Copy the shipped NeMo config (config.yml, flows.co, config.py) into a new folder."""
    import shutil
    from pathlib import Path

    from .policy import data_dir

    target = Path(args.dir)
    if target.exists() and any(target.iterdir()) and not args.force:
        raise UserError(f"{target} exists and is not empty; choose a new folder or pass --force")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.yml", "flows.co", "config.py"):
        shutil.copyfile(data_dir("rails") / name, target / name)
    if args.policy or args.country:
        import yaml

        cfg = yaml.safe_load((target / "config.yml").read_text())
        es = cfg.setdefault("custom_data", {}).setdefault("emotional_safety", {})
        es.update({k: v for k, v in (("policy", args.policy), ("country", args.country)) if v})
        (target / "config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"wrote {target}/config.yml, flows.co and config.py; try: nemoguardrails chat --config {target}")
    return 0


def cmd_serve(args) -> int:
    from .server import serve

    return serve(args.config, host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guardrail", description="Emotional-safety guardrail for chatbots")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="judge one turn, a JSONL file, or lines typed at a prompt")
    c.add_argument("text", nargs="?", help="the turn to judge (omit for an interactive prompt)")
    c.add_argument("--role", choices=ROLES, default="user", help="who said the turn (default: user)")
    c.add_argument("--context", help='previous turns as JSON: [{"role": "user", "text": "..."}]')
    c.add_argument("--json", action="store_true", help="print JSON instead of a readable verdict")
    c.add_argument("--input", help='JSONL file of {"id", "role", "text", "context"} lines ("-" for stdin)')
    c.add_argument("--output", help="JSONL file to write (default: stdout)")
    c.add_argument("--strict", action="store_true", help="stop at the first bad input line")
    c.add_argument("--batch-size", type=int, default=16)
    c.add_argument("--adapter", help="adapter folder (default: the shipped one)")
    c.add_argument("--base", help="local Hugging Face LLaMA-family checkpoint to use as the base")
    c.add_argument("--cache-dir", help="where the converted base model is cached")
    c.add_argument("--threads", type=int, help="torch threads")
    c.add_argument("--fp32", action="store_true", help="judge in fp32 (default: int8 MLP projections, see the model card)")
    c.set_defaults(func=cmd_classify)
    r = sub.add_parser("report", help="counts of audited events per period, level and category")
    r.add_argument("--db", help="audit log: an SQLite file or a postgresql:// URL (default: $GUARDRAIL_AUDIT_URL, "
                                "$GUARDRAIL_AUDIT_DB or ~/.local/state/guardrail/audit.sqlite3)")
    r.add_argument("--period", default="month", choices=["day", "week", "month", "quarter", "year", "all"])
    r.add_argument("--since", help="first day included, YYYY-MM-DD (UTC)")
    r.add_argument("--until", help="first day excluded, YYYY-MM-DD (UTC)")
    r.add_argument("--csv", help='write the counts as CSV to this file ("-" for stdout)')
    r.add_argument("--events-csv", help="write the events themselves as CSV (text only if the policy kept it)")
    r.set_defaults(func=cmd_report)
    pol = sub.add_parser("policy", help="policy files").add_subparsers(dest="policy_command", required=True)
    pc = pol.add_parser("check", help="report every problem of each policy file (no model is loaded)")
    pc.add_argument("files", nargs="+", help="policy files or shipped names (default, teen, no_therapy, log_only)")
    pc.add_argument("--adapter", help="adapter whose taught categories the policies may name (default: the shipped one)")
    pc.set_defaults(func=cmd_policy_check)
    t = sub.add_parser("teach", help="teach a new category from labelled example turns (JSONL)")
    t.add_argument("name", help="the category's name, e.g. therapy_request (lowercase, digits, _)")
    t.add_argument("--examples", required=True, action="append",
                   help='JSONL of {"text", "label": 1|0, "role"?, "context"?: [{"role", "text"}]}; '
                        'give it again to add more files')
    t.add_argument("--role", choices=ROLES, help="the turns the category applies to (default: the examples' role)")
    t.add_argument("--into", help="adapter folder to save into (a new folder gets a copy of --adapter first; "
                                  "default: --adapter itself)")
    t.add_argument("--adapter", help="the judge to teach over (default: the shipped adapter)")
    t.add_argument("--description", help="one line saying what the category means, kept with the head")
    t.add_argument("--held-out", type=float, default=0.2, help="share of examples kept out to report F1 (default 0.2)")
    t.add_argument("--base", help="local Hugging Face LLaMA-family checkpoint to use as the base")
    t.add_argument("--cache-dir", help="where the converted base model is cached")
    t.add_argument("--threads", type=int, help="torch threads")
    t.set_defaults(func=cmd_teach)
    rails = sub.add_parser("rails", help="NeMo Guardrails config").add_subparsers(dest="rails_command", required=True)
    ri = rails.add_parser("init", help="write a ready NeMo Guardrails config folder with these rails")
    ri.add_argument("dir", help="the folder to create")
    ri.add_argument("--policy", help="policy name or path for custom_data.emotional_safety.policy")
    ri.add_argument("--country", help="country of the crisis resources (US, CA, UK, IE, AU, ...)")
    ri.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    ri.set_defaults(func=cmd_rails_init)
    sv = sub.add_parser("serve", help="NeMo Guardrails' OpenAI-compatible server with these rails")
    sv.add_argument("--config", help="a NeMo config folder (default: the shipped rails, config id 'rails')")
    sv.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"guardrail: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
