"""Property: random valid Python/TypeScript/Go/Java snippets pass the PII stage byte-identical.

Snippets come from small per-language templates filled with random identifiers, type names,
numbers, slices, version strings, URLs with credentials, IPs and CIDRs in strings, address templates, and
comments/docstrings with capitalised words; tree-sitter checks each one parses. They are sent
bare, in a fence and between prose lines, as a user pastes code.
"""

from __future__ import annotations

import keyword

import pytest
import tree_sitter_go
import tree_sitter_java
import tree_sitter_python
import tree_sitter_typescript
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tree_sitter import Language, Parser

from carrot_hooks.config import load_model
from carrot_hooks.guardrails.pii import PiiRedactor, Vault
from carrot_hooks.guardrails.settings import GuardrailPolicy
from carrot_hooks.serve import ROOT

PARSERS = {
    "python": Parser(Language(tree_sitter_python.language())),
    "typescript": Parser(Language(tree_sitter_typescript.language_typescript())),
    "go": Parser(Language(tree_sitter_go.language())),
    "java": Parser(Language(tree_sitter_java.language())),
}
RESERVED = set(keyword.kwlist) | {"func", "var", "let", "const", "type", "interface", "package", "import", "new",
                                  "int", "string", "public", "private", "static", "final", "void", "map", "chan",
                                  "go", "range", "select", "default", "case", "switch", "this", "super", "function",
                                  "number", "boolean", "any", "of", "in", "delete", "typeof", "instanceof", "export",
                                  "enum", "struct", "defer", "fallthrough", "goto", "char", "long", "short", "byte",
                                  "float", "double", "true", "false", "null", "nil", "declare", "module", "namespace"}

ident = st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True).filter(lambda s: s not in RESERVED)
type_name = st.from_regex(r"[A-Z][a-z]{2,8}(?:[A-Z][a-z]{2,8})?", fullmatch=True)
small = st.integers(0, 255)
number = st.one_of(st.integers(0, 10**10).map(str), st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.3f}"))
string_body = st.one_of(
    st.builds("{}.{}.{}.{}".format, small, small, small, small),  # IPs, public or not
    st.builds("{}.{}.{}.0/{}".format, small, small, small, st.integers(8, 30)),  # CIDRs
    st.builds("v{}.{}.{}".format, small, small, small),  # versions
    st.builds("https://{}:{}@{}.example.com/{}".format, ident, ident, ident, ident),  # URLs with credentials
    st.builds("{}://{}:{}@{}:{}/".format, st.sampled_from(["postgres", "redis", "amqp", "mongodb"]), ident, ident,
              ident, st.integers(1, 65535)),
    st.builds("{} {} Section {}".format, st.sampled_from(["RFC", "ISO", "PEP"]), st.integers(1, 9999), small),
    st.builds("{} {}".format, type_name, type_name),  # capitalised words: "Module Request"
    st.builds("+{} {} {}".format, st.integers(1, 99), st.integers(100, 999), st.integers(1000, 9999)),  # phone-ish
)
comment = st.builds("{} {} {} {}".format, type_name, ident, type_name, string_body)


def _python(d) -> str:
    a, b, c = d(ident), d(ident), d(ident)
    return (
        f'"""{d(comment)}\n\n{d(type_name)} {d(type_name)} by {d(type_name)} {d(type_name)}.\n"""\n'
        f"import {a}\n\n{b.upper()} = [{d(number)}, {d(number)}]\n\n\n"
        f"class {d(type_name)}({d(type_name)}):\n    {c}: {d(type_name)} = {d(number)}\n\n"
        f"    def {a}(self, {b}: {d(type_name)}, {c}: str = {d(string_body)!r}) -> {d(type_name)}:\n"
        f'        """{d(comment)}"""\n'
        f"        # {d(comment)}\n"
        f'        tag = f"{{{b}}}-{d(ident)}@{d(ident)}.com"  # an address template, no address\n'
        f"        return {b}[::{d(st.integers(1, 9))}] + {b}[{d(st.integers(0, 9))}::{d(st.integers(1, 9))}]"
        f" + [{c}, {d(string_body)!r}, {d(number)}]\n"
    )


def _typescript(d) -> str:
    a, b, c = d(ident), d(ident), d(ident)
    return (
        f"/**\n * {d(comment)}\n * {d(type_name)} {d(type_name)}\n */\n"
        f"export interface {d(type_name)} {{\n  {a}: string;\n  {b}?: number;\n}}\n\n"
        f"const {c}: string = {d(string_body)!r};\n"
        f"// {d(comment)}\n"
        f"export function {a}({b}: {d(type_name)}, {c}: number = {d(number)}): number {{\n"
        f"  const items = [{d(number)}, {d(number)}].slice({d(small)}, {d(small)});\n"
        f"  const tag = `${{{b}}}-{d(ident)}@{d(ident)}.com`;\n"
        f"  return {c} * {d(number)} + items.length;\n}}\n"
    )


def _go(d) -> str:
    a, b, c = d(ident), d(ident), d(ident)
    return (
        f'package {a}\n\nimport "fmt"\n\n// {d(type_name)} {d(comment)}\n'
        f"type {d(type_name)} struct {{\n\t{d(type_name)} string `json:\"{b}\"`\n\t{c.capitalize()} int\n}}\n\n"
        f"func {d(type_name)}({b} []int, {c} string) string {{\n"
        f"\tpart := {b}[{d(small)}:{d(small)}]\n"
        f'\taddr := "{d(string_body)}"\n'
        f'\treturn fmt.Sprintf("%v %s %d", part, addr, {d(number).split(".")[0]})\n}}\n'
    )


def _java(d) -> str:
    a, b, c = d(ident), d(ident), d(ident)
    cls = d(type_name)
    return (
        f"/*\n * {d(comment)}\n */\npublic class {cls} {{\n"
        f'    private static final String {a.upper()} = "{d(string_body)}";\n'
        f"    // {d(comment)}\n"
        f"    public long {b}(int {c}, {d(type_name)} request) {{\n"
        f"        int[] values = {{{d(small)}, {d(small)}}};\n"
        f"        return {c} * {d(number).split('.')[0]}L + values[{d(st.integers(0, 1))}];\n    }}\n}}\n"
    )


BUILDERS = {"python": _python, "typescript": _typescript, "go": _go, "java": _java}
WRAPS = {
    "bare": "{code}",
    "fenced": "```{lang}\n{code}```\n",
    "in-prose": "Hi, my tests fail with this {lang} code:\n\n{code}\nCan you see why? Thanks.",
}


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor(load_model(ROOT / "policy" / "guardrails.yaml", GuardrailPolicy).pii)


@pytest.mark.parametrize("lang", sorted(BUILDERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), wrap=st.sampled_from(sorted(WRAPS)))
def test_random_valid_code_round_trips_byte_identical(redactor, lang, data, wrap):
    code = BUILDERS[lang](data.draw)
    tree = PARSERS[lang].parse(code.encode())
    assert not tree.root_node.has_error, f"generator produced invalid {lang}:\n{code}"
    text = WRAPS[wrap].format(code=code, lang=lang)
    assert redactor.redact(text, Vault())[0] == text
