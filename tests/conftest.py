import os

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the tests' audit events go to a throwaway store, never the user's own
import tempfile  # noqa: E402

os.environ["GUARDRAIL_AUDIT_DB"] = os.path.join(tempfile.mkdtemp(prefix="guardrail-test-"), "audit.sqlite3")
# and the conversation state stays in memory unless a test asks for a server
for _name in ("GUARDRAIL_AUDIT_URL", "GUARDRAIL_STATE"):
    os.environ.pop(_name, None)

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


def _server(start, what):
    """A real server for the session; skipped with the reason where it is not installed
    (``make test`` installs it: scripts/install-system-packages.sh), a failure with
    GUARDRAIL_REQUIRE_SERVERS=1."""
    server = start()
    if isinstance(server, str):
        if os.environ.get("GUARDRAIL_REQUIRE_SERVERS") == "1":
            pytest.fail(f"{what}: {server}")
        pytest.skip(server)
    return server


@pytest.fixture(scope="session")
def redis_server():
    from servers import start_redis

    server = _server(start_redis, "redis-server")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    from servers import start_postgres

    server = _server(start_postgres, "PostgreSQL")
    yield server
    server.stop()
