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


def _python(path: Path, log: Path, is_312: bool) -> Path:
    """A fake interpreter: answers setup's version check (`-I -c ...`) as a 3.12 would or not, and makes a
    venv for `-m venv DIR` (whose python then fails everything); every call is logged as `path args`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'''#!/bin/sh
echo "$0 $*" >> {log}
if [ "$1" = -I ]; then exit {0 if is_312 else 1}; fi
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; echo "home = x" > "$3/pyvenv.cfg"
    printf '#!/bin/sh\\nexit 1\\n' > "$3/bin/python"; chmod +x "$3/bin/python"; exit 0; fi
exit 1
''')
    path.chmod(0o755)
    return path


def _bin_for_fakes(tmp_path: Path) -> str:
    """`_bin` plus the tools the fake interpreters use."""
    path = _bin(tmp_path, {})
    for tool in ("mkdir", "chmod", "printf"):
        (tmp_path / "bin" / tool).symlink_to(shutil.which(tool))
    return path


def _venv_made_by(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines() if " -m venv " in line]


def test_setup_refuses_a_missing_or_other_python(tmp_path):
    path = _bin(tmp_path, {"python3.12": "exit 1", "python3.11": "exit 1"})  # version checks fail, as 3.11's would
    for python in ("python3.11", str(tmp_path / "no-such-python")):
        out = _run("setup.sh", path, PYTHON=python, VENV=str(tmp_path / "venv"))
        assert out.returncode == 1 and "Python 3.12 is required" in out.stderr and f"PYTHON='{python}'" in out.stderr
        assert not (tmp_path / "venv").exists()
    out = _run("setup.sh", path, PYENV_ROOT=str(tmp_path / "no-pyenv"), VENV=str(tmp_path / "venv"))
    assert out.returncode == 1 and "found none (python3.12 on PATH, pyenv's versions)" in out.stderr


def test_setup_without_python_takes_path_then_pyenvs_newest_build(tmp_path):
    """No PYTHON: the pyenv 3.12 build with the highest patch number that passes the version check while
    PATH has no python3.12 that passes it (pyenv's shim does not outside a 3.12 environment), else python3.12."""
    log, bin_dir, path = tmp_path / "calls", tmp_path / "bin", _bin_for_fakes(tmp_path)
    pyenv = tmp_path / "pyenv" / "versions"
    builds = {v: _python(pyenv / v / "bin" / "python3.12", log, is_312=v != "3.12.11")
              for v in ("3.12.2", "3.12.9", "3.12.10", "3.12.11")}  # 3.12.11 fails its check
    env = {"PYENV_ROOT": str(tmp_path / "pyenv")}
    out = _run("setup.sh", path, VENV=str(tmp_path / "v1"), **env)
    assert _venv_made_by(log) == [str(builds["3.12.10"])], out.stderr  # 10 > 9 (not name order); 11 failed
    _python(bin_dir / "python3.12", log, is_312=True)
    out = _run("setup.sh", path, VENV=str(tmp_path / "v2"), **env)
    assert _venv_made_by(log)[-1] == str(bin_dir / "python3.12"), out.stderr


def test_setup_remakes_a_venv_of_another_python_only_once_a_312_is_found(tmp_path):
    log = tmp_path / "calls"
    venv = tmp_path / "venv"
    _python(venv / "bin" / "python", log, is_312=False)  # a venv of another Python (as 3.11 answers)
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    (venv / "old-marker").write_text("")
    path = _bin_for_fakes(tmp_path)
    out = _run("setup.sh", path, PYTHON=str(tmp_path / "no-such-python"), VENV=str(venv))
    assert out.returncode == 1 and "Python 3.12 is required" in out.stderr
    assert (venv / "pyvenv.cfg").exists()  # no 3.12 to make another: the old venv stays
    good = _python(tmp_path / "py312" / "python3.12", log, is_312=True)
    out = _run("setup.sh", path, PYTHON=str(good), VENV=str(venv))
    assert "another Python than 3.12 (or its Python is gone): making it again" in out.stderr
    assert _venv_made_by(log) == [str(good)] and (venv / "pyvenv.cfg").read_text() == "home = x\n"
    assert not (venv / "old-marker").exists()


def test_setup_remakes_a_venv_whose_python_is_gone(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /gone\n")
    (venv / "bin" / "python").symlink_to(tmp_path / "gone" / "python3.11")  # its base Python was uninstalled
    log = tmp_path / "calls"
    good = _python(tmp_path / "py312" / "python3.12", log, is_312=True)
    out = _run("setup.sh", _bin_for_fakes(tmp_path), PYTHON=str(good), VENV=str(venv))
    assert "(or its Python is gone): making it again" in out.stderr and _venv_made_by(log) == [str(good)]


def test_setup_leaves_a_folder_that_is_no_venv(tmp_path):
    path = _bin(tmp_path, {"python3.12": "exit 0"})
    for keep in ("keep", ".env"):  # a dotfile alone counts too
        folder = tmp_path / f"data-{keep}"
        folder.mkdir()
        (folder / keep).write_text("mine")
        out = _run("setup.sh", path, PYTHON="python3.12", VENV=str(folder))
        assert out.returncode == 1 and "is no venv; not touching it" in out.stderr
        assert [p.name for p in folder.iterdir()] == [keep]
