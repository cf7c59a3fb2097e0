"""``guardrail serve``: NeMo Guardrails' OpenAI-compatible server with these rails, private by default.

NeMo's own ``nemoguardrails server`` (0.24) builds every ``LLMRails`` with ``verbose=True``,
which prints each message to the server log, and listens on all interfaces. This entry
point mounts the same FastAPI app with verbose off, NeMo's own logging at WARNING and no
access log, and listens on 127.0.0.1 unless told otherwise. The API is NeMo's:
``POST /v1/chat/completions`` with ``{"guardrails": {"config_id": "rails"}, "messages": [...]}``.
Conversation state comes from the ``messages`` of each request (guardrail.nemo), so no
session id is needed and two clients never share one.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .policy import data_dir


def build_app(config: str | os.PathLike | None = None) -> Any:
    """The NeMo server app for ``config`` (default: the shipped rails folder, config id ``rails``)."""
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
    os.environ.setdefault("NEMO_GUARDRAILS_DISABLE_CHAT_UI", "true")
    from nemoguardrails import LLMRails
    from nemoguardrails.server import api

    class QuietRails(LLMRails):
        """LLMRails that never logs prompts or messages, whatever the server asks for."""

        def __init__(self, *args: Any, **kwargs: Any):
            kwargs["verbose"] = False
            super().__init__(*args, **kwargs)

    api.LLMRails = QuietRails
    path = Path(config or data_dir("rails")).expanduser().resolve()
    if not (path / "config.yml").is_file() and not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{path} holds no config.yml; write one with `guardrail rails init {path}`")
    api.app.rails_config_path = str(path)
    api.app.disable_chat_ui = True
    for name in ("nemoguardrails", "actions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return api.app


def serve(config: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 8000) -> int:
    import uvicorn

    try:
        from nemoguardrails.telemetry import DeploymentTypeEnum, set_deployment_type

        set_deployment_type(DeploymentTypeEnum.API.value)
    except ImportError:  # older NeMo without the deployment context
        pass
    app = build_app(config)
    print(f"guardrail serve: config id {Path(app.rails_config_path).name!r} on http://{host}:{port} "
          "(message text is not logged)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0
