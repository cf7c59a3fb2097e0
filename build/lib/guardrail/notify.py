"""The operator hook for crisis events (the policy's ``notify``).

A hook is a Python callable ``package.module:function`` taking one event dict, or a
command that gets the event as one JSON line on stdin. It runs in a background thread
so the conversation never waits on it, and its failures are logged, never raised.
The event carries no message text unless the policy sets ``include_text``.
"""
from __future__ import annotations

import importlib
import json
import logging
import subprocess
import threading
from typing import Any, Callable

from .policy import Notify, PolicyError

log = logging.getLogger("guardrail.events")


def log_event(event: dict[str, Any]) -> None:
    """A ready-made hook: one JSON line on the ``guardrail.events`` logger (WARNING level)."""
    log.warning("crisis event %s", json.dumps(event, sort_keys=True))


def resolve(notify: Notify) -> Callable[[dict[str, Any]], None]:
    """Turn the policy's hook into a callable; a bad callable path fails here, at load time."""
    if notify.callable:
        module, _, name = notify.callable.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise PolicyError(f"notify.callable {notify.callable!r} cannot be imported: {e}") from None
        if not callable(fn):
            raise PolicyError(f"notify.callable {notify.callable!r} is not callable")
        return fn
    command = list(notify.command or [])

    def run(event: dict[str, Any]) -> None:
        subprocess.run(command, input=json.dumps(event) + "\n", text=True, timeout=notify.timeout_s,
                       check=True, capture_output=True)
    return run


def fire(hook: Callable[[dict[str, Any]], None], event: dict[str, Any], wait: bool = False) -> threading.Thread:
    """Call ``hook(event)`` in a daemon thread; errors are logged with the event id."""
    def target():
        try:
            hook(event)
        except Exception as e:  # a broken hook must never break the chat
            logging.getLogger("guardrail").error("notify hook failed for event %s: %s", event.get("event_id"), e)
    thread = threading.Thread(target=target, name="guardrail-notify", daemon=True)
    thread.start()
    if wait:
        thread.join()
    return thread
