"""Emotional-safety guardrail for chatbots: a small LoRA-tuned LLaMA judge, offline."""
from .taxonomy import CATEGORIES, LEVELS, ROLES

__all__ = ["CATEGORIES", "LEVELS", "ROLES", "Classifier", "Verdict", "Guard", "Decision", "load_policy", "PolicyError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: importing the taxonomy must not pull in torch.
    if name in ("Classifier", "Verdict"):
        from . import classifier

        return getattr(classifier, name)
    if name in ("Guard", "Decision"):
        from . import guard

        return getattr(guard, name)
    if name in ("load_policy", "PolicyError"):
        from . import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'guardrail' has no attribute {name!r}")
