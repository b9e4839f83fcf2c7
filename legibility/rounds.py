"""Verifier rounds: the Django side of ``legibility.verifier`` (services the command, task and admin call).

Round K trains a fresh verifier on the verifier half's solutions from the base prover (shipped, round 0)
and every earlier round's provers (rounds < K), balanced by ``examples.correct_incorrect_pairs``; evaluates
it on held-out problems' solutions (never trained on); saves it under ``LEGIBILITY_VERIFIER_DIR``; and
records scores and metrics on the Verifier row, whose progress the admin shows while it trains.
"""
from __future__ import annotations

import math
import random
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .examples import SolutionExample
from .mixture import MIN_GROUP_SIZE, balanced_mixture
from .models import LegibilityStudy, Problem, Solution, Verifier

PROGRESS_SAVE_SECONDS = 2.0
Progress = Callable[[int, int, float], None]


def verifiers_dir() -> Path:
    return Path(getattr(settings, "LEGIBILITY_VERIFIER_DIR", Path(settings.BASE_DIR) / "var" / "verifiers"))


def as_example(solution: Solution) -> SolutionExample:
    who = solution.role or solution.external_key or solution.source
    return SolutionExample(problem_id=str(solution.problem_id), problem=solution.problem.text,
                           solution=solution.text.strip(), correct=solution.correct,
                           source=f"round {solution.round} {who}")


def _limit_problems(solutions: list[Solution], max_problems: int | None, seed: int) -> list[Solution]:
    """At most ``max_problems`` problems (seeded choice), all of each chosen problem's solutions."""
    if not max_problems:
        return solutions
    problems = sorted({s.problem_id for s in solutions})
    random.Random(seed).shuffle(problems)
    keep = set(problems[:max_problems])
    return [s for s in solutions if s.problem_id in keep]


def training_mixture(study: LegibilityStudy, round_: int, *, max_problems: int | None = None,
                     seed: int = 0) -> tuple[list[Solution], list[dict]]:
    """Round K's training data: the verifier half's solutions from the base prover (round 0) and every earlier
    round's helpful and sneaky provers, as a balanced mixture (``mixture.balanced_mixture``: each counted
    (round, role) contributes equally, no solution repeated more than ``MAX_REPEAT`` times); and its report."""
    rows = list(Solution.objects.filter(problem__study=study, problem__half=Problem.Half.VERIFIER, round__lt=round_)
                .select_related("problem").order_by("id"))
    rows = _limit_problems(rows, max_problems, seed)
    groups: dict[tuple[int, str], list[Solution]] = {}
    for row in rows:
        groups.setdefault((row.round, row.role or "base"), []).append(row)
    return balanced_mixture(groups, seed=seed)


def training_solutions(study: LegibilityStudy, round_: int, *, max_problems: int | None = None,
                       seed: int = 0) -> list[Solution]:
    """The solutions of ``training_mixture`` (a solution may appear up to ``MAX_REPEAT`` times)."""
    return training_mixture(study, round_, max_problems=max_problems, seed=seed)[0]


def heldout_solutions(study: LegibilityStudy, round_: int, *, max_problems: int | None = None,
                      seed: int = 0) -> list[Solution]:
    """Held-out problems' solutions from the same provers (rounds < K): the verifier never saw them."""
    rows = list(Solution.objects.filter(problem__study=study, problem__half=Problem.Half.HELDOUT, round__lt=round_)
                .select_related("problem").order_by("id"))
    return _limit_problems(rows, max_problems, seed)


