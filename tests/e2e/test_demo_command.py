"""The README's demo command on the embedded default (SQLite, in-memory channel layer, in-process
worker), driven by three participants in headless Chromium from join link to completion code."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ..waiting import wait_until_serving
from .browser import chromium, critique, finish, join_and_consent, phone_pages, rate_everything, write_opinions
from .stack import ROOT, free_port

pytestmark = [pytest.mark.browser]


def test_demo_command_runs_a_whole_study_on_the_embedded_default(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "DEMO_ADMIN_PASSWORD": "demo-pass-123",
                "PYTHONUNBUFFERED": "1", "DELIBERATION_DEV": "1"})  # as scripts/demo runs it
    log = open(tmp_path / "demo.log", "w+")
    proc = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(port), "--backend", "extractive"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/", proc, tmp_path / "demo.log", timeout=60)
        printed = (tmp_path / "demo.log").read_text()
        assert f"{base}/s/demo/" in printed and "password: demo-pass-123" in printed
        assert re.search(r"sqlite3, in-process worker", printed)
        with chromium() as browser:
            pages = phone_pages(browser, 3)
            join_and_consent(pages, base, "demo")
            write_opinions(pages)
            for page in pages:
                rate_everything(page, agreement=5, quality=5)
            critique(pages)
            for page in pages:
                rate_everything(page, agreement=6, quality=6)
            assert finish(pages) == ["DEMO-DONE"] * 3
            admin = browser.new_page()
            admin.goto(f"{base}/admin/login/?next=/monitor/")
            admin.fill("#id_username", "admin")
            admin.fill("#id_password", "demo-pass-123")
            admin.click("input[type=submit]")
            admin.click("text=Demo: finding common ground")
            admin.wait_for_selector("#groups tr")
            assert "done (completed)" in admin.inner_text("#groups")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
