"""compose.yaml, .env.example, Dockerfile and the entrypoint, checked without a Docker engine.

Compose's `${VAR}` interpolation is re-implemented here (30 lines) because no maintained
Python package does it: docker-compose 1.x is end-of-life and drags in the Docker SDK.
The interpolated file is validated against the Compose Specification JSON schema that
check-jsonschema vendors.
"""

from __future__ import annotations

import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from dotenv import dotenv_values

from tests.deploy_support import dockerfile_instructions, image_env

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
LITELLM = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
ONE_SHOT = {"ollama-pull", "indexer"}  # jobs that run to completion: no health check, never restarted
SECRETS = {"LITELLM_MASTER_KEY": "sk-" + "0" * 48, "POSTGRES_PASSWORD": "pw", "GRAFANA_ADMIN_PASSWORD": "pw"}


class Unset(ValueError):
    """A `${VAR:?msg}` whose variable is missing."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose interpolation: $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, :+, +, $$, nesting."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            out.append(_resolve(text[i + 2 : j - 1], env))
            i = j
        elif m := re.compile(r"\$([A-Za-z_]\w*)").match(text, i):
            out.append(env.get(m[1], ""))
            i = m.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _resolve(expr: str, env: dict[str, str]) -> str:
    name, op, arg = re.fullmatch(r"([A-Za-z_]\w*)(?:(:?[-?+])(.*))?", expr, re.DOTALL).groups()
    present = (name in env and env[name] != "") if op and op.startswith(":") else name in env
    if op is None:
        return env.get(name, "")
    if op in ("-", ":-"):
        return env[name] if present else interpolate(arg, env)
    if op in ("?", ":?"):
        if not present:
            raise Unset(f"{name}: {arg}")
        return env[name]
    return interpolate(arg, env) if present else ""  # + and :+


def walk_strings(node):
    """Every string in a parsed YAML tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)


def map_strings(node, fn):
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, dict):
        return {k: map_strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [map_strings(v, fn) for v in node]
    return node


def referenced_vars(node) -> set[str]:
    """Names of every variable the compose file interpolates (including nested defaults)."""
    names = set()
    for s in walk_strings(node):
        names |= set(re.findall(r"\$\{?([A-Za-z_]\w*)", s.replace("$$", "")))
    return names


def documented_vars() -> set[str]:
    """Variables in .env.example, set (`VAR=`) or shown commented out (`#VAR=`)."""
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE, re.MULTILINE))


def example_env() -> dict[str, str]:
    return {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}


def rendered(extra: dict[str, str] | None = None) -> dict:
    return map_strings(COMPOSE, lambda s: interpolate(s, {**example_env(), **SECRETS, **(extra or {})}))


# ---------------------------------------------------------------- interpolation itself


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("$A-x", {"A": "1"}, "1-x"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:-${B:-x}y}", {}, "xy"),
        ("${A:+on}", {"A": "1"}, "on"),
        ("${A+on}", {}, ""),
        ("$${A}", {"A": "1"}, "${A}"),
    ],
)
def test_interpolation_follows_the_compose_spec(text, env, expected):
    assert interpolate(text, env) == expected


def test_required_secret_missing_is_an_error_naming_it():
    env = {**example_env(), **SECRETS}
    del env["LITELLM_MASTER_KEY"]
    with pytest.raises(Unset, match="LITELLM_MASTER_KEY: set LITELLM_MASTER_KEY in .env"):
        map_strings(COMPOSE, lambda s: interpolate(s, env))


# ---------------------------------------------------------------- compose.yaml


