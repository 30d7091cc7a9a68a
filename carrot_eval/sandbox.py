"""Run untrusted generated code: a subprocess with a timeout, no network, a temporary directory, resource limits."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MEMORY_BYTES = 1024 * 1024 * 1024
FILE_BYTES = 16 * 1024 * 1024
# Prepended to every program, so it runs before the generated code: resource limits (set inside the child,
# not with preexec_fn, which is unsafe in the evaluator's threads) and, even where no network namespace
# is available, no sockets.
_PRELUDE = """\
import resource as _r, socket as _s
for _lim, _v in ((_r.RLIMIT_CPU, {cpu}), (_r.RLIMIT_AS, {mem}), (_r.RLIMIT_FSIZE, {fsize}), (_r.RLIMIT_CORE, 0)):
    _r.setrlimit(_lim, (_v, _v))
def _no_network(*a, **k):
    raise OSError("network access is disabled in the carrot-eval sandbox")
_s.socket = _s.create_connection = _s.socketpair = _no_network
del _r, _s, _lim, _v
"""


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


def run_python(program: str, timeout: float = 10.0) -> Outcome:
    """Run `program` with `python -I` in a fresh temp dir; passed = exit status 0 within `timeout`."""
    with tempfile.TemporaryDirectory(prefix="carrot-eval-") as tmp:
        script = Path(tmp) / "case.py"
        prelude = _PRELUDE.format(cpu=int(timeout) + 1, mem=MEMORY_BYTES, fsize=FILE_BYTES)
        script.write_text(prelude + program, encoding="utf-8")
        cmd = [*_unshare(), sys.executable, "-I", "-B", str(script)]
        try:
            out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False,
                                 env={"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp}, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Outcome(False, f"timeout after {timeout:g}s")
    if out.returncode == 0:
        return Outcome(True, "")
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    return Outcome(False, (lines[-1] if lines else f"exit status {out.returncode}")[:300])
