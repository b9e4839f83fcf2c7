"""docker/compose.yml kept true without building images (they cannot be built here): it must give production
settings every variable they require, the proxy and TLS settings, one shared volume for every model folder,
health checks, the production ASGI server, GPU hosts for generation; and it must describe the topology
scripts/cluster runs (tests/cluster/), with the same settings, so the two cannot drift apart."""
from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys

import pytest
import yaml

from .e2e.stack import ROOT

COMPOSE = ROOT / "docker" / "compose.yml"
APP_SERVICES = ("migrate", "web", "worker", "generation", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("cluster_script", ROOT / "scripts" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def cluster_settings(cluster, tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("CLUSTER_STATE", str(tmp_path))  # secrets are made in a throwaway folder
    return cluster.production_settings()


def env_of(service: dict) -> dict:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def required_production_variables() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "config" / "settings" / "production.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "REQUIRED":
            return ast.literal_eval(node.value)
    raise AssertionError("config/settings/production.py has no REQUIRED tuple")


def model_folder_variables() -> set[str]:
    """Every *_DIR setting base.py reads from the environment, plus the Hugging Face cache."""
    text = (ROOT / "config" / "settings" / "base.py").read_text()
    return set(re.findall(r'os\.environ\.get\("([A-Z_]+_DIR)"', text)) | {"HF_HOME"}


def test_every_app_service_gets_what_production_settings_require(compose):
    required = required_production_variables()
    assert set(required) >= {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"}
    for name in APP_SERVICES:
        env = env_of(compose["services"][name])
        assert set(required) <= set(env), (name, set(required) - set(env))
        assert env["TRUSTED_PROXY_COUNT"] == "1", name
        assert env["HTTPS"] == "true", name  # secure cookies, HSTS, redirects
        assert env["CSRF_TRUSTED_ORIGINS"].startswith("${PUBLIC_ORIGIN"), name


def test_every_model_folder_is_on_one_shared_volume_seen_by_every_app_service(compose):
    folders = model_folder_variables()
    assert {"REWARD_MODELS_DIR", "GENERATOR_MODELS_DIR", "LEGIBILITY_VERIFIER_DIR"} <= folders
    for name in APP_SERVICES:
        service = compose["services"][name]
        env = env_of(service)
        mounts = dict(v.split(":")[:2][::-1] for v in service.get("volumes", []))  # container path -> volume
        for variable in folders:
            assert variable in env, (name, variable)
            mount = next((path for path in mounts if env[variable].startswith(path + "/")), None)
            assert mount is not None, f"{name}: {variable}={env[variable]} is on no mounted volume"
            assert mounts[mount] == "models", (name, variable, mounts[mount])
    assert "models" in compose["volumes"]


def test_health_checks_and_the_production_server(compose):
    services = compose["services"]
    for name in ("web", "worker", "generation", "postgres", "redis", "proxy"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    web = shlex.split(services["web"]["command"])
    assert web[:3] == ["python", "-m", "config.serve"] and "--proxy-headers" in web
    assert "healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert {"443:443"} <= set(services["proxy"]["ports"])
    nginx = (ROOT / "docker" / "nginx.conf").read_text()
    assert "listen 443 ssl" in nginx and "X-Forwarded-Proto https" in nginx
    assert "proxy_set_header X-Forwarded-For $remote_addr" in nginx  # replaced: no forged hops (TRUSTED_PROXY_COUNT=1)


def test_generation_workers_run_the_cuda_image_on_gpus_and_the_rest_need_no_cuda(compose):
    services = compose["services"]
    generation = services["generation"]
    assert generation["build"]["target"] == "gpu"
    devices = generation["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "-Q generation" in generation["command"]
    for name in ("migrate", "web", "worker", "beat"):
        assert services[name]["build"]["target"] == "cpu", name
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    stages = {stage: image for image, stage in re.findall(r"^FROM (\S+) AS (\w+)$", dockerfile, re.M)}
    assert stages["gpu"].startswith("nvidia/cuda:") and stages["cpu"].startswith("python:3.11")
    cpu_part = dockerfile.split("FROM python:3.11")[1].split(" AS gpu")[0]
    assert "download.pytorch.org/whl/cpu" in cpu_part and "cu1" not in cpu_part  # no CUDA download without a GPU
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert dockerfile.count(f'"torch=={pinned}"') == 2  # both images install the pinned version


def test_compose_and_the_namespace_cluster_describe_the_same_topology(compose, cluster, cluster_settings):
    services = compose["services"]
    # Every cluster host plays a compose service, and every long-running compose service is played by a host.
    assert set(cluster.ROLES) == {h.name for h in cluster.HOSTS}
    assert set(cluster.ROLES.values()) == set(services) - {"migrate"}
    for role in ("web", "generation"):
        hosts = [h for h, r in cluster.ROLES.items() if r == role]
        assert services[role]["deploy"]["replicas"] == len(hosts), role
    # The same production settings, by name, in both.
    for name in APP_SERVICES:
        assert set(env_of(services[name])) == set(cluster_settings), (
            name, set(env_of(services[name])) ^ set(cluster_settings))
    for name in ("TRUSTED_PROXY_COUNT", "HTTPS", "SECURE_REDIRECT_EXEMPT"):
        assert cluster_settings[name] == env_of(services["web"])[name], name
    # One shared models folder in the cluster too.
    roots = {str(cluster_settings[v]).rsplit("/", 1)[0] for v in model_folder_variables()}
    assert len(roots) == 1, roots


@pytest.mark.django_db
def test_healthz_reports_database_and_cache(client, monkeypatch):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"database": "ok", "cache": "ok"}

    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "set", broken)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["cache"] == "error: ConnectionError"
