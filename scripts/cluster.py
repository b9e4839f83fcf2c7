"""A production cluster on one machine: each host a Linux network namespace on a private bridge.

    scripts/cluster up        create the bridge, the namespaces and start every service (idempotent)
    scripts/cluster status    which hosts and services are up (exit 1 if any is down)
    scripts/cluster down      stop everything, remove the namespaces, the bridge and the state folder
    scripts/cluster env       the settings a client (bots, tests) needs: the proxy's URL and CA file, the database
    scripts/cluster manage ARGS...      a management command against the cluster (migrate, createsuperuser, ...)
    scripts/cluster kill SERVICE        SIGKILL a service's processes (a failover drill); `up` starts it again
    scripts/cluster restart SERVICE     stop and start one service (postgres, redis, web-1, ..., proxy)
    scripts/cluster cut HOST SECONDS    cut a host's only link for SECONDS, then restore it

Hosts (addresses on ``CLUSTER_SUBNET``, default 10.213.0.0/24; the machine itself is .1 on the bridge):

    proxy .2         nginx, terminating TLS (a self-signed certificate made at ``up``) on 443
    web-1 .11        the production ASGI server (``python -m config.serve``), production settings
    web-2 .12        the same
    worker .21       Celery worker, queue ``celery``
    generation-1 .31 Celery worker, queue ``generation``
    generation-2 .32 the same
    beat .41         Celery beat
    db .51           PostgreSQL (its own data folder, password auth)
    redis .52        Redis (channel layer, cache, broker)

Each namespace has only its loopback and one link to the bridge, and no default route: a host reaches the others
on the bridge and nothing else. Clients (the bots) reach the study only through the proxy's address. Every model
folder (``REWARD_MODELS_DIR``, ``LEGIBILITY_VERIFIER_DIR``, ``GENERATOR_MODELS_DIR``, the Hugging Face cache
``HF_HOME``) is in one shared folder, as the compose file mounts one shared volume.

State (logs, certificate, the database files, pid files) lives in ``CLUSTER_STATE`` (default: a folder
``deliberation-cluster`` in the system's temporary directory). A second cluster beside the first:
``CLUSTER_NAME=dlb CLUSTER_SUBNET=10.213.1.0/24 scripts/cluster up`` (its own bridge, namespaces and state).
Needs root (namespaces, nginx, PostgreSQL's own user); installs Debian nginx if it is missing.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
# CLUSTER_NAME (default dlc) names the bridge (NAME0), the namespaces (NAME-host) and the links (NAMEv-host), so
# a second cluster can run beside the first with its own CLUSTER_NAME, CLUSTER_SUBNET and state folder.
NAME = os.environ.get("CLUSTER_NAME", "dlc")
if not re.fullmatch(r"[a-z][a-z0-9]{0,3}", NAME):
    raise SystemExit(f"cluster: CLUSTER_NAME must be 1-4 lowercase letters or digits, starting with a letter: {NAME!r}")
BRIDGE = f"{NAME}0"
PREFIX = f"{NAME}-"  # namespace names
VETH = f"{NAME}v-"  # the bridge side of each host's link


@dataclass(frozen=True)
class Host:
    name: str  # namespace is PREFIX + name
    short: str  # veth name part (interface names are at most 15 characters)
    octet: int


HOSTS = (
    Host("proxy", "px", 2), Host("web-1", "w1", 11), Host("web-2", "w2", 12), Host("worker", "wk", 21),
    Host("generation-1", "g1", 31), Host("generation-2", "g2", 32), Host("beat", "bt", 41), Host("db", "db", 51),
    Host("redis", "rd", 52),
)
BY_NAME = {h.name: h for h in HOSTS}
WEB_HOSTS = ("web-1", "web-2")
WEB_PORT = 8000


def subnet() -> ipaddress.IPv4Network:
    return ipaddress.ip_network(os.environ.get("CLUSTER_SUBNET", "10.213.0.0/24"))


def address(host: str) -> str:
    return str(subnet().network_address + BY_NAME[host].octet)


def bridge_address() -> str:
    return str(subnet().network_address + 1)


def state_dir() -> Path:
    default = "deliberation-cluster" + ("" if NAME == "dlc" else f"-{NAME}")
    return Path(os.environ.get("CLUSTER_STATE", Path(tempfile.gettempdir()) / default))


def namespace(host: str) -> str:
    return PREFIX + host


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode:
        raise SystemExit(f"cluster: {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def namespaces() -> set[str]:
    out = sh("ip", "-json", "netns", "list", check=False).stdout.strip()
    return {n["name"] for n in json.loads(out or "[]")}


def link_exists(name: str) -> bool:
    return sh("ip", "link", "show", name, check=False).returncode == 0


# --- network ------------------------------------------------------------------------------------------------
def network_up() -> None:
    net = subnet()
    if not link_exists(BRIDGE):
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{bridge_address()}/{net.prefixlen}", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    existing = namespaces()
    for host in HOSTS:
        ns, outside = namespace(host.name), f"{VETH}{host.short}"
        if ns not in existing:
            sh("ip", "netns", "add", ns)
        if not link_exists(outside):
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", outside, "master", BRIDGE)
            sh("ip", "-n", ns, "addr", "add", f"{address(host.name)}/{net.prefixlen}", "dev", "eth0")
        sh("ip", "link", "set", outside, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")


def network_down() -> None:
    existing = namespaces()
    for host in HOSTS:
        if namespace(host.name) in existing:
            sh("ip", "netns", "del", namespace(host.name), check=False)
        if link_exists(f"{VETH}{host.short}"):
            sh("ip", "link", "del", f"{VETH}{host.short}", check=False)
    if link_exists(BRIDGE):
        sh("ip", "link", "del", BRIDGE, check=False)


def link(host: str, up: bool) -> None:
    """Cut or restore a host's only link (the redis outage test)."""
    sh("ip", "link", "set", f"{VETH}{BY_NAME[host].short}", "up" if up else "down")


