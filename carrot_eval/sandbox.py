"""Run untrusted generated code: a subprocess with a timeout, no network, a temporary directory, resource limits."""

from __future__ import annotations

import functools
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Prepended to every program: even where no network namespace is available, sockets cannot be opened.
_NO_NETWORK = """\
import socket as _s
def _no_network(*a, **k):
    raise OSError("network access is disabled in the carrot-eval sandbox")
_s.socket = _s.create_connection = _s.socketpair = _no_network
del _s
"""
MEMORY_BYTES = 1024 * 1024 * 1024
FILE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str  # "" when passed; otherwise timeout / the last line of stderr


@functools.cache
def _unshare() -> list[str]:
    """`unshare -rn` (a private network namespace with only loopback down) when this kernel allows it."""
    exe = shutil.which("unshare")
    if exe is None:
        return []
    ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10, check=False).returncode == 0
    return [exe, "-rn"] if ok else []


def _limits(cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(program: str, timeout: float = 10.0) -> Outcome:
    """Run `program` with `python -I` in a fresh temp dir; passed = exit status 0 within `timeout`."""
    with tempfile.TemporaryDirectory(prefix="carrot-eval-") as tmp:
        script = Path(tmp) / "case.py"
        script.write_text(_NO_NETWORK + program, encoding="utf-8")
        cmd = [*_unshare(), sys.executable, "-I", "-B", str(script)]
        try:
            out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False,
                                 env={"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp},
                                 preexec_fn=functools.partial(_limits, int(timeout) + 1), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Outcome(False, f"timeout after {timeout:g}s")
    if out.returncode == 0:
        return Outcome(True, "")
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    return Outcome(False, (lines[-1] if lines else f"exit status {out.returncode}")[:300])
