"""The load benchmarks' study: made with N participants already joined, and checked afterwards against what the
bots were told was stored. Runs wherever Django points at the study's database: inside benchmarks/load.py for the
stack it starts, or inside the target's own ``manage.py shell`` for a stack it does not (``--target``; the
``hook`` below, fed JSON on stdin, so the hook command may run on another host or in a container).

    echo '{"action": "create", "n": 10, "slug": "s1"}' | scripts/cluster manage shell -c \
        "from benchmarks.study import hook; hook()"
"""
from __future__ import annotations

import json
import sys

GROUP_SIZE = 5
RESULT_MARK = "LOAD-STUDY-RESULT "  # the hook's answer line (the shell may print other lines around it)


def recruitment_id(slug: str, index: int) -> str:
    """The PROLIFIC_PID bot ``index`` of the study ``slug`` joined with (the ledger matches writes by it)."""
    return f"load-{slug}-{index}"


def make_study(n: int, slug: str, *, phase_seconds: int, critique_round: bool) -> tuple[object, dict[int, str]]:
    """A study with groups of 5 on the recorded backend; N participants joined and consented (nobody connected
    yet), as the join and consent views would leave them."""
    from deliberation.models import Question, Study
    from generation.backends.recorded import habermas_questions
    from participants.services import current_consent, participant_join

    study = Study.objects.create(
        slug=slug, title=f"Load benchmark {slug}", min_group_size=GROUP_SIZE, max_group_size=GROUP_SIZE,
        num_candidates=2, generation_backend=Study.Backend.RECORDED, lobby_timeout_seconds=3600,
        opinion_seconds=phase_seconds, rating_seconds=phase_seconds, critique_seconds=phase_seconds,
        final_rating_seconds=phase_seconds, critique_round=critique_round,
        completion_code_completed="LOADOK", completion_code_dropped="LOADDROP",
        completion_code_lobby_timeout="LOADLOBBY")
    for q in habermas_questions(10):
        question, _ = Question.objects.get_or_create(
            text=q["question"], defaults={"affirming_statement": q["affirming_statement"],
                                          "negating_statement": q["negating_statement"], "external_id": q["id"]})
        study.questions.add(question)
    tokens, consent = {}, current_consent(study)
    for i in range(n):  # what the consent POST of the join link does: the row is created consented
        p = participant_join(study=study, params={"PROLIFIC_PID": recruitment_id(slug, i), "SESSION_ID": f"s{i}"},
                             consent=consent)
        tokens[i] = p.token
    return study, tokens


def verify_state(study, bots: list[dict]) -> dict:
    """Compare the database with what the bots were told was stored."""
    from deliberation.models import Critique, Group, Opinion, Rating
    from participants.models import Participant

    groups = list(Group.objects.filter(study=study).values("id", "phase", "outcome"))
    unfinished_groups = [g["id"] for g in groups if g["phase"] != "done" or g["outcome"] != "completed"]
    by_token = {p.token: p for p in Participant.objects.filter(study=study)}
    not_completed = [p.pk for p in by_token.values() if p.status != Participant.Status.COMPLETED]
    opinions = set(Opinion.objects.filter(group__study=study).values_list("participant_id", flat=True))
    critiques = set(Critique.objects.filter(group__study=study).values_list("participant_id", flat=True))
    ratings: dict[tuple[int, int], int] = {}
    for pid, round_ in Rating.objects.filter(group__study=study).values_list("participant_id", "round"):
        ratings[(pid, round_)] = ratings.get((pid, round_), 0) + 1
    missing = []
    for bot in bots:
        p = by_token.get(bot["token"])
        if p is None:
            missing.append(f"bot {bot['index']}: no participant")
            continue
        created = bot["created"]
        if created.get("opinion", {}).get("created") and p.pk not in opinions:
            missing.append(f"bot {bot['index']}: acknowledged opinion missing")
        if created.get("critique", {}).get("created") and p.pk not in critiques:
            missing.append(f"bot {bot['index']}: acknowledged critique missing")
        for kind, round_ in (("rating", 1), ("final_rating", 2)):
            rows = created.get(kind, {}).get("rows", 0)
            if rows and ratings.get((p.pk, round_), 0) < rows:
                missing.append(f"bot {bot['index']}: {rows - ratings.get((p.pk, round_), 0)} acknowledged "
                               f"round-{round_} ratings missing")
    # Lost = an answer the server acknowledged that is not in the database. A group still running when the run's
    # time is up, or one that finished with members marked dropped because their bots gave up at the time limit,
    # is slow, not lost: both are reported (unfinished_groups, not_completed) and fail the capacity criterion.
    running = Group.objects.filter(study=study).exclude(phase="done").values_list("id", flat=True)
    return {"groups": len(groups), "unfinished_groups": len(unfinished_groups), "still_running_groups": len(running),
            "participants": len(by_token), "not_completed": len(not_completed),
            "missing_acknowledged_answers": len(missing), "examples": missing[:5], "lost_state": len(missing)}



def ledger_check(study, bots: list[dict]) -> dict:
    """tests/faults/ledger.py's comparison: every write a bot logged as stored is in the database exactly once."""
    from django.db import connection

    from tests.faults.ledger import compare

    with connection.cursor() as cursor:
        found = compare(bots, cursor, study.pk)
    return {"lost": len(found["lost"]), "duplicated": len(found["duplicated"]), "unlogged": len(found["unlogged"]),
            "acks_lost": found["acks_lost"], "db_writes": found["db_writes"], "logged_writes": found["logged_writes"],
            "examples": [list(k) for k in (found["lost"] + found["duplicated"] + found["unlogged"])[:5]]}


def hook() -> None:
    """One request (JSON on stdin) against this process's database; the answer is one line on stdout.

    ``{"action": "create", "n", "slug", "phase_seconds", "critique_round"}`` -> ``{"study_id", "tokens", "pids"}``
    (bot index -> participant token, recruitment id); ``{"action": "check", "slug", "bots"}`` -> the state
    (``verify_state``, plus ``ledger_check`` where the bots logged their writes)."""
    from deliberation.models import Study

    request = json.loads(sys.stdin.read())
    if request.get("action") == "create":
        study, tokens = make_study(int(request["n"]), request["slug"], phase_seconds=int(request["phase_seconds"]),
                                   critique_round=bool(request["critique_round"]))
        answer = {"study_id": study.pk, "tokens": {str(i): t for i, t in tokens.items()},
                  "pids": {str(i): recruitment_id(request["slug"], i) for i in tokens}}
    elif request.get("action") == "check":
        study = Study.objects.filter(slug=request["slug"]).first()
        if study is None:
            raise SystemExit(f"no study {request['slug']!r} in this database")
        bots = request["bots"]
        answer = verify_state(study, bots)
        if all("writes" in b and "pid" in b for b in bots):
            answer["ledger"] = ledger_check(study, bots)
    else:
        raise SystemExit(f"unknown action {request.get('action')!r}: 'create' or 'check'")
    print(RESULT_MARK + json.dumps(answer), flush=True)
