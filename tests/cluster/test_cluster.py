"""The production topology on one machine (scripts/cluster: hosts in network namespaces, nginx with TLS in front,
two web hosts, a Celery worker, two generation workers, beat, PostgreSQL and Redis each on its own host), driven
by bots that reach the study only through the proxy's address. Faults: a web host killed, Redis's link cut, a
generation worker killed mid-task, PostgreSQL restarted. Every write the bots logged as stored is in the database
exactly once (tests/faults/ledger.py).

These tests need root (namespaces). They fail rather than skip unless ``CLUSTER_TESTS=0`` is set explicitly.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections import defaultdict

import psycopg
import pytest
import redis

from bots.client import BotConfig, run_bots

from ..e2e.stack import ROOT
from ..faults.ledger import compare
from ..waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
CLUSTER = [str(ROOT / "scripts" / "cluster")]
PHASE_SECONDS = 150  # far beyond each test: nothing may be stored by a deadline


def cluster(*args: str, timeout: float = 240) -> str:
    result = subprocess.run(["bash", *CLUSTER, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"scripts/cluster {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def env():
    if os.environ.get("CLUSTER_TESTS") == "0":
        pytest.skip("CLUSTER_TESTS=0: the cluster tests were turned off explicitly")
    assert os.geteuid() == 0, "the cluster tests need root (network namespaces); set CLUSTER_TESTS=0 to turn them off"
    cluster("up", timeout=600)
    info = json.loads(cluster("env"))
    try:
        yield info
    finally:
        # The hosts' logs outlive the cluster, for a failure's post-mortem (test-artifacts/ is not committed).
        shutil.copytree(os.path.join(info["state"], "logs"), ROOT / "test-artifacts" / "cluster-logs",
                        dirs_exist_ok=True)
        cluster("down")


def sql(env, query: str, params=()):
    with psycopg.connect(env["database_url"], connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def make_study(env, slug: str, **fields) -> int:
    """A study in the cluster's database, made by a management command as an experimenter's admin would."""
    values = dict(title="Cluster study", min_group_size=3, max_group_size=3, num_candidates=2,
                  generation_backend="extractive", completion_code_completed="DONE123",
                  completion_code_lobby_timeout="LOBBY9", completion_code_dropped="DROP7",
                  opinion_seconds=PHASE_SECONDS, rating_seconds=PHASE_SECONDS, critique_seconds=PHASE_SECONDS,
                  final_rating_seconds=PHASE_SECONDS, lobby_timeout_seconds=PHASE_SECONDS)
    values.update(fields)
    code = (
        "import json; from deliberation.models import Question, Study\n"
        f"s = Study.objects.create(slug={slug!r}, **json.loads({json.dumps(values)!r}))\n"
        "q, _ = Question.objects.get_or_create(text='Should we remove all taxes on food and groceries?', defaults="
        "{'affirming_statement': 'We should remove all taxes on food and groceries.', "
        "'negating_statement': 'We should NOT remove all taxes on food and groceries.'})\n"
        "s.questions.add(q); print('STUDY', s.pk)"
    )
    out = cluster("manage", "shell", "-c", code)
    return int(re.search(r"STUDY (\d+)", out).group(1))


def start_bots(env, slug: str, n: int, seed: int, timeout: float = 200.0, **options) -> tuple[threading.Thread, dict]:
    config = BotConfig(server=env["origin"], study=slug, participants=n, seed=seed, think=(0.3, 1.0),
                       ping_seconds=5.0, timeout=timeout, stagger=0.05, progress=False, run_id=slug,
                       ca_file=env["ca_file"], **options)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(summary=run_bots(config)), daemon=True)
    thread.start()
    return thread, box


def finish(env, thread: threading.Thread, box: dict, study_id: int, n: int, timeout: float = 220) -> dict:
    thread.join(timeout=timeout)
    assert not thread.is_alive(), "bots did not finish: " + logs_tail(env)
    summary = box["summary"]
    assert not summary["failures"], summary["failures"]
    assert summary["completed"] == n, [(b["index"], b["status"]) for b in summary["bots"]]
    outcomes = sql(env, "SELECT phase, outcome FROM deliberation_group WHERE study_id = %s", (study_id,))
    assert set(outcomes) == {("done", "completed")}, outcomes
    with psycopg.connect(env["database_url"]) as conn, conn.cursor() as cursor:
        ledger = compare(summary["bots"], cursor, study_id)
    assert ledger["lost"] == [] and ledger["duplicated"] == [] and ledger["unlogged"] == [], ledger
    assert not any(ledger["by_timeout"].values()), ledger["by_timeout"]
    return summary


def logs_tail(env) -> str:
    logs = os.path.join(env["state"], "logs")
    return "\n".join(f"--- {name}\n{open(os.path.join(logs, name), errors='replace').read()[-1200:]}"
                     for name in sorted(os.listdir(logs)))


def web_hosts_of(env, tokens: list[str]) -> dict[str, set[str]]:
    """token -> the web hosts the proxy sent that participant's websockets to (nginx's websocket log)."""
    by_address = {env["addresses"][h]: h for h in ("web-1", "web-2")}
    found: dict[str, set[str]] = defaultdict(set)
    wanted = set(tokens)
    with open(os.path.join(env["state"], "logs", "websockets.log")) as log:
        for line in log:
            _, upstream, uri, _status = line.split()
            match = re.fullmatch(r"/ws/p/([^/]+)/", uri)
            host = by_address.get(upstream.rsplit(":", 1)[0])
            if match and host and match.group(1) in wanted:
                found[match.group(1)].add(host)
    return found


def rating_under_way(env, study_id: int) -> bool:
    return bool(sql(env, "SELECT 1 FROM deliberation_rating r JOIN deliberation_group g ON g.id = r.group_id "
                         "WHERE g.study_id = %s LIMIT 1", (study_id,)))


def wait_for_rating(env, study_id: int, thread: threading.Thread, box: dict, timeout: float = 150) -> None:
    """Wait until a member of the study has stored a rating; fail at once if the bots gave up before that, with
    what they reported, the study's groups and participants, and the hosts' logs."""
    def explain() -> str:
        try:
            groups = sql(env, "SELECT id, phase, outcome, generation_status FROM deliberation_group "
                              "WHERE study_id = %s", (study_id,))
            people = sql(env, "SELECT status, count(*) FROM participants_participant WHERE study_id = %s "
                              "GROUP BY status", (study_id,))
        except psycopg.Error as exc:  # the database itself may be what failed
            groups = people = f"unreadable ({exc})"
        summary = box.get("summary")
        bots = ({"statuses": [b["status"] for b in summary["bots"]], "failures": summary["failures"]}
                if summary else "still running")
        return f"groups {groups}; participants {people}; bots {bots}\n{logs_tail(env)}"

    def ready() -> bool:
        if rating_under_way(env, study_id):
            return True
        assert thread.is_alive(), "the bots stopped before any rating was stored: " + explain()
        return False

    wait_for(ready, timeout, lambda: "a stored rating: " + explain(), poll=0.2)


def test_a_study_through_the_proxy_spreads_groups_over_both_web_hosts(env):
    logging.getLogger("httpx").setLevel(logging.WARNING)
    study = make_study(env, "cluster-study")
    thread, box = start_bots(env, "cluster-study", 12, seed=1)
    summary = finish(env, thread, box, study, 12)
    hosts = web_hosts_of(env, [b["token"] for b in summary["bots"]])
    assert {h for found in hosts.values() for h in found} == {"web-1", "web-2"}, dict(hosts)
    by_group: dict[int, set[str]] = defaultdict(set)
    for bot in summary["bots"]:
        by_group[bot["group_id"]] |= hosts[bot["token"]]
    # A group whose members sat on both hosts got every push across hosts (the Redis channel layer) and finished.
    assert any(len(found) == 2 for found in by_group.values()), dict(by_group)


def subscriptions_by_web_host(env) -> dict[str, int]:
    """web host -> the channel-layer subscriptions its processes hold in Redis (``CLIENT LIST``'s ``sub``): one per
    open socket plus one per group a process listens for, so the host with more sockets has more."""
    by_address = {env["addresses"][h]: h for h in ("web-1", "web-2")}
    found = dict.fromkeys(by_address.values(), 0)
    with redis.Redis.from_url(env["redis_url"], socket_timeout=5) as client:
        for entry in client.client_list():
            host = by_address.get(str(entry["addr"]).rsplit(":", 1)[0])
            if host:
                found[host] += int(entry.get("sub", 0))
    return found


def test_a_web_host_killed_mid_rating_fails_over_to_the_other(env):
    study = make_study(env, "cluster-kill")
    thread, box = start_bots(env, "cluster-kill", 12, seed=2)
    wait_for_rating(env, study, thread, box)
    # The host holding the most sockets is killed: nginx may have sent every socket to one host (one failed
    # request takes a host out for fail_timeout, 3 s: as long as the bots take to join), and killing an empty
    # host would test nothing.
    subscriptions = subscriptions_by_web_host(env)
    victim = max(subscriptions, key=subscriptions.get)
    assert subscriptions[victim] > 0, subscriptions
    cluster("kill", victim)
    try:
        summary = finish(env, thread, box, study, 12)
    finally:
        cluster("up")  # the killed host back for the next tests
    assert summary["reconnects"] > 0, f"no bot was on {victim} ({subscriptions})"


def test_redis_link_cut_for_ten_seconds(env):
    study = make_study(env, "cluster-redis")
    thread, box = start_bots(env, "cluster-redis", 6, seed=3)
    wait_for_rating(env, study, thread, box)
    cluster("cut", "redis", "10")
    finish(env, thread, box, study, 6)


def test_postgres_restarted_on_its_host(env):
    study = make_study(env, "cluster-postgres")
    thread, box = start_bots(env, "cluster-postgres", 6, seed=4)
    wait_for_rating(env, study, thread, box)
    cluster("restart", "postgres")
    finish(env, thread, box, study, 6)


def test_the_cluster_benchmark_at_toy_size(env, tmp_path):
    """benchmarks/cluster.py end to end on the cluster already up (--keep: the module's fixture takes it down): a
    one-group ladder on two web hosts and on one, and web-1 killed under ten bots. No timing targets at this size:
    the figures exist, the failover is measured from the bots' own reconnect times, and nothing is lost."""
    out = tmp_path / "cluster"
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "benchmarks/cluster.py", "--n", "5", "--pace", "bot",
                           "--failover-n", "10", "--no-critique", "--keep", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:] + logs_tail(env)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["benchmark"] == "cluster" and report["command"].startswith("python benchmarks/cluster.py --n 5")
    assert report["commit"] and report["started_at"] and report["finished_at"] and report["machine"]["cpus"]
    runs = report["capacity"]["runs"]
    assert [(r["web_hosts"], r["n"]) for r in runs] == [(2, 5), (1, 5)]
    for run in runs:
        assert run["latency"]["count"] > 0 and run["latency"]["p99_ms"] > 0, run["latency"]
        assert run["errors"] == 0 and run["completed"] == 5, (run["error_codes"], run["failures"])
        assert run["state"]["checked"] and run["state"]["unfinished_groups"] == 0, run["state"]
        assert run["state"]["lost_state"] == 0 and run["state"]["duplicated"] == 0, run["state"]
        assert run["state"]["ledger"]["db_writes"] == run["state"]["ledger"]["logged_writes"] > 0, run["state"]
    assert report["capacity"]["two_hosts"] in (0, 5) and report["capacity"]["one_host"] in (0, 5)
    failover = report["failover"]
    summary, run = failover["summary"], failover["run"]
    assert failover["killed"] == "web-1" and run["during"]["killed_at"] > run["started_at"]
    assert summary["affected_bots"] > 0 and summary["not_reconnected"] == [], summary
    assert summary["reconnected"] == summary["affected_bots"]
    assert 0 < summary["seconds_to_all_reconnected"] < 60, summary
    assert 0 < summary["per_bot_closed_to_reconnected_s"]["max"] <= summary["seconds_to_all_reconnected"], summary
    assert run["completed"] == 10 and run["errors"] == 0, (run["error_codes"], run["failures"])
    assert run["state"]["lost_state"] == 0 and run["state"]["duplicated"] == 0, run["state"]
    table = out.with_suffix(".md").read_text()
    assert "| 2 | bot | 5 |" in table and "| 1 | bot | 5 |" in table and "| 10 | bot | web-1 |" in table
    status = json.loads(cluster("status", "--json"))  # both web hosts back for the tests after this one
    assert status["up"], status


@pytest.mark.model
def test_a_generation_host_killed_mid_task_hands_the_task_to_the_other(env):
    study = make_study(env, "cluster-generation", generation_backend="embedded", num_candidates=2,
                       critique_round=False, generation_params={"max_new_tokens": 100, "temperature": 0.7})
    logs = {h: os.path.join(env["state"], "logs", f"{h}.log") for h in ("generation-1", "generation-2")}
    offsets = {h: os.path.getsize(path) for h, path in logs.items()}
    thread, box = start_bots(env, "cluster-generation", 3, seed=5, timeout=420.0)

    def running_on() -> str | None:
        started = sql(env, "SELECT 1 FROM deliberation_groupevent e JOIN deliberation_group g ON g.id = e.group_id "
                           "WHERE g.study_id = %s AND e.kind = 'generation_started'", (study,))
        if not started:
            return None
        for host, path in logs.items():
            with open(path, errors="replace") as log:
                log.seek(offsets[host])
                if re.search(r"generate_candidates\[[^]]+\] received", log.read()):
                    return host
        return None

    wait_for(running_on, 150, lambda: "a generation task started: " + logs_tail(env), poll=0.2)
    host = running_on()
    time.sleep(1)
    if sql(env, "SELECT 1 FROM deliberation_candidate c JOIN deliberation_group g ON g.id = c.group_id "
                "WHERE g.study_id = %s", (study,)):
        pytest.fail("the generation finished before the worker could be killed (make the task longer)")
    cluster("kill", host)
    try:
        finish(env, thread, box, study, 3, timeout=440)
    finally:
        cluster("up")
    counts = sql(env, "SELECT c.round, count(*) FROM deliberation_candidate c JOIN deliberation_group g "
                      "ON g.id = c.group_id WHERE g.study_id = %s AND c.source = 'model' GROUP BY c.round", (study,))
    assert dict(counts).get(1) == 2, counts  # the first round's candidates exist exactly once
