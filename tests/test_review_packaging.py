"""`pip install carrot-coder-gateway[review]` gives a working carrot-review without LiteLLM or spaCy."""

from __future__ import annotations

import subprocess
import sys
import venv

from tests.proxy_process import ROOT


def test_review_extra_installs_the_bot_without_the_gateway(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check", f"{ROOT}[review]"],
                   check=True, timeout=900)  # (byte-compiling what is installed is not under test)
    code = "import importlib.util as u; print([m for m in ('litellm', 'spacy', 'presidio_analyzer') if u.find_spec(m)])"
    probe = subprocess.run([str(py), "-c", code],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]", probe.stdout
    diff = tmp_path / "change.diff"
    diff.write_text("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n")
    (tmp_path / "x.py").write_text("a = 2\n")
    out = subprocess.run([str(env_dir / "bin" / "carrot-review"), "--diff", str(diff), "--repo-dir", str(tmp_path),
                          "--no-model"], check=False, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Linters" in out.stdout + out.stderr
    assert sys.executable not in out.stderr  # ran from the new environment, not this one
