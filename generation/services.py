"""Write a group's candidate statements: build prompts, call the backend, store provenance.

Idempotent per (group, round): a re-run (a retried or re-delivered task, a second worker)
finds the stored candidates and only makes sure the group has moved on. The slow part
(the model) runs outside any transaction; storing and advancing is one transaction under
the group's row lock.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from core import flow
from core.flow import Phase
from deliberation.models import Candidate, Critique, Group, Opinion, Prediction
from deliberation.services import _apply, _touch, derive_seed, log_event

from .backends import get_backend
from .backends.base import GenerationError, GenerationRequest, GenerationResult
from .batching import coalescer_for
from .cleaning import clean_statement
from .models import PromptTemplate
from .prompts import STOP_SEQUENCES, prompt_hash, render_consensus, render_revision

logger = logging.getLogger(__name__)

DEFAULT_PARAMS = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 160}
MAX_OUTPUT_ATTEMPTS = 4  # an empty or unusable output is retried with a new seed


class GenerationFailed(RuntimeError):
    pass


@dataclass
class _Slot:
    index: int
    opinions: list[Opinion]
    messages: tuple
    result: GenerationResult | None = None
    text: str | None = None
    attempts: int = 0
    shown: bool = True
    welfare: float | None = None
    predictions: dict[int, float] | None = None  # participant id -> predicted agreement (best-of-N)
    reward_model_id: int | None = None  # the version that predicted them


def generation_params(settings_from) -> dict:
    """The sampling parameters of an arm (``Group.arm_settings``; offline tools: ``selectors.study_arm``)."""
    params = dict(DEFAULT_PARAMS)
    params.update({k: v for k, v in (settings_from.generation_params or {}).items() if k in DEFAULT_PARAMS})
    return params


def template_for(settings_from, round_: int) -> PromptTemplate:
    """The arm's template for the round, else the latest version."""
    if round_ == 1:
        return settings_from.consensus_template or PromptTemplate.latest("consensus")
    return settings_from.revision_template or PromptTemplate.latest("revision")


def left_out_ids(group: Group) -> set[int]:
    """Leave-one-out condition: the member whose opinion and critique never reach the model (nor best-of-N)."""
    if group.condition == "leave_one_out" and group.excluded_participant_id:
        return {group.excluded_participant_id}
    return set()


def build_slots(group: Group, round_: int, template: PromptTemplate, *, leave_out: set[int] | None = None,
                indices: list[int] | None = None, previous: str | None = None) -> list[_Slot]:
    """One prompt per candidate, the opinions shuffled anew for each (against order bias).

    ``leave_out``: members whose opinion and critique stay out of the prompt (default: the group's
    leave-one-out member, if any; offline sensitivity analysis passes its own). ``indices``: which candidate
    slots to build (default all), so one slot can be rebuilt with the seeds it had. ``previous``: the statement
    the revision round revises (default: the round-1 winner).
    """
    study, arm = group.study, group.arm_settings
    spec = template.spec()
    leave_out = left_out_ids(group) if leave_out is None else leave_out
    opinions = list(Opinion.objects.filter(group=group).order_by("participant__position", "id"))
    kept = [o for o in opinions if o.participant_id not in leave_out]
    if not kept:  # nobody else wrote an opinion: leaving it out would leave the model nothing to work from
        kept = opinions
    critiques = [c.text for c in Critique.objects.filter(group=group).order_by("participant__position")
                 if c.participant_id not in leave_out]
    slots = []
    for index in range(arm.best_of_n or study.num_candidates) if indices is None else indices:
        order = list(kept)
        random.Random(derive_seed(study.generation_seed, group.pk, round_, index, "shuffle")).shuffle(order)
        texts = [o.text for o in order]
        if round_ == 1:
            messages = render_consensus(spec, group.question.text, texts)
        else:
            messages = render_revision(spec, group.question.text, texts,
                                       group.winner_round1.text if previous is None else previous, critiques)
        slots.append(_Slot(index=index, opinions=order, messages=messages))
    return slots


