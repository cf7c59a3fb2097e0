"""The built wheel, installed outside the checkout, carries its policies, resources and rails.

A fresh virtual environment gets the wheel (no source tree on its path); its dependencies
come from the project's environment through a .pth line, so the test needs no network.
Then, from a folder with no checkout: `guardrail classify`, `Guard.load("teen")`,
`guardrail rails init` and a guarded NeMo turn.
"""
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

NEMO_TURN = """
import os, sys
os.environ["NEMO_GUARDRAILS_NO_USAGE_STATS"] = "1"
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter
import guardrail
assert "site-packages" in guardrail.__file__, guardrail.__file__
rails = LLMRails(RailsConfig.from_path(sys.argv[1]),
                 llm=LangChainLLMAdapter(FakeListChatModel(responses=["Good luck with it!"] * 3)))
crisis = rails.generate(messages=[{"role": "user", "content": "I want to end my life"}])["content"]
ok = rails.generate(messages=[{"role": "user", "content": "this exam is killing me"}])["content"]
print("CRISIS", "116 123" in crisis, "OK", ok == "Good luck with it!")
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp / "dist").glob("emotional_safety_guardrail-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    target = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    # the project's environment provides the dependencies; its editable install of this
    # package is a .pth hook that a plain path line does not run, so only the wheel is importable
    deps = sysconfig.get_paths()["purelib"]
    Path(target, "zz_deps.pth").write_text(deps + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, str(wheel)], check=True)
    work = tmp / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GUARDRAIL_POLICY")}
    return py, work, env, Path(target)


def run(installed, *args):
    py, work, env, _ = installed
    return subprocess.run([str(py), *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_ships_policies_resources_and_rails(installed):
    target = installed[3]
    for rel in ("guardrail/policies/default.yaml", "guardrail/policies/teen.yaml", "guardrail/policies/resources.yaml",
                "guardrail/rails/config.yml", "guardrail/rails/flows.co", "guardrail/rails/config.py",
                "guardrail/adapter/guardrail.json", "guardrail/policies/no_therapy.yaml",
                "guardrail/adapter/taught/therapy_request.json", "guardrail/adapter/taught/therapy_request.safetensors",
                "guardrail/adapter/taught/therapy_like.json", "guardrail/adapter/taught/therapy_like.safetensors"):
        assert (target / rel).is_file(), rel


def test_classify_and_a_shipped_policy_from_site_packages(installed):
    out = run(installed, "-m", "guardrail.cli", "classify", "--json", "I want to kill myself")
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"level": "unsafe"' in out.stdout
    out = run(installed, "-c", "from guardrail import Guard; import guardrail; g = Guard.load('teen', country='UK', audit=False);"
                               "print(guardrail.__file__); print(g.check_input('I want to end my life').message)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "site-packages" in out.stdout and "116 123" in out.stdout


def test_rails_init_and_a_guarded_nemo_turn(installed):
    py, work, env, _ = installed
    out = run(installed, "-m", "guardrail.cli", "rails", "init", "cfg", "--country", "UK")
    assert out.returncode == 0, out.stderr[-2000:]
    (work / "turn.py").write_text(NEMO_TURN)
    out = run(installed, "turn.py", str(work / "cfg"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CRISIS True OK True" in out.stdout, out.stdout + out.stderr[-2000:]
