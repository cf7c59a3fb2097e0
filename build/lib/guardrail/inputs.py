"""Turn a conversation turn (plus the turns before it) into model input ids.

The judged turn is marked with its role, previous turns come first as context, and a
fixed suffix ends the sequence so the last token (whose hidden state the heads read)
is always the same "verdict" position. Budgeting rules:

* the judged turn is never dropped: a long turn keeps its beginning and its end
  (risk often sits in the last sentence of a long post);
* context is filled newest-first and cut from the oldest side;
* text is tokenised with special tokens split, so a message cannot spoof role
  markers such as ``<|im_start|>assistant``.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .taxonomy import check_role

SYSTEM_PROMPT = "Judge the emotional safety of the last turn of this conversation."
VERDICT_ROLE = "verdict"        # the sequence ends with "<|im_start|>verdict\n"
ELLIPSIS = " … "


@dataclass(frozen=True)
class Turn:
    """One conversation turn. ``role`` is ``user`` or ``assistant``."""

    role: str
    text: str

    @classmethod
    def coerce(cls, value: "Turn | Mapping[str, Any]") -> "Turn":
        """Accept a Turn or a ``{"role", "text"}`` mapping (``content`` is accepted for ``text``)."""
        if isinstance(value, Turn):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"a context turn must be a dict with 'role' and 'text', got {type(value).__name__}")
        role = value.get("role", "user")
        text = value.get("text", value.get("content"))
        if not isinstance(text, str):
            raise TypeError(f"a context turn needs a string 'text', got {type(text).__name__}")
        return cls(check_role(str(role)), text)


@dataclass(frozen=True)
class InputConfig:
    """Token budgets of the input format (saved with the adapter)."""

    max_length: int = 192          # whole sequence, in tokens
    turn_budget: int = 128         # the judged turn, at most (head + tail kept)
    context_turns: int = 3         # previous turns considered, newest first

    def to_dict(self) -> dict:
        return {"max_length": self.max_length, "turn_budget": self.turn_budget,
                "context_turns": self.context_turns}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class TextTokenizer:
    """A Hugging Face ``tokenizer.json`` read with the ``tokenizers`` library alone.

    transformers' AutoTokenizer wraps the same object but importing it costs seconds of
    cold start. Special tokens written inside a message are encoded as plain text (what
    transformers calls ``split_special_tokens=True``), so a message cannot spoof a role marker.
    """

    def __init__(self, folder: str | os.PathLike):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        path = self.folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the judge needs a fast (tokenizer.json) tokenizer")
        self.backend = Tokenizer.from_file(str(path))
        self.backend.encode_special_tokens = True
        settings_path = self.folder / "tokenizer_config.json"
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}

        def special(name: str) -> int | None:
            value = settings.get(name)
            value = value.get("content") if isinstance(value, dict) else value
            return self.token_id(value) if value else None

        self.eos_id = special("eos_token")
        pad = special("pad_token")
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)

    def ids(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def token_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def save(self, folder: str | os.PathLike) -> None:
        for name in TOKENIZER_FILES:
            if (self.folder / name).is_file() and Path(folder).resolve() != self.folder.resolve():
                shutil.copyfile(self.folder / name, Path(folder) / name)


@dataclass
class Encoder:
    """Encodes turns for one tokenizer; built once per model."""

    tokenizer: TextTokenizer
    config: InputConfig = field(default_factory=InputConfig)

    def __post_init__(self) -> None:
        self._start = self._special("<|im_start|>")
        self._end = self._special("<|im_end|>")
        self._newline = self._ids("\n")
        self._prefix = self._header("system") + self._ids(SYSTEM_PROMPT) + self._end + self._newline
        self._suffix = self._header(VERDICT_ROLE)
        self._ellipsis = self._ids(ELLIPSIS)
        self.pad_id = self.tokenizer.pad_id
        fixed = len(self._prefix) + len(self._suffix) + len(self._header("assistant")) + len(self._end) + 1
        if self.config.max_length < fixed + 8:
            raise ValueError(f"max_length {self.config.max_length} leaves no room for text (needs > {fixed + 8})")

    @property
    def prefix_ids(self) -> list[int]:
        """The fixed start of every input (the judge's system turn); its keys/values can be cached."""
        return list(self._prefix)

    def _special(self, token: str) -> list[int]:
        tid = self.tokenizer.token_id(token)
        if tid is None:
            return self._ids(token)  # tokenizers without ChatML markers still get a readable marker
        return [tid]

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.ids(text)

    def _header(self, role: str) -> list[int]:
        return self._start + self._ids(role + "\n")

    def _wrap(self, role: str, ids: list[int]) -> list[int]:
        return self._header(role) + ids + self._end + self._newline

    def encode(self, text: str, role: str = "user",
               context: Sequence[Turn | Mapping[str, Any]] | None = None) -> list[int]:
        """Input ids for judging ``text`` (said by ``role``) after ``context`` (oldest first)."""
        check_role(role)
        cfg = self.config
        turn = self._ids(text)
        fixed = len(self._prefix) + len(self._suffix)
        room = cfg.max_length - fixed - len(self._wrap(role, []))
        budget = min(cfg.turn_budget, room)
        if len(turn) > budget:
            keep = budget - len(self._ellipsis)
            head = keep // 2
            turn = turn[:head] + self._ellipsis + turn[len(turn) - (keep - head):]
        body = self._wrap(role, turn)
        room = cfg.max_length - fixed - len(body)
        ctx_ids: list[int] = []
        turns = [Turn.coerce(t) for t in (context or [])][-cfg.context_turns:] if cfg.context_turns else []
        for prev in reversed(turns):
            wrapped_len = len(self._wrap(prev.role, []))
            if room <= wrapped_len + 4:
                break
            ids = self._ids(prev.text)
            if len(ids) + wrapped_len > room:  # keep the newest part of an older turn
                ids = self._ellipsis + ids[len(ids) - (room - wrapped_len - len(self._ellipsis)):]
            piece = self._wrap(prev.role, ids)
            ctx_ids = piece + ctx_ids
            room -= len(piece)
        ids = self._prefix + ctx_ids + body + self._suffix
        assert len(ids) <= cfg.max_length, (len(ids), cfg.max_length)
        return ids

    def pad(self, batch: Iterable[list[int]]):
        """Right-pad a batch into ``(input_ids, attention_mask)`` tensors."""
        import torch

        batch = list(batch)
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, : len(ids)] = 1
        return input_ids, mask
