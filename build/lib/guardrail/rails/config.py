"""Registers the emotional-safety actions and, if no LLM was given, SmolLM2 as the main model."""
import os

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")

from guardrail.nemo import register  # noqa: E402


def init(app):
    register(app)
    if app.llm is None:  # `nemoguardrails chat --config rails`: chat with the local model
        from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

        from guardrail.chat_model import SmolChatModel

        app.llm = LangChainLLMAdapter(SmolChatModel())
