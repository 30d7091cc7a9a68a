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
    for name in ("sh", "bash", "awk", "cat"):
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
    path = _bin(tmp_path, {"python3.12": "exit 1"})  # its version check fails, as a real 3.12's would
    for python in ("python3.12", str(tmp_path / "no-such-python")):
        out = _run("setup.sh", path, PYTHON=python, VENV=str(tmp_path / "venv"))
        assert out.returncode == 1 and "Python 3.11 is required" in out.stderr and "PYTHON=" in out.stderr
        assert not (tmp_path / "venv").exists()
