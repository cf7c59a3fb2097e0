import os

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the tests' audit events go to a throwaway store, never the user's own
import tempfile  # noqa: E402

os.environ["GUARDRAIL_AUDIT_DB"] = os.path.join(tempfile.mkdtemp(prefix="guardrail-test-"), "audit.sqlite3")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def clf():
    """The real shipped adapter on the real SmolLM2 base (converted once into the cache)."""
    from guardrail import Classifier

    return Classifier.load()


@pytest.fixture(scope="session")
def tokenizer():
    from guardrail.base_model import resolve_base
    from guardrail.modeling import load_tokenizer

    return load_tokenizer(resolve_base())


@pytest.fixture(scope="session")
def policy():
    from guardrail.policy import load_policy

    return load_policy()


@pytest.fixture()
def guard(clf, policy):
    """A fresh Guard (fresh conversation state) on the real classifier and the default policy."""
    from guardrail import Guard

    return Guard(clf, policy)