def candidates_generate(*, group_id: int, round: int, backend=None, claim: str | None = None) -> int:
    """Generate and store the candidates of one round; returns how many were created.

    ``claim`` names the task run (the Celery task id: a retry or a redelivery after a worker died keeps it). A
    second task for the same round — the sweeper re-queues a round whose task waited in a long queue — returns at
    once while another claim is writing it, instead of generating the same statements twice."""
    group = Group.objects.select_related("study", "question", "winner_round1", "arm").get(pk=group_id)
    expected = Phase.GENERATING if round == 1 else Phase.REVISING
    if Candidate.objects.filter(group=group, round=round).exists() or group.phase != expected:
        _advance_if_ready(group_id, round)
        return 0
    study, arm = group.study, group.arm_settings  # the arm's generation settings (deliberation.models.StudyArm)
    if not _claim_generation(group, round, claim, backend=arm.generation_backend, arm=arm.name):
        return 0
    params = generation_params(arm)
    template = template_for(arm, round)
    slots = build_slots(group, round, template)
    left_out = left_out_ids(group)
    if left_out and any(o.participant_id in left_out for s in slots for o in s.opinions):
        # Only the left-out member wrote an opinion, so it went into the prompt after all: say so, and the
        # analysis counts this group apart from the leave-one-out condition (``exclusion_not_held``).
        log_event(group, "exclusion_not_held", None, round=round, participant_id=sorted(left_out)[0])
    try:
        if backend is None:
            options = arm.backend_options()  # refuses a server or key variable the policy does not allow
            backend = coalescer_for(arm.generation_backend, options,
                                    lambda: get_backend(arm.generation_backend, **options),
                                    settings.GENERATION_BATCH_WINDOW_MS / 1000)
        for attempt in range(1, MAX_OUTPUT_ATTEMPTS + 1):
            pending = [s for s in slots if s.text is None]
            if not pending:
                break
            requests = [
                GenerationRequest(messages=s.messages, seed=derive_seed(study.generation_seed, group.pk, round,
                                                                        s.index, attempt),
                                  stop=STOP_SEQUENCES, **params)
                for s in pending
            ]
            for slot, result in zip(pending, backend.generate(requests), strict=True):
                slot.result, slot.attempts = result, attempt
                slot.text = clean_statement(result.text, question=group.question.text)
        unusable = [s.index for s in slots if s.text is None]
        if unusable:
            raise GenerationFailed(f"no usable statement for candidate(s) {unusable} "
                                   f"after {MAX_OUTPUT_ATTEMPTS} attempts")
    except (GenerationError, GenerationFailed) as exc:
        generation_error_record(group_id=group_id, message=str(exc))
        raise GenerationFailed(str(exc)) from exc
    if arm.best_of_n:
        best_of_n_select(group, round, slots)
    return _store(group_id, round, slots, backend, params, template)


def _claim_generation(group: Group, round_: int, claim: str | None, *, backend: str, arm: str = "") -> bool:
    """Record that ``claim`` writes this round (``generation_started``), unless another claim started it within the
    generation time limit and has not failed since. Under the group's row lock, so two tasks never both win."""
    with transaction.atomic():
        locked = Group.objects.select_for_update().get(pk=group.pk)
        latest = (locked.events.filter(kind__in=("generation_started", "generation_failed"),
                                       created_at__gte=locked.phase_started_at).order_by("-id").first())
        horizon = timezone.now() - timedelta(seconds=settings.GENERATION_SOFT_TIME_LIMIT + 60)
        if (claim and latest is not None and latest.kind == "generation_started"
                and latest.payload.get("round") == round_ and latest.payload.get("claim") not in (None, claim)
                and latest.created_at > horizon):
            logger.info("group %s round %s: generation already claimed by %s; task %s stands down",
                        group.pk, round_, latest.payload.get("claim"), claim)
            return False
        log_event(locked, "generation_started", None, round=round_, backend=backend, arm=arm,
                  **({"claim": claim} if claim else {}))
    return True


