"""Process manager for the load benchmarks: the servers, workers and bot processes of one run, their logs, CPU and
memory, and the SQL statements they execute.

    python benchmarks/stack.py _serve celery -Q celery,generation --pool=solo   # one role (internal)

``Stack`` starts child processes (``python SCRIPT ROLE ...``, or ``python -m config.serve ...`` for the ASGI
servers: ``asgi_server``) with a log each and stops them in reverse order; ``Sampler`` samples the CPU seconds and
RSS of their process trees (a server's workers included); ``serve`` runs the ``celery`` role (a worker with a
query counter; the ASGI workers count theirs in ``benchmarks/counted_asgi.py``);
``run_bot_processes`` starts a benchmark's bot processes from spec files and ``wait_for_bots`` waits for them,
measuring their CPU. ``create_database``/``drop_database`` give each benchmark a fresh PostgreSQL database.
"""
from __future__ import annotations

import collections
import json
import os
import resource
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUERY_KEY = "loadbench:queries:"


def raise_fd_limit() -> int:
    """Thousands of sockets per process: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- server side: query counting inside daphne and the Celery worker ----------------------------
def install_query_counter(redis_url: str, name: str) -> None:
    """Count every SQL statement this process executes; publish the count to Redis twice a second."""
    from django.db.backends.signals import connection_created

    count = [0]
    lock = threading.Lock()
    kinds = collections.Counter()

    def counting(execute, sql, params, many, context):
        with lock:
            count[0] += 1
            if os.environ.get("LOAD_SQL_LOG"):
                kinds[sql[:160]] += 1
        return execute(sql, params, many, context)

    def on_connection(sender, connection, **kwargs):
        if counting not in connection.execute_wrappers:
            connection.execute_wrappers.append(counting)

    connection_created.connect(on_connection, weak=False)

    def payload() -> int:
        if os.environ.get("LOAD_SQL_LOG"):
            Path(os.environ["LOAD_SQL_LOG"] + f".{name}.{os.getpid()}").write_text(
                "\n".join(f"{v} {k}" for k, v in kinds.most_common()))
        return count[0]

    def reset() -> None:
        count[0] = 0
        kinds.clear()

    keep_publishing(redis_url, f"{QUERY_KEY}{name}", payload, reset=reset)


def keep_publishing(redis_url: str, key: str, payload, *, every: float = 0.5, reset=None, loops=()) -> None:
    """Set ``key:PID`` in Redis to ``payload()`` every ``every`` seconds from a daemon thread, with ``loops`` in
    threads of their own beside it. A server that imports the application and then forks its workers (granian)
    leaves the threads behind in the parent: each worker starts them again, after ``reset()``, and publishes
    its own figures under its own pid."""

    def publish():
        import redis

        client = redis.Redis.from_url(redis_url)
        while True:
            try:
                client.set(f"{key}:{os.getpid()}", payload(), ex=3600)
            except Exception:  # noqa: BLE001 - a missed publish is made up by the next one
                pass
            time.sleep(every)

    def start() -> None:
        for target in (publish, *loops):
            threading.Thread(target=target, daemon=True, name=f"loadbench-{target.__name__}").start()

    def in_forked_child() -> None:
        if reset is not None:
            reset()
        start()

    os.register_at_fork(after_in_child=in_forked_child)
    start()


def serve(role: str, args: list[str]) -> None:
    raise_fd_limit()
    if role == "celery":
        install_query_counter(os.environ["REDIS_URL"], "celery")
        import django

        from config.celery_app import app

        django.setup()
        install_push_tracer(os.environ["REDIS_URL"], "celery")
        app.worker_main(["worker", *args])
    else:
        raise SystemExit(f"unknown role {role}")


GC_KEY = "loadbench:gc:"


def install_gc_recorder(redis_url: str, name: str) -> None:
    """Time this process's garbage collections (a full one holds the GIL while it walks the whole heap, so every
    socket of the process waits); publish the figures to Redis twice a second for ``read_gc``."""
    import gc
    import json

    stats: dict = {}
    started = [0.0]

    def timing(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
            return
        pause, generation = time.perf_counter() - started[0], info["generation"]
        stats["collections"][generation] += 1
        stats["pause_s"][generation] += pause
        stats["max_pause_ms"][generation] = max(stats["max_pause_ms"][generation], 1000 * pause)
        stats["pauses_over_100ms"] += pause > 0.1

    def reset() -> None:
        stats.update(collections=[0, 0, 0], pause_s=[0.0, 0.0, 0.0], max_pause_ms=[0.0, 0.0, 0.0],
                     pauses_over_100ms=0)

    reset()
    gc.callbacks.append(timing)
    keep_publishing(redis_url, f"{GC_KEY}{name}", lambda: json.dumps(stats), reset=reset)


STALL_KEY = "loadbench:stalls:"
STALL_MS = 50.0


def install_stall_probe(redis_url: str, name: str) -> None:
    """A thread that asks for the GIL every 10 ms and notes, per wall-clock second, how late it got it when that
    was over STALL_MS: the seconds in which this process could not run Python (a long collection, one handler
    holding the GIL, the process starved of CPU). Published to Redis for ``read_stalls``."""
    import json

    late: dict[int, float] = {}

    def probe():
        expected = time.perf_counter() + 0.01
        while True:
            time.sleep(max(0.0, expected - time.perf_counter()))
            now = time.perf_counter()
            lateness_ms = 1000 * (now - expected)
            if lateness_ms > STALL_MS:
                second = int(time.time())
                late[second] = max(late.get(second, 0.0), lateness_ms)
            expected = now + 0.01

    keep_publishing(redis_url, f"{STALL_KEY}{name}",
                    lambda: json.dumps({str(k): round(v, 1) for k, v in sorted(late.items())[-2000:]}),
                    every=1.0, reset=late.clear, loops=(probe,))


def read_stalls(redis_url: str, role: str, since: float) -> list[list]:
    """[[seconds from ``since``, the worst lateness in ms over the processes of ``role``], ...] for every second
    in which a process of ``role`` got the GIL over STALL_MS late."""
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    keys = client.keys(f"{STALL_KEY}{role}*")
    worst: dict[int, float] = {}
    for value in (client.mget(keys) if keys else []):
        for second, ms in json.loads(value or "{}").items():
            if int(second) >= since:
                worst[int(second)] = max(worst.get(int(second), 0.0), ms)
    return [[round(second - since), ms] for second, ms in sorted(worst.items())]


def read_gc(redis_url: str, role: str) -> dict:
    """The garbage collections of every process of ``role`` since each started: per generation, how many and
    their total and longest pause; and how many paused over 100 ms."""
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    keys = client.keys(f"{GC_KEY}{role}*")
    per = [json.loads(v) for v in client.mget(keys) if v] if keys else []
    return {"processes": len(per),
            "collections": [sum(p["collections"][g] for p in per) for g in range(3)],
            "pause_s": [round(sum(p["pause_s"][g] for p in per), 2) for g in range(3)],
            "max_pause_ms": [round(max((p["max_pause_ms"][g] for p in per), default=0.0), 1) for g in range(3)],
            "pauses_over_100ms": sum(p["pauses_over_100ms"] for p in per)}


PUSH_KEY = "loadbench:push:"
PUSH_BUCKETS_MS = (0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000)
PUSH_STAGES = ("committed", "published", "received", "sent")


def install_push_tracer(redis_url: str, name: str) -> None:
    """Time each phase change's push along its path, from the group's ``phase_started_at`` (the server's clock,
    taken before the submission's lock and statements): ``committed`` when ``realtime._send`` starts (after the
    commit), ``published`` when its ``group_send`` returned, then per socket ``received`` when the consumer's
    ``state_changed`` got it and ``sent`` when the socket sent the snapshot that shows it (the bots time the
    arrival). The first two count the pushes of the transactions that changed the phase; the others the first
    sight of a (group, phase start) per socket. Histograms (PUSH_BUCKETS_MS), published to Redis every second
    for ``read_push_trace``."""
    import bisect
    import json
    from datetime import datetime

    hist = {stage: [0] * (len(PUSH_BUCKETS_MS) + 1) for stage in PUSH_STAGES}

    def record(stage: str, started_iso: str) -> None:
        delay_ms = 1000 * (time.time() - datetime.fromisoformat(started_iso).timestamp())
        hist[stage][bisect.bisect_left(PUSH_BUCKETS_MS, delay_ms)] += 1

    def reset() -> None:
        for counts in hist.values():
            counts[:] = [0] * len(counts)

    def patch() -> None:
        from deliberation import realtime, services

        # The phase changes made in this process: their key when the transaction pushes their state. A later
        # push of the same phase (another member's answer), perhaps first seen by another process, is not one.
        changes: dict[tuple, None] = {}
        changing = threading.local()
        touch, push_after_commit, send = services._touch, realtime.push_after_commit, realtime._send

        def traced_touch(group, *, shared=None, **fields):
            changing.now = "phase_started_at" in fields
            try:
                touch(group, shared=shared, **fields)
            finally:
                changing.now = False

        def traced_push_after_commit(*, states=(), joined=None, **kwargs):
            states = list(states)
            if getattr(changing, "now", False):
                changes.update(((x["id"], x["phase_started_at"]), None) for x in states)
            if joined is not None:  # a group formed: its first phase started
                changes[(joined["id"], joined["phase_started_at"])] = None
            push_after_commit(states=states, joined=joined, **kwargs)

        def traced_send(channel_groups):
            firsts = []
            for _, what in channel_groups:
                shared = what.get("group") if isinstance(what, dict) else None
                if shared and shared.get("phase_started_at"):
                    key = (shared["id"], shared["phase_started_at"])
                    if key in changes:
                        del changes[key]
                        firsts.append(shared["phase_started_at"])
                        record("committed", shared["phase_started_at"])
            send(channel_groups)
            for started in firsts:
                record("published", started)
            while len(changes) > 50_000:  # a change rolled back is never sent
                changes.pop(next(iter(changes)))

        services._touch, realtime.push_after_commit = traced_touch, traced_push_after_commit
        realtime._send = traced_send
        try:
            from deliberation.consumers import ParticipantConsumer as consumer
        except ImportError:  # the Celery worker has no consumers to trace
            return
        state_changed, send_json = consumer.state_changed, consumer.send_json

        async def traced_state_changed(self, event):
            shared = event.get("group")
            if shared and shared.get("phase_started_at"):
                mine = self.__dict__.setdefault("_traced", set())
                if ("r", shared["phase_started_at"]) not in mine:
                    mine.add(("r", shared["phase_started_at"]))
                    record("received", shared["phase_started_at"])
            await state_changed(self, event)

        async def traced_send_json(self, content):
            group = content.get("group") if content.get("type") == "snapshot" else None
            if group and group.get("phase_started_at"):
                mine = self.__dict__.setdefault("_traced", set())
                if ("r", group["phase_started_at"]) in mine and ("s", group["phase_started_at"]) not in mine:
                    mine.add(("s", group["phase_started_at"]))
                    record("sent", group["phase_started_at"])
            await send_json(self, content)

        consumer.state_changed, consumer.send_json = traced_state_changed, traced_send_json

    patch()  # Django is set up: the caller imported the application first
    keep_publishing(redis_url, f"{PUSH_KEY}{name}", lambda: json.dumps(hist), every=1.0, reset=reset)


def read_push_trace(redis_url: str) -> dict:
    """The push path of every traced process, merged: per stage, how many and p50/p99 in ms (a bucket's upper
    bound, PUSH_BUCKETS_MS)."""
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    keys = client.keys(f"{PUSH_KEY}*")
    merged = {stage: [0] * (len(PUSH_BUCKETS_MS) + 1) for stage in PUSH_STAGES}
    for value in (client.mget(keys) if keys else []):
        for stage, counts in json.loads(value or "{}").items():
            merged[stage] = [a + b for a, b in zip(merged[stage], counts)]

    def quantile(counts, q):
        total, running = sum(counts), 0
        for i, c in enumerate(counts):
            running += c
            if total and running >= q * total:
                return PUSH_BUCKETS_MS[i] if i < len(PUSH_BUCKETS_MS) else None
        return None

    return {stage: {"count": sum(c), "p50_ms_at_most": quantile(c, 0.5), "p99_ms_at_most": quantile(c, 0.99)}
            for stage, c in merged.items()}


def read_query_count(redis_url: str, role: str = "") -> int:
    """SQL statements counted so far by every process (or every process of ``role``: "asgi", "celery")."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = client.keys(f"{QUERY_KEY}{role}*")
    return sum(int(v) for v in client.mget(keys) if v) if keys else 0


