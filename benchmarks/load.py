"""Load benchmark: N bots in groups of 5 against the production-style stack on this machine, at human or bot pace, and
the same N on a minimal Channels broadcast consumer pushing at the rate production pushed (the ceiling).

    .venv/bin/python benchmarks/load.py                          # human pace: N = 500, 1000, 2000 x 1 and 2 processes
    .venv/bin/python benchmarks/load.py --pace bot --n 100,500   # stress: bot pace, as a ratio to the raw consumer
    .venv/bin/python benchmarks/load.py --n 20 --procs 1 --pace human --phase-seconds 90   # a smoke run

Paces (``PACES``): ``human`` gives each bot 20-60 s per step, pings every 15 s and 2-5 drafts per text or rating (one
per typing pause, as static/js/participant.js sends them after its debounce) plus the draft the Submit button
sends; ``bot`` is the old fast pace (0.3-1 s per step, one draft), a stress figure. Every production run at a given N
and process count is followed by a raw-consumer run at the same N, processes and pace whose pushes per group per
second are the ones the production bots received (``push_period_s``), so the two rows compare like with like.

Stack per run (``benchmarks/stack.py`` starts and measures it): ``python -m config.serve --server S --workers
PROCS`` (config.serve's default server unless ``--server``; 1 or 2 worker processes on ONE port, so the bots use
one address), the Redis channel layer (production settings: pub/sub unless CHANNEL_LAYER=core), PostgreSQL (a
fresh benchmark database, dropped at the end) and a Celery worker with beat (the deadline sweeper) running the
``recorded`` generation backend, i.e. real SmolLM2 statements replayed, so generation time is not what is measured.
Bots are ``bots.client.Bot`` (the browser protocol), in 1-2 processes of their own; their CPU is measured too (per
message they send or receive).

Measured:
- latency from a phase change (``phase_started_at``, the server's clock; same machine) to the arrival of the
  pushed snapshot at each member; p50/p95/p99 over every (phase change, member) pair that arrived by push;
- pushes detected as missed: a ping whose version was stale, answered with a snapshot (the snapshot protocol's
  repair); ``--drop-share`` makes bots ignore that share of pushes on purpose, to prove the repair;
- messages/s received by the bots, errors (error replies, bot failures), reconnects;
- database queries per participant action: every SQL statement the server processes (the ASGI workers and the
  Celery worker) executed, counted by a Django ``execute_wrapper`` installed in those processes, divided by the
  bots' actions (drafts + submissions + pings) -- snapshots fanned out per push, the sweeper and generation
  included, because they are what an action costs;
- server CPU seconds and RSS growth per connection (psutil, sampled every second);
- lost state: at the end every group must be done, every participant completed, and every answer a bot got
  acknowledged must be in the database (opinion, critique, ratings per round);
- channels-redis "over capacity" log lines (dropped messages of the core layer, logged at INFO only);
- ``push_path``: each stage of a phase change's push inside the server (``benchmarks/stack.py``
  ``install_push_tracer``): from ``phase_started_at`` to the commit, to the channel layer's publish, to each
  socket's receipt of it and to the socket's send; histograms, so p50/p99 are bucket bounds.

Targets (issue 16; ``targets()``): at human pace, >= 2,000 participants on 2 processes with p99 <= 100 ms, no
errors, every group finished and nothing lost; at every N, production p99 <= 2x the raw consumer's p99; 2 processes
hold >= 1.5x the N of 1 process. At bot pace, N = 500: production p99 <= 5x the raw consumer's p99.

Writes benchmarks/results/load.json and .md (full runs only: pass ``--out`` elsewhere for a smoke run).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
for _path in (ROOT, BENCHMARKS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from stack import (  # noqa: E402 (the process manager: servers, bot processes, sampling, databases)
    GC_KEY,
    PUSH_KEY,
    QUERY_KEY,
    STALL_KEY,
    DatabaseFloor,
    Sampler,
    Stack,
    asgi_server,
    create_database,
    drop_database,
    over_capacity_lines,
    raise_fd_limit,
    read_gc,
    read_push_trace,
    read_query_count,
    read_stalls,
    run_bot_processes,
    serve,
    server_env,
    wait_for_bots,
)
from study import GROUP_SIZE, RESULT_MARK, make_study, verify_state  # noqa: E402 (the study: made, then checked)

from tests.e2e.stack import free_port  # noqa: E402

__all__ = ["raise_fd_limit"]  # tests/test_load_smoke.py uses it from here

RESULTS = ROOT / "benchmarks" / "results"
SCRIPT = Path(__file__).resolve()  # the bot and publisher processes run this file (``_bots``, ``_push``)
COUNTED_APPLICATION = "benchmarks.counted_asgi:application"  # config.asgi with its SQL statements counted
RAW_APPLICATION = "benchmarks.raw_consumer:application"
TARGET_P99_MS = 100.0


class Pace(NamedTuple):
    """How fast the bots move. ``think``: seconds per step (read, type, submit); ``typing_pauses``: drafts per text or
    rating (one per pause in typing, MIN..MAX); ``draft_on_submit``: the page's draft right before a submission.
    The rest are the defaults of the command line at this pace."""

    think: tuple[float, float]
    ping_seconds: float
    typing_pauses: tuple[int, int]
    draft_on_submit: bool
    phase_seconds: int  # input-phase deadline (a backstop: every bot answers well before it)
    timeout: float  # seconds the bots get to finish a deliberation
    raw_seconds: float  # measured seconds of each raw-consumer run
    ladder: tuple[int, ...]
    arrivals_per_second: float | None = None  # how fast people join; None: N in min(20, max(2, N/100)) s

    def ramp(self, n: int, arrivals_per_second: float | None = None) -> float:
        """Seconds over which the N bots join (evenly spread)."""
        rate = arrivals_per_second or self.arrivals_per_second
        return n / rate if rate else min(20.0, max(2.0, n / 100))

    def resolve(self, think: tuple[float, float] | None = None, ping_seconds: float | None = None,
                phase_seconds: int | None = None, timeout: float | None = None) -> tuple:
        """(think, ping_seconds, phase_seconds, timeout): the values given, the pace's where one is None."""
        return (tuple(think or self.think), ping_seconds or self.ping_seconds, phase_seconds or self.phase_seconds,
                timeout or self.timeout)


PACES = {
    "human": Pace(think=(20.0, 60.0), ping_seconds=15.0, typing_pauses=(2, 5), draft_on_submit=True,
                  phase_seconds=180, timeout=600.0, raw_seconds=60.0, ladder=(500, 1000, 2000),
                  # 600 joins a minute: a fast Prolific launch (the bot pace's 100 a second is a flash crowd)
                  arrivals_per_second=10.0),
    "bot": Pace(think=(0.3, 1.0), ping_seconds=15.0, typing_pauses=(1, 1), draft_on_submit=False,
                phase_seconds=30, timeout=75.0, raw_seconds=15.0, ladder=(100, 500)),
}


def default_server() -> str:
    """config.serve's default ASGI server (imported late: the config package wants a settings module chosen)."""
    from config.serve import DEFAULT_SERVER

    return DEFAULT_SERVER


# --- measures -----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"count": len(ms), **{f"p{q}_ms": (round(percentile(ms, q), 1) if ms else None) for q in (50, 95, 99)},
            "max_ms": round(max(ms), 1) if ms else None}



