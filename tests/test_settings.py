"""Production settings refuse to start without their required environment; no process starts on settings it
was not told to use."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

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



def settings_in_subprocess(module: str, env_extra: dict, expression: str, asgi: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DB_POOL_MAX_SIZE", "CONN_MAX_AGE")}
    env.update({"DJANGO_SETTINGS_MODULE": module, "SECRET_KEY": "x" * 50, "REDIS_URL": "redis://127.0.0.1:6379/0",
                "ALLOWED_HOSTS": "example.org", **env_extra})
    code = ("import config.asgi; " if asgi else "") + f"from django.conf import settings; print({expression})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


DB = 'settings.DATABASES["default"]'
POOL = f'{DB}.get("OPTIONS", {{}}).get("pool"), {DB}["CONN_MAX_AGE"]'
PG = {"DATABASE_URL": "postgres://postgres@127.0.0.1/deliberation"}


@pytest.mark.slow  # starts the ASGI server
def test_the_asgi_server_reaches_postgres_through_a_bounded_pool():
    """Under ASGI each request and each socket call runs on a thread of its own; without a pool every one of
    them holds a connection (tests/faults/test_arrival_burst.py is the burst that ran PostgreSQL out)."""
    for module in ("config.settings.production", "config.settings.test"):
        got = settings_in_subprocess(module, PG, f'{POOL}, {DB}["CONN_HEALTH_CHECKS"]', asgi=True)
        assert got == "{'min_size': 2, 'max_size': 40, 'timeout': 30.0} 0 True", (module, got)
    assert settings_in_subprocess("config.settings.production", {**PG, "DB_POOL_MAX_SIZE": "24"},
                                  f'{DB}["OPTIONS"]["pool"]["max_size"]', asgi=True) == "24"
    # Turned off, production falls back to persistent connections (CONN_MAX_AGE, default 60 s).
    assert settings_in_subprocess("config.settings.production", {**PG, "DB_POOL_MAX_SIZE": "0"}, POOL,
                                  asgi=True) == "None 60"
    # SQLite (the demo) has no pool.
    assert settings_in_subprocess("config.settings.local", {"DATABASE_URL": "sqlite:///tmp-demo.sqlite3"},
                                  f'{DB}["OPTIONS"]', asgi=True) == "{'timeout': 30}"


def test_workers_and_commands_keep_one_connection_without_a_pool():
    """One connection per process there; a bad database URL fails at once instead of after the pool's wait."""
    assert settings_in_subprocess("config.settings.production", PG, POOL) == "None 60"
    assert settings_in_subprocess("config.settings.test", PG, POOL) == "None 0"


# --- no silent default settings (issue 15, item 9) ---------------------------------------------------------
def without_settings(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DELIBERATION_DEV")}
    env.update(extra)
    return env


def test_manage_py_refuses_to_start_without_an_explicit_settings_module():
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=without_settings(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "DJANGO_SETTINGS_MODULE is not set" in result.stderr and "DELIBERATION_DEV=1" in result.stderr
    assert "Traceback" not in result.stderr  # a clear message, not a stack trace
    assert "System check" not in result.stdout + result.stderr  # nothing ran


def test_the_asgi_app_and_the_celery_app_refuse_to_load_without_it():
    for command in ([sys.executable, "-c", "import config.asgi"],
                    [sys.executable, "-c", "from config.celery_app import app"],
                    [sys.executable, "-m", "celery", "-A", "config", "report"]):
        result = subprocess.run(command, cwd=ROOT, env=without_settings(), capture_output=True, text=True,
                                timeout=120)
        assert result.returncode != 0, command
        assert "DJANGO_SETTINGS_MODULE is not set" in result.stderr, (command, result.stderr[-2000:])


def test_the_development_marker_or_an_explicit_module_starts(tmp_path):
    dev = without_settings(DELIBERATION_DEV="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=dev, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    code = "import config.asgi; from django.conf import settings; print(settings.SETTINGS_MODULE)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dev, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "config.settings.local", result.stderr
    explicit = without_settings(DJANGO_SETTINGS_MODULE="config.settings.test")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=explicit, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "config.settings.test", result.stderr


def test_require_settings_module_rules():
    from config.environment import SettingsModuleMissing, require_settings_module

    assert require_settings_module({"DJANGO_SETTINGS_MODULE": "config.settings.production"}) == \
        "config.settings.production"
    environ = {"DELIBERATION_DEV": "1"}
    assert require_settings_module(environ) == "config.settings.local"
    assert environ["DJANGO_SETTINGS_MODULE"] == "config.settings.local"  # subprocesses inherit the choice
    for environ in ({}, {"DELIBERATION_DEV": "0"}, {"DELIBERATION_DEV": ""}, {"DJANGO_SETTINGS_MODULE": " "}):
        with pytest.raises(SettingsModuleMissing):
            require_settings_module(environ)


@pytest.mark.parametrize("choice, backend", [("", "channels_redis.pubsub.RedisPubSubChannelLayer"),
                                             ("core", "channels_redis.core.RedisChannelLayer")])
def test_the_channel_layer_is_redis_pub_sub_unless_core_is_chosen(choice, backend):
    env = {**PG, "CHANNEL_LAYER": choice} if choice else PG
    assert settings_in_subprocess("config.settings.production", env,
                                  'settings.CHANNEL_LAYERS["default"]["BACKEND"]') == backend


def test_an_unknown_channel_layer_is_refused_by_name(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from config.settings.base import redis_channel_layer

    monkeypatch.setenv("CHANNEL_LAYER", "kafka")
    with pytest.raises(ImproperlyConfigured, match="CHANNEL_LAYER must be pubsub or core, not 'kafka'"):
        redis_channel_layer("redis://127.0.0.1:6379/0")


@pytest.mark.slow  # imports the ASGI application
def test_the_asgi_application_sets_the_garbage_collector_for_many_sockets():
    """config.asgi freezes what the start loaded and collects the young generation every 50,000 allocations, so a
    full collection (which holds every socket of the process) comes seldom and walks only what the sockets made
    (docs/load.md, stop 27: 32 -> 12 full collections at N = 2,000, the longest 268 -> 79 ms)."""
    got = settings_in_subprocess("config.settings.production", PG,
                                 '__import__("gc").get_threshold(), __import__("gc").get_freeze_count() > 10_000',
                                 asgi=True)
    assert got == "(50000, 20, 10) True", got
