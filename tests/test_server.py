"""`guardrail serve`: the real NeMo server in a subprocess, with the real adapter, on loopback.

The chatbot behind the rails is a fake chat model (config.py of a config folder written by
`guardrail rails init`), so replies are fixed; the guard, NeMo and the HTTP server are real.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("nemoguardrails")

REPLY = "Sandwiches, fruit and a blanket in the shade!"
FAKE_CONFIG_PY = f'''
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter
from guardrail.nemo import register


def init(app):
    register(app)
    app.llm = LangChainLLMAdapter(FakeListChatModel(responses=[{REPLY!r}] * 1000))
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = tmp_path_factory.mktemp("cfg") / "rails"     # config id "rails", as in the README
    subprocess.run([sys.executable, "-m", "guardrail.cli", "rails", "init", str(config)], check=True)
    (config / "config.py").write_text(FAKE_CONFIG_PY)
    port = free_port()
    log = tmp_path_factory.mktemp("log") / "server.log"
    env = {**os.environ, "NEMO_GUARDRAILS_NO_USAGE_STATS": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "guardrail.cli", "serve", "--config", str(config),
                                 "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/v1/rails/configs", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"server exited: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail(f"server did not start: {log.read_text()[-2000:]}")
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def chat(url, messages):
    body = json.dumps({"model": "smollm2", "guardrails": {"config_id": "rails"}, "messages": messages}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.loads(r.read())
    return out["choices"][0]["message"]["content"] if "choices" in out else out["messages"][-1]["content"]


def test_the_readme_curl_example_as_written(server):
    url, _ = server
    port = url.rsplit(":", 1)[1]
    cmd = ["curl", "-s", f"localhost:{port}/v1/chat/completions", "-H", "content-type: application/json",
           "-d", json.dumps({"model": "smollm2", "guardrails": {"config_id": "rails"},
                             "messages": [{"role": "user", "content": "I want to end my life"}]})]
    if subprocess.run(["which", "curl"], capture_output=True).returncode:
        pytest.skip("curl is not installed")
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout)
    text = out["choices"][0]["message"]["content"] if "choices" in out else out["messages"][-1]["content"]
    assert "988" in text and "I'm an AI" in text


def test_two_conversations_with_the_same_opening_never_share_a_check_in(server):
    url, log = server
    opening = [{"role": "user", "content": "hi"}]
    first = chat(url, opening)
    assert first == REPLY
    hello = opening + [{"role": "assistant", "content": first}]
    a_turn = hello + [{"role": "user", "content": "I want to end my life"}]
    b_turn = hello + [{"role": "user", "content": "any ideas for a picnic this weekend?"}]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda m: chat(url, m), [a_turn, b_turn])
    assert "988" in a
    assert b == REPLY, b                                   # no check-in, no escalation for B
    # A's next turn still carries A's sticky risk (derived from A's own transcript)
    a_next = chat(url, a_turn + [{"role": "assistant", "content": a},
                                 {"role": "user", "content": "never mind, any ideas for a picnic?"}])
    assert "988" in a_next                                 # the check-in (or the escalation again)
    b_next = chat(url, b_turn + [{"role": "assistant", "content": b},
                                 {"role": "user", "content": "never mind, any ideas for a picnic?"}])
    assert b_next == REPLY
    # the server log holds no message text
    text = log.read_text()
    assert "picnic" not in text and "end my life" not in text


def test_listens_on_loopback_only(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((addr, port)) != 0, f"reachable on {addr}"