# --- processes ----------------------------------------------------------------------------------------------
def pid_file(service: str) -> Path:
    return state_dir() / "run" / f"{service}.pid"


def alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie is dead: this machine's PID 1 (a container's) may never reap the
    orphans of an earlier ``scripts/cluster`` call, and ``kill(pid, 0)`` succeeds on a zombie."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def running(service: str) -> int | None:
    try:
        pid = int(pid_file(service).read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def start(service: str, host: str, argv: list[str], env: dict | None = None, user: str | None = None) -> int:
    """Start ``argv`` in ``host``'s namespace as a process-group leader, logging to state/logs/SERVICE.log."""
    if pid := running(service):
        return pid
    (state_dir() / "logs").mkdir(parents=True, exist_ok=True)
    (state_dir() / "run").mkdir(parents=True, exist_ok=True)
    prefix = ["ip", "netns", "exec", namespace(host)]
    if user:  # setpriv execs in place (runuser would fork): the pid held is the service's own, signals reach it
        prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    log = open(state_dir() / "logs" / f"{service}.log", "ab")
    proc = subprocess.Popen(prefix + argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                            start_new_session=True)
    pid_file(service).write_text(str(proc.pid))
    return proc.pid


# How each service is asked to stop: PostgreSQL's SIGTERM is a "smart" shutdown that waits for every client (the
# web hosts' pools never leave); SIGINT is the fast one an administrator's restart uses (pg_ctl -m fast).
STOP_SIGNALS = {"postgres": signal.SIGINT}


def stop(service: str, sig: int | None = None, wait: float = 15.0) -> None:
    sig = STOP_SIGNALS.get(service, signal.SIGTERM) if sig is None else sig
    pid = running(service)
    if pid is None:
        pid_file(service).unlink(missing_ok=True)
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and running(service):
        time.sleep(0.1)
    if running(service):
        os.killpg(pid, signal.SIGKILL)
    pid_file(service).unlink(missing_ok=True)


def wait_tcp(host_address: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host_address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"cluster: {what} did not listen on {host_address}:{port} within {timeout:.0f} s "
                     f"(logs in {state_dir() / 'logs'})")


# --- secrets, certificate -----------------------------------------------------------------------------------
def secret(name: str) -> str:
    path = state_dir() / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text()


def certificate() -> tuple[Path, Path]:
    tls = state_dir() / "tls"
    cert, key = tls / "proxy.crt", tls / "proxy.key"
    if not cert.exists():
        tls.mkdir(parents=True, exist_ok=True)
        proxy = address("proxy")
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={proxy}",
           "-addext", f"subjectAltName=IP:{proxy}", "-keyout", str(key), "-out", str(cert))
    return cert, key


def origin() -> str:
    return f"https://{address('proxy')}"


