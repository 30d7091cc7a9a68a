"""Where the project's policy and state folders are, independent of the current directory.

An explicit setting wins (`CARROT_POLICY_DIR`, `CARROT_STATE_DIR`); otherwise both sit in the
project root: the source tree these packages were loaded from when it has a `policy/` folder
(a checkout or an editable install), else the nearest folder above the current directory that has
`policy/` and `pyproject.toml`, else the current directory.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


def _is_root(folder: Path) -> bool:
    return (folder / "policy").is_dir() and (folder / "pyproject.toml").is_file()


@cache
def project_root() -> Path:
    """The project root (see module docstring); computed once per process."""
    source = Path(__file__).resolve().parent.parent
    if _is_root(source):
        return source
    cwd = Path.cwd().resolve()
    return next((d for d in (cwd, *cwd.parents) if _is_root(d)), cwd)


def policy_dir() -> Path:
    """Folder holding the policy YAML files (`CARROT_POLICY_DIR`, default `<project root>/policy`)."""
    explicit = os.environ.get("CARROT_POLICY_DIR")
    return Path(explicit).resolve() if explicit else project_root() / "policy"


def state_dir() -> Path:
    """Project state folder: store, models, bench output (`CARROT_STATE_DIR`, default `<project root>/.state`)."""
    explicit = os.environ.get("CARROT_STATE_DIR")
    return Path(explicit).resolve() if explicit else project_root() / ".state"
