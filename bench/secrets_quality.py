"""Secret detection quality per provider family and per data set, false positives per MB of real code
from PyPI sdists, and the secret + command scan time per 4 KB (called by bench/guardrails.py).

Real code: the sdists below are downloaded once (`pip download --no-deps --no-binary :all:`) into
${CARROT_CACHE_DIR:-~/.cache/carrot}/sdists; their code and config files, without tests and docs
(which hold deliberate fake keys and documentation examples), are the corpus.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

SDISTS = ("Django==5.1.4", "SQLAlchemy==2.0.36", "requests==2.32.3", "Flask==3.1.0", "celery==5.4.0",
          "ansible-core==2.17.7", "paramiko==3.5.0")
CODE_FILES = re.compile(r"\.(?:py|pyi|ya?ml|json|toml|cfg|ini|xml|properties|conf|sh|js|ts|env)$")
SKIP_DIRS = re.compile(r"(?:^|/)(?:tests?|testing|testdata|fixtures|docs?|examples?|t/unit|t/integration)(?:/|$)", re.IGNORECASE)
# Common families the recall goal (>= 0.95) is for; dev-set rule types map onto them.
FAMILIES = ("aws", "azure", "gcp", "github", "gitlab", "slack", "stripe", "openai", "anthropic", "huggingface",
            "npm", "pypi", "jwt", "private-key", "db-url", "password-assignment")
ALIASES = {"google": "gcp", "gcs": "gcp", "pem": "private-key", "mongodb": "db-url", "postgres": "db-url",
           "odbc": "db-url", "generic": "generic", "1password": "1password"}


def family(rule_type: str) -> str:
    """`slack-bot-token` / `np.slack.2` / `aws` -> `slack` / `slack` / `aws`."""
    name = rule_type[3:].rsplit(".", 1)[0] if rule_type.startswith("np.") else rule_type
    if name in FAMILIES or name in ("placeholder",):
        return name
    if name == "private-key":
        return name
    head = re.split(r"[-.]", name)[0]
    return ALIASES.get(head, head)


def per_family(rows: list[dict], scan: Callable[[str], list]) -> dict[str, Counter]:
    """tp/fn/fp/tn per family over labelled rows (`label` secret|not_secret)."""
    out: dict[str, Counter] = {}
    for row in rows:
        fam = row.get("family") or family(row["type"])
        hit, pos = bool(scan(row["text"])), row["label"] == "secret"
        out.setdefault(fam, Counter())[("tp" if hit else "fn") if pos else ("fp" if hit else "tn")] += 1
    return out


def _pr(c: Counter) -> str:
    p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else float("nan")
    r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")
    return f"P={p:.3f} R={r:.3f} (tp={c['tp']} fn={c['fn']} fp={c['fp']} tn={c['tn']})"


def report(label: str, tuned: str, rows: list[dict], scan: Callable[[str], list]) -> None:
    """Micro P/R over the set, over the common families, and per common family present."""
    fams = per_family(rows, scan)
    total = sum(fams.values(), Counter())
    common = sum((c for f, c in fams.items() if f in FAMILIES), Counter())
    print(f"  secrets [{label}; {tuned}] all {_pr(total)}")
    print(f"    common families {_pr(common)}")
    for f in FAMILIES:
        if f in fams:
            print(f"    {f:20s} {_pr(fams[f])}")
    worst = sorted(((f, c) for f, c in fams.items() if f not in FAMILIES and c["fn"]), key=lambda fc: -fc[1]["fn"])[:8]
    if worst:
        print("    other families with misses: " + ", ".join(f"{f} {c['fn']}/{c['tp'] + c['fn']}" for f, c in worst))


def cache_dir() -> Path:
    return Path(os.environ.get("CARROT_CACHE_DIR", Path.home() / ".cache" / "carrot")) / "sdists"


def sdist_corpus(max_mb: float) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, text) of code/config files from the pinned sdists (downloaded once), about `max_mb / len(SDISTS)` each."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    missing = [s for s in SDISTS if _archive(cache, s) is None]
    if missing:  # sdists of these only; build dependencies may come as wheels (no cython build from source)
        names = ",".join(s.split("==")[0].lower() for s in missing)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", names,
                        "-d", str(cache), *missing], check=True)
    files, cap = [], max_mb * 1e6 / len(SDISTS)  # the same share from each project
    for spec in SDISTS:
        size = 0
        with tarfile.open(_archive(cache, spec)) as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]
                if size > cap or not member.isfile() or not CODE_FILES.search(name) or SKIP_DIRS.search(name):
                    continue
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                files.append((f"{spec.split('==')[0]}/{name}", text))
                size += len(text.encode())
    return files, list(SDISTS)


def _archive(cache: Path, spec: str) -> Path | None:
    """The downloaded sdist of `spec` (pip writes Django-5.1.4 / ansible_core-2.17.7 / flask-3.1.0)."""
    name, version = spec.split("==")
    want = f"{re.sub(r'[-_.]+', '-', name.lower())}-{version}.tar.gz"
    return next((p for p in cache.glob("*.tar.gz") if re.sub(r"[-_.]+(?=.*-)", "-", p.name.lower()) == want), None)


def false_positives(files: list[tuple[str, str]], scan: Callable[[str], list], show: int = 12) -> None:
    """Every finding in real code is a false positive (tests and docs are left out); per MB and by rule."""
    mb = sum(len(t.encode()) for _, t in files) / 1e6
    hits = [(path, text, f) for path, text in files for f in scan(text)]
    per = Counter()
    for p, t in files:
        per[p.split("/")[0]] += len(t.encode()) / 1e6
    print(f"  secrets on real code: {mb:.2f} MB ({', '.join(f'{k} {v:.1f}' for k, v in per.items())} MB), "
          f"{len(hits)} findings = {len(hits) / mb:.2f} FP/MB (goal <= 1) {dict(Counter(f.rule_id for *_, f in hits))}")
    for path, text, f in hits[:show]:
        line = text[text.rfind("\n", 0, f.start) + 1: text.find("\n", f.end) if text.find("\n", f.end) >= 0 else None]
        print(f"    {f.rule_id}: {path}: {line.strip()[:140]!r}")


def scan_speed(chunks: list[str], scan_secrets: Callable[[str], list], scan_commands: Callable[[str], list]) -> None:
    """CPU ms (this thread; less sensitive to other load than wall time) per 4 KB for secrets + commands."""
    cpu = []
    for chunk in chunks:
        t = time.thread_time()
        scan_secrets(chunk)
        scan_commands(chunk)
        cpu.append((time.thread_time() - t) * 1000)
    cpu.sort()
    print(f"  secret + command scan per 4 KB of real code ({len(cpu)} chunks): CPU p50 {cpu[len(cpu) // 2]:.3f} ms, "
          f"p95 {cpu[int(len(cpu) * .95)]:.3f} ms, max {cpu[-1]:.3f} ms (goal p95 <= 2 ms)")


def hostile_scan(keywords: list[str], scan_secrets: Callable[[str], list], scan_commands: Callable[[str], list],
                 size: int = 5_000) -> None:
    """The slowest scans of a hostile answer: each rule keyword followed by `size` repeats of one character, and
    the keyword itself repeated over one `size * 4`-character line (runaway backtracking in a rule shows here:
    `curl.*-u` over a line of repeated `curl ` was quadratic; ordinary text never gets near)."""
    worst = []
    for keyword in keywords:
        for fill in ("a", "-", None):
            text = f"{keyword} {fill * size}" if fill else (f"{keyword} " * (4 * size // (len(keyword) + 1) + 1))[:4 * size]
            t = time.thread_time()
            scan_secrets(text)
            scan_commands(text)
            worst.append(((time.thread_time() - t) * 1000, keyword, fill))
    worst.sort(reverse=True)
    print(f"  hostile answers ({len(worst)}: every keyword + {size:,} x one character, or repeated): slowest scans "
          + ", ".join(f"{ms:.0f} ms ({kw!r} + {fill!r})" if fill else f"{ms:.0f} ms ({kw!r} repeated)"
                      for ms, kw, fill in worst[:3]))
