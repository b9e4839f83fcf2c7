"""A complete simulated deliberation study, built by driving the real services (not by writing rows).

``build_simulated_study`` joins participants through ``participants.services`` (join, consent, lobby
matching), submits opinions, ratings and critiques through ``deliberation.services``, generates candidates
with the extractive backend through ``generation.services`` and lets the flow choose winners with the
study's social choice rule. Opinions come from the Habermas Machine question corpus
(``../shared/data/habermas/``): each group has a majority side (the question's affirming or negating
statement) and a minority side, so leave-one-out and minority-representation analyses have something to find.

Simulated members rate by content: a member agrees with a statement that carries their own side's position
and disagrees with one that carries only the other side's; quality and ties are noise. Everything random is
drawn from ``seed``; texts, sides, dropouts, ratings and rankings are reproducible (candidate wording also
depends on database ids through the generation seeds, which do not change what members see as their side).
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from deliberation.models import Candidate, Group, Question, Study, StudyArm
from deliberation.services import critique_submit, opinion_submit, ratings_submit
from generation.backends.extractive import ExtractiveBackend
from generation.services import candidates_generate
from participants.models import Participant, Presence
from participants.services import participant_consent, participant_join, presence_disconnect

HABERMAS_FILE = Path("habermas") / "230118_chinchilla_questions.json"
OPINION_FORMS = (
    "I think that {s}",
    "In my view, {s}",
    "Honestly, {s} Most people I talk to feel the same way.",
    "After thinking about it for a while, I believe that {s}",
    "My position is simple: {s}",
    "{S} That is what I would vote for.",
)
MAJORITY_CRITIQUES = ("It is fine, but it could be shorter.", "Good, though the wording is a bit repetitive.",
                      "I can live with this statement.")
MINORITY_CRITIQUE = "It leaves out those of us who think that {s}"


def data_dir() -> Path:
    return Path(settings.BASE_DIR).parent / "shared" / "data"


@lru_cache(maxsize=1)
def habermas_questions() -> tuple[dict, ...]:
    path = data_dir() / HABERMAS_FILE
    if not path.exists():
        raise FileNotFoundError(f"Habermas questions not found at {path} (see ../shared/data/README.md)")
    rows = json.loads(path.read_text())
    return tuple(r for r in rows if r.get("affirming_statement") and r.get("negating_statement")
                 and r.get("split") == "train")


def core(statement: str) -> str:
    """A position statement as a lower-case clause, for embedding in an opinion and matching in a candidate."""
    return statement.strip().rstrip(".").lower()


def _lower_first(statement: str) -> str:
    statement = statement.strip()
    return statement[0].lower() + statement[1:] if statement else statement


def opinion_text(statement: str, form: int) -> str:
    s = statement.strip() if statement.strip().endswith(".") else statement.strip() + "."
    return OPINION_FORMS[form % len(OPINION_FORMS)].format(s=_lower_first(s), S=s)


def simulated_agreement(own: str, other: str, candidate: str, noise: int) -> int:
    """7-point agreement of a member holding ``own`` with ``candidate`` (``other``: the opposite position)."""
    text = candidate.lower()
    has_own, has_other = core(own) in text, core(other) in text
    base = {(True, False): 6, (True, True): 4, (False, True): 2, (False, False): 3}[(has_own, has_other)]
    return max(1, min(7, base + noise))


def _connect(participant: Participant) -> None:
    Presence.objects.update_or_create(channel_name=f"sim.{participant.pk}",
                                      defaults={"participant": participant, "last_seen": _now()})


def _now():
    from django.utils import timezone

    return timezone.now()


def _rate(member: Participant, group: Group, round_: int, own: str, other: str, rng: random.Random) -> None:
    candidates = list(Candidate.objects.filter(group=group, round=round_, shown=True).order_by("index"))
    ratings, score = {}, {}
    for c in candidates:
        agreement = simulated_agreement(own, other, c.text, rng.choice((-1, 0, 0, 1)))
        quality = max(1, min(7, 5 + rng.choice((-2, -1, 0, 0, 1, 2))))
        ratings[c.pk] = {"agreement": agreement, "quality": quality}
        score[c.pk] = agreement + 0.1 * quality + 0.01 * rng.random()
    ranking = sorted(score, key=lambda cid: -score[cid])
    ratings_submit(participant=member, round=round_, ratings=ratings, ranking=ranking)


def build_simulated_study(slug: str = "sim", groups: int = 4, group_size: int = 4, seed: int = 0,
                          leave_one_out_share: float = 0.5, *, num_candidates: int = 3, minority: int = 1,
                          dropout_share: float = 0.25, critique_round: bool = True,
                          arms: tuple[str, ...] = ()) -> Study:
    """Run ``groups`` groups of ``group_size`` simulated members through a whole study; returns the study.

    ``minority`` members per group hold the opposite position to the rest. A share ``dropout_share`` of
    groups loses one member (during round-1 rating or the critique), who ends as 'dropped'.
    Participants' ``url_params`` record their side (``SIM_SIDE``: 'majority' | 'minority') and stance
    (``SIM_STANCE``: 'affirm' | 'negate') for checking analyses.
    """
    if not 1 <= minority < group_size:
        raise ValueError("minority must be at least 1 and smaller than the group size")
    rng = random.Random(seed)
    pool = habermas_questions()
    picked = rng.sample(range(len(pool)), groups)
    study = Study.objects.create(
        slug=slug, title=f"Simulated study ({slug})", min_group_size=group_size, max_group_size=group_size,
        num_candidates=num_candidates, generation_backend="extractive", generation_seed=seed,
        leave_one_out_share=leave_one_out_share, critique_round=critique_round,
        completion_code_completed="SIMDONE", completion_code_dropped="SIMDROP", completion_code_lobby_timeout="SIMLOBBY")
    questions = []
    for i in picked:
        row = pool[i]
        question, _ = Question.objects.get_or_create(text=row["question"], defaults={
            "affirming_statement": row["affirming_statement"], "negating_statement": row["negating_statement"],
            "topic": row.get("topic"), "split": row.get("split", ""), "external_id": row.get("id", "")[:64],
            "source": str(HABERMAS_FILE)})
        questions.append(question)
    study.questions.add(*questions)
    for name in arms:  # arms with the study's settings (weight 1 each): groups are assigned by permuted blocks
        StudyArm.from_study(study, name=name).save()
    backend = ExtractiveBackend()

    for g in range(groups):
        grng = random.Random(f"{seed}:{g}")
        majority_affirms = grng.random() < 0.5
        seats = ["minority"] * minority + ["majority"] * (group_size - minority)
        grng.shuffle(seats)
        members = []
        for m, side in enumerate(seats):
            affirm = majority_affirms == (side == "majority")
            p = participant_join(study=study, params={"PROLIFIC_PID": f"{slug}-{g}-{m}", "SIM_SIDE": side,
                                                      "SIM_STANCE": "affirm" if affirm else "negate"})
            _connect(p)
            participant_consent(participant=p)  # the last one completes the lobby and forms the group
            members.append(p)
        for p in members:
            p.refresh_from_db()
        group = members[0].group
        assert group is not None and all(p.group_id == group.pk for p in members), "lobby did not form the group"
        question = group.question
        stance = {}
        for m, p in enumerate(members):
            own, other = question.affirming_statement, question.negating_statement
            if p.url_params["SIM_STANCE"] == "negate":
                own, other = other, own
            stance[p.pk] = (own, other)
        drop_at = None
        if grng.random() < dropout_share:
            drop_at = (grng.randrange(group_size), grng.choice(("rating", "critique")))
        forms = grng.sample(range(len(OPINION_FORMS)), min(group_size, len(OPINION_FORMS)))

        def dropping(phase: str) -> int | None:
            if drop_at and drop_at[1] == phase:
                presence_disconnect(participant_id=members[drop_at[0]].pk,
                                    channel_name=f"sim.{members[drop_at[0]].pk}")
                return drop_at[0]
            return None

        for m, p in enumerate(members):
            opinion_submit(participant=p, text=opinion_text(stance[p.pk][0], forms[m % len(forms)]))
        candidates_generate(group_id=group.pk, round=1, backend=backend)
        gone = dropping("rating")
        for m, p in enumerate(members):
            if m != gone:
                _rate(p, group, 1, *stance[p.pk], random.Random(f"{seed}:{g}:{m}:1"))
        if critique_round:
            gone = dropping("critique") if gone is None else gone
            for m, p in enumerate(members):
                if m == gone:
                    continue
                side = p.url_params["SIM_SIDE"]
                text = (MINORITY_CRITIQUE.format(s=core(stance[p.pk][0])) + "." if side == "minority"
                        else MAJORITY_CRITIQUES[m % len(MAJORITY_CRITIQUES)])
                critique_submit(participant=p, text=text)
            candidates_generate(group_id=group.pk, round=2, backend=backend)
            for m, p in enumerate(members):
                if m != gone:
                    _rate(p, group, 2, *stance[p.pk], random.Random(f"{seed}:{g}:{m}:2"))
        group.refresh_from_db()
        assert group.phase == "done", f"simulated group {group.pk} stopped in phase {group.phase}"
    study.refresh_from_db()
    return study
