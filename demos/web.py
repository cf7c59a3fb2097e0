"""The guarded chat in a browser: a small page on 127.0.0.1 (``make demo ARGS=--web``).

The chatbot is SmolLM2-135M-Instruct through LangChain, guarded by the emotional-safety
guardrail (GuardedRunnable: every user turn and every reply judged, the reply streamed
window by window in hold-back mode). Each turn shows a badge: level, top categories with
their probabilities, and the action taken. The page names the policy and the country whose
crisis resources the messages use, and lets the user switch country; /report shows the
audit log as charts. Python's standard library serves it: nothing leaves the machine.

    python demos/web.py --port 8765 --country UK

Each page load starts its own conversation (a random id kept by the page); two visitors
never share a history. No message text is logged.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PAGES = Path(__file__).with_name("web")
MAX_TEXT = 4000          # characters per message; longer ones get a clear error
MAX_CONVERSATIONS = 500  # histories kept in memory (oldest dropped)
log = logging.getLogger("guardrail.web")


class ChatApp:
    """Guards per country over one judge and one audit log; histories per conversation id."""

    def __init__(self, policy: str | None, country: str | None, adapter: str | None, max_new_tokens: int):
        from guardrail import Guard
        from guardrail.chat_model import SmolChatModel

        self.first = Guard.load(policy, country=country, adapter=adapter)
        self.policy_arg = policy
        self.guards = {self.first.policy.country: self.first}
        self.model = SmolChatModel(max_new_tokens=max_new_tokens)
        self.histories: dict[str, list] = {}
        self.lock = threading.Lock()          # one generation at a time: the CPU has two cores
        self.state_lock = threading.Lock()

    def guard(self, country: str | None):
        from guardrail import Guard
        from guardrail.policy import load_policy

        country = (country or self.first.policy.country or "").upper() or None
        with self.state_lock:
            if country not in self.guards:
                if country not in self.first.policy.resources.countries:
                    raise ValueError(f"unknown country {country!r}; known: "
                                     f"{', '.join(sorted(self.first.policy.resources.countries))}")
                loaded = load_policy(self.policy_arg, country=country, categories=self.first.classifier.categories)
                self.guards[country] = Guard(self.first.classifier, loaded, audit=self.first.audit or False)
            return self.guards[country]

    def info(self) -> dict:
        pol = self.first.policy
        return {"policy": pol.name, "version": pol.version, "judge": self.first.classifier.model_id,
                "country": pol.country, "countries": {k: r.name for k, r in sorted(pol.resources.countries.items())},
                "conversation_id": secrets.token_hex(8)}

    def chat(self, cid: str, text: str, country: str | None):
        """Yield ``{"text": piece}`` as the reply passes the guard, then ``{"decisions": [...]}``."""
        from langchain_core.messages import AIMessage, HumanMessage

        from guardrail.langchain_guard import GuardedRunnable

        guard = self.guard(country)
        with self.state_lock:
            history = self.histories.setdefault(cid, [])
            while len(self.histories) > MAX_CONVERSATIONS:
                self.histories.pop(next(iter(self.histories)))
        window = guard.policy.policy.context_turns
        messages = (history[-window:] if window else []) + [HumanMessage(text)]
        chain = GuardedRunnable(self.model, guard)
        reply = None
        with self.lock:
            for piece in chain.stream(messages, config={"configurable": {"conversation_id": cid}}):
                reply = piece if reply is None else reply + piece
                if piece.content:
                    yield {"text": piece.content}
        content = reply.content if reply is not None else ""
        history += [HumanMessage(text), AIMessage(content)]
        decisions = reply.response_metadata.get("guardrail", []) if reply is not None else []
        yield {"decisions": [badge(d) for d in decisions], "country": guard.policy.country,
               "resources": guard.policy.resource.name}

    def report(self) -> dict:
        from guardrail.audit import counts, period_of, read_events

        audit = self.first.audit
        if audit is None:
            return {"enabled": False, "events": 0, "rows": []}
        events = list(read_events(audit.url if hasattr(audit, "url") else audit.path))
        days: dict[str, dict[str, int]] = {}
        for e in events:   # events (not category rows) per day and level
            day = days.setdefault(period_of(e["time"], "day"), {"safe": 0, "borderline": 0, "unsafe": 0})
            day[e["level"]] = day.get(e["level"], 0) + 1
        return {"enabled": True, "events": len(events), "store": str(audit.path), "days": days,
                "rows": [r.__dict__ for r in counts(events, "day")]}


def badge(d: dict) -> dict:
    """What the page shows for one decision."""
    cats = [{"name": c, "p": round(d["category_scores"].get(c, 0.0), 2)} for c in d["categories"][:3]]
    action = d["action"] + (" + check-in" if d["action"] == "allow" and d["message"] else "")
    level_p = d["scores"].get(d["level"]) if d.get("scores") else None
    return {"role": d["role"], "level": d["level"], "level_p": None if level_p is None else round(level_p, 2),
            "categories": cats, "action": action, "rule": d["rule"], "sticky": d["sticky"]}


class Handler(BaseHTTPRequestHandler):
    app: ChatApp   # set by serve()

    def log_message(self, fmt, *args):   # paths only, never bodies
        log.info("%s %s", self.command, urlsplit(self.path).path)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self):  # noqa: N802
        path = urlsplit(self.path).path
        pages = {"/": "index.html", "/report": "report.html"}
        if path in pages:
            return self._send(200, (PAGES / pages[path]).read_bytes(), "text/html; charset=utf-8")
        if path == "/api/info":
            return self._json(200, self.app.info())
        if path == "/api/report":
            try:
                return self._json(200, self.app.report())
            except Exception as e:  # noqa: BLE001 (an unreadable log is shown, not a crash)
                return self._json(500, {"error": f"{type(e).__name__}: {e}"})
        self._json(404, {"error": f"no page {path}"})

    def do_POST(self):  # noqa: N802
        if urlsplit(self.path).path != "/api/chat":
            return self._json(404, {"error": "POST /api/chat only"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            text, cid = body.get("text"), body.get("conversation_id")
            if not isinstance(text, str) or not text.strip():
                raise ValueError("'text' must be a non-empty string")
            if len(text) > MAX_TEXT:
                raise ValueError(f"'text' has {len(text)} characters; at most {MAX_TEXT}")
            if not isinstance(cid, str) or not 4 <= len(cid) <= 64:
                raise ValueError("'conversation_id' must be a string of 4 to 64 characters")
            self.app.guard(body.get("country"))   # an unknown country fails here, before streaming
        except ValueError as e:
            return self._json(400, {"error": str(e)})
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            for event in self.app.chat(cid, text.strip(), body.get("country")):
                self.wfile.write((json.dumps(event) + "\n").encode())
                self.wfile.flush()
        except BrokenPipeError:
            pass
        except Exception as e:  # noqa: BLE001 (one bad turn never ends the demo)
            log.error("turn failed: %s", type(e).__name__)
            self.wfile.write((json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n").encode())


def serve(app: ChatApp, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--policy", help="policy file or name in policies/ (default: policies/default.yaml)")
    p.add_argument("--country", help="country for crisis resources (default: the policy's)")
    p.add_argument("--adapter", help="judge adapter folder (default: the shipped one)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    args, _ = p.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    from guardrail import PolicyError
    from guardrail.audit import AuditError

    try:
        app = ChatApp(args.policy, args.country, args.adapter, args.max_new_tokens)
    except (PolicyError, AuditError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        server = serve(app, args.host, args.port)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror}; choose another --port", file=sys.stderr)
        return 2
    print(f"Guarded web chat on http://{args.host}:{server.server_port}/ (audit report: /report). Ctrl-C to stop.",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
