"""Start test proxies by forking a process that has already imported LiteLLM, as its gunicorn `--preload` does.

A proxy start costs 12-15 CPU-s, 8 of them importing LiteLLM, uvicorn, spaCy and Presidio. The zygote (this
file run as a script, one per test process) imports them once, like the `litellm` console script would
(same `sys.argv[0]`, `sys.path[0]` and environment), and forks a child per proxy that runs that script's
entry point with the proxy's arguments, environment and working folder. LiteLLM supports importing once and
forking (`reserve_process_for_forking`, which also refuses to fork once its native runtime ran).

A child is the same as a fresh process only if its environment agrees with the zygote's wherever the imports
read it: the zygote records every key the imports read and every place that read the whole environment, and a
start whose environment differs in such a key (or in any `PYTHON*` key, read before any import) runs the
console script instead, as does every start when an import read the whole environment somewhere not audited
below. Our own packages are not preloaded: every child imports them, and the config, afresh.
`CARROT_TEST_ZYGOTE=0` turns the zygote off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

PRELOAD = ("litellm.proxy.proxy_cli", "litellm.proxy.proxy_server", "uvicorn", "spacy", "presidio_analyzer")
# Places that read the whole environment while PRELOAD is imported, and the keys each of them uses.
WHOLE_ENV_READERS = {
    "wsgiref/handlers.py:read_environ": lambda k: False,  # WSGI handlers' copy; the proxy serves ASGI
    "urllib/request.py:getproxies_environment": lambda k: k.lower().endswith("_proxy"),
    "tqdm/utils.py:<genexpr>": lambda k: k.lower().startswith("tqdm_"),
    "litellm/integrations/otel/model/config.py:is_otel_v2_enabled": lambda k: "OTEL" in k.upper(),
}
_OWN_FRAMES = ("_collections_abc", "/os.py", "pydantic_settings/", "proxy_zygote.py")


# ---- the zygote process (`python tests/proxy_zygote.py`): no project imports ----

def _reader(stack: traceback.StackSummary) -> str:
    """`path-tail:function` of the innermost frame that is not the mapping machinery or a settings library."""
    for frame in reversed(stack):
        if not any(own in frame.filename for own in _OWN_FRAMES):
            parts = Path(frame.filename).parts
            tail = "/".join(parts[parts.index("site-packages") + 1:] if "site-packages" in parts else parts[-2:])
            return f"{tail}:{frame.name}"
    return "?"


def _preload() -> dict:
    """Import PRELOAD as the console script would, recording what of the environment the imports read."""
    reads: set[str] = set()
    readers: set[str] = set()

    class Recording(os._Environ):
        def __getitem__(self, key):
            caller = sys._getframe(1).f_code
            if not (caller.co_name == "__iter__" and "_collections_abc" in caller.co_filename):  # items(), values()
                reads.add(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            reads.add(key)
            return super().__contains__(key)

        def __iter__(self):
            readers.add(_reader(traceback.extract_stack()[:-1]))
            return super().__iter__()

    os.environ.__class__ = Recording
    try:
        for name in PRELOAD:
            __import__(name)
    finally:
        os.environ.__class__ = os._Environ
    from litellm.rust_bridge.fork_guard import reserve_process_for_forking
    reserve_process_for_forking("the test proxy zygote")
    unaudited = sorted(readers - WHOLE_ENV_READERS.keys())
    why = (f"threads after import: {threading.enumerate()}" if threading.active_count() > 1 else
           f"unaudited readers of the whole environment: {unaudited}" if unaudited else "")
    return {"reads": sorted(k for k in reads if isinstance(k, str)), "readers": sorted(readers), "unusable": why}


def _serve() -> tuple[list[str], dict[str, str], str, str]:
    """Answer spawn/poll requests (JSON lines on stdin) until EOF; in a forked child, return its start."""
    exited: dict[int, int] = {}
    out = os.fdopen(os.dup(1), "w", buffering=1)
    out.write(json.dumps(_preload()) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                out.close()
                return req["argv"], req["env"], req["cwd"], req["log"]
            out.write(json.dumps({"pid": pid}) + "\n")
        else:
            pid = req["pid"]
            if pid not in exited:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    exited[pid] = os.waitstatus_to_exitcode(status)
            out.write(json.dumps({"rc": exited.get(pid)}) + "\n")
    sys.exit(0)


def _become_proxy(argv: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In the child: a new session, the log as stdout/stderr, the proxy's folder, environment and arguments."""
    os.setsid()
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, log, os.O_WRONLY | os.O_APPEND), (2, log, os.O_WRONLY | os.O_APPEND)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv


# ---- the test side ----

class ZygoteChild:
    """A proxy forked by the zygote, with the part of `subprocess.Popen` the tests use."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.ask({"op": "poll", "pid": self.pid})["rc"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return self.returncode


class Zygote:
    """One zygote per test process, started on the first proxy start with that start's environment."""

    instance: Zygote | None = None

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env = env
        log = Path(tempfile.mkdtemp(prefix="carrot-zygote-")) / "zygote.log"
        with log.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, env=env, cwd=cwd, text=True)
        self.lock = threading.Lock()
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError(f"the proxy zygote failed:\n{log.read_text(errors='replace')[-4000:]}")
        state = json.loads(ready)
        self.unusable = state["unusable"]
        self.reads = set(state["reads"])
        self.consumers = [WHOLE_ENV_READERS[r] for r in state["readers"] if r in WHOLE_ENV_READERS]

    def ask(self, req: dict) -> dict:
        with self.lock:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())

    def differs_where_read(self, env: dict[str, str]) -> list[str]:
        """Keys whose values differ from the zygote's and that an import or the interpreter's start read."""
        return sorted(k for k in env.keys() | self.env.keys() if env.get(k) != self.env.get(k)
                      and (k in self.reads or k.startswith("PYTHON") or any(c(k) for c in self.consumers)))


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path,
          common: dict[str, str] | None) -> subprocess.Popen | ZygoteChild:
    """The proxy `argv` started by the zygote when that is the same as running it, else as a process of its own.
    `common`: the environment every test proxy shares, which the zygote is started with (None: no zygote)."""
    if common is not None and os.environ.get("CARROT_TEST_ZYGOTE", "1") != "0" and Path(argv[0]).name == "litellm":
        if Zygote.instance is None or Zygote.instance.proc.poll() is not None:
            Zygote.instance = Zygote(common, cwd)
        z = Zygote.instance
        if not z.unusable and not z.differs_where_read(env):
            return ZygoteChild(z, z.ask({"op": "spawn", "argv": argv, "env": env, "cwd": str(cwd), "log": str(log)})["pid"])
    with log.open("ab") as fh:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


if __name__ == "__main__":
    sys.argv[0] = str(Path(sys.executable).with_name("litellm"))  # what the console script's imports see
    sys.path[0] = str(Path(sys.executable).parent)
    start = _serve()
    _become_proxy(*start)
    from litellm_cli.main import proxy_server
    sys.exit(proxy_server())