def test_compose_is_valid_against_the_compose_spec_schema():
    schema = get_builtin_schema("vendor.compose-spec")
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(rendered()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_every_interpolated_variable_is_documented_in_env_example():
    missing = referenced_vars(COMPOSE) - documented_vars()
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_the_stack_has_every_service_of_the_design():
    services = COMPOSE["services"]
    assert set(services) >= {"ollama", "ollama-pull", "vllm", "proxy", "redis", "postgres", "prometheus", "grafana"}
    assert services["vllm"]["profiles"] == ["gpu"]
    assert services["proxy"]["build"] == "."
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")


def test_every_long_running_service_has_a_health_check_and_one_shots_do_not_restart():
    for name, svc in COMPOSE["services"].items():
        if name in ONE_SHOT:
            assert svc["restart"] == "no", name
        else:
            assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
            assert svc["restart"] == "unless-stopped", name


def test_dependencies_exist_and_wait_for_health_only_where_there_is_one():
    services = COMPOSE["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert "gpu" not in services[dep].get("profiles", []), f"{name} would need --profile gpu"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s missing health check"


def test_named_volumes_are_declared_and_used_and_bind_mounts_exist():
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, svc in rendered()["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                used.add(source)
    assert used == declared


def test_proxy_gets_every_variable_its_config_and_hooks_read():
    from carrot_hooks.serve import DEFAULTS

    config_vars = set(re.findall(r"os\.environ/([A-Z_][A-Z0-9_]*)", (ROOT / "litellm_config.yaml").read_text()))
    proxy_env = set(COMPOSE["services"]["proxy"]["environment"])
    needed = (config_vars | set(DEFAULTS) | {"REDIS_URL", "PGVECTOR_URL", "DATABASE_URL"}) - {"LITELLM_LOG"}
    missing = needed - set(image_env()) - proxy_env
    assert not missing, f"proxy environment lacks {sorted(missing)}"
    assert needed | set(DEFAULTS) <= documented_vars()


def test_proxy_reaches_the_other_services_by_name():
    env = rendered()["services"]["proxy"]["environment"]
    assert env["OLLAMA_URL"] == "http://ollama:11434"
    assert env["VLLM_URL"] == "http://vllm:8000/v1"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["PGVECTOR_URL"] == "postgresql://carrot:pw@postgres:5432/carrot_rag"
    # unset DATABASE_URL -> compose's Postgres (DB-backed keys); empty -> master key only
    assert env["DATABASE_URL"] == "postgresql://carrot:pw@postgres:5432/litellm"
    assert rendered({"DATABASE_URL": ""})["services"]["proxy"]["environment"]["DATABASE_URL"] == ""


def test_pull_job_pulls_exactly_the_ollama_models_the_config_names():
    ollama_bases = {"os.environ/OLLAMA_URL", "os.environ/OLLAMA_V1_URL"}
    wanted = {
        m["litellm_params"]["model"].split("/", 1)[1]
        for m in LITELLM["model_list"]
        if m["litellm_params"].get("api_base") in ollama_bases
    }
    env = COMPOSE["services"]["ollama-pull"]["environment"]
    pulled = set(env["OLLAMA_MODELS_TO_PULL"].split())
    created = dict(pair.split("=", 1) for pair in env["OLLAMA_FIM_MODELS"].split())
    assert set(created.values()) <= pulled  # every FIM tag's base is pulled first
    assert (pulled - set(created.values())) | set(created) == wanted


def test_created_fim_tags_render_deepseek_fim_from_prompt_and_suffix():
    """Ollama answers `suffix` only for a template with .Suffix; ours puts DeepSeek's sentinels around it."""
    template = (ROOT / "deploy/ollama/deepseek-coder-fim.gotmpl").read_text()
    branch = template.split("{{- else }}")[0]
    assert branch.index("<｜fim▁begin｜>") < branch.index("{{ .Prompt }}") < branch.index("<｜fim▁hole｜>")
    assert branch.index("<｜fim▁hole｜>") < branch.index("{{ .Suffix }}") < branch.index("<｜fim▁end｜>")
    assert "{{ if .Suffix }}" in template.replace("{{- if", "{{ if")
    fim_models = {m["litellm_params"]["model"] for m in LITELLM["model_list"] if m["model_name"].endswith("-fim")
                  or "-fim@" in m["model_name"]}
    assert all("deepseek-coder-v2:" in m or "carrot-deepseek-coder-fim:" in m for m in fim_models)


def test_vllm_serves_the_name_the_config_asks_for():
    asked = {
        m["litellm_params"]["model"].removeprefix("hosted_vllm/")
        for m in LITELLM["model_list"]
        if m["litellm_params"].get("api_base") == "os.environ/VLLM_URL"
    }
    served = [a.split("=", 1)[1] for a in COMPOSE["services"]["vllm"]["command"] if a.startswith("--served-model-name=")]
    assert asked == set(served)


def test_postgres_init_creates_the_vector_store_database():
    init = (ROOT / "deploy/postgres/init.sql").read_text()
    assert "CREATE DATABASE carrot_rag" in init and "CREATE EXTENSION IF NOT EXISTS vector" in init
    assert rendered()["services"]["postgres"]["environment"]["POSTGRES_DB"] == "litellm"


# ---------------------------------------------------------------- Dockerfile and entrypoint


def test_image_sets_the_python_process_settings_make_run_sets():
    from carrot_hooks.serve import DEFAULTS

    process = {k: v for k, v in DEFAULTS.items() if k.startswith("PYTHON")}
    assert process, "serve.DEFAULTS has no Python process settings"
    image = image_env()
    assert {k: image.get(k) for k in process} == process


def test_dockerfile_builds_on_python_312_slim_and_copies_only_existing_paths():
    instr = dockerfile_instructions()
    assert instr[0] == ("FROM", "python:3.12-slim")
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")}
    for op, args in instr:
        if op == "COPY":
            *sources, _dest = [a for a in shlex.split(args) if not a.startswith("--")]
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such path"
                assert src.rstrip("/") not in ignored, f"COPY {src} is excluded by .dockerignore"


def test_dockerfile_copies_every_package_the_project_installs():
    """`pip install .` in the image builds the packages pyproject.toml lists from what was copied: a package
    left out is missing from the image (carrot_common was, and every import of the gateway failed)."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {src.rstrip("/") for op, args in dockerfile_instructions() if op == "COPY"
              for src in [a for a in shlex.split(args) if not a.startswith("--")][:-1]}
    assert {name.rstrip("*") for name in include} <= copied


def test_hadolint_passes_the_dockerfile():
    hadolint = Path(sys.executable).with_name("hadolint")
    out = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_shellcheck_passes_the_ops_scripts():
    shellcheck = Path(sys.executable).with_name("shellcheck")
    scripts = [str(ROOT / "scripts" / name)
               for name in ("docker-entrypoint.sh", "setup_ops.sh", "setup_dbmode.sh", "setup_real_model.sh")]
    out = subprocess.run([str(shellcheck), *scripts], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_health_check_and_entrypoint_run_the_proxy():
    instr = dict(dockerfile_instructions())
    assert "/health/liveliness" in instr["HEALTHCHECK"]
    assert instr["ENTRYPOINT"] == '["carrot-entrypoint"]'
    assert "LITELLM_MODE=PRODUCTION" in instr["ENV"]  # no .env loading inside the image
    script = ROOT / "scripts/docker-entrypoint.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    assert "exec litellm --config" in script.read_text()
    port = COMPOSE["services"]["proxy"]["ports"][0]
    assert port.endswith(":4000") and "4000" in instr["EXPOSE"]


def test_env_example_holds_no_real_secret():
    env = example_env()
    for name in SECRETS:
        assert env[name] == "", f"{name} must be empty in .env.example"
