"""Start test proxies by forking a process that has already imported LiteLLM, as its gunicorn `--preload` does.

A proxy start costs 10-15 CPU-s, 8 of them importing LiteLLM, uvicorn, spaCy and Presidio. The zygote (this
file run as a script, one per test process) imports them once as the `litellm` console script would (same
`sys.argv[0]`, `sys.path[0]`, folder and environment) and forks a child per proxy, which runs that script's
entry point with the proxy's arguments. LiteLLM supports importing once and forking
(`reserve_process_for_forking` also refuses once its native runtime ran). Our own packages and the config are
not preloaded: every child imports them afresh.

A child is the same as a fresh process only if everything the imports read agrees, so a start is forked only
when its folder is the zygote's and its environment differs from the zygote's in PER_PROXY keys alone, none of
which the imports read (recorded while they run: each key read, and each place that reads the whole environment,
which must be audited in WHOLE_ENV_READERS). Anything else (a `LITELLM_*` or `PYTHON*` setting, a thread count
read by a C library) runs the console script. What the imports print is written at the head of each child's
log, as it would be. Known differences: every child has the zygote's hash seed, and `/proc/PID/cmdline` and
`environ` show the zygote's. The test session turns it on (`tests/conftest.py`), unless CARROT_TEST_ZYGOTE=0;
benchmarks start fresh processes.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

enabled = False  # set by the test session
PRELOAD = ("litellm.proxy.proxy_cli", "litellm.proxy.proxy_server", "uvicorn", "spacy", "presidio_analyzer")
PER_PROXY = ("CARROT_", "REDIS_URL", "PGVECTOR_URL", "DATABASE_URL", "OLLAMA_URL", "OLLAMA_V1_URL",
             "OLLAMA_API_BASE", "VLLM_URL", "ALT_API_BASE")  # keys (or prefixes) a test proxy sets for itself
# Places that read the whole environment while PRELOAD is imported, and the keys each of them uses.
WHOLE_ENV_READERS = {
    # the class attribute BaseHandler.os_environ, read only by wsgiref's WSGI handlers; the proxy serves ASGI
    "wsgiref/handlers.py:read_environ": lambda k: False,
    "urllib/request.py:getproxies_environment": lambda k: k.lower().endswith("_proxy"),  # httpx clients
    "tqdm/utils.py:<genexpr>": lambda k: k.lower().startswith("tqdm_"),
    "litellm/integrations/otel/model/config.py:is_otel_v2_enabled": lambda k: "OTEL" in k.upper(),
}
_MACHINERY = ("_collections_abc", "<frozen os>", "pydantic_settings/", "proxy_zygote.py")
START_TIMEOUT_S = 360.0


# ---- the zygote process (`python tests/proxy_zygote.py REQUESTS_FD ANSWERS_FD FOLDER`): no project imports ----

def _reader(stack: traceback.StackSummary) -> str:
    """`path-tail:function` of the innermost frame that is not the mapping machinery or a settings library."""
    for frame in reversed(stack):
        if not any(part in frame.filename for part in _MACHINERY):
            parts = Path(frame.filename).parts
            tail = "/".join(parts[parts.index("site-packages") + 1:] if "site-packages" in parts else parts[-2:])
            return f"{tail}:{frame.name}"
    return "?"


def _preload() -> dict:
    """Import PRELOAD as the console script would, recording what of the environment the imports read."""
    at_start = dict(os.environ)
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
    sys.stdout.flush()
    sys.stderr.flush()
    unaudited = sorted(readers - WHOLE_ENV_READERS.keys())
    written = sorted(k for k in os.environ.keys() | at_start.keys() if os.environ.get(k) != at_start.get(k))
    why = (f"Python threads after import: {threading.enumerate()}" if threading.active_count() > 1 else
           f"unaudited readers of the whole environment: {unaudited}" if unaudited else
           f"the imports set {written} in the environment (a child's environment would lose it)" if written else "")
    return {"at_start": at_start, "reads": sorted(k for k in reads if isinstance(k, str)),
            "readers": sorted(readers), "unusable": why}


def _reap_all(children: set[int]) -> None:
    """At EOF: stop the children still running (a test that never stopped its proxy), SIGKILL those still there
    after 15 s, and reap every one."""
    deadline, sig = time.monotonic() + 15, signal.SIGTERM
    while children:
        for pid in list(children):
            try:
                if sig is not None:
                    os.killpg(pid, sig)
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
            except (ChildProcessError, ProcessLookupError):
                children.discard(pid)
            except OSError:
                pass
        sig = signal.SIGKILL if time.monotonic() > deadline else None
        time.sleep(0.05)


def _serve(requests: int, answers: int, folder: Path) -> dict:
    """Answer spawn/poll requests (JSON lines) until EOF; in a forked child, return its start request.
    What the imports print stays in FOLDER/preload.log (each child's log starts with it), the rest goes
    to FOLDER/zygote.log."""
    out = os.fdopen(answers, "w", buffering=1)
    state = _preload()
    own = os.open(folder / "zygote.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(own, 1)
    os.dup2(own, 2)
    os.close(own)
    out.write(json.dumps(state) + "\n")
    children: set[int] = set()
    reader = os.fdopen(requests)
    for line in reader:
        req = json.loads(line)
        try:
            if req["op"] == "spawn":
                pid = os.fork()
                if pid == 0:
                    reader.close()
                    out.close()
                    return req
                children.add(pid)
                answer = {"pid": pid}
            else:
                done, status = os.waitpid(req["pid"], os.WNOHANG)
                answer = {"rc": os.waitstatus_to_exitcode(status) if done else None}
                if done:
                    children.discard(done)
        except OSError as exc:
            answer = {"error": repr(exc)}
        out.write(json.dumps(answer) + "\n")
    _reap_all(children)
    os._exit(0)


def _become_proxy(argv: list[str], env: dict[str, str], log: str, preload_log: str, **_) -> None:
    """In the child: a new session, the log as stdout/stderr (the imports' output first), the proxy's
    environment and arguments."""
    os.setsid()
    with open(preload_log, "rb") as src, open(log, "ab") as dst:
        dst.write(src.read())
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, log, os.O_WRONLY | os.O_APPEND),
                            (2, log, os.O_WRONLY | os.O_APPEND)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv


# ---- the test side ----

class ZygoteChild:
    """A proxy forked by the zygote, with the part of `subprocess.Popen` the tests use."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None
        self.pidfd = os.pidfd_open(pid)  # this process, even once another one has its pid

    def ended(self) -> bool:
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.returncode = self.zygote.ask({"op": "poll", "pid": self.pid})["rc"]
            except (RuntimeError, OSError):  # the zygote is gone, so is the exit status: reported as killed
                if self.ended():
                    self.returncode = -signal.SIGKILL
            if self.returncode is not None:
                os.close(self.pidfd)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return self.returncode


class Zygote:
    """A zygote process started with `env` in `cwd`; `spawn()` keeps one per test process."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd = env, cwd
        self.folder = Path(tempfile.mkdtemp(prefix="carrot-zygote-"))
        self.log = self.folder / "preload.log"
        requests, self._to_zygote = os.pipe()
        self._from_zygote, answers = os.pipe()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, __file__, str(requests), str(answers), str(self.folder)],
                                         env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         pass_fds=(requests, answers), start_new_session=True)
        os.close(requests)
        os.close(answers)
        self.lock = threading.Lock()
        try:
            state = self._answer(START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        self.unusable = state["unusable"]
        self.reads = set(state["reads"])
        self.consumers = [WHOLE_ENV_READERS[r] for r in state["readers"] if r in WHOLE_ENV_READERS]
        # what the interpreter's start added (PEP 538's LC_CTYPE): a fresh process started with the same
        # environment adds it too
        self.added = {k: v for k, v in state["at_start"].items() if k not in env}
        atexit.register(self.close)

    def _answer(self, timeout: float | None = None) -> dict:
        line = b""
        while not line.endswith(b"\n"):
            if not select.select([self._from_zygote], [], [], timeout)[0]:
                raise RuntimeError(f"the proxy zygote gave no answer in {timeout} s:\n{self.tail()}")
            chunk = os.read(self._from_zygote, 1 << 16)
            if not chunk:
                raise RuntimeError(f"the proxy zygote exited with {self.proc.wait()}:\n{self.tail()}")
            line += chunk
        return json.loads(line)

    def tail(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.log, self.folder / "zygote.log")
                       if p.exists())[-4000:]

    def ask(self, req: dict) -> dict:
        with self.lock:
            if self._to_zygote < 0:
                raise RuntimeError("the proxy zygote was closed")
            try:
                os.write(self._to_zygote, (json.dumps(req) + "\n").encode())
                answer = self._answer()
            except BaseException:  # e.g. a test's timeout between question and answer: the next answer
                self.proc.kill()   # would be this one's, so this zygote is done
                raise
        if "error" in answer:
            raise RuntimeError(f"the proxy zygote failed: {answer['error']}")
        return answer

    def fits(self, env: dict[str, str], cwd: Path) -> list[str]:
        """Why a start with `env` in `cwd` would not be the same as a fresh process (empty: it would be)."""
        if self.unusable:
            return [self.unusable]
        if cwd != self.cwd:
            return [f"folder {cwd}"]
        return sorted(k for k in env.keys() | self.env.keys() if env.get(k) != self.env.get(k) and (
            not k.startswith(PER_PROXY) or k in self.reads or any(c(k) for c in self.consumers)))

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> ZygoteChild:
        req = {"op": "spawn", "argv": argv, "env": {**self.added, **env}, "log": str(log), "preload_log": str(self.log)}
        return ZygoteChild(self, self.ask(req)["pid"])

    def close(self) -> None:
        """End the zygote (EOF: it stops what still runs and reaps its children) and wait for it, so that
        the CPU of the proxies it forked is counted with this process's children."""
        with self.lock:
            if self._to_zygote < 0:
                return
            os.close(self._to_zygote)
            self._to_zygote = -1
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            finally:
                os.close(self._from_zygote)
                shutil.rmtree(self.folder, ignore_errors=True)


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path, common: dict[str, str],
          fork: bool = True) -> subprocess.Popen | ZygoteChild:
    """The proxy `argv` forked from this process's zygote (started with `common`, the environment every test
    proxy shares) when `fork` and that is the same as running it, else run as a process of its own."""
    global _zygote
    if fork and enabled and os.environ.get("CARROT_TEST_ZYGOTE", "1") != "0" and Path(argv[0]).name == "litellm":
        with _zygote_lock:
            if _zygote is None or _zygote.proc.poll() is not None:
                _zygote = Zygote(common, cwd)
            zygote = _zygote
        if not zygote.fits(env, cwd):
            return zygote.spawn(argv, env, log)
    with log.open("ab") as fh:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def close() -> None:
    """End this process's zygote, if any (the test session's end)."""
    if _zygote is not None:
        _zygote.close()


if __name__ == "__main__":
    fds_and_folder = sys.argv[1:]
    sys.argv = [str(Path(sys.executable).with_name("litellm"))]  # what the console script's imports see
    sys.path[0] = str(Path(sys.executable).parent)
    start = _serve(int(fds_and_folder[0]), int(fds_and_folder[1]), Path(fds_and_folder[2]))
    _become_proxy(**start)
    from litellm_cli.main import proxy_server
    sys.exit(proxy_server())
