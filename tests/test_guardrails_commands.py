"""Dangerous commands by technique class: recall per class on our own command sets, no finding on
everyday developer commands (table + generated), keywords inside every finding (the stream holdback
relies on them), and class blocks checked when the policy loads."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from carrot_hooks.config import ConfigError, load_model
from carrot_hooks.guardrails.output import OutputScanner
from carrot_hooks.guardrails.settings import GuardrailPolicy
from carrot_hooks.serve import ROOT

POLICY_FILE = ROOT / "policy" / "guardrails.yaml"
POLICY = load_model(POLICY_FILE, GuardrailPolicy)
SCANNER = OutputScanner(POLICY).commands
DATA = ROOT / "bench" / "data"
# The sets the rules were tuned on, with recall asserted here. commands_by_class_heldout.jsonl and ..._heldout3.jsonl
# were tuned on too, but each keeps one harmless row the policy flags by design (a cron job written to /etc/cron.d,
# a public key appended to authorized_keys); commands_by_class_heldout4.jsonl is the held-out one: bench/guardrails.py
# reports it, a test asserting recall on it would turn it into tuning data.
TUNED = ("commands_by_class.jsonl", "commands_by_class_markdown.jsonl", "commands_by_class_heldout2.jsonl")
ALL_SETS = (*TUNED, *(f"commands_by_class_heldout{n}.jsonl" for n in ("", "3", "4")))


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def test_every_row_names_its_class_and_source():
    for name in ALL_SETS:
        for row in rows(name):
            assert row["label"] in ("harmful", "harmless") and row["class"] and row["command"], row
            assert "GTFOBins" in row["source"] or "ATT&CK" in row["source"] or row["class"] == "everyday", row


@pytest.mark.parametrize("name", TUNED)
def test_recall_per_class_and_no_false_positive(name):
    found, total, false_pos = Counter(), Counter(), []
    for row in rows(name):
        hits = SCANNER.scan(row["command"])
        if row["label"] == "harmful":
            total[row["class"]] += 1
            found[row["class"]] += bool(hits)
        elif hits:
            false_pos.append((row["command"], [h.rule_id for h in hits]))
    assert len(total) >= 10 and all(n >= 5 for n in total.values()), total
    low = {c: f"{found[c]}/{n}" for c, n in total.items() if found[c] / n < 0.95}
    assert not low, low
    assert not false_pos


def test_every_finding_holds_one_of_its_rule_keywords():
    """The stream holds text back from a rule keyword on; a match without one could leak unheld."""
    keywords = {r.id: r.keywords for r in POLICY.commands.rules}
    for name in ALL_SETS:
        for row in rows(name):
            text = row["command"]
            for f in SCANNER.scan(text):
                span = text[f.start:f.end].lower()
                assert any(k in span for k in keywords[f.rule_id]), (f.rule_id, text)


EVERYDAY = [
    "git status", "git push origin main", "git push --force-with-lease origin feature/login", "git push -f origin fix/typo",
    "git -c core.sshCommand='ssh -i ~/.ssh/deploy_key' fetch", "GIT_SSH_COMMAND='ssh -p 2222' git pull",
    "docker build -t app:dev .", "docker run --rm -it python:3.11 bash", "docker exec -it db psql -U postgres",
    "docker compose exec web sh", "kubectl exec -it api-0 -- /bin/bash", "kubectl get pods -A", "kubectl apply -f k8s/",
    "kubectl run -it --rm debug --image=busybox --restart=Never -- sh", "pip install -r requirements.txt",
    "npm ci && npm run build", "make -j8 test", "pytest -q tests/", "find . -name '*.py' -not -path './.venv/*'",
    "find . -type f -name '*.sh' -exec chmod +x {} \\;", "tar -czf backup.tar.gz src/", "rsync -av -e 'ssh -p 2222' ./ web:/srv/app/",
    "ssh deploy@web01", "ssh -i ~/.ssh/id_rsa deploy@web01", "chmod 600 ~/.ssh/id_rsa ~/.ssh/authorized_keys",
    "sed -i 's/DEBUG = True/DEBUG = False/' settings.py", "rm -rf build/ node_modules", "rm -rf /var/lib/apt/lists/*",
    "curl -fsSL https://example.com/install.sh -o install.sh", "eval \"$(ssh-agent -s)\"", "eval \"$(direnv hook bash)\"",
    "source <(kubectl completion bash)", "#!/bin/bash\nset -euo pipefail\nmake test", "chsh -s /bin/zsh", "which bash",
    "sudo -u postgres psql", "exec $SHELL -l", "sh -c 'echo $HOME'", "bash scripts/release.sh 1.4.0", "crontab -l",
    "sudo systemctl restart nginx", "terraform plan -out tfplan", "kubectl delete pod api-7d9f8c-x2x",
    "echo 'export PATH=\"$HOME/.local/bin:$PATH\"' >> ~/.bashrc", "ln -sf /bin/bash /bin/sh", "nc -zv db.internal 5432",
    "ls *.md | xargs -I{} sh -c 'pandoc {} -o {}.html'", "timeout 30 pytest -x", "env | grep PYTHON",
]


@pytest.mark.parametrize("command", EVERYDAY)
def test_everyday_command_has_no_finding(command):
    assert SCANNER.scan(command) == []
    assert SCANNER.scan(f"Run:\n```bash\n{command}\n```\nthen check the logs.") == []


NAME = st.from_regex(r"[a-z][a-z0-9]{1,8}(?:[-_][a-z0-9]{1,6})?", fullmatch=True)
PATH = st.builds(lambda parts, ext: "/".join(parts) + ext, st.lists(NAME, min_size=1, max_size=3),
                 st.sampled_from(["", ".py", ".ts", ".go", ".yaml", ".json", ".md", "/"]))
BRANCH = st.builds(lambda a, b: f"{a}/{b}", st.sampled_from(["feature", "fix", "chore", "dev"]), NAME)
HOST = st.builds(lambda n, d: f"{n}.{d}", NAME, st.sampled_from(["internal", "example.com", "corp.local"]))
COMMAND = st.one_of(
    st.builds("git {} {}".format, st.sampled_from(["add", "diff", "log -p --", "checkout", "restore", "blame"]), PATH),
    st.builds("git push {} origin {}".format, st.sampled_from(["", "-u", "--force-with-lease", "-f", "--force"]), BRANCH),
    st.builds("git commit -m '{}: {}'".format, st.sampled_from(["fix", "feat", "docs"]), NAME),
    st.builds("docker build -t {}:{} {}".format, NAME, NAME, st.sampled_from([".", "-f Dockerfile.dev ."])),
    st.builds("docker run --rm -it -v \"$PWD\":/app {} {}".format, NAME, st.sampled_from(["bash", "sh", "/bin/sh", "pytest -q"])),
    st.builds("docker exec -it {} {}".format, NAME, st.sampled_from(["bash", "sh", "/bin/bash", "psql"])),
    st.builds("kubectl {} -n {}".format, st.sampled_from(["get pods", "get svc", "get deploy", "logs -f deploy/api",
                                                           "rollout status deploy/api", "apply -f k8s/"]), NAME),
    st.builds("kubectl exec -it {} -- {}".format, NAME, st.sampled_from(["sh", "/bin/sh", "bash", "env"])),
    st.builds("pip install {}=={}.{}".format, NAME, st.integers(0, 9), st.integers(0, 30)),
    st.builds("npm {} {}".format, st.sampled_from(["install", "install -D", "run", "uninstall"]), NAME),
    st.builds("make {}".format, st.sampled_from(["", "test", "lint", "-j4 build", "clean"])),
    st.builds("pytest {} -k {}".format, PATH, NAME),
    st.builds("find {} -name '*.{}' {}".format, st.sampled_from([".", "src", "~/projects", "/var/log"]), NAME,
              st.sampled_from(["", "-delete", "-exec rm {} +", "-mtime +7", "| xargs wc -l"])),
    st.builds("tar -czf {}.tar.gz {}".format, NAME, PATH),
    st.builds("rsync -av{} {} {}:{}".format, st.sampled_from(["", "z --delete", " -e ssh"]), PATH, HOST, PATH),
    st.builds("ssh {}@{} '{}'".format, NAME, HOST, st.sampled_from(["uptime", "sudo systemctl restart app", "df -h"])),
    st.builds("sed -i 's/{}/{}/g' {}".format, NAME, NAME, PATH),
    st.builds("rm -rf {}".format, st.sampled_from(["build/", "dist", "node_modules", ".venv", "/tmp/cache", "./target",
                                                   "~/.cache/pip", "__pycache__ .pytest_cache"])),
    st.builds("curl -fsSL https://{}/{} -o {}".format, HOST, PATH, NAME),
    st.builds("chmod {} {}".format, st.sampled_from(["+x", "644", "755", "600", "-R g+w"]), PATH),
)


@settings(max_examples=300, deadline=None)
@given(commands=st.lists(COMMAND, min_size=1, max_size=4), sep=st.sampled_from(["\n", " && ", "; "]),
       fenced=st.booleans())
def test_generated_developer_commands_have_no_finding(commands, sep, fenced):
    text = sep.join(commands)
    if fenced:
        text = f"Try this:\n```bash\n{text}\n```"
    assert SCANNER.scan(text) == [], text


def test_command_class_blocks_are_checked_at_load(tmp_path):
    raw = yaml.safe_load(POLICY_FILE.read_text())
    cls = raw["commands"]["classes"][0]
    cls["rules"][0]["id"] = "shell-" + cls["rules"][0]["id"]
    bad = tmp_path / "guardrails.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_model(bad, GuardrailPolicy)
    assert "commands.classes.0" in str(err.value) and cls["prefix"] in str(err.value)
