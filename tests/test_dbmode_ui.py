"""LiteLLM's admin UI in a real browser (headless Chromium, Debian's package, driven by Playwright):
log in with the master key, create a key with an rpm limit and Carrot metadata through the UI's own
form, then use that key through the gateway. A screenshot of the keys page is kept as an artifact."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.dbmode_support import admin, chat, new_team
from tests.services import STATE_DIR

pytestmark = [pytest.mark.dbmode, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"  # scripts/setup_dbmode.sh installs it (Debian package)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
UI_TIMEOUT_MS = 120_000  # the UI's first load compiles a large bundle; generous under CPU load
ARTIFACTS = STATE_DIR / "artifacts"


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `bash scripts/setup_dbmode.sh` (Debian package chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        yield page
        browser.close()


def test_key_created_in_the_admin_ui_routes_and_limits(db_proxy, browser_page, fake_upstream, marker, tmp_path):
    page, alias = browser_page, f"ui-ci-{uuid.uuid4().hex[:8]}"
    team_alias = f"ui-team-{uuid.uuid4().hex[:8]}"
    team = new_team(db_proxy, team_alias=team_alias)

    page.goto(f"{db_proxy.base_url}/ui")
    page.fill("input[name=username]", "admin")  # UI_USERNAME's default; the master key is the password
    page.fill("input[name=password]", db_proxy.master_key)
    page.click("button[type=submit]")
    page.get_by_text("Virtual Keys").first.click()
    page.locator("button", has_text="Create New Key").click()
    page.fill("#team_id", team_alias)
    page.get_by_role("option").filter(has_text=team_alias).first.click()
    page.fill("#key_alias", alias)
    page.locator("button", has_text="Optional Settings").click()
    page.fill("#rpm_limit", "2")
    page.fill("#metadata", json.dumps({"task_type": "ci", "carrot_allowed_tasks": ["ci", "chat"]}))
    page.locator("button[type=submit]", has_text="Create Key").click()
    shown = page.get_by_text(re.compile(r"^sk-[A-Za-z0-9_-]{16,}$"))
    key = shown.first.inner_text().strip()

    info = admin(db_proxy, "GET", "/key/info", params={"key": key})["info"]
    assert (info["key_alias"], info["team_id"], info["rpm_limit"]) == (alias, team, 2)
    assert info["metadata"]["task_type"] == "ci"

    first = chat(db_proxy, key, marker)
    assert first.status_code == 200, first.text
    assert (first.headers["x-carrot-task-type"], first.headers["x-carrot-model"]) == ("ci", "ds-coder-6.7b")
    assert chat(db_proxy, key, marker, headers={"X-Task-Type": "refactor"}).status_code == 403
    assert chat(db_proxy, key, f"{marker}-2").status_code == 200
    limited = chat(db_proxy, key, f"{marker}-3")
    assert limited.status_code == 429 and "retry-after" in limited.headers, limited.text
    assert len(fake_upstream.find(marker)) == 2

    page.keyboard.press("Escape")
    page.reload()
    page.get_by_text(alias).first.wait_for()  # the keys page lists the new key
    shot = tmp_path / "ui-keys-page.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = shutil.copy(shot, ARTIFACTS / "dbmode-ui-keys-page.png")
    print(f"keys page screenshot: {kept}")
