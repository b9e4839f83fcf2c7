"""ASGI server benchmark: daphne, uvicorn and granian side by side on the raw Channels consumer, started by
``python -m config.serve --server S --workers W`` (one port), N sockets in groups of 5, one push per group every
``--period`` seconds through the Redis channel layer.

    .venv/bin/python benchmarks/servers.py                              # N = 500, 2000 x 1, 2 workers x 3 servers
    .venv/bin/python benchmarks/servers.py --n 500 --workers 2 --servers uvicorn,daphne --duration 10

For every (N, workers) the servers run back to back, so they share the machine's conditions as far as a shared
machine allows; the table gives each server's p99 as a ratio to the best server's at the same N and workers.
Measured per run: push latency (publisher's clock to arrival; same machine) p50/p95/p99 over the measured
window, pushes lost (sequence gaps), connection errors, CPU seconds of the whole server process tree (parent and
workers) in the window, and how the sockets spread over the worker processes. Bots (websockets clients) and the
publisher are benchmarks/load.py's raw roles, in processes of their own.

Writes benchmarks/results/servers.json and .md; ``benchmarks/report.py`` puts the table on docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load import (  # noqa: E402 (read-only helpers: process stack, bots, publisher, percentiles)
    GROUP_SIZE,
    SCRIPT,
    Stack,
    latency_summary,
    over_capacity_lines,
    raise_fd_limit,
    run_bot_processes,
)
from tests.waiting import wait_for, wait_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SERVERS = ("uvicorn", "granian", "daphne")
RAW_APPLICATION = "benchmarks.raw_consumer:application"


def process_tree(pid: int) -> list:
    import psutil

    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def tree_cpu(procs: list) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # noqa: BLE001 - an exited process has no more CPU
            pass
    return total


def sockets_per_process(procs: list, port: int) -> list[int]:
    """Established client sockets each process of the tree holds on ``port`` (the workers; 0 for a supervisor)."""
    counts = []
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
        except Exception:  # noqa: BLE001
            conns = []
        counts.append(sum(1 for c in conns if c.status == "ESTABLISHED" and c.laddr and c.laddr.port == port))
    return sorted((c for c in counts if c), reverse=True)


def run_one(server: str, n: int, workers: int, *, redis_url: str, work: Path, duration: float,
            period: float) -> dict:
    from tests.e2e.stack import free_port

    bot_procs = 1 if n <= 200 else 2
    ramp = min(10.0, max(1.0, n / 200))
    # The config package (config.serve's home) wants a settings choice; the raw consumer configures its own.
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", "DELIBERATION_DEV": "1"}
    port = free_port()
    log_dir = work / f"{server}-{n}x{workers}"
    with Stack(log_dir, env, SCRIPT) as stack:  # its bots and publisher: load.py's _bots and _push roles
        log = open(log_dir / "server.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "config.serve", "--server", server, "--workers", str(workers),
                                 "-b", "127.0.0.1", "-p", str(port), RAW_APPLICATION],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.procs.append(("server", proc, log))  # stopped with the stack
        wait_port(port, proc, log_dir / "server.log", timeout=120)
        # Every worker up (a supervisor and N workers, or one process), then a moment for the late ones to import.
        least = 1 if (workers == 1 and server != "granian") else workers + 1  # granian always forks a worker
        wait_for(lambda: len(process_tree(proc.pid)) >= least, 60, f"{workers} {server} workers", proc=proc,
                 log=log_dir / "server.log")
        time.sleep(3.0)
        procs = process_tree(proc.pid)
        t0 = time.time()
        start_at, measure_from = t0 + 1.0, t0 + 1.0 + ramp + 2.0
        stop_at = measure_from + duration
        url = f"http://127.0.0.1:{port}"
        base = {"servers": [url], "start_at": start_at, "stagger": ramp / n, "measure_from": measure_from,
                "stop_at": stop_at}
        push_spec = log_dir / "push.spec.json"
        push_spec.write_text(json.dumps({"redis_url": redis_url, "groups": n // GROUP_SIZE, "period": period,
                                         "start_at": start_at, "stop_at": stop_at, "out": str(log_dir / "push.json")}))
        bots = run_bot_processes(stack, "raw", n, bot_procs, base, log_dir)
        pusher = stack.start("pusher", ["_push", str(push_spec)])
        time.sleep(max(0.0, measure_from - time.time()))
        spread = sockets_per_process(procs, port)
        cpu0 = tree_cpu(procs)
        while any(p.poll() is None for p, _ in bots):
            if time.time() > stop_at + 60:
                for p, _ in bots:
                    p.kill()
            time.sleep(0.5)
        cpu = tree_cpu(procs) - cpu0
        pusher.wait(timeout=60)
        results = []
        for bot, out in bots:
            if bot.returncode != 0 or not out.exists():
                raise RuntimeError(f"raw bot process failed:\n{stack.log_text('raw-bots')[-3000:]}")
            results.append(json.loads(out.read_text()))
        server_log = (log_dir / "server.log").read_text(errors="replace")
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "server": server, "workers": workers, "n": n, "groups": n // GROUP_SIZE, "seconds": duration,
        "push_period_s": period, "latency": latency_summary(latencies),
        "pushes_received": sum(r["received"] for r in results),
        "lost_pushes": sum(r["lost"] for r in results), "errors": sum(r["errors"] for r in results),
        "connected": sum(r["connected"] for r in results), "sockets_per_worker": spread,
        "server_cpu_s": round(cpu, 2), "server_cpu_share": round(cpu / duration, 2),
        "channel_over_capacity_log_lines": over_capacity_lines(server_log),
        "tracebacks_in_server_log": server_log.count("Traceback"),
    }


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (server, workers, N): medians over the repeats, and p99 and CPU as ratios to the best
    server's median at the same N and workers (best among the servers with no error and no lost push)."""
    rows = []
    for key in sorted({(r["server"], r["workers"], r["n"]) for r in runs}):
        mine = [r for r in runs if (r["server"], r["workers"], r["n"]) == key]
        p99s = [r["latency"]["p99_ms"] for r in mine if r["latency"]["p99_ms"] is not None]
        rows.append({"server": key[0], "workers": key[1], "n": key[2], "repeats": len(mine),
                     "p50_ms": median([r["latency"]["p50_ms"] for r in mine if r["latency"]["p50_ms"] is not None]),
                     "p99_ms": median(p99s), "p99_ms_each": p99s,
                     "server_cpu_s": median([r["server_cpu_s"] for r in mine]),
                     "sockets_per_worker": mine[-1]["sockets_per_worker"],
                     "lost_pushes": sum(r["lost_pushes"] for r in mine), "errors": sum(r["errors"] for r in mine)})
    for row in rows:
        # The best is among servers that kept every socket (a server whose sockets failed pushes to fewer).
        peers = [r for r in rows if (r["n"], r["workers"]) == (row["n"], row["workers"])]
        peers = [r for r in peers if not (r["errors"] or r["lost_pushes"])] or peers
        best_p99 = min((r["p99_ms"] for r in peers if r["p99_ms"]), default=None)
        best_cpu = min((r["server_cpu_s"] for r in peers if r["server_cpu_s"]), default=None)
        row["p99_vs_best"] = round(row["p99_ms"] / best_p99, 2) if row["p99_ms"] and best_p99 else None
        row["cpu_vs_best"] = round(row["server_cpu_s"] / best_cpu, 2) if best_cpu else None
    return rows


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def fastest(rows: list[dict]) -> str | None:
    """The server with the lowest geometric mean of p99 ratios over every (N, workers), among those that lost
    no push and had no connection error."""
    scores = {}
    for server in {r["server"] for r in rows}:
        mine = [r for r in rows if r["server"] == server]
        if any(r["p99_vs_best"] is None or r["lost_pushes"] or r["errors"] for r in mine):
            continue
        scores[server] = math.exp(sum(math.log(r["p99_vs_best"]) for r in mine) / len(mine))
    return min(scores, key=scores.get) if scores else None


