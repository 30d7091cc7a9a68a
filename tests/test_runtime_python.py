"""The interpreter the gateway runs on survives what crashed it on Python 3.11.

CPython 3.10 and 3.11 can run a garbage collection inside `ContextVar.set` (on an allocation of the
context's new mapping); a finaliser run by that collection which sets a context variable replaces the
mapping the outer set is building from, which is then used after it was freed (CPython gh-148891; 3.12
runs collections only between bytecodes). A gateway under load died inside `ContextVar.set` on 3.11.7
(LiteLLM's `service_target`, `bench/load.py`; README "Guarantees under faults"). The project requires 3.12.
Where a collection falls depends on addresses, so one run can miss it: the program below tries several
collection thresholds and heap layouts, and also checks that no finaliser's update was lost.

No installed package installs a Python audit hook: once added, a hook cannot be removed and runs on every
audited event in the process (filelock 3.30+ added one at import, through tldextract: LiteLLM's deep copies raise
about 2,000 `builtins.id` events per request, and each then called a Python function; pyproject pins filelock).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

from carrot_hooks.serve import ROOT

REENTRANT_SET = textwrap.dedent("""
    import contextvars, gc

    side = contextvars.ContextVar("side")
    updates = [0]


    class Cyclic:
        def __init__(self):
            self.me = self  # garbage only the cyclic collector frees

        def __del__(self):
            updates[0] += 1
            side.set(updates[0])  # a finaliser that sets a variable of the running context


    def run(threshold, skew):
        ballast = [object() for _ in range(skew)]  # another heap layout, so other hashes and node shapes
        pads = [contextvars.ContextVar(f"p{i}") for i in range(64)]
        for v in pads:
            v.set(object())  # a mapping several levels deep: a set allocates several nodes
        gc.set_threshold(threshold, 1000, 1000)
        for i in range(50_000):
            Cyclic()
            junk = [[] for _ in range(i % threshold)]  # moves the collection to another allocation
            pads[i % 64].set(i)
        gc.collect()
        return side.get(None) == updates[0]  # False: a finaliser's set was overwritten


    lost = [(t, s) for t in (2, 3, 4, 6) for s in (0, 97, 1009) if not contextvars.Context().run(run, t, s)]
    print("lost updates at (threshold, skew) " + str(lost) if lost else "survived")
""")


def test_context_variable_set_during_a_collection_neither_crashes_nor_loses_the_update(tmp_path):
    out = subprocess.run([sys.executable, "-c", REENTRANT_SET], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, check=False)  # cwd: a core dump of a bad interpreter lands in tmp_path
    assert out.returncode == 0 and out.stdout.strip() == "survived", (
        f"Python {sys.version.split()[0]} exited {out.returncode} on context variables set during garbage "
        f"collections (CPython gh-148891): run the gateway on Python 3.12\n{out.stdout}{out.stderr[-1500:]}")


def test_the_suite_runs_on_a_python_the_project_admits():
    """A venv made by hand with another Python (3.11) fails here, not later under load."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    admitted = SpecifierSet(meta["project"]["requires-python"])
    running = ".".join(map(str, sys.version_info[:3]))
    assert running in admitted and "3.11.7" not in admitted, (running, admitted)


def audit_hook_installers(folder: Path) -> list[Path]:
    """Python files under `folder` whose code calls `addaudithook` (a comment or a definition is not a call)."""
    def calls(path: Path) -> bool:
        source = path.read_bytes()
        if b"addaudithook" not in source:  # most files: no parse
            return False
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):  # a package's template or test data
            return False
        return any(isinstance(n, ast.Call) and (getattr(n.func, "attr", None) or getattr(n.func, "id", None))
                   == "addaudithook" for n in ast.walk(tree))

    return sorted(p for p in folder.rglob("*.py") if calls(p))


def test_no_installed_package_adds_a_python_audit_hook(tmp_path):
    planted = tmp_path / "pkg" / "_fork.py"
    planted.parent.mkdir()
    planted.write_text("import sys\n\ndef _hook(event, args):\n    pass\n\nsys.addaudithook(_hook)\n")
    (tmp_path / "pkg" / "quiet.py").write_text('"""Unlike sys.addaudithook(h), this adds none."""\n'
                                               "# sys.addaudithook(h)\ndef addaudithook(h):\n    pass\n")
    assert audit_hook_installers(tmp_path) == [planted]  # the check finds a call, and only a call
    site = Path(sysconfig.get_paths()["purelib"])
    assert (site / "litellm").is_dir() and (site / "filelock").is_dir(), site  # the gateway's own packages
    assert audit_hook_installers(site) == [], "a Python audit hook costs every request: pin the package below it"


# Records each hook added after it, with where (C extensions and aliased calls included), while the gateway's
# modules load and its PII stage runs once (Presidio's recognizers import tldextract then)
HOOK_RECORDER = textwrap.dedent("""
    import json, sys, traceback

    added = []

    def recorder(event, args):
        if event == "sys.addaudithook":
            added.append("".join(traceback.format_stack(sys._getframe(1), limit=4)))

    sys.addaudithook(recorder)
    for name in sys.argv[1:]:
        __import__(name)
    from carrot_hooks.config import load_model
    from carrot_hooks.guardrails.settings import GuardrailPolicy
    from carrot_hooks.guardrails.pii import PiiRedactor, Vault
    from carrot_hooks.serve import ROOT

    pii = load_model(ROOT / "policy" / "guardrails.yaml", GuardrailPolicy).pii
    text, hits = PiiRedactor(pii).redact("Mail John Smith at john.smith@example.com or see https://example.org", Vault())
    assert hits, text
    print(json.dumps(added))
""")


def test_the_gateway_adds_no_audit_hook_when_it_loads_and_redacts():
    config = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    modules = ["litellm.proxy.proxy_server", "carrot_hooks.rag_search", "carrot_hooks.guardrails.pii_process",
               "rag_indexer.retrieve", "rag_indexer.embedding"]
    modules += [c.rsplit(".", 1)[0] for c in config["litellm_settings"]["callbacks"] if c.startswith("carrot_hooks")]
    modules += [g["litellm_params"]["guardrail"].rsplit(".", 1)[0] for g in config["guardrails"]]
    out = subprocess.run([sys.executable, "-c", HOOK_RECORDER, *modules], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=False, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert out.returncode == 0, out.stderr[-3000:]
    added = json.loads(out.stdout.strip().splitlines()[-1])
    assert added == [], "hooks added while the gateway loads (each runs on every audited event):\n" + "\n".join(added)