def json_safe(value):
    """PostgreSQL's JSON has no NaN or Infinity (e.g. a best threshold of +inf): they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def reference_bank(study: LegibilityStudy) -> list[tuple[str, str]]:
    """The worked solutions the verifier's error model learns from: GSM8K's training problems
    (``gsm8k/train.jsonl`` in the data folder) except the study's prover and held-out halves, so the verifier
    never learns from a problem the prover is improved on or that it is evaluated on. Empty when the file is
    missing (the verifier then trains without an error model and says so in its history)."""
    from .examples import load_references
    from .importing import gsm8k_dir
    from .overlap import text_hash

    path = gsm8k_dir() / "train.jsonl"
    if not path.exists():
        return []
    others = Problem.objects.filter(study=study).exclude(half=Problem.Half.VERIFIER).values_list("text", flat=True)
    return load_references(path, exclude_hashes={text_hash(text) for text in others})


def verifier_create(*, study: LegibilityStudy, round_: int, config: dict | None = None) -> Verifier:
    if round_ < 1:
        raise ValueError("verifier rounds start at 1 (round 0 is the base prover's shipped solutions)")
    return Verifier.objects.create(study=study, round=round_, config=config or {})


def _attack_metrics(solutions: list[Solution], scores) -> dict:
    """Attack success of the latest round that has both a helpful and a sneaky prover on held-out problems."""
    from .metrics import attack_success_rate

    rounds = sorted({s.round for s in solutions if s.role == Solution.Role.SNEAKY}
                    & {s.round for s in solutions if s.role == Solution.Role.HELPFUL})
    if not rounds:
        return {}
    last = rounds[-1]
    sneaky = [(s.problem_id, s.correct, float(x)) for s, x in zip(solutions, scores, strict=True)
              if s.round == last and s.role == Solution.Role.SNEAKY]
    helpful = [(s.problem_id, s.correct, float(x)) for s, x in zip(solutions, scores, strict=True)
               if s.round == last and s.role == Solution.Role.HELPFUL]
    result = attack_success_rate(*zip(*sneaky), *zip(*helpful))
    return {"attack_round": last, **result}


def verifier_train(*, verifier_id: int, progress: Progress | None = None, max_train_problems: int | None = None,
                   max_heldout_problems: int | None = None) -> Verifier:
    """Train, evaluate, save and record the registered verifier. On failure the row says why and the error
    is raised again."""
    from . import verifier as vlib

    verifier = Verifier.objects.select_related("study").get(pk=verifier_id)
    study = verifier.study
    Verifier.objects.filter(pk=verifier.pk).update(status=Verifier.Status.TRAINING, progress=0.0, error="",
                                                    progress_message="loading solutions")
    try:
        config = vlib.VerifierConfig.from_dict(verifier.config)
        train_rows, mixture = training_mixture(study, verifier.round, max_problems=max_train_problems,
                                               seed=config.seed)
        held_rows = heldout_solutions(study, verifier.round, max_problems=max_heldout_problems, seed=config.seed)
        if not train_rows:
            raise ValueError(f"no solutions on the verifier half from rounds < {verifier.round} in a group of at "
                             f"least {MIN_GROUP_SIZE}: run import_gsm8k (groups: {mixture})")
        last_save = [0.0]

        def report(step: int, total: int, loss: float) -> None:
            if progress:
                progress(step, total, loss)
            now = time.monotonic()
            if now - last_save[0] >= PROGRESS_SAVE_SECONDS or step == total:
                last_save[0] = now
                # Training is most of the work; evaluation takes the last 10 %.
                Verifier.objects.filter(pk=verifier.pk).update(
                    progress=0.9 * step / total, progress_message=f"step {step}/{total}, loss {loss:.4f}")

        references = reference_bank(study) if config.features and config.error_model > 0 else []
        model, history = vlib.train_verifier([as_example(s) for s in train_rows], config, references=references,
                                             progress=report)
        Verifier.objects.filter(pk=verifier.pk).update(progress=0.9, progress_message="evaluating on held-out")
        metrics = {"train": {k: v for k, v in history.items() if k != "losses"},
                   "rounds_trained_on": sorted({s.round for s in train_rows}), "mixture": mixture}
        scores = []
        if held_rows:
            held_examples = [as_example(s) for s in held_rows]
            scores = vlib.score(model, [e.problem for e in held_examples], [e.solution for e in held_examples])
            metrics["heldout"] = {**vlib.metrics_for_scores(held_examples, scores),
                                  **_attack_metrics(held_rows, scores)}
        directory = vlib.save(model, verifiers_dir() / f"{study.slug}-round-{verifier.round}-{verifier.pk}",
                              metrics=metrics)
        with transaction.atomic():
            for solution, value in zip(held_rows, scores, strict=True):
                solution.verifier_scores = {**solution.verifier_scores, str(verifier.pk): round(float(value), 5)}
            Solution.objects.bulk_update(held_rows, ["verifier_scores"], batch_size=1000)
            Verifier.objects.filter(pk=verifier.pk).update(
                status=Verifier.Status.READY, progress=1.0, progress_message=f"done: {history['steps']} steps",
                path=str(directory), metrics=json_safe(metrics), config=config.to_dict(), n_train=len(train_rows),
                n_heldout=len(held_rows), train_problem_hashes=model.meta["train_problem_hashes"],
                finished_at=timezone.now())
        verifier.refresh_from_db()
        return verifier
    except Exception:
        Verifier.objects.filter(pk=verifier.pk).update(status=Verifier.Status.FAILED,
                                                        error=traceback.format_exc()[-5000:],
                                                        finished_at=timezone.now())
        raise


# --- provers ----------------------------------------------------------------------------------------------
PROVER_HALVES = (Problem.Half.PROVER, Problem.Half.VERIFIER, Problem.Half.HELDOUT)


def prover_improve(*, study: LegibilityStudy, verifier: Verifier, method: str, n_problems: int,
                   config: dict | None = None, progress: Progress | None = None) -> dict:
    """Improve the prover against the frozen round-K ``verifier`` on ``n_problems`` seeded prover-half problems
    (``prover.improve_prover``: TRL GRPO, or expert iteration for CPU-only users), with the reward
    ``config["reward"]`` ("src" by default, "cgc", "goodhart"; see ``rewards.py``). The weights go next to the
    verifier and their folder is recorded in ``verifier.metrics["prover"]``, so ``prover_round`` for that
    round writes its solutions with the improved prover."""
    from . import verifier as vlib
    from .prover import MathProblem, ProverTrainConfig, improve_prover

    if verifier.status != Verifier.Status.READY or not verifier.path:
        raise ValueError(f"verifier {verifier.pk} is not ready")
    if n_problems < 1:
        raise ValueError("n_problems must be at least 1")
    ids = sorted(Problem.objects.filter(study=study, half=Problem.Half.PROVER).values_list("pk", flat=True))
    if not ids:
        raise ValueError("no prover-half problems: run import_gsm8k")
    random.Random(f"{study.seed}:{verifier.round}:improve").shuffle(ids)
    problems = [MathProblem(str(p.pk), p.text, p.reference_solution)
                for p in Problem.objects.filter(pk__in=ids[:n_problems]).order_by("id")]
    previous = (Verifier.objects.filter(study=study, round__lt=verifier.round, status=Verifier.Status.READY)
                .filter(metrics__has_key="prover").order_by("-round").first())
    prover_path = (previous.metrics.get("prover") or {}).get("path") if previous else None
    output = Path(verifier.path).with_name(Path(verifier.path).name + "-prover")
    train_config = ProverTrainConfig(**{"seed": study.seed, **(config or {})})
    update = improve_prover(method=method, problems=problems, verifier=vlib.load(verifier.path), output_dir=output,
                            prover_path=prover_path, config=train_config, progress=progress)
    summary = {"method": method, "reward": train_config.reward, "path": str(update.path),
               "started_from": prover_path or "base SmolLM2",
               "n_problems": len(problems), "seconds": update.log.get("seconds"), "steps": update.log.get("steps"),
               "n_kept": update.log.get("n_kept"), "correct_rate": update.log.get("correct_rate"),
               "mean_reward": update.log.get("mean_reward")}
    verifier.metrics = json_safe({**verifier.metrics, "prover": summary})
    verifier.save(update_fields=["metrics"])
    return summary


def prover_round(*, study: LegibilityStudy, round_: int, verifier: Verifier | None = None, n_problems: int,
                 batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> dict:
    """Helpful and sneaky provers write round-K solutions through the study's generation backend.

    On ``n_problems`` seeded problems of each half: the prover half (what the prover is improved on), the
    verifier half (the next round's verifier data) and held-out problems (evaluation and judging). Each
    solution is graded automatically and, with ``verifier``, scored by it. Idempotent: a (problem, role)
    that already has a round-K solution is skipped.
    """
    from generation.backends import get_backend

    from .grading import extract_answer
    from generation.models import PromptTemplate

    from .prover import ROLES, TEMPLATE_KINDS, MathProblem, generate_solutions

    if n_problems < 1:
        raise ValueError("n_problems must be at least 1")
    params = study.generation_params or {}
    improved = ((verifier.metrics or {}).get("prover") or {}).get("path") if verifier is not None else None
    if improved:  # this round's prover was improved against its verifier: it writes the round's solutions
        from .prover import prover_backend

        backend, backend_name = prover_backend(improved), f"prover:{Path(improved).name}"
    else:
        backend, backend_name = get_backend(study.generation_backend, **study.backend_options()), \
            study.generation_backend
    template_rows = {role: PromptTemplate.latest(TEMPLATE_KINDS[role]) for role in ROLES}  # admin-editable
    templates = {role: row.spec() for role, row in template_rows.items()}
    jobs: list[Problem] = []
    for half in PROVER_HALVES:
        ids = sorted(Problem.objects.filter(study=study, half=half).values_list("pk", flat=True))
        random.Random(f"{study.seed}:{round_}:{half}").shuffle(ids)
        jobs.extend(Problem.objects.filter(pk__in=ids[:n_problems]).order_by("id"))
    have = set(Solution.objects.filter(problem__in=jobs, source=Solution.Source.PROVER, round=round_)
               .values_list("problem_id", "role"))
    loaded = None
    if verifier is not None and verifier.status == Verifier.Status.READY and verifier.path:
        from . import verifier as vlib

        loaded = vlib.load(verifier.path)
    created = []
    total = len(jobs)
    for start in range(0, total, batch_size):
        batch = jobs[start: start + batch_size]
        todo = [p for p in batch if any((p.pk, role) not in have for role in ROLES)]
        samples = generate_solutions(
            [MathProblem(str(p.pk), p.text, p.reference_solution) for p in todo], roles=ROLES, backend=backend,
            seed=int(study.seed) * 1000 + round_ * 100_000 + start,
            max_new_tokens=int(params.get("max_new_tokens", 256)), temperature=float(params.get("temperature", 0.7)),
            templates=templates,
        ) if todo else []
        by_id = {str(p.pk): p for p in todo}
        rows = [Solution(problem=by_id[s.problem_id], text=s.solution, source=Solution.Source.PROVER, role=s.role,
                         round=round_, correct=s.correct, external_key="s0",
                         final_answer=str(extract_answer(s.solution) or "")[:64],
                         provenance={**s.provenance, "backend": backend_name, "model_version": s.model_id,
                                     "template_id": template_rows[s.role].pk, "study_params": params})
                for s in samples if (int(s.problem_id), s.role) not in have]
        if loaded is not None and rows:
            from . import verifier as vlib

            values = vlib.score(loaded, [r.problem.text for r in rows], [r.text for r in rows])
            for row, value in zip(rows, values, strict=True):
                row.verifier_scores = {str(verifier.pk): round(float(value), 5)}
        created.extend(Solution.objects.bulk_create(rows, ignore_conflicts=True))
        if progress:
            progress(min(start + batch_size, total), total)
    by_role = {role: [s for s in created if s.role == role] for role in ROLES}
    return {"round": round_, "created": len(created), "skipped_existing": len(have),
            **{f"{role}_accuracy": (sum(s.correct for s in rows) / len(rows) if rows else None)
               for role, rows in by_role.items()}}