# --- bots (their own processes) -----------------------------------------------------------------
def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def make_timed_bot_class():
    from bots.client import Bot

    class TimedBot(Bot):
        """A protocol bot that times phase-change pushes and counts pushes repaired by a stale ping."""

        def __init__(self, *args, drop_share: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.drop_share = drop_share
            self.seen_phases: set[tuple] = set()
            self.latencies: list[float] = []  # phase change -> push arrival, seconds
            self.arrivals: list[float] = []  # when each of those pushes arrived (epoch seconds)
            self.by_phase: dict[str, list[float]] = {}  # the same, by the phase entered
            self.repair_latencies: list[float] = []  # phase change -> arrival via a stale ping's snapshot
            self.repaired = 0  # phase changes first seen after a dropped push (repaired by ping/next snapshot)
            self.stale_pings = 0
            self.missed = False
            self.dropped_on_purpose = 0
            self.received = 0
            self.pushes = 0  # snapshots that were not a new socket's first (pushes, or answers to stale pings)
            self.ping_outstanding = False
            self.sockets_seen = -1  # result.reconnects at the last message: a change means a fresh socket

        async def send(self, message, kind=None, key=None, rows=0):
            ref = await super().send(message, kind, key, rows)
            if message.get("type") == "ping":
                self.ping_outstanding = True
            return ref

        async def on_message(self, raw):
            arrived = time.time()
            self.received += 1
            try:
                message = json.loads(raw)  # parsed once: the bot's own handling below reuses it
            except ValueError:
                return
            kind = message.get("type")
            if kind == "pong":
                self.ping_outstanding = False
            if kind == "snapshot":
                first_on_socket = self.sockets_seen != self.result.reconnects  # the connect reply, not a push
                self.sockets_seen = self.result.reconnects
                if self.ping_outstanding:
                    self.stale_pings += 1  # the server answers a stale ping with a snapshot (or a push raced it)
                self.ping_outstanding = False
                if not first_on_socket and self.drop_share and self.rng.random() < self.drop_share:
                    self.dropped_on_purpose += 1  # as if the channel layer had dropped this push
                    self.missed = True
                    return
                group = message.get("group")
                if group and group.get("phase_started_at"):
                    key = (group["id"], group["phase"], group["phase_started_at"])
                    if key not in self.seen_phases:
                        self.seen_phases.add(key)
                        delay = arrived - _epoch(group["phase_started_at"])
                        if self.missed:  # this phase change's push was dropped: the snapshot protocol repaired it
                            self.repaired += 1
                            self.repair_latencies.append(delay)
                        elif not first_on_socket:
                            self.latencies.append(delay)
                            self.arrivals.append(arrived)
                            self.by_phase.setdefault(group["phase"], []).append(delay)
                self.missed = False
                if not first_on_socket:
                    self.pushes += 1
            await self.on_parsed(message)

    return TimedBot




async def _run_protocol_bots(spec: dict) -> dict:
    import httpx

    from bots.client import BotConfig
    from bots.sources import opinion_source

    TimedBot = make_timed_bot_class()
    config = BotConfig(server=spec["servers"][0], study=spec["study"], participants=len(spec["indices"]),
                       think=tuple(spec["think"]), ping_seconds=spec["ping_seconds"], timeout=spec["timeout"],
                       typing_pauses=tuple(spec["typing_pauses"]), draft_on_submit=spec["draft_on_submit"],
                       progress=False, rating_policy="random", seed=spec["seed"], ca_file=spec.get("ca_file", ""))
    source = opinion_source("question")
    tls = config.ssl_context()  # one for the process (building one loads the CA bundle: ~40 ms of CPU)
    tokens = spec.get("tokens")  # None: the bots join through the study's link, as people do (--target-study)
    bots = []

    async def join(_client):  # participants were created and consented by the benchmark
        return None

    async def one(order: int, index: int, client):
        await asyncio.sleep(spec["start_at"] - time.time() + order * spec["stagger"])
        rng = random.Random(f"{spec['seed']}:{index}")
        bot_config = BotConfig(**{**config.__dict__, "server": spec["servers"][index % len(spec["servers"])]})
        bot = TimedBot(index, bot_config, source, rng, spec["run_id"], drop_share=spec["drop_share"], tls=tls)
        if tokens is not None:
            bot.result.token = tokens[str(index)]
            bot.result.pid = spec["pids"][str(index)] if spec.get("pids") else bot.result.pid
            bot.join = join
        bots.append(bot)
        if client is None:  # a bot that joins keeps its own cookies (the consent form's CSRF and session)
            async with httpx.AsyncClient(follow_redirects=True, timeout=30, trust_env=False, verify=tls) as own:
                await bot.run(own)
        else:
            await bot.run(client)
        return bot

    # One HTTP client for the process where the bots skip the join (no cookies to keep) and only read their
    # completion page; a client per bot cost ~40 ms of CPU each just to load the CA bundle into its TLS context.
    if tokens is None:
        await asyncio.gather(*(one(order, index, None) for order, index in enumerate(spec["indices"])))
    else:
        async with httpx.AsyncClient(timeout=30, trust_env=False, verify=tls,
                                     limits=httpx.Limits(max_connections=64)) as client:
            await asyncio.gather(*(one(order, index, client) for order, index in enumerate(spec["indices"])))
    return {"bots": [{"index": b.index, "pid": b.result.pid, "token": b.result.token, "status": b.result.status,
                      "group_id": b.result.group_id, "writes": b.result.writes,
                      "reconnections": b.result.reconnections,
                      "failure": b.result.failure, "reconnects": b.result.reconnects,
                      "errors": dict(b.result.error_codes), "received": b.received, "pushes": b.pushes,
                      "snapshots": b.result.snapshots,
                      "actions": sum(k.sent for k in b.result.kinds.values()) + b.result.pongs + b.stale_pings,
                      "created": {k: {"created": v.created, "rows": v.rows, "sent": v.sent, "errors": v.errors}
                                  for k, v in b.result.kinds.items()},
                      "latencies": [round(x, 4) for x in b.latencies],
                      "arrivals": [round(x, 2) for x in b.arrivals],
                      "latencies_by_phase": {k: [round(x, 4) for x in v] for k, v in b.by_phase.items()},
                      "repair_latencies": [round(x, 4) for x in b.repair_latencies],
                      "repaired": b.repaired, "stale_pings": b.stale_pings,
                      "dropped_on_purpose": b.dropped_on_purpose} for b in bots]}



async def _run_raw_bots(spec: dict) -> dict:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    counts = {"received": 0, "lost": 0, "errors": 0, "reconnects": 0, "connected": 0}
    stop_at = spec["stop_at"]

    async def one(order: int, index: int):
        await asyncio.sleep(spec["start_at"] - time.time() + order * spec["stagger"])
        server = spec["servers"][index % len(spec["servers"])]
        url = server.replace("http://", "ws://") + f"/ws/raw/{index // GROUP_SIZE}/"
        last_seq = None
        try:
            async with connect(url, proxy=None, open_timeout=30, max_size=2 ** 20) as ws:
                counts["connected"] += 1
                while True:
                    left = stop_at - time.time()
                    if left <= 0:
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(), left)
                    except TimeoutError:
                        break
                    arrived = time.time()
                    message = json.loads(raw)
                    counts["received"] += 1
                    if message["sent_at"] >= spec["measure_from"]:
                        latencies.append(arrived - message["sent_at"])
                    if last_seq is not None and message["seq"] > last_seq + 1:
                        counts["lost"] += message["seq"] - last_seq - 1
                    last_seq = message["seq"]
        except Exception:  # noqa: BLE001 - counted, not raised
            counts["errors"] += 1

    await asyncio.gather(*(one(order, index) for order, index in enumerate(spec["indices"])))
    return {"latencies": [round(x, 4) for x in latencies], **counts}


