"""One study from the database into the plain frames the reports use (``core.metrics.StudyData``).

Each table is read with one ``values_list`` query (no model instances), so a study with 100k ratings
loads in a few queries. Human data only by default: neither the take-over bot's answers nor simulated
participants (``AnswerQuerySet.human``; ``include_bots`` / ``include_simulated`` put them back). Time per
phase comes from the append-only ``phase_changed`` events.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from django.db.models import F

from analysis.representation import GroupTexts
from core.metrics import OPTIONAL_RATING_COLUMNS, SCHEMAS, StudyData
from deliberation.models import Candidate, Critique, Group, GroupEvent, Opinion, Rating, Study
from participants.models import Participant


def _frame(rows: Iterable[tuple], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(rows), columns=columns)


def phase_durations(events: Iterable[tuple], created: dict[int, object]) -> list[tuple[int, str, float]]:
    """(group, phase, seconds) for each phase a group left: from entering it (the group's creation for the
    first phase) to the ``phase_changed`` event that left it. ``events``: (group, payload, time) in order."""
    entered: dict[int, object] = dict(created)
    out = []
    for group_id, payload, at in events:
        phase, start = (payload or {}).get("from_phase"), entered.get(group_id)
        if phase and start is not None:
            out.append((group_id, phase, max(0.0, (at - start).total_seconds())))
        entered[group_id] = at
    return out


EXCLUSION_NOT_HELD = "leave_one_out (not held)"


def exclusion_not_held(study: Study) -> set[int]:
    """Leave-one-out groups whose left-out member's opinion reached a prompt after all (only they wrote one)."""
    through = Candidate.included_opinions.through
    return set(through.objects.filter(
        candidate__group__study=study, candidate__group__condition="leave_one_out",
        opinion__participant_id=F("candidate__group__excluded_participant_id"),
    ).values_list("candidate__group_id", flat=True).distinct())


def load_study(study: Study, *, include_bots: bool = False, include_simulated: bool = False) -> StudyData:
    """The study's frames. A leave-one-out group whose exclusion did not hold gets the condition
    ``EXCLUSION_NOT_HELD``, so it counts neither as leave-one-out nor as standard."""
    who = {"include_bots": include_bots, "include_simulated": include_simulated}
    groups = _frame(Group.objects.filter(study=study).order_by("id").values_list(
        "id", "condition", "excluded_participant_id", "question_id", "phase", "outcome", "winner_round1_id",
        "winner_round2_id", "arm__name"), [*SCHEMAS["groups"], "arm"])
    # The study arm of each group (deliberation.models.StudyArm): the report compares arms (build.arm_metrics).
    groups["arm"] = groups["arm"].fillna("").astype(object)
    broken = exclusion_not_held(study)
    if broken and len(groups):
        groups.loc[groups["group_id"].isin(broken), "condition"] = EXCLUSION_NOT_HELD
    members = _frame(Participant.objects.filter(study=study, group__isnull=False)
                     .human(include_simulated=include_simulated).values_list(
        "group_id", "id", "status"), SCHEMAS["members"])
    ratings = _frame(Rating.objects.filter(group__study=study).human(**who).values_list(
        "group_id", "participant_id", "candidate_id", "round", "agreement", "quality", "rank", "candidate__source",
        "candidate__source_opinion__participant_id"), [*SCHEMAS["ratings"], *OPTIONAL_RATING_COLUMNS])
    answered = [(g, p, "opinion") for g, p in Opinion.objects.filter(group__study=study).human(**who)
                .values_list("group_id", "participant_id")]
    answered += [(g, p, "critique") for g, p in Critique.objects.filter(group__study=study).human(**who)
                 .values_list("group_id", "participant_id")]
    answered += [(g, p, "rating" if r == 1 else "final_rating") for g, p, r in Rating.objects.filter(
        group__study=study).human(**who).values_list("group_id", "participant_id", "round").distinct()]
    created = dict(Group.objects.filter(study=study).values_list("id", "created_at"))
    events = GroupEvent.objects.filter(group__study=study, kind="phase_changed").order_by("group_id", "id") \
        .values_list("group_id", "payload", "created_at")
    return StudyData(title=study.title, groups=groups, members=members, ratings=ratings,
                     submissions=_frame(answered, SCHEMAS["submissions"]),
                     phase_times=_frame(phase_durations(events.iterator(chunk_size=5000), created),
                                        SCHEMAS["phase_times"]))


def load_group_texts(study: Study, *, include_bots: bool = False, include_simulated: bool = False
                     ) -> list[GroupTexts]:
    """Questions' statements, opinions (human ones unless asked) and winning statements of the groups that have
    a winner."""
    groups = list(Group.objects.filter(study=study).filter(winner_round1__isnull=False).order_by("id").values_list(
        "id", "condition", "question__affirming_statement", "question__negating_statement", "winner_round1_id",
        "winner_round2_id"))
    if not groups:
        return []
    winner_ids = [w for g in groups for w in g[4:] if w is not None]
    texts = dict(Candidate.objects.filter(pk__in=winner_ids).values_list("id", "text"))
    opinions: dict[int, dict[int, str]] = {}
    for group_id, participant_id, text in Opinion.objects.filter(group__study=study).human(
            include_bots=include_bots, include_simulated=include_simulated).order_by("id").values_list(
            "group_id", "participant_id", "text"):
        opinions.setdefault(group_id, {})[participant_id] = text
    return [GroupTexts(group_id=gid, affirming=affirming, negating=negating, opinions=opinions.get(gid, {}),
                       winners={r: texts[w] for r, w in ((1, w1), (2, w2)) if w is not None and w in texts},
                       condition=condition)
            for gid, condition, affirming, negating, w1, w2 in groups]


def load_offline_loo(study: Study) -> tuple[pd.DataFrame | None, str | None]:
    """The latest finished offline leave-one-out job's summary (``analysis.loo.offline_loo`` rows), or None and
    why not (never run, still running)."""
    from analysis.loo import RESULT_COLUMNS
    from analysis.models import AnalysisJob

    jobs = AnalysisJob.objects.filter(study=study, kind=AnalysisJob.Kind.LOO_OFFLINE)
    job = jobs.filter(status=AnalysisJob.Status.DONE).order_by("-id").first()
    if job is None:
        running = jobs.filter(status__in=[AnalysisJob.Status.QUEUED, AnalysisJob.Status.RUNNING]).first()
        if running is not None:
            return None, f"Offline leave-one-out job #{running.pk} is running ({running.done}/{running.total} groups)"
        return None, f"Not run yet: python manage.py loo_offline --study {study.slug}"
    rows = (job.result or {}).get("summary") or []
    return pd.DataFrame(rows, columns=RESULT_COLUMNS), f"job #{job.pk}, {job.done} groups"


def load_questionnaire(study: Study, *, include_simulated: bool = False) -> pd.DataFrame:
    """The questionnaire summary (``analysis.questionnaire``) of the study's participants."""
    from analysis.questionnaire import questionnaire_summary
    from participants.models import QuestionnaireAnswer, QuestionnaireItem

    items = QuestionnaireItem.objects.filter(study=study).values("key", "text", "kind", "options")
    people = Participant.objects.filter(study=study).human(include_simulated=include_simulated)
    answers = QuestionnaireAnswer.objects.filter(participant__in=people).values("item__key", "value")
    return questionnaire_summary(list(items), [{"item_key": a["item__key"], "value": a["value"]} for a in answers])
