"""Offline leave-one-out: how much would each member lose if their opinion had been left out?

For each finished group, the winning round's statement is regenerated from the same prompt template,
seed and candidate slot, once with every opinion and once with each member left out in turn (their
opinion and, in the revision round, their critique; a revision then revises the round-1 winner's slot
regenerated without them as well, so their words cannot come back through the previous statement). The prompts
come from ``generation.services.build_slots`` (the one renderer); the texts from the one backend interface. A
reward model then predicts every member's agreement with every regenerated statement. The figure of interest
(Bakker et al. 2022) is the drop in the left-out member's predicted agreement, compared with the drop for the
members who stayed in.

The statements are regenerated with one arm's generation backend and options (``--arm``; default the study's
only arm, ``deliberation.selectors.study_arm``), for the groups that ran in that arm. The reward model is the
study's promoted version unless another is named. Groups whose ratings it was trained
on are left out (their predictions would be memory); asked for, they are scored but reported apart, each row
marked ``trained_on`` and their figures under ``summary_trained_on``, never mixed into ``summary``.

Work is split by group (``loo_group_rows``) so a Celery task can do one group per subtask; the job row
(``AnalysisJob``) collects the rows, counts progress and holds the aggregated result.
"""
from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Sequence

from django.db import transaction
from django.utils import timezone

from deliberation.models import Critique, Group, Opinion, Study, StudyArm
from deliberation.selectors import ArmChoiceError, study_arm
from deliberation.services import derive_seed
from generation.backends import get_backend
from generation.backends.base import GenerationRequest
from generation.cleaning import clean_statement
from generation.prompts import STOP_SEQUENCES, prompt_hash
from generation.services import MAX_OUTPUT_ATTEMPTS, build_slots, generation_params, template_for

from .models import AnalysisJob, RewardModel

KIND = AnalysisJob.Kind.LOO_OFFLINE


class LooOfflineError(ValueError):
    """The study or its options cannot be analysed (no finished groups, no trained reward model...)."""


# --- choosing what to analyse ---------------------------------------------------------------
def finished_groups(study: Study, limit: int | None = None) -> list[Group]:
    """Finished groups with a winner and at least two human opinions (leaving one out must leave something)."""
    groups = [g for g in Group.objects.filter(study=study, phase="done").exclude(winner_round1=None)
              .select_related("winner_round1", "winner_round2").order_by("id")
              if Opinion.objects.filter(group=g).human().count() >= 2]
    return groups[:limit] if limit else groups


def resolve_reward_model(study: Study, reward_model_id: int | None) -> RewardModel:
    if reward_model_id is not None:
        reward_model = RewardModel.objects.filter(pk=reward_model_id).first()
        if reward_model is None:
            raise LooOfflineError(f"no reward model with id {reward_model_id}")
    else:
        reward_model = (RewardModel.objects.filter(pk=study.reward_model_id).first() if study.reward_model_id else
                        RewardModel.objects.filter(study=study, status=RewardModel.Status.DONE).order_by("-id").first())
        if reward_model is None:
            raise LooOfflineError(f"study {study.slug!r} has no trained reward model; train one "
                                  "(manage.py train_reward_model) or pass --reward-model ID")
    if reward_model.status != RewardModel.Status.DONE or not reward_model.checkpoint_path:
        raise LooOfflineError(f"reward model {reward_model.pk} is {reward_model.status}, not trained")
    return reward_model


def _arm_group_ids(study: Study, arm: StudyArm, group_ids: list[int]) -> list[int]:
    """Those of ``group_ids`` that ran in ``arm``; a group without an arm runs with the study's first arm
    (``Group.arm_settings``)."""
    first = StudyArm.objects.filter(study=study).order_by("id").values_list("id", flat=True).first()
    arm_of = dict(Group.objects.filter(pk__in=group_ids).values_list("id", "arm_id"))
    return [g for g in group_ids if (arm_of[g] or first) == arm.pk]