def bots_main(spec_path: str) -> None:
    raise_fd_limit()
    spec = json.loads(Path(spec_path).read_text())
    import uvloop  # the servers' event loop (requirements.txt): a bot process's CPU is mostly event-loop work

    run = _run_raw_bots(spec) if spec["kind"] == "raw" else _run_protocol_bots(spec)
    if spec.get("profile_dir"):  # --profile-bots: where a bot process spends its CPU (cProfile, pstats files)
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(uvloop.run, run)
        profiler.dump_stats(Path(spec["profile_dir"]) / f"{Path(spec['out']).stem}.pstats")
    else:
        result = uvloop.run(run)
    Path(spec["out"]).write_text(json.dumps(result))


def push_main(spec_path: str) -> None:
    """The ceiling's publisher: one group_send per group every ``period`` seconds, groups evenly staggered."""
    spec = json.loads(Path(spec_path).read_text())
    from benchmarks.raw_consumer import configure, group_name

    configure(spec["redis_url"])
    from channels.layers import get_channel_layer

    async def run():
        layer = get_channel_layer()
        groups, period = spec["groups"], spec["period"]
        seq = 0
        start = spec["start_at"]
        await asyncio.sleep(max(0.0, start - time.time()))
        sends = 0
        while time.time() < spec["stop_at"]:
            seq += 1
            for g in range(groups):
                due = start + (seq - 1) * period + period * g / groups
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await layer.group_send(group_name(g), {"type": "bench.push", "seq": seq, "sent_at": time.time()})
                sends += 1
        Path(spec["out"]).write_text(json.dumps({"group_sends": sends, "rounds": seq}))

    asyncio.run(run())



def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def ramp_of(args, pace: str, n: int) -> float:
    """The join ramp of one run, in seconds: ``--arrivals-per-second`` or the pace's."""
    return PACES[pace].ramp(n, args.arrivals_per_second)


# --- one production run -------------------------------------------------------------------------
def run_production(n: int, procs: int, *, db_url: str, redis_url: str, work: Path, pace: str = "bot",
                   think: tuple[float, float] | None = None, ping_seconds: float | None = None,
                   phase_seconds: int | None = None, critique_round: bool = True, timeout: float | None = None,
                   drop_share: float = 0.0, bot_procs: int | None = None, ramp_seconds: float | None = None,
                   profile_dir: Path | None = None, server: str | None = None) -> dict:
    """N protocol bots through a whole deliberation on ``server`` with ``procs`` worker processes on one port;
    Django must already point at ``db_url``.
    ``pace`` (``PACES``) sets the bots' think times, pings, drafts, deadlines and time limit; the keyword
    arguments override single values (the tests run a toy deliberation in seconds)."""
    speed = PACES[pace]
    server = server or default_server()
    think, ping_seconds, phase_seconds, timeout = speed.resolve(think, ping_seconds, phase_seconds, timeout)
    import redis

    slug = f"load{n}x{procs}-{secrets.token_hex(3)}"
    started = time.monotonic()
    study, tokens = make_study(n, slug, phase_seconds=phase_seconds, critique_round=critique_round)
    setup_s = time.monotonic() - started
    for prefix in (QUERY_KEY, GC_KEY, STALL_KEY, PUSH_KEY):
        redis.Redis.from_url(redis_url).delete(*(redis.Redis.from_url(redis_url).keys(f"{prefix}*") or ["-"]))
    bot_procs = bot_procs or (1 if n <= 200 else 2)
    ramp = ramp_seconds if ramp_seconds is not None else speed.ramp(n)
    env = server_env(db_url, redis_url)
    with Stack(work / f"prod-{pace}-{n}x{procs}", env, SCRIPT) as stack:
        port = free_port()
        celery = stack.start("celery", ["_serve", "celery", "-B", "-Q", "celery,generation", "--pool=solo",
                                        "--loglevel=INFO", "-s", str(stack.log_dir / "celerybeat-schedule")])
        asgi = asgi_server(stack, "asgi", server=server, workers=procs, port=port, application=COUNTED_APPLICATION)
        sampler = Sampler({"asgi": [asgi.pid], "celery": [celery.pid]})
        floor = DatabaseFloor(db_url)
        idle_rss = sampler.rss("asgi")
        queries0 = read_query_count(redis_url)
        asgi_queries0 = read_query_count(redis_url, "asgi")
        cpu0 = {"asgi": sampler.cpu("asgi"), "celery": sampler.cpu("celery")}
        sampler.start()
        floor.start()
        t0 = time.time()
        spec = {"servers": [f"http://127.0.0.1:{port}"], "study": slug, "think": list(think),
                "ping_seconds": ping_seconds, "timeout": timeout, "seed": 7, "run_id": slug,
                "tokens": {str(k): v for k, v in tokens.items()}, "start_at": t0 + 1.0, "stagger": ramp / n,
                "drop_share": drop_share, "typing_pauses": list(speed.typing_pauses),
                "draft_on_submit": speed.draft_on_submit, "profile_dir": str(profile_dir or "")}
        bots = run_bot_processes(stack, "prod", n, bot_procs, spec, stack.log_dir)
        bots_cpu = wait_for_bots(bots, kill_at=t0 + ramp + timeout + 60)
        elapsed = time.time() - t0
        time.sleep(1.0)  # let the query counters publish
        sampler.close()
        probes = floor.close()
        cpu = {role: round(sampler.cpu(role) - cpu0[role], 2) for role in cpu0}
        queries = read_query_count(redis_url) - queries0
        asgi_queries = read_query_count(redis_url, "asgi") - asgi_queries0
        asgi_gc = read_gc(redis_url, "asgi")
        asgi_stalls = read_stalls(redis_url, "asgi", t0)
        push_path = read_push_trace(redis_url)
        peak_rss = sampler.peak_rss["asgi"]
        results = []
        for proc, out in bots:
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(f"bot process failed ({proc.returncode}):\n{stack.log_text('prod-bots')[-3000:]}")
            results.extend(json.loads(out.read_text())["bots"])
        server_log = stack.log_text("asgi")
        server_errors = sum(1 for line in server_log.splitlines() if " ERROR " in line or "Traceback" in line)
        error_examples = error_lines(server_log)
    state = verify_state(study, results)
    measures = bot_measures(results, n, elapsed, bots_cpu, started=t0)
    actions = measures["participant_actions"]
    return {
        "stack": "production", "pace": pace, "server": server, "n": n, "procs": procs, "bot_processes": bot_procs,
        "groups": n // GROUP_SIZE,
        "setup_s": round(setup_s, 1), "seconds": round(elapsed, 1), "ramp_s": ramp, "think_s": list(think),
        "ping_s": ping_seconds, "phase_s": phase_seconds,
        **measures,
        "server_error_log_lines": server_errors,
        "server_error_examples": error_examples,
        "channel_over_capacity_log_lines": over_capacity_lines(server_log),
        "db_queries": queries, "db_queries_asgi": asgi_queries,
        "db_queries_per_action": round(queries / actions, 2) if actions else None,
        "server_cpu_s": cpu,
        "asgi_gc": asgi_gc,  # the ASGI workers' garbage collections (benchmarks/stack.py read_gc)
        # seconds from the start in which a worker got the GIL over 50 ms late, with the worst lateness in ms
        "asgi_stalls": asgi_stalls,
        # phase_started_at -> each stage of a phase change's push on the server (benchmarks/stack.py)
        "push_path": push_path,
        # the database alone under this load (benchmarks/stack.py DatabaseFloor): a floor under any push of
        # committed state
        "db_floor": {"round_trip": latency_summary(probes["round_trip"]),
                     "transaction": latency_summary(probes["transaction"]), "failures": probes["failures"]},
        "server_cpu_ms_per_connection": round(1000 * (cpu["asgi"] + cpu["celery"]) / n, 1),
        "asgi_rss_idle_mb": round(idle_rss / 2 ** 20, 1), "asgi_rss_peak_mb": round(peak_rss / 2 ** 20, 1),
        "rss_kb_per_connection": round((peak_rss - idle_rss) / 1024 / n, 1),
        "state": state,
    }


