"""LiteLLM's database mode for the tests, on Prisma's WebAssembly engines (test infrastructure only).

`setup_home()` runs scripts/setup_dbmode.sh (npm packages cached outside the clone, prisma-python's
client generated) and returns the package directory; `push_schema()` creates LiteLLM's tables in
a database; `proxy_env()` is the environment that makes a test proxy use that database through
tests/dbmode/query_engine.mjs. Production uses Prisma's native engines (compose, the image).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ENGINE_DIR = ROOT / "tests" / "dbmode"


def setup_home() -> Path:
    """Run the idempotent setup (engines; Chromium is the group setup's job); the package directory."""
    proc = subprocess.run(["sh", str(ROOT / "scripts" / "setup_dbmode.sh"), "--engines-only"], check=False,
                          env={**os.environ, "PY": sys.executable},
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/setup_dbmode.sh failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def litellm_schema() -> Path:
    """LiteLLM's own schema.prisma (found without importing litellm)."""
    return Path(importlib.util.find_spec("litellm").submodule_search_locations[0]) / "proxy" / "schema.prisma"


def push_schema(home: Path, database_url: str) -> None:
    """Bring `database_url` level with LiteLLM's schema.prisma (the wasm schema engine's `db push`)."""
    proc = subprocess.run(["node", str(ENGINE_DIR / "push_schema.mjs"), str(litellm_schema()), database_url],
                          env={**os.environ, "CARROT_DBMODE_HOME": str(home)}, capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"schema push failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")


def proxy_env(home: Path, database_url: str) -> dict[str, str]:
    """Environment for `start_proxy(env=...)`: LiteLLM on `database_url` through the wasm engine."""
    return {
        "DATABASE_URL": database_url,
        "DISABLE_SCHEMA_UPDATE": "true",  # the schema is pushed by push_schema(); no native schema engine
        # LiteLLM still runs `prisma migrate diff` at start (report only), which needs the native schema
        # engine and would wait out its 60 s budget; 5 s is enough for it to give up ("no diff")
        "LITELLM_PRISMA_COMMAND_TIMEOUT": "5",
        "CARROT_DBMODE_HOME": str(home),
        "PRISMA_BINARY_CACHE_DIR": str(home),
        "PRISMA_QUERY_ENGINE_BINARY": str(ENGINE_DIR / "query_engine.mjs"),
        "PRISMA_SCHEMA_ENGINE_BINARY": str(ENGINE_DIR / "schema_engine_stub.sh"),
        "PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING": "1",
        "PRISMA_HIDE_UPDATE_MESSAGE": "1",
        "CHECKPOINT_DISABLE": "1",
        "npm_config_ignore_scripts": "true",
    }


def admin(proxy, method: str, path: str, **kw) -> dict:
    """A management API call with the master key; fails the test unless it answers 200."""
    r = httpx.request(method, f"{proxy.base_url}{path}", headers=proxy.headers(), timeout=60, **kw)
    assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text[:500]}"
    return r.json()


def new_team(proxy, **body) -> str:
    """A new LiteLLM team (`/team/new`); its team_id."""
    return admin(proxy, "POST", "/team/new", json={"team_alias": f"team-{uuid.uuid4().hex[:8]}", **body})["team_id"]


def new_key(proxy, **body) -> str:
    """A new virtual key (`/key/generate`)."""
    return admin(proxy, "POST", "/key/generate", json=body)["key"]


def chat(proxy, key: str, marker: str, *, model: str = "auto", headers: dict[str, str] | None = None) -> httpx.Response:
    """One chat completion with `key`; `marker` in the prompt finds it at the fake upstream."""
    return httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})},
                      json={"model": model, "messages": [{"role": "user", "content": f"question {marker}"}]})
