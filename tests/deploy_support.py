"""The image as its Dockerfile declares it, for the deploy tests (compose and Kubernetes)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile line, continuations joined, comments left out."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def image_env() -> dict[str, str]:
    """Variables the Dockerfile's ENV sets (`NAME=value` form; compose and the Deployment need not repeat them)."""
    return {name: value for op, args in dockerfile_instructions() if op == "ENV"
            for name, value in re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=(\S*)", args)}
