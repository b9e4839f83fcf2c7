"""Production settings refuse to start without their required environment."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_check(env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL",
                                                             "ALLOWED_HOSTS", "DEBUG")}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", **env_extra})
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_production_refuses_to_start_without_required_values():
    result = run_check({})
    assert result.returncode != 0
    assert "SECRET_KEY, DATABASE_URL, REDIS_URL, ALLOWED_HOSTS" in result.stderr


def test_production_refuses_debug():
    result = run_check({"SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://postgres@127.0.0.1/deliberation",
                        "REDIS_URL": "redis://127.0.0.1:6379/0", "ALLOWED_HOSTS": "example.org", "DEBUG": "1"})
    assert result.returncode != 0 and "DEBUG must be off" in result.stderr


def test_production_starts_with_its_environment():
    result = run_check({"SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://postgres@127.0.0.1/deliberation",
                        "REDIS_URL": "redis://127.0.0.1:6379/0", "ALLOWED_HOSTS": "example.org"})
    assert result.returncode == 0, result.stderr