def database_url() -> str:
    return f"postgres://deliberation:{secret('db-password')}@{address('db')}:5432/deliberation"


def redis_url() -> str:
    return f"redis://{address('redis')}:6379/0"


# Host -> the docker/compose.yml service it plays (tests/test_compose.py keeps the two in step).
ROLES = {"proxy": "proxy", "web-1": "web", "web-2": "web", "worker": "worker", "generation-1": "generation",
         "generation-2": "generation", "beat": "beat", "db": "postgres", "redis": "redis"}


def production_settings() -> dict:
    """The production settings the cluster gives every app host: the same names docker/compose.yml sets."""
    models = state_dir() / "models"
    return {
        "SECRET_KEY": secret("django-secret-key"),
        "ALLOWED_HOSTS": address("proxy"),
        "CSRF_TRUSTED_ORIGINS": origin(),
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url(),
        "TRUSTED_PROXY_COUNT": "1",
        # Every bot reaches the proxy from the machine's one bridge address (as a lab behind one NAT would), so the
        # per-address join limit (production: 30 a minute) is raised; it stays on, counted in the cluster's Redis.
        "JOIN_RATE_LIMIT": os.environ.get("CLUSTER_JOIN_RATE_LIMIT", "100000"),
        "HTTPS": "true",
        "SECURE_REDIRECT_EXEMPT": "^healthz$",
        "REWARD_MODELS_DIR": str(models / "reward_models"),
        "GENERATOR_MODELS_DIR": str(models / "generator_models"),
        "LEGIBILITY_VERIFIER_DIR": str(models / "verifiers"),
        "HF_HOME": str(models / "cache"),
    }