def best_of_n_select(group: Group, round_: int, slots: list[_Slot]) -> None:
    """Score every candidate for every member with the arm's reward model; show the top K by welfare."""
    from core.welfare import welfare

    study = group.study
    leave_out = left_out_ids(group)
    every = list(Opinion.objects.filter(group=group).order_by("participant__position"))
    opinions = [o for o in every if o.participant_id not in leave_out] or every
    critiques = {c.participant_id: c.text for c in Critique.objects.filter(group=group)} if round_ == 2 else {}
    members = [o.participant_id for o in opinions]
    # The reward model lives in analysis, above generation: its scorer is named in settings, not imported.
    member_utilities = import_string(settings.BEST_OF_N_SCORER)
    version, u = member_utilities(
        study=study, question=group.question.text, member_ids=members, opinions=[o.text for o in opinions],
        texts=[s.text for s in slots],
        critiques=[critiques.get(o.participant_id, "") for o in opinions] if round_ == 2 else None,
        reward_model_id=group.arm_settings.reward_model_version_id)
    scores = welfare(u, study.welfare_method, alpha=study.welfare_alpha)
    top = sorted(range(len(slots)), key=lambda i: (-scores[i], i))[:study.num_candidates]
    for i, slot in enumerate(slots):
        slot.shown = i in top
        slot.welfare = float(scores[i])
        slot.predictions = {o.participant_id: float(u[m, i]) for m, o in enumerate(opinions)}
        slot.reward_model_id = version.pk


def _store(group_id: int, round_: int, slots: list[_Slot], backend, params: dict, template: PromptTemplate) -> int:
    with transaction.atomic():
        group = Group.objects.select_for_update().select_related("study").get(pk=group_id)
        if Candidate.objects.filter(group=group, round=round_).exists():
            created = 0  # another worker finished first
        else:
            for slot in slots:
                result = slot.result
                candidate = Candidate.objects.create(
                    group=group, round=round_, index=slot.index, text=slot.text, raw_text=result.text,
                    backend=getattr(backend, "backend", backend).name, model_id=result.model_id, template=template,
                    template_name=template.kind, template_version=template.version, prompt=[asdict(msg) for msg in slot.messages],
                    prompt_sha256=prompt_hash(slot.messages),
                    params={**params, "stop": list(STOP_SEQUENCES), **(result.extra or {})}, seed=result.seed,
                    attempts=slot.attempts, latency_ms=result.latency_ms, prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens, opinion_order=[o.pk for o in slot.opinions],
                    shown=slot.shown, welfare=slot.welfare,
                )
                candidate.included_opinions.set(slot.opinions)
                if slot.predictions:
                    Prediction.objects.bulk_create([
                        Prediction(reward_model_id=slot.reward_model_id, participant_id=pid,
                                   candidate=candidate, predicted_agreement=value)
                        for pid, value in slot.predictions.items()])
            created = len(slots)
            if round_ == 1 and group.arm_settings.opinions_as_candidates:
                created += _store_opinion_candidates(group, first_index=max(s.index for s in slots) + 1)
            log_event(group, "candidates_stored", None, round=round_, count=created,
                      backend=getattr(backend, "backend", backend).name,
                      latency_ms=sum(s.result.latency_ms for s in slots))
        if group.generation_status:
            group.generation_status = ""
            group.save(update_fields=["generation_status"])
        _apply(group, flow.CandidatesReady(round_), timezone.now())
    return created


def _store_opinion_candidates(group: Group, *, first_index: int) -> int:
    """The members' own opinions as comparators in round 1 (study option): rated and ranked like the model's
    statements, in the same shuffled list, never eligible to win (``winner_choose`` counts model statements)."""
    opinions = list(Opinion.objects.filter(group=group).order_by("participant__position", "id"))
    Candidate.objects.bulk_create([
        Candidate(group=group, round=1, index=first_index + i, text=o.text, raw_text=o.text,
                  backend="opinion", model_id="", template=None, template_name="", template_version=0, prompt=[],
                  prompt_sha256="", params={}, seed=0, latency_ms=0.0, source=Candidate.Source.OPINION,
                  source_opinion=o, shown=True)
        for i, o in enumerate(opinions)])
    return len(opinions)


def _advance_if_ready(group_id: int, round_: int) -> None:
    with transaction.atomic():
        group = Group.objects.select_for_update().select_related("study").get(pk=group_id)
        if Candidate.objects.filter(group=group, round=round_).exists():
            _apply(group, flow.CandidatesReady(round_), timezone.now())


def generation_error_record(*, group_id: int, message: str) -> None:
    """Show the failure on the monitor and to the group; the task retries."""
    logger.warning("generation for group %s failed: %s", group_id, message)
    with transaction.atomic():
        group = Group.objects.select_for_update().get(pk=group_id)
        log_event(group, "generation_failed", None, error=message[:500])
        _touch(group, generation_status=message[:300])


