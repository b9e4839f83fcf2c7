"""Simulated judges: drive the real judge services with seeded random answers, for pilots and demos.

Each simulated judge joins, consents and works through its queue with the same calls the judge pages
make (``session_join``, ``session_consent``, ``session_current_item``, ``item_answer``). Timing is the
server's, never made up: the services take the time from their own clock when an item is first shown and
when the answer arrives, so a simulated judge's "think time" is a real pause (``time.sleep``) between the
two, and with ``think_seconds=0`` it answers at once (response times of a few milliseconds). A pause
longer than the study's ``seconds_per_item`` therefore becomes a real timeout.

Simulated judges are marked (recruitment ids ``sim-...``, STUDY_ID ``simulate_judges``) and refused on a
study that already has real judges, so their answers never mix with real judgements in a report.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from deliberation.services import SubmissionError

from . import services
from .models import JudgeSession, LegibilityStudy

SIMULATED_STUDY_ID = "simulate_judges"


@dataclass(frozen=True)
class SimulatedJudge:
    pid: str
    session_id: int
    accuracy: float  # the probability this judge answers each item rightly
    answered: int
    right: int
    timed_out: int
    flagged: bool


def real_judges(study: LegibilityStudy):
    """Sessions of the study that ``simulate_judges`` did not create."""
    return JudgeSession.objects.filter(study=study).exclude(recruitment_study_id=SIMULATED_STUDY_ID)


def simulate_judges(*, study: LegibilityStudy, judges: int, accuracy: float, seed: int = 0,
                    chance_judges: int = 0, think_seconds: float = 0.0,
                    sleep: Callable[[float], None] = time.sleep,
                    progress: Callable[[int, int], None] | None = None) -> list[SimulatedJudge]:
    """``judges`` judges who answer each item rightly with probability ``accuracy``, then ``chance_judges``
    who answer by a fair coin; each waits a seeded uniform 0..``think_seconds`` (real time) before answering.

    Idempotent per (seed, judge number): the recruitment id is ``sim-{seed}-{i}``, so a re-run resumes the same
    sessions (a finished one is left as it is)."""
    if judges < 0 or chance_judges < 0 or judges + chance_judges < 1:
        raise ValueError("simulate at least one judge")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError("accuracy is a probability between 0 and 1")
    if think_seconds < 0:
        raise ValueError("think time cannot be negative")
    if real_judges(study).exists():
        raise ValueError(f"study {study.slug!r} has real judges; simulated answers would mix with theirs")
    results = []
    total = judges + chance_judges
    for i in range(total):
        p = accuracy if i < judges else 0.5
        rng = random.Random(f"{seed}:{i}")
        pid = f"sim-{seed}-{i}"
        try:
            session = services.session_join(study=study, params={"PROLIFIC_PID": pid, "STUDY_ID": SIMULATED_STUDY_ID,
                                                                 "SESSION_ID": f"{seed}-{i}"},
                                            user_agent="simulate_judges")
            session = services.session_consent(session=session)
            while (item := services.session_current_item(session=session)) is not None:
                if think_seconds:
                    sleep(rng.uniform(0.0, think_seconds))
                right = rng.random() < p
                services.item_answer(session=session, item_id=item.pk,
                                     answer=item.solution.correct if right else not item.solution.correct)
        except SubmissionError as exc:
            raise ValueError(exc.message) from exc
        stats = services.session_stats(session)
        results.append(SimulatedJudge(pid=pid, session_id=session.pk, accuracy=p, answered=stats.n_answered,
                                      right=stats.n_right, timed_out=stats.n_timed_out, flagged=stats.flagged))
        if progress:
            progress(i + 1, total)
    return results