def markdown(report: dict) -> str:
    def fmt(v):
        return "–" if v is None else v

    lines = ["| server | workers | N | p50 ms | p99 ms (median) | p99 ms of each run | p99 ÷ best | server CPU s | "
             "CPU ÷ best | sockets per worker | lost pushes | errors |", "|" + "---|" * 12]
    for r in sorted(report["summary"], key=lambda r: (r["workers"], r["n"], r["p99_vs_best"] or 1e9)):
        lines.append(f"| {r['server']} | {r['workers']} | {r['n']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{', '.join(str(x) for x in r['p99_ms_each'])} | {fmt(r['p99_vs_best'])} | {r['server_cpu_s']} "
                     f"| {fmt(r['cpu_vs_best'])} | {'/'.join(map(str, r['sockets_per_worker'])) or '–'} | "
                     f"{r['lost_pushes']} | {r['errors']} |")
    setup = report["setup"]
    return ("\n".join(lines) + f"\n\nRaw Channels consumer, one push per group every {setup['push_period_s']} s for "
            f"{setup['duration_s']} s measured per run, {setup['repeats']} run(s) per row with the servers' order "
            f"rotated between repeats; medians; CPU is the whole server process tree in the measured window. Load "
            f"average before / after: {setup['load_before']} / {setup['load_after']}. Fastest (lowest mean p99 "
            f"ratio, nothing lost, no errors): **{fmt(report['fastest'])}**.\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="500,2000", help="Socket counts (groups of 5), comma-separated.")
    parser.add_argument("--workers", default="1,2", help="Worker process counts, comma-separated.")
    parser.add_argument("--servers", default=",".join(SERVERS), help="Servers to compare, comma-separated.")
    parser.add_argument("--duration", type=float, default=15.0, help="Measured seconds per run.")
    parser.add_argument("--repeat", type=int, default=2, help="Runs per (server, N, workers); medians are reported.")
    parser.add_argument("--period", type=float, default=2.0, help="Seconds between two pushes to one group.")
    parser.add_argument("--redis-url", default=os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--out", default=str(RESULTS / "servers"), help="Output path without extension.")
    parser.add_argument("--render", action="store_true",
                        help="Only recompute the summary and table from the existing --out JSON (no measuring).")
    args = parser.parse_args(argv)
    if args.render:
        write(Path(args.out), json.loads(Path(args.out).with_suffix(".json").read_text()))
        return
    servers = [s for s in args.servers.split(",") if s]
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}; choose from {', '.join(SERVERS)}")
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    worker_counts = [int(x) for x in args.workers.split(",") if x.strip()]
    import redis
    from provenance import run_record  # command, commit and times for the result file
    from tqdm import tqdm

    record = run_record(argv)
    fd_limit = raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="servers-bench-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    # Repeats rotate the servers' order, so none always runs first (or last) within a configuration.
    plan = [(servers[(i + rep) % len(servers)], n, w) for rep in range(args.repeat) for w in worker_counts
            for n in ns for i in range(len(servers))]
    runs = []
    bar = tqdm(plan, desc="servers", unit="run", file=sys.stderr)
    for server, n, workers in bar:
        bar.set_postfix_str(f"{server} N={n} workers={workers}")
        redis.Redis.from_url(args.redis_url).flushdb()
        run = run_one(server, n, workers, redis_url=args.redis_url, work=work, duration=args.duration,
                      period=args.period)
        runs.append(run)
        tqdm.write(f"{server} N={n} workers={workers}: p99 {run['latency']['p99_ms']} ms, cpu {run['server_cpu_s']} s, "
                   f"lost {run['lost_pushes']}, errors {run['errors']}, spread {run['sockets_per_worker']}",
                   file=sys.stderr)
    report = {
        "benchmark": "servers",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "fd_limit": fd_limit,
                    "note": "shared machine; other work ran beside the benchmark"},
        "setup": {"application": RAW_APPLICATION, "group_size": GROUP_SIZE, "push_period_s": args.period,
                  "duration_s": args.duration, "repeats": args.repeat, "load_before": load_before,
                  "load_after": [round(x, 2) for x in os.getloadavg()],
                  "launcher": "python -m config.serve --server S --workers W (one port)",
                  "channel_layer": "channels-redis, the project's layer settings"},
        "runs": runs, **record.finish(),
    }
    write(Path(args.out), report)


def write(out: Path, report: dict) -> None:
    """The summary, the verdict and the table from the report's runs; JSON and markdown beside each other."""
    report["summary"] = summarize(report["runs"])
    report["fastest"] = fastest(report["summary"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
