"""`make run`: start the LiteLLM proxy with our config on embedded defaults.

Fills in local defaults for every upstream URL, and uses LITELLM_MASTER_KEY from the
environment or generates a strong one once and keeps it in the git-ignored `.env`.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {
    "OLLAMA_URL": "http://127.0.0.1:11434",
    "VLLM_URL": "http://127.0.0.1:8000/v1",
    "ALT_API_BASE": "https://api.openai.com/v1",
    "ALT_API_KEY": "unset",
    "ALT_MODEL": "gpt-4.1",
    "ANTHROPIC_API_KEY": "unset",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch of the cost map
    "LITELLM_LOG": "WARNING",
    "REDIS_SOCKET_TIMEOUT": "0.25",  # LiteLLM's own Redis clients (rate-limit counters...); its default is 5 s
    "REDIS_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "10",  # retry a dead Redis after 10 s; its default is 60 s
    "CARROT_POLICY_DIR": str(ROOT / "policy"),
    "CARROT_PROMPTS_DIR": str(ROOT / "prompts"),
}


OPTIONAL = ("REDIS_URL", "DATABASE_URL")  # empty means unset: LiteLLM would refuse or misread ""


def build_env(base: Mapping[str, str]) -> dict[str, str]:
    """`base` plus local defaults for whatever it leaves unset (OLLAMA_V1_URL follows OLLAMA_URL)."""
    env = {k: v for k, v in {**DEFAULTS, **base}.items() if v or k not in OPTIONAL}
    env.setdefault("OLLAMA_V1_URL", env["OLLAMA_URL"].rstrip("/") + "/v1")
    env.setdefault("OLLAMA_API_BASE", env["OLLAMA_URL"])  # LiteLLM's start-up /api/show probe, else localhost:11434
    return env


def command(port: int, host: str = "127.0.0.1", config: Path = ROOT / "litellm_config.yaml") -> list[str]:
    """The off-the-shelf proxy command line."""
    litellm = Path(sys.executable).with_name("litellm")
    return [str(litellm), "--config", str(config), "--host", host, "--port", str(port)]


def master_key(env_file: Path) -> str:
    """LITELLM_MASTER_KEY from the environment or `.env`, else a new one written to `.env`."""
    key = os.environ.get("LITELLM_MASTER_KEY") or dotenv_values(env_file).get("LITELLM_MASTER_KEY")
    if key:
        return key
    key = "sk-" + secrets.token_hex(24)
    with env_file.open("a") as fh:
        fh.write(f"LITELLM_MASTER_KEY={key}\n")
    env_file.chmod(0o600)
    print(f"Generated a master key and stored it in {env_file}", file=sys.stderr)
    return key


def main() -> None:
    env_file = ROOT / ".env"
    file_values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.exists() else {}
    env = build_env({**file_values, **os.environ})
    env["LITELLM_MASTER_KEY"] = master_key(env_file)
    port = int(env.get("PORT", "4000"))
    print(f"Carrot Coder Gateway on http://127.0.0.1:{port}/v1 (master key in {env_file} or $LITELLM_MASTER_KEY)",
          file=sys.stderr)
    os.chdir(ROOT)
    os.execve(command(port)[0], command(port), env)


if __name__ == "__main__":
    main()
