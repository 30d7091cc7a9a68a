"""`make run`: start the LiteLLM proxy with our config on embedded defaults, and say what it serves.

Fills in local defaults for every upstream URL, and uses LITELLM_MASTER_KEY from the
environment or generates a strong one once and keeps it in the git-ignored `.env`. Quiet by
default (no LiteLLM banner or start-up warnings); `--verbose` (= CARROT_LOG_LEVEL=warning) or
CARROT_LOG_LEVEL=debug|info|warning brings them back; at debug, connection-failure tracebacks too. Once the proxy answers, prints one block: URL, key, upstreams (probed), cache,
store. Ctrl-C stops the proxy, and the embedded PostgreSQL if this run started it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
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
    # Python process settings (also in the Dockerfile): a crash in a C extension writes every thread's Python
    # stack to the log; LiteLLM's knob for the first GC generation's threshold (700 by default): start-up
    # builds ~0.9M long-lived objects that each full collection walks (3.5 of 12-14 CPU-s per start here)
    "PYTHONFAULTHANDLER": "1",
    "PYTHON_GC_THRESHOLD": "10000,10,10",
    "CARROT_POLICY_DIR": str(ROOT / "policy"),
    "CARROT_PROMPTS_DIR": str(ROOT / "prompts"),
}
# `make run` without --verbose: no banner, feedback box or start-up warnings (errors still show)
QUIET = {
    "LITELLM_SUPPRESS_STARTUP_OUTPUT": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "LITELLM_LOG": "ERROR",
}
LOG_LEVELS = ("debug", "info", "warning", "error")
PROBE_TIMEOUT_S = 2.0
READY_TIMEOUT_S = 600.0


OPTIONAL = ("REDIS_URL", "DATABASE_URL")  # empty means unset: LiteLLM would refuse or misread ""


def build_env(base: Mapping[str, str]) -> dict[str, str]:
    """`base` plus local defaults for whatever it leaves unset (OLLAMA_V1_URL follows OLLAMA_URL)."""
    env = {k: v for k, v in {**DEFAULTS, **base}.items() if v or k not in OPTIONAL}
    if not env.get("OLLAMA_V1_URL"):
        env["OLLAMA_V1_URL"] = env["OLLAMA_URL"].rstrip("/") + "/v1"
    env.setdefault("OLLAMA_API_BASE", env["OLLAMA_URL"])  # LiteLLM's start-up /api/show probe, else localhost:11434
    return env


def command(port: int, host: str = "127.0.0.1", config: Path = ROOT / "litellm_config.yaml",
            workers: int = 1) -> list[str]:
    """The off-the-shelf proxy command line (`workers` > 1: LiteLLM's uvicorn worker processes)."""
    litellm = Path(sys.executable).with_name("litellm")
    extra = ["--num_workers", str(workers)] if workers > 1 else []
    return [str(litellm), "--config", str(config), "--host", host, "--port", str(port), *extra]


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


class StartError(Exception):
    """A start-up problem the user fixes: printed as one line, exit 1."""


def check_port(host: str, port: int) -> None:
    """Fail now, naming the port and PORT, if something already listens there (LiteLLM would take ~15 s)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a TIME_WAIT port is free
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StartError(f"port {port} on {host} is not available ({exc.strerror}); "
                             f"stop what uses it or set PORT, e.g. PORT={port + 1} make run") from None


def redact(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def upstreams(env: Mapping[str, str]) -> list[tuple[str, str, str | None]]:
    """(name, base URL, probe URL or None = not configured) for each upstream the config names."""
    def unset(var: str) -> bool:
        return env.get(var, "unset") in ("", "unset")

    ollama, v1, vllm = (env[k].rstrip("/") for k in ("OLLAMA_URL", "OLLAMA_V1_URL", "VLLM_URL"))
    alt = env["ALT_API_BASE"].rstrip("/")
    return [
        ("ollama", ollama, f"{ollama}/api/version"),
        ("ollama FIM", v1, f"{v1}/models"),
        ("vllm", vllm, f"{vllm}/models"),
        ("alt", alt, None if unset("ALT_API_KEY") else f"{alt}/models"),
        ("anthropic", "https://api.anthropic.com", None if unset("ANTHROPIC_API_KEY") else "https://api.anthropic.com"),
    ]


def probe(url: str | None, key_var: str) -> str:
    """One word on whether `url` answers HTTP within PROBE_TIMEOUT_S (any status counts as answering)."""
    if url is None:
        return f"not configured ({key_var} unset)"
    try:
        status = httpx.get(url, timeout=PROBE_TIMEOUT_S).status_code
    except httpx.TimeoutException:
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    except httpx.HTTPError as exc:
        return f"not reachable ({type(exc).__name__})"
    return f"answers (HTTP {status})"


def summary(env: Mapping[str, str], url: str, key_from: str, started_s: float, pg_note: str) -> str:
    """The start-up block: URL, key, upstreams with a probe each, cache, store."""
    ups = upstreams(env)
    key_vars = {"alt": "ALT_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
    with ThreadPoolExecutor(len(ups)) as pool:
        states = list(pool.map(lambda u: probe(u[2], key_vars.get(u[0], "")), ups))
    width = max(len(u[1]) for u in ups)
    lines = [f"Carrot Coder Gateway ready on {url}/v1 (proxy start {started_s:.1f} s)",
             f"  key        {key_from}"]
    for i, ((name, base, _), state) in enumerate(zip(ups, states)):
        lines.append(f"  {'upstreams' if i == 0 else '':<10} {name:<11}{base:<{width}}  {state}")
    redis = env.get("REDIS_URL")
    lines.append(f"  cache      {'Redis ' + redact(redis) if redis else 'in memory (REDIS_URL unset)'}")
    store = env.get("PGVECTOR_URL")
    lines.append(f"  RAG store  {'PGVECTOR_URL ' + redact(store) if store else pg_note}")
    db = env.get("DATABASE_URL")
    lines.append(f"  database   {'DATABASE_URL ' + redact(db) if db else 'none: master key only (DATABASE_URL unset)'}")
    lines.append("  stop       Ctrl-C" + ("" if env.get("CARROT_LOG_LEVEL") else "; more output: CARROT_LOG_LEVEL=debug"))
    return "\n".join(lines)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    """True once /health/liveliness answers 200; False if the proxy exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health/liveliness", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m carrot_hooks.serve", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="LiteLLM's banner and start-up warnings")
    return p.parse_args(argv)


