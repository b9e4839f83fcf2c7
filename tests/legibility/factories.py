"""One-line helpers for legibility tests: a study with a held-out pool of graded solutions, judges."""
from __future__ import annotations

from legibility.models import JudgeSession, LegibilityStudy, Problem, Solution
from legibility.services import session_consent, session_join


def make_study(slug: str = "leg", *, n_problems: int = 12, **fields) -> LegibilityStudy:
    """Held-out problems each with a correct and an incorrect solution, spread over rounds 0-2 and roles."""
    defaults = dict(title="Legibility test", seconds_per_item=45, items_per_session=6, gold_share=1 / 3,
                    completion_code_completed="LEGDONE", generation_backend="extractive")
    defaults.update(fields)
    study = LegibilityStudy.objects.create(slug=slug, **defaults)
    for i in range(n_problems):
        problem = Problem.objects.create(study=study, split="test", index=i, half="heldout",
                                         text=f"Ann has {i + 2} apples and buys 3 more. How many apples now?",
                                         reference_solution=f"{i + 2} + 3 = {i + 5}\n#### {i + 5}",
                                         reference_answer=str(i + 5), numeric_answer=i + 5)
        round_ = i % 3
        role = "" if round_ == 0 else ("helpful" if i % 2 else "sneaky")
        source = "shipped" if round_ == 0 else "prover"
        for correct in (True, False):
            answer = i + 5 if correct else i + 6
            Solution.objects.create(problem=problem, text=f"She has {i + 2} + 3 = {answer} apples.\nA: {answer}",
                                    source=source, role=role, round=round_, correct=correct,
                                    is_gold=round_ == 0, external_key="a" if correct else "b")
    return study


def judge(study: LegibilityStudy, pid: str = "pid-1", *, consent: bool = True) -> JudgeSession:
    session = session_join(study=study, params={"PROLIFIC_PID": pid, "STUDY_ID": "S", "SESSION_ID": "X"})
    if consent:
        session = session_consent(session=session)
    return session
