"""Hot reload under a Kubernetes ConfigMap volume: kubelet swaps a `..data` symlink, never the file.

Kubelet's atomic writer puts each version in a timestamped folder, points `..data` at it with an
atomic rename, and exposes every key as `key -> ..data/key`. The policy loader must see the new
version through those links (deploy/k8s/deployment.yaml mounts policy/ as such a folder).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import yaml

from carrot_hooks.config import Watched
from carrot_hooks.prompts import PackStore
from carrot_hooks.routing import RoutingPolicy

ROOT = Path(__file__).resolve().parent.parent
ROUTING = (ROOT / "policy" / "routing.yaml").read_text()


def kubelet_update(volume: Path, files: dict[str, str]) -> None:
    """Publish `files` into `volume` the way kubelet updates a ConfigMap volume."""
    version = volume / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns()}"
    version.mkdir()
    for name, text in files.items():
        (version / name).write_text(text)
    old = (volume / "..data").resolve() if (volume / "..data").exists() else None
    (volume / "..data_tmp").symlink_to(version.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    for name in files:
        if not (volume / name).is_symlink():
            (volume / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(old)


def edited(**changes) -> str:
    doc = yaml.safe_load(ROUTING)
    doc.update(changes)
    return yaml.safe_dump(doc, sort_keys=False)


def test_configmap_update_reaches_the_running_policy(tmp_path):
    kubelet_update(tmp_path, {"routing.yaml": ROUTING})
    watched = Watched(tmp_path / "routing.yaml", RoutingPolicy, interval=0.0)
    original = watched.get().default_task_type
    other = next(t for t in watched.get().tasks if t != original)

    kubelet_update(tmp_path, {"routing.yaml": edited(default_task_type=other)})
    assert watched.get().default_task_type == other
    assert (tmp_path / "routing.yaml").is_symlink()  # the file itself never changed


def test_invalid_configmap_update_keeps_the_last_valid_policy(tmp_path):
    kubelet_update(tmp_path, {"routing.yaml": ROUTING})
    watched = Watched(tmp_path / "routing.yaml", RoutingPolicy, interval=0.0)
    before = watched.get()

    kubelet_update(tmp_path, {"routing.yaml": edited(default_task_type="no-such-task")})
    assert watched.get() == before


def test_configmap_update_of_a_prompt_pack_reaches_the_pack_store(tmp_path):
    kubelet_update(tmp_path, {"chat@v1.md": "You are a careful assistant.\n"})
    store = PackStore(tmp_path)
    assert store.get("chat@v1").body == "You are a careful assistant."

    kubelet_update(tmp_path, {"chat@v1.md": "You answer in one sentence.\n"})
    assert store.get("chat@v1").body == "You answer in one sentence."
