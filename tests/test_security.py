"""Security checks that run with the test suite: Django's deploy checklist and bandit.

Each runs the real tool in a subprocess. pip-audit is ``scripts/audit``: it needs vulnerability data
(PyPI's per-release JSON or osv.dev), which the build machines of this project cannot reach, and an
audit that checked nothing must not count as a pass (see docs/deployment.md).
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt", "requirements-models.txt")
# Known vulnerabilities accepted with a reason (pip-audit --ignore-vuln ID). Keep each one explained.
IGNORED_VULNS: dict[str, str] = {}


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "HSTS_", "HTTPS"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/deliberation",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
        "ALLOWED_HOSTS": "study.example.org",
    })
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_deploy_checklist_passes_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no issues" in output, output


def test_deploy_checklist_catches_a_weakened_configuration():
    """The check is live: turning HTTPS off brings the warnings back (so a pass above means something)."""
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(HTTPS="false"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in output, output


def test_bandit_finds_no_medium_or_high_issues():
    out = subprocess.run([str(BIN / "bandit"), "-c", "pyproject.toml", "-r", ".", "--severity-level", "medium",
                          "--confidence-level", "medium", "-q", "-f", "json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    scanned = {Path(name).parts[0] for name in report["metrics"] if name != "_totals"}
    assert {"deliberation", "participants", "generation", "analysis", "config"} <= scanned
    assert not any(part in (".venv", "tests") for part in scanned)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert not findings, "bandit:\n" + "\n".join(findings)
    assert not report["errors"], report["errors"]


ENV_FILES = (".env", "docker/.env", ".env.production", "deliberation/.env")


def test_env_files_are_ignored_by_git():
    """An .env holds SECRET_KEY and database passwords (docker/compose.yml reads one beside it): never committed."""
    result = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", *ENV_FILES], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[-1] for line in result.stdout.splitlines()] == list(ENV_FILES)


def test_env_files_are_kept_out_of_docker_images():
    """``COPY . .`` in docker/Dockerfile copies whatever .dockerignore lets through. Docker's ``**/`` matches any
    number of folders, none included (https://docs.docker.com/build/concepts/context/#dockerignore-files)."""
    import fnmatch

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(path, p) or (p.startswith("**/") and fnmatch.fnmatchcase(name, p[3:]))
                   for p in patterns if not p.startswith("!"))

    assert all(ignored(path) for path in ENV_FILES), patterns
    assert not ignored("config/settings/production.py") and not ignored("manage.py")