def job_create(*, study: Study, backend: str | None = None, reward_model_id: int | None = None,
               groups: int | None = None, include_trained_on: bool = False, arm: str | None = None) -> AnalysisJob:
    """Validate the options and register a queued job over the finished groups of the arm (``arm``: its name;
    default the study's only arm) that the reward model did not train on (with ``include_trained_on``, those too,
    reported apart). The arm's backend regenerates the statements unless ``backend`` names another."""
    from analysis.reward.registry import reward_model_trained_group_ids

    try:
        arm_row = study_arm(study, arm)
    except ArmChoiceError as exc:
        raise LooOfflineError(str(exc)) from None
    backend = backend or arm_row.generation_backend
    from generation.backends import backend_names

    if backend not in backend_names():
        raise LooOfflineError(f"unknown backend {backend!r}; known: {', '.join(backend_names())}")
    reward_model = resolve_reward_model(study, reward_model_id)
    trained_on = reward_model_trained_group_ids(reward_model)
    finished = _arm_group_ids(study, arm_row, [g.pk for g in finished_groups(study)])
    chosen = finished if include_trained_on else [g for g in finished if g not in trained_on]
    chosen = chosen[:groups] if groups else chosen
    if not finished:
        raise LooOfflineError(f"study {study.slug!r} has no finished groups with a winner and two or more opinions"
                              + (f" in arm {arm_row.name!r}" if arm_row.pk else ""))
    if not chosen:
        raise LooOfflineError(
            f"reward model {reward_model.pk} was trained on all {len(finished)} finished group(s) of study "
            f"{study.slug!r}; its predictions there would be memory, not prediction. Use a version that held "
            "groups out, or pass --include-trained-on to score them anyway, reported apart as 'trained on'")
    return AnalysisJob.objects.create(
        kind=KIND, study=study, total=len(chosen), progress_message="queued",
        params={"backend": backend, "arm": arm_row.name, "arm_id": arm_row.pk,
                "reward_model_id": reward_model.pk, "group_ids": chosen,
                "trained_on_group_ids": sorted(g for g in chosen if g in trained_on)},
        result={"rows": [], "predictions": [], "groups_done": []})


# --- one group ------------------------------------------------------------------------------
def _backend_for(arm: StudyArm, name: str):
    """The backend ``name`` with the arm's options (its server, its fine-tuned generator) when it is the arm's own."""
    return get_backend(name, **(arm.backend_options() if name == arm.generation_backend else {}))


def _job_arm(job: AnalysisJob, group: Group) -> StudyArm:
    """The arm the job generates with (a job made before arms were chosen, or for a study without arms: the
    group's own)."""
    arm_id = (job.params or {}).get("arm_id")
    return StudyArm.objects.select_related("study", "generator_model").get(pk=arm_id) if arm_id else \
        group.arm_settings


def _generate(backend, messages: Sequence, seed: int, params: dict, question: str) -> tuple[str, str]:
    """(clean statement, raw output); an unusable output is retried with a derived seed, as the service does."""
    for attempt in range(1, MAX_OUTPUT_ATTEMPTS + 1):
        request = GenerationRequest(messages=tuple(messages), seed=seed if attempt == 1 else
                                    derive_seed(seed, "loo", attempt), stop=STOP_SEQUENCES, **params)
        result = backend.generate([request])[0]
        text = clean_statement(result.text, question=question)
        if text:
            return text, result.text
    raise LooOfflineError(f"no usable statement after {MAX_OUTPUT_ATTEMPTS} attempts")


def loo_group_rows(group: Group, *, backend, reward_model) -> tuple[list[dict], list[dict]]:
    """One row per member left out (the regenerated statement, predicted agreements, drops), and the long
    predictions (group, left-out member or None for the all-opinions statement, member, prediction) that
    ``analysis.loo.offline_loo`` aggregates."""
    from analysis.reward.score import score_matrix

    arm = group.arm_settings  # the group's own arm: its templates and sampling parameters
    winner = group.winner_round2 or group.winner_round1
    round_ = winner.round
    template = winner.template or template_for(arm, round_)
    params = generation_params(arm)
    # Members are the humans: a bot's or simulated participant's opinion stays in every prompt it was in (the
    # slots are rebuilt from the stored provenance) but is neither left out nor scored.
    opinions = list(Opinion.objects.filter(group=group).human().order_by("participant__position", "id"))
    critiques = {c.participant_id: c.text for c in Critique.objects.filter(group=group)}
    variants: list[set[int]] = [set()] + [{o.participant_id} for o in opinions]
    statements, prompts = [], []
    for leave_out in variants:
        previous = None
        if round_ == 2:  # the revised statement revises a round-1 statement that left the member out too
            first = group.winner_round1
            slot = build_slots(group, 1, first.template or template_for(arm, 1), leave_out=leave_out,
                               indices=[first.index])[0]
            previous, _raw = _generate(backend, slot.messages, first.seed, params, group.question.text)
        slot = build_slots(group, round_, template, leave_out=leave_out, indices=[winner.index], previous=previous)[0]
        text, _raw = _generate(backend, slot.messages, winner.seed, params, group.question.text)
        statements.append(text)
        prompts.append(slot)
    u = score_matrix(reward_model, group.question.text, [o.text for o in opinions], [winner.text, *statements],
                     critiques=[critiques.get(o.participant_id, "") for o in opinions] if round_ == 2 else None)
    members = [o.participant_id for o in opinions]
    predictions = [{"group_id": group.pk, "left_out_id": None if k == 0 else members[k - 1], "member_id": pid,
                    "predicted_agreement": float(u[m, 1 + k])}
                   for k in range(len(variants)) for m, pid in enumerate(members)]
    rows = []
    for i, opinion in enumerate(opinions):
        slot = prompts[i + 1]
        full, loo = u[:, 1], u[:, 2 + i]
        others = [j for j in range(len(opinions)) if j != i]
        rows.append({
            "group_id": group.pk, "round": round_, "condition": group.condition,
            "online_excluded_participant_id": group.excluded_participant_id,
            "left_out_participant_id": opinion.participant_id, "left_out_opinion_id": opinion.pk,
            "statement": statements[i + 1], "statement_all_opinions": statements[0],
            "prompt_sha256": prompt_hash(slot.messages), "opinion_order": [o.pk for o in slot.opinions],
            "left_out_text_in_prompt": any(opinion.text[:80] in m.content for m in slot.messages),
            "agreement_left_out_all": float(full[i]), "agreement_left_out_without": float(loo[i]),
            "agreement_left_out_winner": float(u[i, 0]),
            "drop_left_out": float(full[i] - loo[i]),
            "drop_included_mean": float(sum(full[j] - loo[j] for j in others) / len(others)),
            "agreement_included_without": [float(loo[j]) for j in others],
        })
    return rows, predictions


