"""Generation benchmark: embedded sequential vs batched vs coalesced vs the llama.cpp server, and
orchestration overhead through a real Celery worker.

    .venv/bin/python benchmarks/generation.py [--groups 3] [--candidates 5] [--max-new-tokens 64]

Writes benchmarks/results/generation.json and .md. Every mode generates the same prompts with
the same seeds on the same machine in one run; absolute times on a shared 2-core machine are noise,
the ratios are the result.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generation.backends import GenerationRequest, get_backend  # noqa: E402
from generation.backends.embedded import find_gguf  # noqa: E402
from generation.prompts import CONSENSUS, STOP_SEQUENCES, render_consensus  # noqa: E402
from tests.e2e.stack import free_port  # noqa: E402
from tests.waiting import wait_until_serving  # noqa: E402

QUESTIONS = json.loads((ROOT.parent / "shared" / "data" / "habermas" / "230118_chinchilla_questions.json").read_text())


def group_requests(group: int, candidates: int, max_new_tokens: int) -> list[GenerationRequest]:
    """A group of 5: its question's affirming/negating statements as the members' opinions, shuffled per candidate."""
    q = QUESTIONS[group * 7]
    opinions = [q["affirming_statement"], q["negating_statement"], q["affirming_statement"] + " But only partly.",
                q["negating_statement"] + " Mostly.", "I am not sure; both sides have a point about " + q["question"]]
    requests = []
    for i in range(candidates):
        order = list(opinions)
        random.Random(group * 100 + i).shuffle(order)
        requests.append(GenerationRequest(messages=render_consensus(CONSENSUS, q["question"], order),
                                          seed=group * 100 + i, max_new_tokens=max_new_tokens, temperature=0.8,
                                          stop=STOP_SEQUENCES))
    return requests


def summarise(name: str, per_group_seconds: list[float], total_seconds: float, candidates: int, tokens: int) -> dict:
    ordered = sorted(per_group_seconds)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"mode": name, "candidates": candidates, "completion_tokens": tokens, "seconds": round(total_seconds, 2),
            "candidates_per_s": round(candidates / total_seconds, 3),
            "group_latency_p50_s": round(statistics.median(ordered), 2), "group_latency_p95_s": round(p95, 2)}


def run_embedded(groups, mode: str) -> dict:
    backend = get_backend("embedded")
    backend.loaded  # load before timing
    latencies, tokens, count = [], 0, 0
    started = time.perf_counter()
    if mode == "coalesced":  # every group's requests in one padded batch, as the worker's coalescer makes them
        results = backend.generate([r for g in groups for r in g])
        elapsed = time.perf_counter() - started
        latencies = [elapsed] * len(groups)
        tokens, count = sum(r.completion_tokens for r in results), len(results)
    else:
        for requests in groups:
            t0 = time.perf_counter()
            results = ([backend.generate([r])[0] for r in requests] if mode == "sequential"
                       else backend.generate(requests))
            latencies.append(time.perf_counter() - t0)
            tokens += sum(r.completion_tokens for r in results)
            count += len(results)
        elapsed = time.perf_counter() - started
    return summarise(f"embedded {mode}", latencies, elapsed, count, tokens)


def run_llama_server(groups, concurrency_levels) -> list[dict]:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return [{"mode": "llama.cpp server", "skipped": "llama-cpp-python not installed (scripts/build-llama-server)"}]
    folder, name = find_gguf()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(folder / name), "--host",
                               "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(base + "/models", server, timeout=240)
        rows = []
        for concurrency in concurrency_levels:
            backend = get_backend("openai", base_url=base, concurrency=concurrency, timeout=600)
            latencies, tokens, count = [], 0, 0
            started = time.perf_counter()

            def one(requests):
                t0 = time.perf_counter()
                results = backend.generate(requests)
                return time.perf_counter() - t0, results

            with ThreadPoolExecutor(max_workers=max(1, concurrency // len(groups[0]) or 1)) as pool:
                for latency, results in pool.map(one, groups):
                    latencies.append(latency)
                    tokens += sum(r.completion_tokens for r in results)
                    count += len(results)
            rows.append(summarise(f"llama.cpp server, concurrency {concurrency}", latencies,
                                  time.perf_counter() - started, count, tokens))
        return rows
    finally:
        server.terminate()
        server.wait(timeout=30)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Generation benchmark ({meta['groups']} groups of 5, {meta['candidates']} candidates each, "
             f"≤{meta['max_new_tokens']} new tokens, SmolLM2-135M on {meta['cpus']} CPUs)", "",
             "| mode | candidates/s | group p50 (s) | group p95 (s) | tokens | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['mode']} | skipped: {r['skipped']} | | | | |")
            continue
        lines.append(f"| {r['mode']} | {r['candidates_per_s']} | {r['group_latency_p50_s']} | "
                     f"{r['group_latency_p95_s']} | {r['completion_tokens']} | {r['seconds']} |")
    for key, value in meta.get("ratios", {}).items():
        lines.append(f"\n{key}: **{value}**")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 8])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generation")
    args = parser.parse_args()
    from provenance import run_record  # command, commit and times for the result file

    run = run_record()
    groups = [group_requests(g, args.candidates, args.max_new_tokens) for g in range(args.groups)]
    rows = [run_embedded(groups, "sequential"), run_embedded(groups, "batched"), run_embedded(groups, "coalesced")]
    rows += run_llama_server(groups, args.concurrency)
    by_mode = {r["mode"]: r for r in rows if "skipped" not in r}
    seq = by_mode["embedded sequential"]["candidates_per_s"]
    ratios = {"batched / sequential candidates/s": round(by_mode["embedded batched"]["candidates_per_s"] / seq, 2),
              "coalesced / sequential candidates/s": round(by_mode["embedded coalesced"]["candidates_per_s"] / seq, 2)}
    servers = [r for m, r in by_mode.items() if m.startswith("llama.cpp")]
    if servers:
        best = max(servers, key=lambda r: r["candidates_per_s"])
        ratios["embedded coalesced / best llama.cpp server candidates/s"] = round(
            by_mode["embedded coalesced"]["candidates_per_s"] / best["candidates_per_s"], 2)
    overhead = orchestration_overhead() if os.environ.get("BENCH_ORCHESTRATION", "1") == "1" else None
    if overhead:
        rows.append(overhead)
        ratios["orchestration overhead (queued→stored+pushed minus backend) / backend"] = overhead["overhead_ratio"]
    meta = {**run.finish(), "groups": args.groups, "candidates": args.candidates, "max_new_tokens": args.max_new_tokens,
            "cpus": os.cpu_count(), "ratios": ratios, "torch_threads_env": os.environ.get("EMBEDDED_NUM_THREADS")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = markdown([r for r in rows if "overhead_ratio" not in r], meta)
    args.out.with_suffix(".md").write_text(table)
    print(table)


def orchestration_overhead() -> dict | None:
    """Through the real path: opinions committed → Celery worker (queue generation) → candidates stored and
    pushed. Uses a scratch PostgreSQL database and the machine's Redis."""
    import django

    env = {"DJANGO_SETTINGS_MODULE": "config.settings.test",
           "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/deliberation_bench",
           "REDIS_URL": "redis://127.0.0.1:6379/7"}
    os.environ.update(env)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "DROP DATABASE IF EXISTS deliberation_bench"],
                   capture_output=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "CREATE DATABASE deliberation_bench"],
                   capture_output=True, check=True)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from deliberation.models import Candidate, GroupEvent
    from deliberation.services import opinion_submit
    from tests.factories import make_group, make_study

    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "generation",
                               "--pool=threads", "-c", "4", "--loglevel=WARNING"], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        samples = []
        for i in range(4):  # the first group warms the worker (model load) and is not counted
            study = make_study(slug=f"bench{i}", max_group_size=5, min_group_size=5, num_candidates=5,
                               generation_backend="embedded",
                               generation_params={"max_new_tokens": 64, "temperature": 0.8})
            group, members = make_group(study, n=5)
            for m in members:
                opinion_submit(participant=m, text=f"Opinion {m.position}: we should weigh costs and fairness "
                                                   f"of this policy carefully for everyone.")
            deadline = time.time() + 600
            while not GroupEvent.objects.filter(group=group, kind="candidates_stored").exists():
                if time.time() > deadline:
                    return {"mode": "orchestration", "skipped": "worker did not store candidates in 600 s"}
                time.sleep(0.05)
            stored = GroupEvent.objects.get(group=group, kind="candidates_stored")
            pushed = GroupEvent.objects.filter(group=group, kind="phase_changed", payload__to_phase="rating").first()
            end = (pushed or stored).created_at.timestamp()
            backend_ms = max(Candidate.objects.filter(group=group).values_list("latency_ms", flat=True))
            queued_at = GroupEvent.objects.filter(group=group, kind="opinion_submitted").order_by("-id")[0]
            total = end - queued_at.created_at.timestamp()
            if i:
                samples.append((total, backend_ms / 1000))
        total = sum(s[0] for s in samples)
        backend = sum(s[1] for s in samples)
        return {"mode": "orchestration", "groups": len(samples), "queued_to_stored_s": round(total, 2),
                "backend_s": round(backend, 2), "overhead_ratio": round((total - backend) / backend, 3)}
    finally:
        worker.terminate()
        worker.wait(timeout=30)


if __name__ == "__main__":
    main()
