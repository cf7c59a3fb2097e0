"""SmolLM2-135M-Instruct as a LangChain chat model: the demo's chatbot, fully offline.

It is the *chatbot* being guarded, not the judge: the whole 30-layer model from the
same converted checkpoint the judge uses, generating with its chat template. Small
models ramble and can say unsafe things, which is what the output rail is for.
Weights load on first use, so building the object is free.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from .base_model import resolve_base

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


class SmolChatModel(BaseChatModel):
    """``SmolChatModel().invoke("hi")`` -> ``AIMessage``. Greedy decoding, so runs repeat."""

    base: Optional[str] = None          # a local checkpoint folder; default: the converted SmolLM2
    max_new_tokens: int = 64
    repetition_penalty: float = 1.2
    system_prompt: Optional[str] = None   # None: the model's own default system prompt
    threads: Optional[int] = None

    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "guardrail-smollm2"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "SmolLM2-135M-Instruct", "max_new_tokens": self.max_new_tokens}

    def _load(self) -> None:
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.threads:
                torch.set_num_threads(self.threads)
            folder = resolve_base(self.base)
            self._tokenizer = AutoTokenizer.from_pretrained(folder)
            self._model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def _inputs(self, messages: list[BaseMessage]) -> Any:
        chat = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for m in messages:
            chat.append({"role": _ROLES.get(m.type, "user"), "content": str(m.content)})
        return self._tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True)

    def _settings(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "do_sample": False,
                "repetition_penalty": self.repetition_penalty, "pad_token_id": self._tokenizer.eos_token_id}

    def _generate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                  run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> ChatResult:
        import torch

        with self._lock:
            self._load()
            ids = self._inputs(messages)
            with torch.inference_mode():
                out = self._model.generate(**ids, **self._settings())
            text = self._tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        for s in stop or []:
            if s in text:
                text = text[: text.index(s)]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Tokens as they are generated (transformers' TextIteratorStreamer; generation runs in
        a thread): the same greedy text as ``invoke``. A caller that stops reading (a guard
        that stopped the stream) stops the generation at its next token."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        done = threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> bool:
                return done.is_set()

        with self._lock:
            self._load()
            ids = self._inputs(messages)
            streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)

            errors: list[BaseException] = []

            def run() -> None:
                try:
                    with torch.inference_mode():
                        self._model.generate(**ids, **self._settings(), streamer=streamer,
                                             stopping_criteria=StoppingCriteriaList([Cancelled()]))
                except BaseException as exc:   # surfaced in the caller's thread below
                    errors.append(exc)
                finally:
                    streamer.end()   # a second end after generate's own is harmless: the reader stopped at the first

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            text = ""
            try:
                for piece in streamer:
                    piece = piece if text else piece.lstrip()
                    whole = text + piece
                    hits = [whole.index(s) for s in stop or [] if s in whole]
                    if hits:   # a stop string: release what comes before it and end
                        piece = whole[: min(hits)][len(text):]
                    if piece:
                        text += piece
                        yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
                    if hits:
                        break
            finally:
                done.set()
                worker.join()   # the generation thread ends at its next token once ``done`` is set
            if errors:
                raise errors[0]
