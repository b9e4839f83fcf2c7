#!/usr/bin/env python
"""Does the mediator learn? A simulated study that closes the loop, on the real stack.

Simulated participants with hidden, consistent preferences (``participants/preferences.py``: values they care
about as hidden word lists, a preferred length, dislikes of absolute words, repetition and cut-off sentences, and
a fixed personal idiosyncrasy per statement — nothing the system sees, and not a function of MiniLM features) join
over HTTP and rate over the real websocket protocol (``bots/client.py``, policy ``hidden:SEED``), against
daphne + a Celery worker + the embedded SmolLM2 on PostgreSQL and Redis.

* **Phase A**: ``--groups-a`` groups with the base generator (no best-of-N) on the phase-A questions.
* **Learning**: the reward model (the default hybrid design) trains on phase A's ratings, the generator is
  fine-tuned (TRL ``SFTTrainer``, the CPU defaults of ``finetune_generator``) on the statements phase A endorsed,
  and best-of-N switches on (``--best-of-n`` generated, the study's 4 shown, utilitarian welfare).
* **Phase B**: ``--groups-b`` groups per arm on new questions, both arms at once: the *learning* arm (the phase-A
  study, now serving the fine-tuned version with best-of-N) against a *control* arm (a study like phase A's: base
  generator, no best-of-N).

Simulated participants are marked ``Participant.is_simulated``; the training here opts into their ratings
explicitly (``include_simulated`` in the reward model's and the generator's config), which the result records.

Headline: the members' mean agreement (their own 1–7 ratings) with their group's winning statement, per phase and
arm, with 95 % group-bootstrap intervals, and the learning − control difference. Writes
``benchmarks/results/loop.json``, ``loop.md`` and ``loop.png``.

Run alone (the machine has 2 cores): ``.venv/bin/python benchmarks/loop.py`` (about 40–60 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCHMARKS = ROOT / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from provenance import run_record  # noqa: E402 (command, commit and times of the run)
from stack import create_database, drop_database  # noqa: E402 (a fresh PostgreSQL database per run)

from tests.e2e.stack import free_port  # noqa: E402
from tests.waiting import wait_until_serving  # noqa: E402 (the shared wait-for-server loop)

RESULTS = ROOT / "benchmarks" / "results"
QUESTIONS_FILE = ROOT.parent / "shared" / "data" / "habermas" / "230118_chinchilla_questions.json"


# --- statistics (pure) ------------------------------------------------------------------------
def bootstrap_mean(values: list[float], *, reps: int = 2000, seed: int = 0) -> dict:
    """Mean and 95 % percentile interval, resampling the values (one per group) with replacement."""
    import numpy as np

    if not values:
        return {"mean": None, "low": None, "high": None, "n": 0}
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(reps, len(data)))].mean(axis=1)
    return {"mean": float(data.mean()), "low": float(np.percentile(means, 2.5)),
            "high": float(np.percentile(means, 97.5)), "n": len(data)}


def bootstrap_difference(a: list[float], b: list[float], *, reps: int = 2000, seed: int = 0) -> dict:
    """mean(a) − mean(b) with a 95 % interval, resampling each arm's groups independently; ``p_le_0`` is the share
    of resamples in which a did not beat b."""
    import numpy as np

    if not a or not b:
        return {"difference": None, "low": None, "high": None, "p_le_0": None}
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    dx = x[rng.integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    dy = y[rng.integers(0, len(y), size=(reps, len(y)))].mean(axis=1)
    diff = dx - dy
    return {"difference": float(x.mean() - y.mean()), "low": float(np.percentile(diff, 2.5)),
            "high": float(np.percentile(diff, 97.5)), "p_le_0": float((diff <= 0).mean())}


# --- the stack ----------------------------------------------------------------------------------
class Stack:
    """daphne and a Celery worker (threads pool, generation batching on; beat for deadlines) as child processes."""

    def __init__(self, work: Path, env: dict, port: int):
        self.work, self.env, self.port = work, env, port
        self.procs: list[tuple[subprocess.Popen, object]] = []

    def start(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        path = self.work / f"{name}.log"
        log = open(path, "w")
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc, path

    def __enter__(self) -> Stack:
        self.start("celery", [sys.executable, "-m", "celery", "-A", "config", "worker", "-B", "-Q",
                              "celery,generation", "--pool=threads", "--concurrency=4", "--loglevel=INFO",
                              "-s", str(self.work / "celerybeat-schedule")])
        # config.serve: daphne with the settings' websocket limits, as in production
        proc, log = self.start("daphne", [sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p",
                                          str(self.port)])
        wait_until_serving(f"http://127.0.0.1:{self.port}/", proc, log)
        return self

    def __exit__(self, *exc) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc, log in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


# --- studies (Django) -----------------------------------------------------------------------------
def pick_questions(count: int, seed: int) -> list[dict]:
    """``count`` distinct Habermas questions drawn with the seed (phase A's and phase B's come from one draw)."""
    questions = json.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))
    usable = [q for q in questions if q.get("question") and len(q["question"]) < 200]
    return random.Random(f"loop-questions:{seed}").sample(usable, count)


def make_study(slug: str, title: str, questions: list[dict], args) -> object:
    from deliberation.models import Study

    study = Study.objects.create(
        slug=slug, title=title, min_group_size=args.group_size, max_group_size=args.group_size,
        num_candidates=args.candidates, generation_backend=Study.Backend.EMBEDDED, lobby_timeout_seconds=1800,
        opinion_seconds=args.phase_seconds, rating_seconds=args.phase_seconds, critique_seconds=args.phase_seconds,
        final_rating_seconds=args.phase_seconds, critique_round=args.critique_round,
        generation_params={"max_new_tokens": args.max_new_tokens}, generation_seed=args.seed,
        completion_code_completed="LOOPOK", completion_code_dropped="LOOPDROP",
        completion_code_lobby_timeout="LOOPLOBBY")
    set_questions(study, questions)
    return study


def set_questions(study, questions: list[dict]) -> None:
    from deliberation.models import Question

    objs = []
    for q in questions:
        obj, _ = Question.objects.get_or_create(
            text=q["question"], defaults={"affirming_statement": q.get("affirming_statement", ""),
                                          "negating_statement": q.get("negating_statement", ""),
                                          "external_id": str(q.get("id", "")), "topic": q.get("topic")})
        objs.append(obj)
    study.questions.set(objs)


def bot_config(server: str, study, n: int, run_id: str, args):
    from bots.client import BotConfig
    from participants.services import simulated_join_token

    spec = f"hidden:{args.population_seed}"
    return BotConfig(server=server, study=study.slug, participants=n, seed=args.seed, think=args.think,
                     opinions=spec, rating_policy=spec, timeout=args.timeout, stagger=0.3, progress=True,
                     run_id=run_id, simulated_token=simulated_join_token(study.slug))


def run_arms(configs: list) -> list[dict]:
    from bots.client import run_bots_async

    async def both():
        return await asyncio.gather(*(run_bots_async(c) for c in configs))

    return list(asyncio.run(both()))


def group_rows(study, *, population_seed: int) -> list[dict]:
    """Per finished group: the members' mean agreement with the round-1 winner (and the revised winner when there
    is a critique round), with all shown candidates, and the winner's mean quality — from the ratings the
    simulated members sent; plus the members' hidden utility of the winner, recomputed from their profiles."""
    from deliberation.models import Candidate, Group, Rating
    from participants.preferences import Population

    population = Population(seed=population_seed)
    rows = []
    for g in Group.objects.filter(study=study).select_related("question", "winner_round1", "winner_round2"):
        if g.phase != "done" or g.winner_round1_id is None:
            continue
        ratings = list(Rating.objects.filter(group=g, round=1).select_related("participant"))
        shown = set(Candidate.objects.filter(group=g, round=1, shown=True).values_list("id", flat=True))
        on_winner = [r for r in ratings if r.candidate_id == g.winner_round1_id]
        on_shown = [r.agreement for r in ratings if r.candidate_id in shown and r.agreement is not None]
        members = {r.participant_id: r.participant for r in ratings}
        utilities = []
        for p in members.values():
            run_id, _, index = (p.recruitment_id or "")[len("bot-"):].rpartition("-") if (
                p.recruitment_id or "").startswith("bot-") else ("", "", "")
            if run_id:
                utilities.append(population.member(f"{run_id}:{index}").utility(g.winner_round1.text))
        row = {"group_id": g.pk, "question": g.question.text[:120], "members": len(members),
               "winner_agreement": _mean([r.agreement for r in on_winner if r.agreement is not None]),
               "winner_quality": _mean([r.quality for r in on_winner if r.quality is not None]),
               "shown_agreement": _mean(on_shown), "winner_utility": _mean(utilities),
               "winner_words": len(g.winner_round1.text.split()), "winner": g.winner_round1.text}
        if g.winner_round2_id:
            final = Rating.objects.filter(group=g, round=2, candidate_id=g.winner_round2_id)
            row["final_agreement"] = _mean([r.agreement for r in final if r.agreement is not None])
        rows.append(row)
    return rows


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarise(rows: list[dict], seed: int) -> dict:
    out = {"groups": len(rows)}
    for key in ("winner_agreement", "shown_agreement", "winner_quality", "winner_utility", "final_agreement"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            out[key] = bootstrap_mean(values, seed=seed)
    out["winner_words_mean"] = _mean([r["winner_words"] for r in rows])
    return out


# --- outputs ------------------------------------------------------------------------------------
LABELS = {"phase_a": "Phase A (base)", "control": "Phase B control (base)", "learning": "Phase B learning"}


def markdown(report: dict) -> str:
    m = report["meta"]
    lines = ["# Closed-loop simulated study", "",
             f"`{m['command']}` at commit {m['commit']}, {m['finished_at']} ({m['seconds']:.0f} s on "
             f"{m['cpus']} CPUs). Simulated participants (`Participant.is_simulated`, opted in as training data: "
             f"`include_simulated={m['include_simulated']}`) with hidden preferences `hidden:{m['population_seed']}`; "
             f"groups of {m['group_size']}, {m['candidates']} candidates shown, best-of-{m['best_of_n']} in the "
             "learning arm.", "",
             "| arm | groups | agreement with winner (95 % CI) | agreement with shown candidates | winner quality | "
             "winner hidden utility | winner words |",
             "|---|---:|---|---|---|---|---:|"]

    def cell(s: dict | None) -> str:
        if not s or s.get("mean") is None:
            return "–"
        return f"{s['mean']:.2f} [{s['low']:.2f}, {s['high']:.2f}]"

    for arm in ("phase_a", "control", "learning"):
        s = report["arms"].get(arm)
        if not s:
            continue
        words = s.get("winner_words_mean")
        lines.append(f"| {LABELS[arm]} | {s['groups']} | {cell(s.get('winner_agreement'))} | "
                     f"{cell(s.get('shown_agreement'))} | {cell(s.get('winner_quality'))} | "
                     f"{cell(s.get('winner_utility'))} | {f'{words:.0f}' if words is not None else '–'} |")
    d = report.get("learning_minus_control", {})
    if d.get("winner_agreement", {}).get("difference") is not None:
        w = d["winner_agreement"]
        lines += ["", f"Learning − control, agreement with the winner: **{w['difference']:+.2f}** "
                      f"[{w['low']:+.2f}, {w['high']:+.2f}] (share of bootstrap resamples ≤ 0: {w['p_le_0']:.3f})."]
    t = report.get("training", {})
    rm, gen = t.get("reward_model", {}), t.get("generator", {})
    lines += ["", "Training on phase A:",
              f"- reward model: {rm.get('status')}; validation pairwise accuracy "
              f"{_fmt(rm.get('validation_pairwise_accuracy'))} on {rm.get('n_validation_groups')} held-out groups; "
              f"{rm.get('seconds', 0):.0f} s",
              f"- generator: {gen.get('status')}; {gen.get('detail', '')}", "",
              "![agreement per arm](loop.png)", ""]
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and not math.isnan(value) else "–"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ("phase_a", "control", "learning") if report["arms"].get(a)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, title in ((axes[0], "winner_agreement", "Agreement with the winner"),
                           (axes[1], "shown_agreement", "Agreement with shown candidates")):
        means, errs = [], [[], []]
        for a in arms:
            s = report["arms"][a].get(key) or {}
            mean = s.get("mean") or 0.0
            means.append(mean)
            errs[0].append(mean - (s.get("low") or mean))
            errs[1].append((s.get("high") or mean) - mean)
        ax.bar(range(len(arms)), means, yerr=errs, capsize=6, color=["#999999", "#4c78a8", "#f58518"][:len(arms)])
        ax.set_xticks(range(len(arms)), [LABELS[a].replace(" (", "\n(") for a in arms], fontsize=8)
        ax.set_ylim(1, 7)
        ax.set_ylabel("mean 1–7 agreement (95 % group bootstrap)", fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------
def parse_think(value: str) -> tuple[float, float]:
    low, _, high = value.partition(":")
    return float(low), float(high or low)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups-a", type=int, default=20, help="Phase-A groups (base generator). Default 20.")
    p.add_argument("--groups-b", type=int, default=20, help="Phase-B groups per arm. Default 20.")
    p.add_argument("--group-size", type=int, default=3, help="Members per group (default 3).")
    p.add_argument("--questions", type=int, default=10, help="Questions per phase (phase B's are new). Default 10.")
    p.add_argument("--candidates", type=int, default=4, help="Candidates shown per round (default 4).")
    p.add_argument("--best-of-n", type=int, default=8, help="Candidates generated in the learning arm (default 8).")
    p.add_argument("--max-new-tokens", type=int, default=96, help="Tokens per statement (default 96).")
    p.add_argument("--critique-round", action="store_true", help="Add the critique and revision round (slower).")
    p.add_argument("--phase-seconds", type=int, default=300, help="Phase deadline (bots answer long before).")
    p.add_argument("--think", type=parse_think, default=(0.3, 1.5), help="Bot think time MIN:MAX seconds.")
    p.add_argument("--timeout", type=float, default=5400.0, help="Give up on a bot after this many seconds.")
    p.add_argument("--population-seed", type=int, default=0, help="Seed of the hidden-preference population.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the bots, question draw, generation and training.")
    p.add_argument("--min-quality", type=float, default=None,
                   help="Fine-tuning data: statements whose mean quality is at least this. Default: export "
                        "--min-quality's 5 when that leaves enough statements to fine-tune "
                        "(GENERATOR_MIN_TRAINING_EXAMPLES), else the median of phase A's statements' mean quality "
                        "(the better-rated half), a rule fixed before any run.")
    p.add_argument("--finetune-steps", type=int, default=None, help="Generator fine-tuning steps (default: 20).")
    p.add_argument("--lora", action="store_true", help="Fine-tune a LoRA adapter instead of the full model.")
    p.add_argument("--postgres", default=os.environ.get("LOOP_POSTGRES", "postgres://postgres@127.0.0.1:5432"),
                   help="PostgreSQL server; a fresh database is created on it (dropped afterwards unless --keep).")
    p.add_argument("--redis-url", default=os.environ.get("LOOP_REDIS", "redis://127.0.0.1:6379/12"),
                   help="Redis for the channel layer and Celery (default db 12).")
    p.add_argument("--keep", action="store_true", help="Keep the database and the work folder (models, logs).")
    p.add_argument("--out", default=str(RESULTS / "loop"), help="Output path without extension.")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    for name in ("groups_a", "groups_b", "group_size", "questions", "candidates"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.best_of_n < args.candidates:
        raise SystemExit("--best-of-n must be at least --candidates")
    started = time.monotonic()
    record = run_record(argv)
    db_name = f"bench_loop_{os.getpid()}"
    admin = args.postgres.rstrip("/") + "/postgres"
    db_url = f"{args.postgres.rstrip('/')}/{db_name}"
    work = Path(tempfile.mkdtemp(prefix="loop-bench-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": db_url,
           "REDIS_URL": args.redis_url, "SECRET_KEY": "loop-benchmark-" + secrets.token_hex(8), "DEBUG": "false",
           "JOIN_RATE_LIMIT": "0", "REWARD_MODELS_DIR": str(work / "reward_models"),
           "GENERATOR_MODELS_DIR": str(work / "generator_models"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY",
                                           "DEBUG", "JOIN_RATE_LIMIT", "REWARD_MODELS_DIR", "GENERATOR_MODELS_DIR",
                                           "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")})
    create_database(admin, db_name)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per bot request otherwise
    import django
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    report: dict = {"arms": {}, "groups": {}, "training": {}}
    timings: dict[str, float] = {}
    try:
        with Stack(work, env, free_port()) as stack:
            server = f"http://127.0.0.1:{stack.port}"
            report = run_loop(server, args, report, timings)
    finally:
        if not args.keep:
            drop_database(admin, db_name)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept database {db_name} and work folder {work}", file=sys.stderr)
    seconds = time.monotonic() - started
    report["meta"] = {
        **record.finish(),
        "seconds": round(seconds, 1), "phase_seconds": timings, "cpus": os.cpu_count(),
        "groups_a": args.groups_a, "groups_b": args.groups_b, "group_size": args.group_size,
        "questions_per_phase": args.questions, "candidates": args.candidates, "best_of_n": args.best_of_n,
        "max_new_tokens": args.max_new_tokens, "critique_round": args.critique_round, "seed": args.seed,
        "population_seed": args.population_seed, "include_simulated": True,
        "simulated_raters": "participants/preferences.py (hidden facets, style and idiosyncrasy)",
        "metric": "members' own 1-7 agreement ratings of the round-1 winner, mean per group; 95 % percentile "
                  "interval from 2000 group-bootstrap resamples"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


def run_loop(server: str, args, report: dict, timings: dict) -> dict:
    from analysis.generator.registry import generator_model_create, generator_model_train, generator_model_use
    from analysis.generator.train import GeneratorConfig
    from analysis.models import RewardModel
    from analysis.reward.config import RewardConfig
    from analysis.reward.registry import reward_model_create, reward_model_train
    from deliberation.models import Study

    questions = pick_questions(2 * args.questions, args.seed)
    questions_a, questions_b = questions[: args.questions], questions[args.questions:]
    n_a, n_b = args.groups_a * args.group_size, args.groups_b * args.group_size

    # Phase A: the base generator.
    t0 = time.monotonic()
    learning = make_study("loop-learning", "Closed loop: learning arm (phase A, then phase B)", questions_a, args)
    bots_a = run_arms([bot_config(server, learning, n_a, f"a{args.seed}", args)])[0]
    timings["phase_a"] = round(time.monotonic() - t0, 1)
    report["bots"] = {"phase_a": _bot_summary(bots_a)}
    rows_a = group_rows(learning, population_seed=args.population_seed)
    report["groups"]["phase_a"] = rows_a
    report["arms"]["phase_a"] = summarise(rows_a, args.seed)

    # Learning: the reward model, the generator, best-of-N.
    t0 = time.monotonic()
    rm = reward_model_create(study=learning, config=RewardConfig(seed=args.seed, include_simulated=True),
                             name="loop reward model")
    rm_info: dict = {"id": rm.pk}
    try:
        rm = reward_model_train(reward_model_id=rm.pk)
        validation = (rm.metrics or {}).get("validation", {})
        rm_info.update(status=rm.status, validation_pairwise_accuracy=validation.get("pairwise_accuracy"),
                       validation=validation, n_train_ratings=rm.metrics.get("n_train_ratings"),
                       n_validation_groups=rm.metrics.get("n_validation_groups"))
    except Exception as exc:  # reported; the learning arm then runs without best-of-N
        rm_info.update(status="failed", error=str(exc)[:500])
    rm_info["seconds"] = round(time.monotonic() - t0, 1)
    timings["reward_model"] = rm_info["seconds"]

    t0 = time.monotonic()
    min_quality, quality_rule = fine_tune_threshold(learning, args.min_quality)
    gen_config = GeneratorConfig(seed=args.seed, include_simulated=True, lora=args.lora, min_quality=min_quality,
                                 **({"max_steps": args.finetune_steps} if args.finetune_steps else {}))
    gen_info: dict = {"config": gen_config.to_dict(), "min_quality_rule": quality_rule}
    try:
        version = generator_model_create(study=learning, config=gen_config, name="loop generator")
        version = generator_model_train(generator_model_id=version.pk)
        generator_model_use(study=learning, generator_model=version)
        m = version.metrics
        gen_info.update(status="done", id=version.pk, metrics=m,
                        detail=f"{m['n_train']} statements from {m['n_train_groups']} groups, {m['steps']} steps, "
                               f"validation loss {m['validation_loss_before']:.3f} → {m['validation_loss']:.3f}")
    except Exception as exc:  # too little endorsed data, or a failed run: the base generator stays
        gen_info.update(status="not used", detail=f"the base generator stays: {str(exc)[:400]}")
    gen_info["seconds"] = round(time.monotonic() - t0, 1)
    timings["generator"] = gen_info["seconds"]
    report["training"] = {"reward_model": rm_info, "generator": gen_info}

    learning.refresh_from_db()
    if rm_info.get("status") == RewardModel.Status.DONE:
        Study.objects.filter(pk=learning.pk).update(best_of_n=args.best_of_n, reward_model_id=rm.pk)
        # Groups run with their study arm's settings (docs/experimenter.md#arms): phase A's arm turns best-of-N on.
        learning.arms.update(best_of_n=args.best_of_n)
    set_questions(learning, questions_b)
    control = make_study("loop-control", "Closed loop: control arm (phase B)", questions_b, args)

    # Phase B: both arms at once, on new questions.
    t0 = time.monotonic()
    bots_l, bots_c = run_arms([bot_config(server, learning, n_b, f"l{args.seed}", args),
                               bot_config(server, control, n_b, f"c{args.seed}", args)])
    timings["phase_b"] = round(time.monotonic() - t0, 1)
    report["bots"].update(learning=_bot_summary(bots_l), control=_bot_summary(bots_c))
    phase_b_ids = {g["group_id"] for g in rows_a}
    rows_l = [r for r in group_rows(learning, population_seed=args.population_seed) if r["group_id"] not in phase_b_ids]
    rows_c = group_rows(control, population_seed=args.population_seed)
    report["groups"].update(learning=rows_l, control=rows_c)
    report["arms"].update(learning=summarise(rows_l, args.seed), control=summarise(rows_c, args.seed))
    report["learning_minus_control"] = {
        key: bootstrap_difference([r[key] for r in rows_l if r.get(key) is not None],
                                  [r[key] for r in rows_c if r.get(key) is not None], seed=args.seed)
        for key in ("winner_agreement", "shown_agreement", "winner_utility", "winner_quality")}
    return report


def fine_tune_threshold(study, requested: float | None) -> tuple[float, str]:
    """The quality threshold of the fine-tuning data and the rule that chose it (see --min-quality)."""
    import statistics

    from django.conf import settings

    from analysis.exports import DEFAULT_MIN_QUALITY
    from analysis.generator.registry import study_sft_rows

    if requested is not None:
        return requested, "given"
    rows = study_sft_rows(study=study, min_quality=DEFAULT_MIN_QUALITY, include_simulated=True)
    if len(rows) >= settings.GENERATOR_MIN_TRAINING_EXAMPLES:
        return DEFAULT_MIN_QUALITY, f"default {DEFAULT_MIN_QUALITY} ({len(rows)} statements)"
    every = study_sft_rows(study=study, min_quality=1.0, include_simulated=True)
    qualities = [r["mean_quality"] for r in every if r.get("mean_quality") is not None]
    if not qualities:
        return DEFAULT_MIN_QUALITY, "default (no rated statements)"
    median = float(statistics.median(qualities))
    return median, (f"median of phase A's mean quality ({median:.2f}): the default {DEFAULT_MIN_QUALITY} left "
                    f"{len(rows)} statements, fewer than {settings.GENERATOR_MIN_TRAINING_EXAMPLES}")


def _bot_summary(summary: dict) -> dict:
    keys = ("participants_started", "completed", "dropped", "unfinished", "writes_sent", "writes_acknowledged",
            "errors_received", "error_codes", "reconnects", "failures", "seconds")
    return {k: summary.get(k) for k in keys}


if __name__ == "__main__":
    main(sys.argv[1:])