# --- the job --------------------------------------------------------------------------------
def summarise(predictions: list[dict], *, seed: int = 0) -> list[dict]:
    """Study-level figures from ``analysis.loo.offline_loo`` (group-bootstrap intervals), JSON-ready."""
    from analysis.loo import offline_loo

    table = offline_loo(predictions, seed=seed)
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in table.to_dict("records")]


def job_run_group(*, job_id: int, group_id: int) -> None:
    """Analyse one group of the job and record it; the last group to finish aggregates. Idempotent per group."""
    from analysis.reward.registry import reward_model_load

    job = AnalysisJob.objects.select_related("study").get(pk=job_id)
    if group_id in (job.result or {}).get("groups_done", []) or job.status == AnalysisJob.Status.FAILED:
        return
    AnalysisJob.objects.filter(pk=job_id, status=AnalysisJob.Status.QUEUED).update(
        status=AnalysisJob.Status.RUNNING, started_at=timezone.now())
    try:
        group = Group.objects.select_related("study", "question", "winner_round1", "winner_round2").get(
            pk=group_id, study=job.study)
        rows, predictions = loo_group_rows(group, backend=_backend_for(_job_arm(job, group), job.params["backend"]),
                              reward_model=reward_model_load(job.params["reward_model_id"]))
    except Exception as exc:
        AnalysisJob.objects.filter(pk=job_id).update(
            status=AnalysisJob.Status.FAILED, finished_at=timezone.now(),
            error=f"group {group_id}: {exc}\n{traceback.format_exc()[-4000:]}")
        raise
    with transaction.atomic():
        job = AnalysisJob.objects.select_for_update().get(pk=job_id)
        result = job.result or {"rows": [], "predictions": [], "groups_done": []}
        if group_id in result["groups_done"]:
            return
        trained_on = group_id in job.params.get("trained_on_group_ids", [])
        result["rows"].extend({**row, "trained_on": trained_on} for row in rows)
        result.setdefault("predictions", []).extend({**p, "trained_on": trained_on} for p in predictions)
        result["groups_done"].append(group_id)
        job.done = len(result["groups_done"])
        job.progress = job.done / job.total if job.total else 1.0
        job.progress_message = f"{job.done}/{job.total} groups"
        if job.done >= job.total and job.status != AnalysisJob.Status.FAILED:
            held_out = [p for p in result["predictions"] if not p.get("trained_on")]
            seen = [p for p in result["predictions"] if p.get("trained_on")]
            result["summary"] = summarise(held_out, seed=job.study.generation_seed) if held_out else []
            if seen:
                result["summary_trained_on"] = summarise(seen, seed=job.study.generation_seed)
            job.status = AnalysisJob.Status.DONE
            job.finished_at = timezone.now()
            job.progress_message = f"done: {job.done} groups, {len(result['rows'])} left-out statements"
        job.result = result
        job.save()


def job_run_inline(job: AnalysisJob, progress: Callable[[int, int], None] | None = None) -> AnalysisJob:
    """Every group in this process, one after another (the command's ``--inline``)."""
    for group_id in job.params["group_ids"]:
        job_run_group(job_id=job.pk, group_id=group_id)
        if progress:
            job.refresh_from_db()
            progress(job.done, job.total)
    job.refresh_from_db()
    return job


def job_public_result(job: AnalysisJob) -> dict:
    """What the command prints: the job, its options and the figures (rows included)."""
    result = job.result or {}
    return {"job_id": job.pk, "kind": job.kind, "study": job.study.slug, "status": job.status,
            "progress": job.progress, "backend": job.params.get("backend"), "arm": job.params.get("arm"),
            "reward_model_id": job.params.get("reward_model_id"), "groups": job.total,
            "trained_on_group_ids": job.params.get("trained_on_group_ids", []),
            "summary": result.get("summary"),
            "summary_trained_on": result.get("summary_trained_on"),
            "rows": result.get("rows", []), "error": job.error or None}