LATENCY_BUCKET_S = 10


def latency_over_time(results: list[dict], started: float, bucket_s: int = LATENCY_BUCKET_S) -> list[list]:
    """[[seconds from the start, pushes, p50 ms, p99 ms], ...] per ``bucket_s`` of the run by arrival time: when
    in a run the tail happens (the arrivals' ramp, a stall, the finish)."""
    buckets: dict[int, list[float]] = {}
    for b in results:
        for at, delay in zip(b.get("arrivals", []), b["latencies"]):
            buckets.setdefault(int((at - started) // bucket_s), []).append(delay)
    return [[k * bucket_s, len(v), round(1000 * percentile(v, 50), 1), round(1000 * percentile(v, 99), 1)]
            for k, v in sorted(buckets.items())]


def error_lines(log: str, most: int = 10) -> list[str]:
    """The distinct error lines of a server log, with the exception that ended each traceback: what
    ``server_error_log_lines`` counted, to read (the log itself goes with the run's temporary folder)."""
    found: list[str] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if " ERROR " in line:
            found.append(line.strip()[:300])
        elif line.startswith("Traceback"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith((" ", "\t"))),
                       None)
            if end is not None:
                found.append(lines[end].strip()[:300])
    return list(dict.fromkeys(found))[:most]


def bot_measures(results: list[dict], n: int, elapsed: float, bots_cpu: float,
                 started: float | None = None) -> dict:
    """What the bots measured in one run (their result dicts, ``_run_protocol_bots``): push latency, messages,
    errors, reconnects, the snapshot protocol's repairs, their own CPU."""
    latencies = [x for b in results for x in b["latencies"]]
    repair = [x for b in results for x in b["repair_latencies"]]
    received = sum(b["received"] for b in results)
    pushes = sum(b["pushes"] for b in results)
    sent = sum(sum(k["sent"] for k in b["created"].values()) for b in results)
    timed_out = sum(1 for b in results if (b["failure"] or "").startswith("TimeoutError"))
    errors = sum(sum(b["errors"].values()) for b in results) + sum(1 for b in results if b["failure"]) - timed_out
    return {
        "latency": latency_summary(latencies), "repair_latency": latency_summary(repair),
        # per LATENCY_BUCKET_S of the run: [seconds from the start, pushes, p50 ms, p99 ms]
        "latency_over_time": latency_over_time(results, started) if started is not None else None,
        # which phase changes are slow (the phase entered: a grouping, a submission, a generation, a deadline)
        "latency_by_phase": {phase: latency_summary([x for b in results
                                                     for x in b.get("latencies_by_phase", {}).get(phase, [])])
                             for phase in sorted({k for b in results for k in b.get("latencies_by_phase", {})})},
        "messages_received": received, "messages_per_s": round(received / elapsed, 1),
        "pushes_received": pushes,
        # one push reaches every member: pushes per group = pushes received / n; the raw run pushes at this period
        "push_period_s": round(elapsed * n / pushes, 2) if pushes else None,
        "errors": errors, "bots_out_of_time": timed_out, "error_codes": _merge_counts(b["errors"] for b in results),
        "failures": [f"bot {b['index']}: {b['failure']}" for b in results if b["failure"]][:5],
        "reconnects": sum(b["reconnects"] for b in results),
        "missed_pushes_repaired": sum(b["repaired"] for b in results),
        "stale_pings_answered_with_snapshot": sum(b["stale_pings"] for b in results),
        "pushes_dropped_on_purpose": sum(b["dropped_on_purpose"] for b in results),
        "participant_actions": sum(b["actions"] for b in results),
        "bots_cpu_s": round(bots_cpu, 2),
        "bots_cpu_ms_per_message": round(1000 * bots_cpu / (received + sent), 3) if received + sent else None,
    }


def _merge_counts(dicts) -> dict:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total



# --- one run against a stack this benchmark did not start (--target) ------------------------------
def parse_target(url: str) -> str:
    """The origin a ``--target`` names (``https://HOST[:PORT]``; a trailing slash is dropped), or ValueError."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--target takes http(s)://HOST[:PORT], not {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"--target has a bad port: {url!r}") from None
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"--target is the stack's origin, without a path or query: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def run_hook(manage: str, request: dict, timeout: float = 600.0) -> dict:
    """One ``benchmarks/study.py`` request through the target's management command (``manage``, a command
    prefix such as ``scripts/cluster manage``): ``MANAGE shell -c ...`` with the request on stdin."""
    import shlex
    import subprocess

    argv = [*shlex.split(manage), "shell", "-c", "from benchmarks.study import hook; hook()"]
    done = subprocess.run(argv, cwd=ROOT, input=json.dumps(request), capture_output=True, text=True, timeout=timeout)
    answers = [line[len(RESULT_MARK):] for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not answers:
        raise RuntimeError(f"{' '.join(argv[:-1])} '...' ({request['action']}) failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(answers[-1])


def run_target(n: int, *, target: str, work: Path, ca_file: str = "", manage: str | None = None,
               study: str | None = None, pace: str = "human", think: tuple[float, float] | None = None,
               ping_seconds: float | None = None, phase_seconds: int | None = None, critique_round: bool = True,
               timeout: float | None = None, bot_procs: int | None = None, ramp_seconds: float | None = None,
               during=None, label: str = "") -> dict:
    """N protocol bots through a whole deliberation on a stack at ``target`` that this benchmark did not start.

    The study: made through ``manage`` (``run_hook``: N participants joined beforehand, as ``make_study``), or
    ``study``, the slug of one the experimenter made, which the bots join through its link (consent form and
    all; the stack's join rate limit applies). Latency is the server's ``phase_started_at`` against the bot's
    arrival time, so the bots must share the server's clock (the same machine, or synchronised clocks).
    The state check (``verify_state`` and tests/faults/ledger.py) needs ``manage``; without it the run's state is
    unchecked (``lost_state`` None, which no capacity criterion accepts). ``during(info)``, if given, is called once
    the bots are started (``info``: study id and slug, start time) and may act on the stack (kill a host); what it
    returns is stored under ``during``."""
    speed = PACES[pace]
    think, ping_seconds, phase_seconds, timeout = speed.resolve(think, ping_seconds, phase_seconds, timeout)
    run_id = f"t{n}-{secrets.token_hex(3)}"
    started = time.monotonic()
    if study:
        slug, tokens, pids, study_id = study, None, None, None
    elif manage:
        slug = f"load-target-{run_id}"
        made = run_hook(manage, {"action": "create", "n": n, "slug": slug, "phase_seconds": phase_seconds,
                                 "critique_round": critique_round})
        tokens, pids, study_id = made["tokens"], made["pids"], made["study_id"]
    else:
        raise ValueError("a target run needs a study: --target-study SLUG, or --manage to make one")
    setup_s = time.monotonic() - started
    bot_procs = bot_procs or (1 if n <= 200 else 2)
    ramp = ramp_seconds if ramp_seconds is not None else speed.ramp(n)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    during_result = None
    with Stack(work / f"target-{label or pace}-{n}-{run_id}", env, SCRIPT) as stack:
        t0 = time.time()
        spec = {"servers": [target], "study": slug, "think": list(think), "ping_seconds": ping_seconds,
                "timeout": timeout, "seed": 7, "run_id": run_id, "tokens": tokens, "pids": pids,
                "ca_file": ca_file, "start_at": t0 + 1.0, "stagger": ramp / n, "drop_share": 0.0,
                "typing_pauses": list(speed.typing_pauses), "draft_on_submit": speed.draft_on_submit,
                "profile_dir": ""}
        bots = run_bot_processes(stack, "target", n, bot_procs, spec, stack.log_dir)
        try:
            if during is not None:
                during_result = during({"study_id": study_id, "slug": slug, "started_at": t0, "n": n})
            bots_cpu = wait_for_bots(bots, kill_at=t0 + ramp + timeout + 60)
        finally:
            for proc, _ in bots:  # an exception in ``during``: no bot outlives the run
                if proc.poll() is None:
                    proc.kill()
        elapsed = time.time() - t0
        results = []
        for proc, out in bots:
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(f"bot process failed ({proc.returncode}):\n{stack.log_text('target-bots')[-3000:]}")
            results.extend(json.loads(out.read_text())["bots"])
    if manage:
        state = run_hook(manage, {"action": "check", "slug": slug, "bots": results})
        ledger = state.get("ledger") or {}
        state["checked"] = True
        # Lost: an acknowledged answer missing (verify_state) or a logged write not stored as sent (the ledger).
        state["lost_state"] += ledger.get("lost", 0)
        state["duplicated"] = ledger.get("duplicated", 0)
    else:
        state = {"checked": False, "lost_state": None, "duplicated": None, "unfinished_groups": None}
    return {
        "stack": "target", "target": target, "label": label, "pace": pace, "n": n, "procs": None,
        "bot_processes": bot_procs, "groups": n // GROUP_SIZE, "study": slug, "study_made_by": "manage" if tokens
        else "experimenter (bots joined through the link)",
        "setup_s": round(setup_s, 1), "seconds": round(elapsed, 1), "started_at": round(t0, 3), "ramp_s": ramp,
        "think_s": list(think), "ping_s": ping_seconds, "phase_s": phase_seconds,
        **bot_measures(results, n, elapsed, bots_cpu),
        "completed": sum(1 for b in results if b["status"] == "completed"),
        "reconnections": [{"index": b["index"], **r} for b in results for r in b["reconnections"]],
        "during": during_result,
        "state": state,
    }


# --- one ceiling run ----------------------------------------------------------------------------
def run_raw(n: int, procs: int, *, redis_url: str, work: Path, duration: float = 20.0, period: float = 2.0,
            bot_procs: int | None = None, pace: str = "bot", period_source: str = "given",
            server: str | None = None) -> dict:
    """The raw consumer at N sockets on ``server`` with ``procs`` workers on one port: one group_send per group
    every ``period`` seconds."""
    server = server or default_server()
    bot_procs = bot_procs or (1 if n <= 200 else 2)
    ramp = min(10.0, max(1.0, n / 200))
    # config.serve wants a settings choice; the raw consumer configures its own.
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", "DELIBERATION_DEV": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    with Stack(work / f"raw-{pace}-{n}x{procs}", env, SCRIPT) as stack:
        port = free_port()
        asgi = asgi_server(stack, "asgi", server=server, workers=procs, port=port, application=RAW_APPLICATION)
        sampler = Sampler({"asgi": [asgi.pid]})
        idle_rss = sampler.rss("asgi")
        t0 = time.time()
        start_at, measure_from = t0 + 1.0, t0 + 1.0 + ramp + 2.0
        stop_at = measure_from + duration
        base = {"servers": [f"http://127.0.0.1:{port}"], "start_at": start_at, "stagger": ramp / n,
                "measure_from": measure_from, "stop_at": stop_at}
        push_spec = stack.log_dir / "push.spec.json"
        push_spec.write_text(json.dumps({"redis_url": redis_url, "groups": n // GROUP_SIZE, "period": period,
                                         "start_at": start_at, "stop_at": stop_at,
                                         "out": str(stack.log_dir / "push.json")}))
        bots = run_bot_processes(stack, "raw", n, bot_procs, base, stack.log_dir)
        pusher = stack.start("pusher", ["_push", str(push_spec)])
        time.sleep(max(0.0, measure_from - time.time()))
        cpu0 = sampler.cpu("asgi")
        sampler.start()
        bots_sampler = Sampler({"bots": [p.pid for p, _ in bots]})
        bot_cpu0 = bots_sampler.cpu("bots")  # the ramp's connects are not what the pushes cost
        bots_cpu = wait_for_bots(bots, kill_at=stop_at + 60) - bot_cpu0
        pusher.wait(timeout=60)
        sampler.close()
        cpu = round(sampler.cpu("asgi") - cpu0, 2)
        results = []
        for proc, out in bots:
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(f"raw bot process failed:\n{stack.log_text('raw-bots')[-3000:]}")
            results.append(json.loads(out.read_text()))
        log = stack.log_text("asgi")
    latencies = [x for r in results for x in r["latencies"]]
    received = sum(r["received"] for r in results)
    lost = sum(r["lost"] for r in results)
    return {
        "stack": "raw", "pace": pace, "server": server, "n": n, "procs": procs, "bot_processes": bot_procs,
        "groups": n // GROUP_SIZE,
        "seconds": duration, "push_period_s": period, "push_period_source": period_source,
        "latency": latency_summary(latencies),
        "messages_received": received, "messages_per_s": round(len(latencies) / duration, 1),
        "errors": sum(r["errors"] for r in results), "connected": sum(r["connected"] for r in results),
        "lost_messages": lost, "channel_over_capacity_log_lines": over_capacity_lines(log),
        "server_cpu_s": {"asgi": cpu}, "bots_cpu_s": round(bots_cpu, 2),
        "bots_cpu_ms_per_message": round(1000 * bots_cpu / received, 3) if received else None,
        "server_cpu_ms_per_connection": round(1000 * cpu / n, 1),
        "asgi_rss_idle_mb": round(idle_rss / 2 ** 20, 1),
        "asgi_rss_peak_mb": round(sampler.peak_rss["asgi"] / 2 ** 20, 1),
        "rss_kb_per_connection": round((sampler.peak_rss["asgi"] - idle_rss) / 1024 / n, 1),
        "state": {"lost_state": lost},
    }



# --- targets and report -------------------------------------------------------------------------
def ok(run: dict) -> bool:
    """The capacity criterion: p99 <= 100 ms, no errors, every group finished, nothing lost."""
    p99 = run["latency"]["p99_ms"]
    return (p99 is not None and p99 <= TARGET_P99_MS and run["state"]["lost_state"] == 0 and not run["errors"]
            and not run["state"].get("unfinished_groups"))


def capacity(runs: list[dict], stack: str, procs: int | None, pace: str = "human") -> int:
    """Largest N of the ladder that met ``ok`` (0 if none)."""
    fits = [r["n"] for r in runs if r["stack"] == stack and r["procs"] == procs and r.get("pace", "bot") == pace
            and ok(r)]
    return max(fits, default=0)


def ratios(runs: list[dict], pace: str) -> dict[str, dict]:
    """Production p99 over the raw consumer's p99 at the same N, processes and pace (same invocation)."""
    raw = {(r["n"], r["procs"]): r for r in runs if r["stack"] == "raw" and r.get("pace", "bot") == pace}
    out = {}
    for p in sorted((r for r in runs if r["stack"] == "production" and r.get("pace", "bot") == pace),
                    key=lambda r: (r["procs"], r["n"])):
        r = raw.get((p["n"], p["procs"]))
        prod_p99, raw_p99 = p["latency"]["p99_ms"], (r["latency"]["p99_ms"] if r else None)
        ratio = round(prod_p99 / raw_p99, 2) if prod_p99 is not None and raw_p99 else None
        floor = p.get("db_floor", {}).get("transaction", {}).get("p99_ms")  # older results have none
        out[f"n{p['n']}_procs{p['procs']}"] = {"n": p["n"], "procs": p["procs"], "p99_ms": prod_p99,
                                               "raw_p99_ms": raw_p99, "p99_vs_raw": ratio, "ok": ok(p),
                                               "db_floor_p99_ms": floor,
                                               "db_floor_vs_raw": round(floor / raw_p99, 2) if floor and raw_p99
                                               else None}
    return out


def targets(runs: list[dict]) -> dict:
    """Issue 16's targets, from the runs of one invocation. A target with no run to judge it is None, not met."""
    out: dict = {"zero_lost_state_every_run": all(r["state"]["lost_state"] == 0 for r in runs
                                                   if r["stack"] in ("production", "target"))}
    if any(r["stack"] == "target" for r in runs):
        out["target"] = {pace: capacity(runs, "target", None, pace) for pace in PACES
                         if any(r["stack"] == "target" and r["pace"] == pace for r in runs)}
    if any(r.get("pace") == "human" for r in runs):
        cap1, cap2 = capacity(runs, "production", 1), capacity(runs, "production", 2)
        table = ratios(runs, "human")
        judged = [v["p99_vs_raw"] for v in table.values()]
        measured = {r["procs"] for r in runs if r["stack"] == "production" and r.get("pace") == "human"}
        top = {procs: max((r["n"] for r in runs if r["stack"] == "production" and r.get("pace") == "human"
                           and r["procs"] == procs), default=0) for procs in (1, 2)}
        # Both held the largest N they ran: their capacities lie above the ladder, so it cannot compare them.
        above_ladder = cap1 == top[1] > 0 and cap2 == top[2] > 0 if {1, 2} <= measured else None
        if above_ladder is None:
            scaling = None
        elif cap2 > 0 and cap2 >= 1.5 * cap1:
            scaling = True
        else:
            scaling = None if above_ladder else False
        out["human"] = {
            "capacity": {"production_1": cap1, "production_2": cap2, "raw_1": capacity(runs, "raw", 1),
                         "raw_2": capacity(runs, "raw", 2), "ratio_2_vs_1": round(cap2 / cap1, 2) if cap1 else None},
            "by_n": table,
            "2000_on_2_procs": cap2 >= 2000 if 2 in measured else None,
            "p99_le_2x_raw_every_n": (all(x is not None and x <= 2.0 for x in judged) if judged else None),
            "2_procs_ge_1.5x_of_1": scaling,
            "capacity_above_ladder": above_ladder,
        }
    if any(r.get("pace", "bot") == "bot" for r in runs):
        table = ratios(runs, "bot")
        at500 = [v["p99_vs_raw"] for v in table.values() if v["n"] == 500]
        out["bot"] = {"by_n": table,
                      "n500_p99_le_5x_raw": (all(x is not None and x <= 5.0 for x in at500) if at500 else None)}
    return out


def target_markdown(runs: list[dict]) -> str:
    """The table of ``--target`` runs (a stack this benchmark did not start: no server-side figures)."""
    def fmt(v):
        return "–" if v is None else v

    lines = ["| target | label | pace | N | p50 ms | p95 ms | p99 ms | msg/s | errors | reconnects | completed | "
             "unfinished groups | lost | duplicated | seconds | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lat, state = r["latency"], r["state"]
        lines.append(f"| {r['target']} | {r.get('label') or '–'} | {r['pace']} | {r['n']} | {fmt(lat['p50_ms'])} | "
                     f"{fmt(lat['p95_ms'])} | {fmt(lat['p99_ms'])} | {r['messages_per_s']} | {r['errors']} | "
                     f"{r['reconnects']} | {r['completed']} | {fmt(state.get('unfinished_groups'))} | "
                     f"{fmt(state['lost_state'])} | {fmt(state.get('duplicated'))} | {r['seconds']} | "
                     f"{'yes' if ok(r) else 'no'} |")
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    def fmt(v):
        return "–" if v is None else v

    def verdict(v):
        return "not measured" if v is None else "met" if v else "not met"

    lines = ["| pace | server | stack | procs | N | p50 ms | p95 ms | p99 ms | push period s | msg/s | errors | "
             "reconnects | stale pings → snapshot | unfinished groups | lost | DB queries/action | "
             "server CPU s (ASGI+celery) | bots CPU s | bots CPU ms/msg | RSS KB/conn |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in report["runs"] if r["stack"] != "target"),
                    key=lambda r: (r.get("pace", "bot"), r["stack"] != "production", r["procs"], r["n"])):
        lat = r["latency"]
        cpu = r["server_cpu_s"]
        lines.append(
            f"| {r.get('pace', 'bot')} | {r.get('server', 'daphne')} | {r['stack']} | {r['procs']} | {r['n']} | "
            f"{fmt(lat['p50_ms'])} | "
            f"{fmt(lat['p95_ms'])} | {fmt(lat['p99_ms'])} | {fmt(r.get('push_period_s'))} | {r['messages_per_s']} | "
            f"{r['errors']} | {fmt(r.get('reconnects'))} | {fmt(r.get('stale_pings_answered_with_snapshot'))} | "
            f"{fmt(r['state'].get('unfinished_groups'))} | {r['state']['lost_state']} | "
            f"{fmt(r.get('db_queries_per_action'))} | {round(sum(cpu.values()), 1)} | {r['bots_cpu_s']} | "
            f"{fmt(r.get('bots_cpu_ms_per_message'))} | {r['rss_kb_per_connection']} |")
    if any(r["stack"] == "target" for r in report["runs"]):
        lines = ([] if len(lines) == 2 else lines + [""]) + [target_markdown(
            [r for r in report["runs"] if r["stack"] == "target"]).rstrip()]
    t = report["targets"]
    lines += ["", f"Zero lost state in every production run: {'yes' if t['zero_lost_state_every_run'] else 'NO'}."]
    for pace, n in t.get("target", {}).items():
        lines.append(f"Target, {pace} pace, capacity (largest N with p99 ≤ {TARGET_P99_MS:.0f} ms, no errors, every "
                     f"group finished, nothing lost): {n}.")
    if "human" in t:
        h, cap = t["human"], t["human"]["capacity"]
        lines += [f"Human pace, capacity (largest N with p99 ≤ {TARGET_P99_MS:.0f} ms, no errors, every group "
                  f"finished, nothing lost): production {cap['production_1']} on 1 process, {cap['production_2']} "
                  f"on 2 (ratio {fmt(cap['ratio_2_vs_1'])}); raw consumer {cap['raw_1']} / {cap['raw_2']}.",
                  f"Targets: ≥ 2,000 on 2 processes: {verdict(h['2000_on_2_procs'])}; production p99 ≤ 2× raw p99 "
                  f"at every N: {verdict(h['p99_le_2x_raw_every_n'])}; 2 processes ≥ 1.5× the N of 1: "
                  f"{verdict(h['2_procs_ge_1.5x_of_1'])}"
                  + (" (both held the largest N they ran: a larger N is needed to compare them)."
                     if h.get("capacity_above_ladder") else ".")]
    for pace in ("human", "bot"):
        if pace in t and t[pace]["by_n"]:
            lines += ["", f"{pace.capitalize()} pace, production p99 / raw p99 (same N, processes and push rate):", "",
                      "| procs | N | production p99 ms | raw p99 ms | ratio | DB floor p99 ms | floor / raw |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {v['procs']} | {v['n']} | {fmt(v['p99_ms'])} | {fmt(v['raw_p99_ms'])} | "
                      f"{fmt(v['p99_vs_raw'])} | {fmt(v.get('db_floor_p99_ms'))} | {fmt(v.get('db_floor_vs_raw'))} |"
                      for v in t[pace]["by_n"].values()]
            lines += ["", "DB floor: the smallest phase-changing transaction (lock, insert, update, commit) on a "
                      "connection of its own under the same load (benchmarks/stack.py DatabaseFloor); a push of "
                      "committed state cannot arrive sooner."]
    if "bot" in t:
        lines += ["", f"Bot pace, N = 500: production p99 ≤ 5× raw p99: {verdict(t['bot']['n500_p99_le_5x_raw'])}."]
    return "\n".join(lines) + "\n"


# --- the sweep ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")  # what the benchmark serves
    from config.serve import DEFAULT_SERVER, SERVERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pace", default="human",
                        help="'human', 'bot' or both ('human,bot'): the bots' think times, pings and drafts (PACES).")
    parser.add_argument("--n", default=None,
                        help="Bot counts (groups of 5), comma-separated. Default: the pace's ladder (human: "
                             "500,1000,2000; bot: 100,500).")
    parser.add_argument("--procs", default="1,2",
                        help="ASGI worker process counts, comma-separated (config.serve --workers: one port).")
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER,
                        help=f"ASGI server (python -m config.serve --server; default {DEFAULT_SERVER}).")
    parser.add_argument("--quick", action="store_true", help="N = 100 and 500 only.")
    parser.add_argument("--duration", type=float, default=None,
                        help="Measured seconds of each raw-consumer run (default: the pace's, human 60, bot 15).")
    parser.add_argument("--timeout", type=float, default=None,
                        help="Seconds a production run's bots get to finish the deliberation (default: the pace's, "
                             "human 600, bot 75; then the run ends and groups still running count as unfinished, "
                             "not lost).")
    parser.add_argument("--phase-seconds", type=int, default=None,
                        help="Input-phase deadline, a backstop for misses (default: the pace's, human 180, bot 30).")
    parser.add_argument("--no-critique", action="store_true", help="Skip the critique round (shorter runs).")
    parser.add_argument("--arrivals-per-second", type=positive_float, default=None, metavar="R",
                        help="How fast the bots join, evenly spread (default: the pace's; human 10/s, bot N in "
                             "min(20, max(2, N/100)) s).")
    parser.add_argument("--no-raw", action="store_true", help="Skip the raw-consumer rows.")
    parser.add_argument("--drop-share", type=float, default=0.0,
                        help="Bots ignore this share of pushes on purpose (proves the snapshot repair).")
    parser.add_argument("--profile-bots", type=Path, default=None,
                        help="Folder for a cProfile file per production bot process (where the bots' CPU goes).")
    parser.add_argument("--redis-url", default=os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--postgres", default=os.environ.get("LOAD_POSTGRES", "postgres://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server; a fresh database is created on it and dropped afterwards.")
    parser.add_argument("--out", default=None,
                        help="Output path without extension (default benchmarks/results/load, with --target "
                             "benchmarks/results/load-target; a smoke run: somewhere outside benchmarks/results).")
    target = parser.add_argument_group(
        "an existing stack", "Aim the bots at a stack this benchmark does not start: no raw-consumer rows, no server "
        "CPU or query counts; latency from the server's phase_started_at to the bot's clock (the same machine).")
    target.add_argument("--target", default=None, metavar="URL",
                        help="The stack's origin, e.g. https://10.213.0.2 (scripts/cluster env).")
    target.add_argument("--ca-file", default="", metavar="PEM",
                        help="CA certificate to trust for an https target (a self-signed proxy).")
    target.add_argument("--manage", default=None, metavar="COMMAND",
                        help="Command prefix running manage.py against the target's database (e.g. 'scripts/cluster "
                             "manage'): makes each run's study with its participants joined, and checks the state "
                             "afterwards (acknowledged answers, tests/faults/ledger.py).")
    target.add_argument("--target-study", default=None, metavar="SLUG",
                        help="A study the experimenter made: the bots join it through its link (the stack's join "
                             "rate limit applies); without --manage its state is not checked.")
    args = parser.parse_args(argv)
    if args.target is not None:
        return main_target(parser, args, argv)
    if args.out is None:
        args.out = str(RESULTS / "load")
    try:
        paces = [p.strip() for p in args.pace.split(",") if p.strip()]
        unknown = [p for p in paces if p not in PACES]
        if not paces or unknown:
            raise ValueError(f"--pace takes {' or '.join(PACES)} (comma-separated), not {args.pace!r}")
        ns = [100, 500] if args.quick else [int(x) for x in args.n.split(",") if x.strip()] if args.n else None
        procs_list = [int(x) for x in args.procs.split(",") if x.strip()]
        if (ns is not None and (not ns or min(ns) < GROUP_SIZE)) or not procs_list or min(procs_list) < 1:
            raise ValueError(f"--n takes counts of at least {GROUP_SIZE}, --procs counts of at least 1")
        if not 0.0 <= args.drop_share < 1.0:
            raise ValueError("--drop-share is a share between 0 and 1")
        if args.profile_bots is not None:
            args.profile_bots.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    from provenance import run_record  # command, commit and times for the result file

    record = run_record(argv)
    fd_limit = raise_fd_limit()

    db_name = f"bench_load_{os.getpid()}"
    db_url = f"{args.postgres.rstrip('/')}/{db_name}"
    create_database(f"{args.postgres.rstrip('/')}/postgres", db_name)
    os.environ.update({k: v for k, v in server_env(db_url, args.redis_url).items()
                       if k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS",
                                "HTTPS", "JOIN_RATE_LIMIT")})
    import django
    import redis
    from django.core.management import call_command
    from tqdm import tqdm

    django.setup()
    runs: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="load-bench-"))  # honours TMPDIR; private (0700), unpredictable name
    started = time.monotonic()
    try:
        call_command("migrate", verbosity=0)
        # Each production run is followed by the raw consumer at the same N, processes and pace, pushing at the
        # rate the production bots received pushes.
        plan = [(pace, n, p) for pace in paces for p in procs_list for n in (ns or PACES[pace].ladder)]
        bar = tqdm(total=len(plan) * (1 if args.no_raw else 2), desc="load", unit="run", file=sys.stderr)
        for pace, n, procs in plan:
            speed = PACES[pace]
            redis.Redis.from_url(args.redis_url).flushdb()
            bar.set_postfix_str(f"{pace} production N={n} procs={procs}")
            prod = run_production(n, procs, db_url=db_url, redis_url=args.redis_url, work=work, pace=pace,
                                  phase_seconds=args.phase_seconds, critique_round=not args.no_critique,
                                  timeout=args.timeout, drop_share=args.drop_share, profile_dir=args.profile_bots,
                                  server=args.server, ramp_seconds=ramp_of(args, pace, n))
            runs.append(prod)
            bar.update(1)
            done = [prod]
            if not args.no_raw:
                redis.Redis.from_url(args.redis_url).flushdb()
                bar.set_postfix_str(f"{pace} raw N={n} procs={procs}")
                period, source = (prod["push_period_s"], "production run") if prod["push_period_s"] else \
                    (sum(speed.think) / 2 / (GROUP_SIZE + 1), "estimate: one push per submission and phase change")
                done.append(run_raw(n, procs, redis_url=args.redis_url, work=work, pace=pace, period=period,
                                    period_source=source, duration=args.duration or speed.raw_seconds,
                                    server=args.server))
                runs.append(done[-1])
                bar.update(1)
            partial = Path(args.out).with_suffix(".partial.json")  # survives an interrupted sweep
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"runs": runs}, indent=2))
            for run in done:
                tqdm.write(f"{pace} {run['stack']} N={n} procs={procs}: p99 {run['latency']['p99_ms']} ms, "
                           f"lost {run['state']['lost_state']}, errors {run['errors']}", file=sys.stderr)
        bar.close()
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(f"{args.postgres.rstrip('/')}/postgres", db_name)

    report = {
        "benchmark": "load", "created": datetime.now().isoformat(timespec="seconds"),
        "command": "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_facts(fd_limit),
        "setup": {"group_size": GROUP_SIZE, "generation_backend": "recorded (real SmolLM2 statements replayed)",
                  "asgi": f"{args.server} via python -m config.serve --workers PROCS: one port, one address",
                  "channel_layer": f"channels-redis, production settings ({os.environ.get('CHANNEL_LAYER', 'pubsub')})",
                  "celery": "1 solo worker with beat (deadline sweeper every 2 s)",
                  "latency": "server phase_started_at -> snapshot arrival at each member (push arrivals only)",
                  "db_queries": "SQL statements counted by a Django execute_wrapper in the ASGI workers and Celery, "
                                "divided by bot actions (drafts, submissions, pings)",
                  "paces": {p: PACES[p]._asdict() for p in paces},
                  "raw": "benchmarks/raw_consumer.py, one group_send per group every push_period_s (the period the "
                         "production run at the same N, processes and pace pushed at)",
                  "phase_seconds": args.phase_seconds, "critique_round": not args.no_critique,
                  "drop_share": args.drop_share},
        "seconds": round(time.monotonic() - started, 1),
        "runs": runs,
    }
    report["targets"] = targets(runs)
    report.update({k: v for k, v in record.finish().items() if k != "command"})
    table = markdown(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(f"# Load benchmark\n\n`{report['command']}` — {report['created']}, "
                                      f"{report['seconds']} s\n\n{table}")
    Path(args.out).with_suffix(".partial.json").unlink(missing_ok=True)
    print(table)


def main_target(parser: argparse.ArgumentParser, args, argv: list[str] | None) -> None:
    """``--target``: the ladder of production runs against a stack this benchmark did not start."""
    try:
        target = parse_target(args.target)
        paces = [p.strip() for p in args.pace.split(",") if p.strip()]
        if not paces or any(p not in PACES for p in paces):
            raise ValueError(f"--pace takes {' or '.join(PACES)} (comma-separated), not {args.pace!r}")
        ns = [100, 500] if args.quick else [int(x) for x in args.n.split(",") if x.strip()] if args.n else None
        if ns is not None and (not ns or min(ns) < GROUP_SIZE):
            raise ValueError(f"--n takes counts of at least {GROUP_SIZE}")
        if not (args.manage or args.target_study):
            raise ValueError("--target needs --manage (the benchmark makes each run's study) or --target-study SLUG")
        if args.ca_file and not Path(args.ca_file).is_file():
            raise ValueError(f"--ca-file {args.ca_file}: no such file")
        if args.drop_share or args.profile_bots:
            raise ValueError("--drop-share and --profile-bots are for the stack this benchmark starts")
    except ValueError as exc:
        parser.error(str(exc))
    from provenance import run_record
    from tqdm import tqdm

    record = run_record(argv)
    fd_limit = raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="load-target-"))
    started = time.monotonic()
    plan = [(pace, n) for pace in paces for n in (ns or PACES[pace].ladder)]
    runs: list[dict] = []
    out = Path(args.out or RESULTS / "load-target")
    with tqdm(total=len(plan), desc="load --target", unit="run", file=sys.stderr) as bar:
        for pace, n in plan:
            bar.set_postfix_str(f"{pace} N={n}")
            run = run_target(n, target=target, work=work, ca_file=args.ca_file, manage=args.manage,
                             study=args.target_study, pace=pace, phase_seconds=args.phase_seconds,
                             critique_round=not args.no_critique, timeout=args.timeout,
                             ramp_seconds=ramp_of(args, pace, n))
            runs.append(run)
            bar.update(1)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".partial.json").write_text(json.dumps({"runs": runs}, indent=2))
            tqdm.write(f"{pace} target N={n}: p99 {run['latency']['p99_ms']} ms, lost {run['state']['lost_state']}, "
                       f"errors {run['errors']}", file=sys.stderr)
    report = {
        "benchmark": "load", "created": datetime.now().isoformat(timespec="seconds"),
        "command": "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_facts(fd_limit),
        "setup": {"group_size": GROUP_SIZE, "target": target, "study": args.target_study or "made per run (--manage)",
                  "latency": "server phase_started_at -> snapshot arrival at each member (push arrivals only)",
                  "paces": {p: PACES[p]._asdict() for p in paces}, "phase_seconds": args.phase_seconds,
                  "critique_round": not args.no_critique},
        "seconds": round(time.monotonic() - started, 1),
        "runs": runs,
    }
    report["targets"] = targets(runs)
    report.update({k: v for k, v in record.finish().items() if k != "command"})
    table = markdown(report)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(f"# Load benchmark against {target}\n\n`{report['command']}` — "
                                      f"{report['created']}, {report['seconds']} s\n\n{table}")
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(table)


def machine_facts(fd_limit: int) -> dict:
    """What the result files record about the machine."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "fd_limit": fd_limit,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "note": "shared 2-core machine; other work ran beside the benchmark"}


def _entry() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_serve":  # a server role (benchmarks/stack.py)
        serve(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) > 2 and sys.argv[1] == "_bots":
        bots_main(sys.argv[2])
    elif len(sys.argv) > 2 and sys.argv[1] == "_push":
        push_main(sys.argv[2])
    else:
        main()


if __name__ == "__main__":
    _entry()
