"""First-run setup scripts explain what is missing instead of failing obscurely."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bin(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH holding only the shell utilities the scripts need, plus `tools` (name -> shell script)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sh", "bash", "awk", "cat", "rm"):
        os.symlink(shutil.which(name), bin_dir / name)
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def _run(script: str, path: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh" if script.endswith("ops.sh") else "bash", str(ROOT / "scripts" / script)],
                          env={"PATH": path, **env}, capture_output=True, text=True, timeout=60, check=False)


def test_setup_ops_without_apt_get_names_what_to_install(tmp_path):
    out = _run("setup_ops.sh", _bin(tmp_path, {"id": "echo 0"}))
    assert out.returncode == 1
    assert "no apt-get" in out.stderr and "prometheus" in out.stderr and "promtool" in out.stderr
    assert "brew install prometheus" in out.stderr


def test_setup_ops_not_root_names_the_command(tmp_path):
    marker = tmp_path / "apt-get-ran"
    out = _run("setup_ops.sh", _bin(tmp_path, {"id": "echo 1000", "apt-get": f"touch {marker}; exit 1"}))
    assert out.returncode == 1 and "needs root" in out.stderr and "sudo apt-get install prometheus" in out.stderr
    assert not marker.exists()


def test_setup_refuses_a_missing_or_other_python(tmp_path):
    path = _bin(tmp_path, {"python3.12": "exit 1", "python3.11": "exit 1"})  # version checks fail, as 3.11's would
    for python in ("python3.11", str(tmp_path / "no-such-python")):
        out = _run("setup.sh", path, PYTHON=python, VENV=str(tmp_path / "venv"))
        assert out.returncode == 1 and "Python 3.12 is required" in out.stderr and "PYTHON=" in out.stderr
        assert not (tmp_path / "venv").exists()


def test_setup_without_python_looks_in_pyenv_then_on_path(tmp_path):
    """No PYTHON: pyenv's 3.12 builds (pyenv's `python3.12` shim fails outside a 3.12 environment), then
    python3.12 on PATH; each must pass the version check."""
    path = _bin(tmp_path, {"python3.12": "exit 1"})
    fake = tmp_path / "pyenv" / "versions" / "3.12.9" / "bin" / "python3.12"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'asked'}\nexit 1\n")
    fake.chmod(0o755)
    out = _run("setup.sh", path, PYENV_ROOT=str(tmp_path / "pyenv"), VENV=str(tmp_path / "venv"))
    assert out.returncode == 1 and "Python 3.12 is required" in out.stderr and "pyenv" in out.stderr
    assert "sys.version_info" in (tmp_path / "asked").read_text()  # pyenv's build was asked its version


def test_setup_remakes_a_venv_of_another_python(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")  # fails the 3.12 check, as a 3.11 would
    (venv / "bin" / "python").chmod(0o755)
    out = _run("setup.sh", _bin(tmp_path, {}), PYTHON=str(tmp_path / "no-such-python"), VENV=str(venv))
    assert "another Python than 3.12: making it again" in out.stderr and not venv.exists()
    assert out.returncode == 1 and "Python 3.12 is required" in out.stderr