def app_env() -> dict:
    """Production settings, unchanged, pointed at the cluster's hosts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DELIBERATION_", "DATABASE_",
                                                                     "REDIS_", "TEST_"))}
    env.update(production_settings())
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        # A task whose worker died is redelivered after this long (acks_late; the tasks are idempotent).
        "CELERY_VISIBILITY_TIMEOUT": os.environ.get("CLUSTER_VISIBILITY_TIMEOUT", "20"),
    })
    return env


# --- services -----------------------------------------------------------------------------------------------
def postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise SystemExit("cluster: PostgreSQL server binaries not found (apt-get install postgresql)")
    return versions[-1].parent


def db_up() -> None:
    data = state_dir() / "pgdata"
    bin_dir = postgres_bin()
    lock = data / "postmaster.pid"
    if lock.exists() and running("postgres") is None:
        # A postmaster that was killed leaves its lock; PostgreSQL refuses to start while the pid in it exists,
        # and a killed postmaster's pid can live on as a zombie nobody reaps.
        try:
            stale = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            stale = None
        if stale is None or not alive(stale):
            lock.unlink(missing_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        password = state_dir() / "secrets" / "db-password"
        secret("db-password")
        pwfile = state_dir() / "pgpass-init"
        pwfile.write_text(password.read_text())
        for path in (data, pwfile):
            shutil.chown(path, "postgres")
        sh("runuser", "-u", "postgres", "--", str(bin_dir / "initdb"), "-D", str(data), "-U", "deliberation",
           "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8")
        pwfile.unlink()
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {subnet()} scram-sha-256\n")
    start("postgres", "db", [str(bin_dir / "postgres"), "-D", str(data), "-c", f"listen_addresses={address('db')}",
                             "-c", "port=5432", "-c", f"unix_socket_directories={data}", "-c", "max_connections=200",
                             "-c", "fsync=off"], user="postgres")
    wait_tcp(address("db"), 5432, 60, "PostgreSQL")
    # The database itself (initdb made only the role); createdb is idempotent through the check.
    deadline = time.monotonic() + 30
    while True:
        exists = sh("ip", "netns", "exec", namespace("db"), "runuser", "-u", "postgres", "--",
                    str(bin_dir / "psql"), "-h", str(data), "-U", "deliberation", "-d", "postgres", "-tAc",
                    "SELECT 1 FROM pg_database WHERE datname='deliberation'", check=False)
        if exists.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster: PostgreSQL did not accept connections: {exists.stderr.strip()}")
        time.sleep(0.5)
    if exists.stdout.strip() != "1":
        sh("ip", "netns", "exec", namespace("db"), "runuser", "-u", "postgres", "--", str(bin_dir / "createdb"),
           "-h", str(data), "-U", "deliberation", "deliberation")


def redis_up() -> None:
    start("redis", "redis", ["redis-server", "--bind", address("redis"), "--port", "6379", "--save", "",
                             "--appendonly", "no", "--protected-mode", "no"])
    wait_tcp(address("redis"), 6379, 30, "Redis")


def code_fingerprint() -> str:
    """What migrate and collectstatic depend on: every migration and static file (path, size, mtime)."""
    import hashlib

    digest = hashlib.sha256()
    for pattern in ("*/migrations/*.py", "static/**/*"):
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and ".venv" not in path.parts:
                info = path.stat()
                digest.update(f"{path.relative_to(ROOT)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def manage(*args: str) -> None:
    """A management command from the machine itself (it reaches db and redis over the bridge)."""
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=app_env(), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"cluster: manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def web_up(host: str) -> None:
    workers = os.environ.get("CLUSTER_WEB_WORKERS", "2")  # the server's own workers on one port, as in compose
    start(host, host, [PYTHON, "-m", "config.serve", "-b", address(host), "-p", str(WEB_PORT), "--proxy-headers",
                       "--workers", workers], env=app_env())


def celery_up() -> None:
    celery = str(ROOT / ".venv" / "bin" / "celery")
    start("worker", "worker", [celery, "-A", "config", "worker", "-Q", "celery", "--concurrency", "1",
                               "-n", "worker@%h", "--loglevel", "INFO"], env=app_env())
    for host in ("generation-1", "generation-2"):
        start(host, host, [celery, "-A", "config", "worker", "-Q", "generation", "--concurrency", "1",
                           "--pool", "solo", "-n", f"{host}@%h", "--loglevel", "INFO"], env=app_env())
    start("beat", "beat", [celery, "-A", "config", "beat", "--loglevel", "INFO",
                           "-s", str(state_dir() / "run" / "celerybeat-schedule")], env=app_env())


NGINX = """\
# Made by scripts/cluster: TLS at the proxy, websockets and HTTP spread over both web hosts.
worker_processes 1;
daemon off;
pid {state}/run/nginx-master.pid;
error_log {state}/logs/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    # Which web host each websocket went to (upgrades only: one line per socket, not per request).
    map $http_upgrade $websocket {{ default 1; '' 0; }}
    log_format websockets '$msec $upstream_addr $request_uri $status';
    client_body_temp_path {state}/nginx/body;
    proxy_temp_path {state}/nginx/proxy;
    fastcgi_temp_path {state}/nginx/fastcgi;
    uwsgi_temp_path {state}/nginx/uwsgi;
    scgi_temp_path {state}/nginx/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream asgi {{
{upstreams}
        keepalive 32;
    }}
    server {{
        listen {proxy}:80;
        return 301 https://$host$request_uri;
    }}
    server {{
        listen {proxy}:443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 20m;
        location / {{
            access_log {state}/logs/websockets.log websockets if=$websocket;
            proxy_pass http://asgi;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;  # a client's own header is dropped, not appended to
            proxy_set_header X-Forwarded-Proto https;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_502;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


def nginx_conf() -> str:
    cert, key = certificate()
    upstreams = "\n".join(f"        server {address(h)}:{WEB_PORT} max_fails=1 fail_timeout=3s;" for h in WEB_HOSTS)
    return NGINX.format(state=state_dir(), upstreams=upstreams, proxy=address("proxy"), cert=cert, key=key)


def ensure_nginx() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        print("==> installing Debian nginx", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=True, capture_output=True, env=env)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return nginx


def proxy_up() -> None:
    nginx = ensure_nginx()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state_dir() / "nginx" / sub).mkdir(parents=True, exist_ok=True)
    conf = state_dir() / "nginx.conf"
    conf.write_text(nginx_conf())
    sh("ip", "netns", "exec", namespace("proxy"), nginx, "-t", "-q", "-c", str(conf), "-p", str(state_dir()))
    start("proxy", "proxy", [nginx, "-c", str(conf), "-p", str(state_dir())])
    wait_tcp(address("proxy"), 443, 30, "nginx")


SERVICES = ("postgres", "redis", "web-1", "web-2", "worker", "generation-1", "generation-2", "beat", "proxy")


def up(args) -> int:
    if os.geteuid() != 0:
        raise SystemExit("cluster: needs root (network namespaces, nginx, PostgreSQL's own user)")
    state_dir().mkdir(parents=True, exist_ok=True)
    network_up()
    db_up()
    redis_up()
    stamp = state_dir() / "run" / "schema-and-static"
    if not stamp.exists() or stamp.read_text() != code_fingerprint():  # `up` after a drill: nothing to redo
        manage("migrate", "--noinput")
        manage("collectstatic", "--noinput", "-v", "0")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(code_fingerprint())
    for host in WEB_HOSTS:
        web_up(host)
    for host in WEB_HOSTS:
        wait_tcp(address(host), WEB_PORT, 90, host)
    celery_up()
    proxy_up()
    print(f"cluster up: {origin()}/  (CA certificate {state_dir() / 'tls' / 'proxy.crt'})")
    return 0


def down(args) -> int:
    for service in reversed(SERVICES):
        stop(service)
    network_down()
    shutil.rmtree(state_dir(), ignore_errors=True)
    print("cluster down")
    return 0


def status(args) -> int:
    existing = namespaces()
    rows, ok = [], True
    for host in HOSTS:
        ns_ok = namespace(host.name) in existing
        service = {"db": "postgres", "redis": "redis"}.get(host.name, host.name)
        pid = running(service)
        ok = ok and ns_ok and pid is not None
        rows.append({"host": host.name, "address": address(host.name), "namespace": ns_ok, "pid": pid})
    if args.json:
        print(json.dumps({"up": ok, "origin": origin(), "hosts": rows}, indent=2))
    else:
        for row in rows:
            state = "up" if row["namespace"] and row["pid"] else "DOWN"
            print(f"{row['host']:<13} {row['address']:<15} {state:<5} pid {row['pid'] or '-'}")
    return 0 if ok else 1


def env_cmd(args) -> int:
    print(json.dumps({"origin": origin(), "ca_file": str(state_dir() / "tls" / "proxy.crt"),
                      "database_url": database_url(), "redis_url": redis_url(),
                      "addresses": {h.name: address(h.name) for h in HOSTS}, "state": str(state_dir())}, indent=2))
    return 0


STARTERS = {"postgres": db_up, "redis": redis_up, "web-1": lambda: web_up("web-1"), "web-2": lambda: web_up("web-2"),
            "worker": celery_up, "generation-1": celery_up, "generation-2": celery_up, "beat": celery_up,
            "proxy": proxy_up}


def kill_cmd(args) -> int:
    stop(args.service, signal.SIGKILL, wait=5)
    print(f"killed {args.service}")
    return 0


def restart_cmd(args) -> int:
    stop(args.service)
    STARTERS[args.service]()
    if args.service in WEB_HOSTS:
        wait_tcp(address(args.service), WEB_PORT, 90, args.service)
    print(f"restarted {args.service}")
    return 0


def cut_cmd(args) -> int:
    if args.seconds <= 0:
        raise SystemExit("cluster: SECONDS must be positive")
    link(args.host, up=False)
    try:
        time.sleep(args.seconds)
    finally:
        link(args.host, up=True)
    print(f"{args.host}: link cut for {args.seconds:g} s, restored")
    return 0


def manage_cmd(args) -> int:
    return subprocess.run([PYTHON, "manage.py", *args.args], cwd=ROOT, env=app_env()).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="create the hosts and start every service (idempotent)").set_defaults(run=up)
    sub.add_parser("down", help="stop and remove everything").set_defaults(run=down)
    st = sub.add_parser("status", help="which hosts and services are up")
    st.add_argument("--json", action="store_true", help="machine-readable")
    st.set_defaults(run=status)
    sub.add_parser("env", help="what a client needs (JSON)").set_defaults(run=env_cmd)
    mg = sub.add_parser("manage", help="a management command against the cluster")
    mg.add_argument("args", nargs=argparse.REMAINDER)
    mg.set_defaults(run=manage_cmd)
    kl = sub.add_parser("kill", help="SIGKILL one service")
    kl.add_argument("service", choices=SERVICES)
    kl.set_defaults(run=kill_cmd)
    rs = sub.add_parser("restart", help="stop and start one service")
    rs.add_argument("service", choices=SERVICES)
    rs.set_defaults(run=restart_cmd)
    ct = sub.add_parser("cut", help="cut a host's link for SECONDS")
    ct.add_argument("host", choices=[h.name for h in HOSTS])
    ct.add_argument("seconds", type=float)
    ct.set_defaults(run=cut_cmd)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