def _environment(verbose: bool) -> tuple[dict[str, str], Path]:
    env_file = ROOT / ".env"
    file_values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.exists() else {}
    given = {**file_values, **os.environ}
    level = given.get("CARROT_LOG_LEVEL", "").lower()
    if level and level not in LOG_LEVELS:
        raise StartError(f"CARROT_LOG_LEVEL={level!r}: use one of {', '.join(LOG_LEVELS)}")
    if verbose and not level:
        level = given["CARROT_LOG_LEVEL"] = "warning"  # LiteLLM's default output; debug adds its debug logs
    quiet = {} if level else QUIET
    env = build_env({**quiet, **given, **({"LITELLM_LOG": level.upper()} if level else {})})
    return env, env_file


def _embedded_pg_stop(state: Path, was_running: bool) -> None:
    from rag_indexer.embedded import is_running, stop_server

    if not is_running(state):
        return
    if was_running:
        print(f"The embedded PostgreSQL ({state / 'pg'}) was running before and keeps running; "
              "stop it with `.venv/bin/rag-indexer db stop`.", file=sys.stderr)
    elif stop_server(state):
        print(f"Stopped the embedded PostgreSQL this run started ({state / 'pg'}).", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    os.chdir(ROOT)  # the state dir, .env and the proxy's relative paths are the project's
    try:
        env, env_file = _environment(args.verbose)
        port_text = env.get("PORT", "4000")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise StartError(f"PORT={port_text!r} is not a port number (1-65535)")
        port = int(port_text)
        check_port("127.0.0.1", port)
    except StartError as exc:
        print(f"carrot: {exc}", file=sys.stderr)
        return 1
    key_from = "$LITELLM_MASTER_KEY" if os.environ.get("LITELLM_MASTER_KEY") else f"LITELLM_MASTER_KEY in {env_file}"
    env["LITELLM_MASTER_KEY"] = master_key(env_file)
    os.environ.update({k: env[k] for k in ("CARROT_STATE_DIR",) if k in env})
    from carrot_common.paths import state_dir
    from rag_indexer.embedded import is_running

    state = state_dir()
    pg_before = is_running(state)
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(command(port), cwd=ROOT, env=env)
    # Ctrl-C reaches the whole process group (the proxy too); a plain SIGTERM to us is passed on
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        if wait_ready(proc, url, READY_TIMEOUT_S):
            pg_note = (f"embedded PostgreSQL + pgvector under {state / 'pg'}"
                       + (" (already running)" if pg_before else " (stopped again with the gateway)"))
            print(summary(env, url, key_from, time.monotonic() - started, pg_note), file=sys.stderr, flush=True)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        _embedded_pg_stop(state, pg_before)
    return 0 if code in (0, -signal.SIGINT, -signal.SIGTERM) else code


if __name__ == "__main__":
    sys.exit(main())