# --- process bookkeeping ------------------------------------------------------------------------
class Sampler:
    """CPU seconds and RSS of named processes, sampled every second in a thread."""

    def __init__(self, procs: dict[str, list[int]]):
        import psutil

        self.roots = {role: [psutil.Process(pid) for pid in pids] for role, pids in procs.items()}
        self.peak_rss: dict[str, int] = {role: 0 for role in procs}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def tree(self, role: str) -> list:
        """The role's processes and their children (a server's workers), as they are now."""
        found = []
        for root in self.roots.get(role, []):
            try:
                found += [root, *root.children(recursive=True)]
            except Exception:  # noqa: BLE001 - an exited process has no children
                pass
        return found

    def rss(self, role: str) -> int:
        total = 0
        for p in self.tree(role):
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - an exited process has no memory
                pass
        return total

    def cpu(self, role: str) -> float:
        total = 0.0
        for p in self.tree(role):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:  # noqa: BLE001
                pass
        return total

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            for role in self.roots:
                self.peak_rss[role] = max(self.peak_rss[role], self.rss(role))

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class DatabaseFloor:
    """What the database alone costs under the run's load, probed from a connection of its own every ``every``
    seconds: one round trip (``SELECT 1``) and the smallest transaction a phase-changing submission could be
    (lock a row, insert an answer, update the row, commit: four statements, as few as any design that pushes only
    committed state needs). Its p99 is a floor under the production push latency that no server change removes;
    the raw consumer has no database."""

    STATEMENTS = (
        "SELECT n FROM benchmark_floor WHERE id = 1 FOR UPDATE",
        "INSERT INTO benchmark_floor_rows (payload) VALUES ('{}')",
        "UPDATE benchmark_floor SET n = n + 1 WHERE id = 1",
    )

    def __init__(self, db_url: str, every: float = 0.25):
        import psycopg

        self.every = every
        self.round_trip: list[float] = []
        self.transaction: list[float] = []
        self.failures = 0
        self.conn = psycopg.connect(db_url, connect_timeout=10)
        with self.conn.transaction():
            self.conn.execute("CREATE TABLE IF NOT EXISTS benchmark_floor (id int PRIMARY KEY, n bigint NOT NULL)")
            self.conn.execute("CREATE TABLE IF NOT EXISTS benchmark_floor_rows "
                              "(id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
            self.conn.execute("INSERT INTO benchmark_floor VALUES (1, 0) ON CONFLICT DO NOTHING")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            try:
                t0 = time.perf_counter()
                self.conn.execute("SELECT 1").fetchone()
                t1 = time.perf_counter()
                with self.conn.transaction():
                    for statement in self.STATEMENTS:
                        self.conn.execute(statement)
                t2 = time.perf_counter()
            except Exception:  # noqa: BLE001 - a failed probe is counted, not raised into the run
                self.failures += 1
                continue
            self.round_trip.append(t1 - t0)
            self.transaction.append(t2 - t1)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> dict:
        """The probes' latencies in seconds (load.py's ``latency_summary`` makes them p50/p99 ms)."""
        self.stop.set()
        self.thread.join(timeout=10)
        self.conn.close()
        return {"round_trip": self.round_trip, "transaction": self.transaction, "failures": self.failures}


class Stack:
    """Child processes with logs; terminated in reverse order on exit."""

    def __init__(self, log_dir: Path, env: dict, script: Path | None = None):
        self.log_dir = log_dir
        self.env = env
        self.script = script or Path(__file__).resolve()  # whose ``_ROLE`` entry points the children run
        self.procs: list[tuple[str, subprocess.Popen, object]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], *, module: str | None = None) -> subprocess.Popen:
        """``python SCRIPT *args``, or ``python -m MODULE *args``."""
        log = open(self.log_dir / f"{name}.log", "w")
        command = [sys.executable, *(["-m", module] if module else [str(self.script)]), *args]
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc, log))
        return proc

    def log_text(self, prefix: str) -> str:
        return "".join((self.log_dir / f"{name}.log").read_text(errors="replace")
                       for name, _, _ in self.procs if name.startswith(prefix))

    def close(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc, log in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def asgi_server(stack: Stack, name: str, *, server: str, workers: int, port: int, application: str,
                timeout: float = 120.0) -> subprocess.Popen:
    """``python -m config.serve --server S --workers W`` on ONE port, waited for until every worker is up."""
    from tests.waiting import wait_for, wait_port

    proc = stack.start(name, ["--server", server, "--workers", str(workers), "-b", "127.0.0.1", "-p", str(port),
                              application], module="config.serve")
    log = stack.log_dir / f"{name}.log"
    wait_port(port, proc, log, timeout=timeout)
    # A supervisor and W workers, or one process (granian always forks its workers).
    least = 1 if (workers == 1 and server != "granian") else workers + 1
    sampler = Sampler({"server": [proc.pid]})
    wait_for(lambda: len(sampler.tree("server")) >= least, 60, f"{workers} {server} workers", proc=proc, log=log)
    time.sleep(2.0 if least > 1 else 0.5)  # the late workers finish importing the application
    return proc


def server_env(db_url: str, redis_url: str) -> dict:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production", "DATABASE_URL": db_url,
            "REDIS_URL": redis_url, "SECRET_KEY": "load-benchmark-" + secrets.token_hex(8),
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "HTTPS": "false", "JOIN_RATE_LIMIT": "0", "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_bot_processes(stack: Stack, kind: str, n: int, bot_procs: int, base: dict, work: Path) -> list[tuple]:
    """``bot_procs`` processes (``SCRIPT _bots SPEC``), bot ``i`` in process ``i % bot_procs``; each writes its
    result to the spec's ``out`` file. Returns ``[(process, out path)]``."""
    procs = []
    for b in range(bot_procs):
        indices = [i for i in range(n) if i % bot_procs == b]
        spec = {**base, "kind": kind, "indices": indices, "out": str(work / f"{kind}-bots-{b}.json"),
                "stagger": base["stagger"] * bot_procs}
        spec_path = work / f"{kind}-bots-{b}.spec.json"
        spec_path.write_text(json.dumps(spec))
        procs.append((stack.start(f"{kind}-bots-{b}", ["_bots", str(spec_path)]), Path(spec["out"])))
    return procs


def over_capacity_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if "over capacity" in line)

def wait_for_bots(bots: list[tuple], *, kill_at: float) -> float:
    """Wait until every bot process has exited (killed at ``kill_at``, epoch seconds); their CPU seconds in all."""
    import psutil

    handles = [psutil.Process(p.pid) for p, _ in bots]
    cpu = {h.pid: 0.0 for h in handles}
    while any(p.poll() is None for p, _ in bots):
        for h in handles:
            try:
                t = h.cpu_times()
                cpu[h.pid] = t.user + t.system
            except Exception:  # noqa: BLE001 - an exited process keeps its last sample
                pass
        if time.time() > kill_at:
            for p, _ in bots:
                p.kill()
        time.sleep(0.5)
    return sum(cpu.values())


def create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", [name])
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(__doc__)
