"""Cluster benchmark: the human-pace capacity of the two-web-host cluster (scripts/cluster) against one web host,
and the failover time from a killed web host to every bot reconnected.

    .venv/bin/python benchmarks/cluster.py            # N = 250,500,1000 on 2 then 1 web host; failover at N = 200
    .venv/bin/python benchmarks/cluster.py --n 10 --pace bot --failover-n 10 --out /tmp/cluster-smoke   # a smoke run

Needs root (scripts/cluster builds the hosts as network namespaces). Brings the cluster up if it is not, and down
at the end unless ``--keep``. Every run is ``benchmarks/load.py``'s production measurement aimed at the cluster's
proxy (``run_target``: bots in processes of their own, TLS through nginx, the study made with its participants
joined by ``scripts/cluster manage``, latency from the server's ``phase_started_at`` to each push's arrival on the
same machine clock, the state checked afterwards: acknowledged answers and tests/faults/ledger.py).

Capacity: the ladder ``--n`` with both web hosts, then with web-2 killed (``scripts/cluster kill web-2``; nginx
sends every connection to web-1) and brought back (``scripts/cluster up``). The capacity is the largest N meeting
issue 16's target: p99 <= 100 ms, no errors, every group finished, nothing lost and nothing duplicated.

Failover: ``--failover-n`` bots (bot pace by default); once a member has stored a rating, web-1 is killed
(SIGKILL to its process group). Each bot records when its socket closed and when it was open again
(``bots.client.BotResult.reconnections``); the failover time is from the kill to the last affected bot
reconnected, with the median and maximum per bot, and the run must lose and duplicate nothing.

Writes benchmarks/results/cluster.json and .md (full runs only: pass ``--out`` elsewhere for a smoke run).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
for _path in (ROOT, BENCHMARKS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import load  # noqa: E402 (benchmarks/load.py: run_target, ok, latency figures)

RESULTS = BENCHMARKS / "results"
CLUSTER = ROOT / "scripts" / "cluster"
DEFAULT_LADDER = (250, 500, 1000)
KILLED = "web-1"  # the failover drill's host
STOPPED = "web-2"  # the host stopped for the one-host ladder


# --- judging (pure) -------------------------------------------------------------------------------------------
def meets_target(run: dict) -> bool:
    """Issue 16's capacity criterion (``load.ok``: p99, errors, groups finished, nothing lost) and no write
    duplicated (the ledger)."""
    return load.ok(run) and run["state"].get("duplicated") == 0


def capacity(runs: list[dict], web_hosts: int) -> int:
    """The largest N run on ``web_hosts`` hosts that met the target (0 if none)."""
    return max((r["n"] for r in runs if r["web_hosts"] == web_hosts and meets_target(r)), default=0)


def failover_summary(reconnections: list[dict], killed_at: float, window_s: float = 120.0) -> dict:
    """From the bots' socket records (``{"index", "closed_at", "reconnected_at"}``, epoch seconds): the bots whose
    socket closed within ``window_s`` after the kill, and how long until each was connected again. The failover
    time is from the kill to the last of them reconnected; None if any never was."""
    by_bot: dict[int, list[dict]] = {}
    for r in reconnections:
        if killed_at <= r["closed_at"] <= killed_at + window_s:
            by_bot.setdefault(r["index"], []).append(r)
    gaps, from_kill, never = [], [], []
    for index, records in sorted(by_bot.items()):
        records.sort(key=lambda r: r["closed_at"])
        back = records[-1]["reconnected_at"]  # the socket that stayed (a bot may have dropped twice)
        if back is None:
            never.append(index)
            continue
        gaps.append(back - records[0]["closed_at"])
        from_kill.append(back - killed_at)

    def spread(values: list[float]) -> dict:
        return {"median": round(median(values), 3) if values else None,
                "max": round(max(values), 3) if values else None}

    return {"affected_bots": len(by_bot), "reconnected": len(gaps), "not_reconnected": never,
            "seconds_to_all_reconnected": round(max(from_kill), 3) if from_kill and not never else None,
            "per_bot_closed_to_reconnected_s": spread(gaps), "per_bot_kill_to_reconnected_s": spread(from_kill)}


# --- the cluster ----------------------------------------------------------------------------------------------
def cluster(*args: str, timeout: float = 600) -> str:
    """``scripts/cluster ARGS``; its output, or SystemExit with it."""
    done = subprocess.run(["bash", str(CLUSTER), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise SystemExit(f"scripts/cluster {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def cluster_is_up() -> bool:
    return subprocess.run(["bash", str(CLUSTER), "status"], cwd=ROOT, capture_output=True).returncode == 0


def topology():
    """scripts/cluster.py as a module: the failover drill kills the host in this process, so the kill's time is
    the moment of the signal, not a subprocess's start-up earlier."""
    spec = importlib.util.spec_from_file_location("cluster_topology", ROOT / "scripts" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def kill_once_rating(env: dict, timeout: float):
    """A ``run_target`` ``during`` hook: wait until a member of the run's study has stored a rating, then SIGKILL
    web-1 and return the kill's time."""
    import psycopg

    hosts = topology()

    def during(info: dict) -> dict:
        deadline = time.monotonic() + timeout
        with psycopg.connect(env["database_url"], connect_timeout=5, autocommit=True) as conn:
            while not conn.execute(
                    "SELECT 1 FROM deliberation_rating r JOIN deliberation_group g ON g.id = r.group_id "
                    "WHERE g.study_id = %s LIMIT 1", (info["study_id"],)).fetchone():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no rating stored within {timeout:.0f} s: nothing to fail over from")
                time.sleep(0.2)
        killed_at = time.time()
        hosts.stop(KILLED, signal.SIGKILL, wait=5)
        return {"killed": KILLED, "killed_at": round(killed_at, 3),
                "seconds_after_start": round(killed_at - info["started_at"], 1)}

    return during


# --- report ---------------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    def fmt(v):
        return "–" if v is None else v

    lines = []
    cap = report.get("capacity")
    if cap:
        lines += ["| web hosts | pace | N | p50 ms | p95 ms | p99 ms | errors | groups finished | lost | duplicated | "
                  "reconnects | seconds | target met |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in cap["runs"]:
            lat, state = r["latency"], r["state"]
            finished = r["groups"] - state["unfinished_groups"] if state.get("unfinished_groups") is not None else None
            lines.append(f"| {r['web_hosts']} | {r['pace']} | {r['n']} | {fmt(lat['p50_ms'])} | {fmt(lat['p95_ms'])} | "
                         f"{fmt(lat['p99_ms'])} | {r['errors']} | {fmt(finished)}/{r['groups']} | "
                         f"{fmt(state['lost_state'])} | {fmt(state.get('duplicated'))} | {r['reconnects']} | "
                         f"{r['seconds']} | {'yes' if meets_target(r) else 'no'} |")
        ratio = f"{cap['ratio_two_vs_one']}×" if cap["ratio_two_vs_one"] is not None else "–"
        lines += ["", f"Capacity at {cap['pace']} pace (largest N with p99 ≤ {load.TARGET_P99_MS:.0f} ms, no errors, "
                      f"every group finished, nothing lost or duplicated): two web hosts {cap['two_hosts']}, one web "
                      f"host {cap['one_host']} (ratio {ratio})."]
    fo = report.get("failover")
    if fo:
        s, r = fo["summary"], fo["run"]
        lines += ["" if lines else None, "| failover N | pace | killed | bots whose socket closed | reconnected | "
                  "kill → every bot reconnected s | per bot closed → reconnected s (median / max) | completed | "
                  "lost | duplicated | errors |", "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {r['n']} | {r['pace']} | {fo['killed']} | {s['affected_bots']} | {s['reconnected']} | "
                  f"{fmt(s['seconds_to_all_reconnected'])} | {fmt(s['per_bot_closed_to_reconnected_s']['median'])} / "
                  f"{fmt(s['per_bot_closed_to_reconnected_s']['max'])} | {r['completed']}/{r['n']} | "
                  f"{fmt(r['state']['lost_state'])} | {fmt(r['state'].get('duplicated'))} | {r['errors']} |"]
    return "\n".join(line for line in lines if line is not None) + "\n"


# --- main -----------------------------------------------------------------------------------------------------
def parse_ladder(value: str) -> list[int]:
    try:
        ns = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--n takes comma-separated bot counts, not {value!r}") from None
    if not ns or min(ns) < load.GROUP_SIZE:
        raise ValueError(f"--n takes counts of at least {load.GROUP_SIZE} (groups of {load.GROUP_SIZE})")
    return ns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--n", default=",".join(map(str, DEFAULT_LADDER)),
                        help="Capacity ladder: bot counts (groups of 5), comma-separated (default %(default)s).")
    parser.add_argument("--pace", choices=sorted(load.PACES), default="human", help="Capacity runs' pace.")
    parser.add_argument("--failover-n", type=int, default=200, help="Bots in the failover run (default 200).")
    parser.add_argument("--failover-pace", choices=sorted(load.PACES), default="bot",
                        help="The failover run's pace (default bot: the kill comes within a minute).")
    parser.add_argument("--phase-seconds", type=int, default=None,
                        help="Input-phase deadline, a backstop (default: the pace's, human 180, bot 30).")
    parser.add_argument("--timeout", type=float, default=None,
                        help="Seconds a run's bots get to finish (default: the pace's, human 600, bot 75).")
    parser.add_argument("--no-critique", action="store_true", help="Skip the critique round (shorter runs).")
    parser.add_argument("--skip-capacity", action="store_true", help="Only the failover run.")
    parser.add_argument("--skip-failover", action="store_true", help="Only the capacity ladder.")
    parser.add_argument("--keep", action="store_true", help="Leave the cluster up at the end.")
    parser.add_argument("--out", default=str(RESULTS / "cluster"),
                        help="Output path without extension (a smoke run: somewhere outside benchmarks/results).")
    args = parser.parse_args(argv)
    try:
        ns = [] if args.skip_capacity else parse_ladder(args.n)
        if not args.skip_failover and args.failover_n < load.GROUP_SIZE:
            raise ValueError(f"--failover-n takes at least {load.GROUP_SIZE} bots")
        if args.skip_capacity and args.skip_failover:
            raise ValueError("--skip-capacity and --skip-failover leave nothing to measure")
        if os.geteuid() != 0:
            raise ValueError("needs root: scripts/cluster builds its hosts as network namespaces")
    except ValueError as exc:
        parser.error(str(exc))
    from provenance import run_record
    from tqdm import tqdm

    record = run_record(argv)
    fd_limit = load.raise_fd_limit()
    machine = load.machine_facts(fd_limit)
    started = time.monotonic()
    brought_up = not cluster_is_up()
    if brought_up:
        print("==> scripts/cluster up", file=sys.stderr)
        cluster("up")
    env = json.loads(cluster("env"))
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    common = {"target": env["origin"], "ca_file": env["ca_file"], "work": work,
              "manage": f"bash {shlex.quote(str(CLUSTER))} manage",  # the study made and checked in the cluster
              "phase_seconds": args.phase_seconds, "critique_round": not args.no_critique, "timeout": args.timeout}
    report: dict = {"benchmark": "cluster", "created": datetime.now().isoformat(timespec="seconds"),
                    "command": "python benchmarks/cluster.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    try:
        with tqdm(total=2 * len(ns) + (0 if args.skip_failover else 1), desc="cluster", unit="run",
                  file=sys.stderr) as bar:
            for web_hosts in (2, 1) if ns else ():
                if web_hosts == 1:
                    cluster("kill", STOPPED)
                try:
                    for n in ns:
                        bar.set_postfix_str(f"{web_hosts} web host(s), {args.pace} N={n}")
                        run = load.run_target(n, pace=args.pace, label=f"{web_hosts} web hosts", **common)
                        runs.append({**run, "web_hosts": web_hosts})
                        bar.update(1)
                        out.with_suffix(".partial.json").write_text(json.dumps({"runs": runs}, indent=2))
                        tqdm.write(f"{web_hosts} web host(s) N={n}: p99 {run['latency']['p99_ms']} ms, errors "
                                   f"{run['errors']}, lost {run['state']['lost_state']}, duplicated "
                                   f"{run['state']['duplicated']}", file=sys.stderr)
                finally:
                    if web_hosts == 1:
                        cluster("up")  # web-2 back
            if ns:
                two, one = capacity(runs, 2), capacity(runs, 1)
                report["capacity"] = {"pace": args.pace, "ladder": ns, "two_hosts": two, "one_host": one,
                                      "ratio_two_vs_one": round(two / one, 2) if one else None, "runs": runs}
            if not args.skip_failover:
                bar.set_postfix_str(f"failover, {args.failover_pace} N={args.failover_n}")
                pace = load.PACES[args.failover_pace]
                try:
                    run = load.run_target(args.failover_n, pace=args.failover_pace, label="failover",
                                          during=kill_once_rating(env, timeout=pace.timeout), **common)
                finally:
                    cluster("up")  # web-1 back
                summary = failover_summary(run["reconnections"], run["during"]["killed_at"])
                report["failover"] = {"killed": KILLED, "n": args.failover_n, "pace": args.failover_pace,
                                      "killed_at": run["during"]["killed_at"], "summary": summary, "run": run}
                bar.update(1)
                tqdm.write(f"failover N={args.failover_n}: {summary['affected_bots']} bots on {KILLED}, all back "
                           f"after {summary['seconds_to_all_reconnected']} s; lost {run['state']['lost_state']}, "
                           f"duplicated {run['state']['duplicated']}", file=sys.stderr)
    finally:
        if not args.keep:
            print("==> scripts/cluster down", file=sys.stderr)
            cluster("down")
    report.update({
        "machine": {**machine, "load_average_end": [round(x, 2) for x in os.getloadavg()],
                    "cluster": {"web_hosts": 2, "web_workers_per_host": int(os.environ.get("CLUSTER_WEB_WORKERS", 2)),
                                "proxy": "nginx (TLS), round robin over the web hosts",
                                "note": "every host a network namespace on this one machine: they share its CPUs"}},
        "setup": {"group_size": load.GROUP_SIZE, "origin": env["origin"],
                  "generation_backend": "recorded (real SmolLM2 statements replayed)",
                  "latency": "server phase_started_at -> snapshot arrival at each member (push arrivals only), "
                             "one machine clock",
                  "state": "acknowledged answers in the database (load.verify_state) and tests/faults/ledger.py "
                           "(lost, duplicated)",
                  "one_host": f"scripts/cluster kill {STOPPED} (nginx passes its connections to the other host)",
                  "failover": f"SIGKILL to {KILLED}'s process group once a member stored a rating",
                  "paces": {p: load.PACES[p]._asdict() for p in {args.pace, args.failover_pace}},
                  "phase_seconds": args.phase_seconds, "critique_round": not args.no_critique,
                  "cluster_brought_up": brought_up, "kept": args.keep},
        "seconds": round(time.monotonic() - started, 1),
    })
    report.update({k: v for k, v in record.finish().items() if k != "command"})
    table = markdown(report)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(f"# Cluster benchmark\n\n`{report['command']}` — {report['created']}, "
                                      f"{report['seconds']} s\n\n{table}")
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
