"""The real coding clients of scripts/clients.txt: where setup_clients.sh installed them, and how to
run one headless with HOME in a temp dir, telemetry and update checks off, and no inherited keys."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from carrot_hooks.serve import ROOT

CACHE = Path(os.environ.get("CARROT_CACHE_DIR") or Path.home() / ".cache" / "carrot") / "clients"

# Off switches every client run gets (each client reads its own; unknown ones are ignored).
QUIET = {
    "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",  # Claude Code
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
    "CONTINUE_CLI_ENABLE_TELEMETRY": "0", "CONTINUE_METRICS_ENABLED": "0",  # Continue CLI
    "CONTINUE_CLI_AUTO_UPDATED": "1",  # Continue CLI: never runs its self-update
    "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1", "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "NO_UPDATE_NOTIFIER": "1", "npm_config_update_notifier": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # aider's bundled LiteLLM: no model-cost download
    "NO_COLOR": "1", "TERM": "dumb", "CI": "1",
}


@dataclass(frozen=True)
class Pin:
    kind: str
    package: str
    version: str
    command: str

    @property
    def path(self) -> Path:
        if self.kind == "npmlib":  # a library: its package folder
            return CACHE / self.command / "node_modules" / self.package
        if self.kind == "npm":
            return CACHE / "npm" / "node_modules" / ".bin" / self.command
        return CACHE / f"venv-{self.command}" / "bin" / self.command


def pins() -> dict[str, Pin]:
    """scripts/clients.txt by command name."""
    out = {}
    for line in (ROOT / "scripts" / "clients.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pin = Pin(*line.split())
            out[pin.command] = pin
    return out


def executable(command: str) -> Path:
    """The installed client; AssertionError naming the setup step when it is missing."""
    path = pins()[command].path
    assert path.exists(), f"{command} is not installed at {path}: run `make clients` (scripts/setup_clients.sh)"
    return path


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: HOME and XDG dirs in `home`, no provider keys or base URLs from the caller."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "CARROT_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    for sub in ("config", "data", "state", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {**env, **QUIET, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"), "XDG_STATE_HOME": str(home / "state"),
            "XDG_CACHE_HOME": str(home / "cache"), **extra}


def run(command: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the client headless (stdin closed) and capture its output."""
    return subprocess.run([str(executable(command)), *args], check=False, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
