"""Compare what bots logged as stored with what the database holds: no write lost, none duplicated.

Plain SQL on a DB-API cursor, so the same check runs on the test database (Django's connection) and on a
private PostgreSQL the test process has no Django connection to.
"""
from __future__ import annotations

from collections import Counter, defaultdict

TEXT_KINDS = ("opinion", "critique")
STORED = ("created", "confirmed")  # acked as new, or unanswered but later shown as submitted
KIND_OF_ROUND = {1: "rating", 2: "final_rating"}

SQL = {
    "opinion": "SELECT p.recruitment_id, o.text, o.by_timeout FROM deliberation_opinion o "
               "JOIN participants_participant p ON p.id = o.participant_id WHERE p.study_id = %s",
    "critique": "SELECT p.recruitment_id, c.text, c.by_timeout FROM deliberation_critique c "
                "JOIN participants_participant p ON p.id = c.participant_id WHERE p.study_id = %s",
    "rating": "SELECT p.recruitment_id, r.round, r.candidate_id, r.agreement, r.quality, r.rank, r.by_timeout "
              "FROM deliberation_rating r JOIN participants_participant p ON p.id = r.participant_id "
              "WHERE p.study_id = %s",
}


def database_writes(cursor, study_id: int) -> dict:
    """{(pid, kind): [content, ...]} for every submission row set in the study, plus timed-out counts."""
    writes: dict[tuple, list] = defaultdict(list)
    by_timeout = Counter()
    for kind in TEXT_KINDS:
        cursor.execute(SQL[kind], [study_id])
        for pid, text, timed_out in cursor.fetchall():
            writes[(pid, kind)].append(text.strip())
            by_timeout[kind] += bool(timed_out)
    cursor.execute(SQL["rating"], [study_id])
    sets: dict[tuple, list] = defaultdict(list)
    rows = 0
    for pid, round_, candidate, agreement, quality, rank, timed_out in cursor.fetchall():
        sets[(pid, KIND_OF_ROUND[round_])].append((candidate, agreement, quality, rank))
        by_timeout[KIND_OF_ROUND[round_]] += bool(timed_out)
        rows += 1
    for key, ratings in sets.items():
        candidates = Counter(c for c, *_ in ratings)
        if max(candidates.values()) > 1:  # a candidate rated twice by one member: a duplicate
            writes[key].extend([tuple(sorted(ratings))] * (max(candidates.values())))
        else:
            writes[key].append(tuple(sorted(ratings)))
    return {"writes": dict(writes), "rating_rows": rows, "by_timeout": dict(by_timeout)}


def write_content(write: dict):
    """What a logged write stores, in the form ``database_writes`` gives it."""
    message = write["message"]
    if write["kind"] in TEXT_KINDS:
        return message["text"].strip()
    rank = {candidate: i + 1 for i, candidate in enumerate(message["ranking"])}
    return tuple(sorted((r["candidate_id"], r["agreement"], r["quality"], rank.get(r["candidate_id"]))
                        for r in message["ratings"]))


def rating_rows(kind: str, content) -> int:
    return 0 if kind in TEXT_KINDS else len(content)


def logged_writes(bots: list[dict]) -> dict:
    """{(pid, kind): [content, ...]} for every write a bot logged as stored, plus outcome counts and the
    writes sent that got no answer ({(pid, kind): [content, ...]})."""
    writes: dict[tuple, list] = defaultdict(list)
    unanswered: dict[tuple, list] = defaultdict(list)
    outcomes = Counter()
    rows = 0
    for bot in bots:
        for write in bot["writes"]:
            outcomes[write["outcome"]] += 1
            key = (bot["pid"], write["kind"])
            if write["outcome"] == "unanswered":
                unanswered[key].append(write_content(write))
            if write["outcome"] not in STORED:
                continue
            content = write_content(write)
            rows += rating_rows(write["kind"], content)
            writes[key].append(content)
    return {"writes": dict(writes), "rating_rows": rows, "outcomes": dict(outcomes), "unanswered": dict(unanswered)}


def compare(bots: list[dict], cursor, study_id: int) -> dict:
    """Counts of writes in the database and in the bots' logs, and every discrepancy by kind."""
    db = database_writes(cursor, study_id)
    log = logged_writes(bots)
    # A write sent just before the server died may be stored with its ack lost, and the bot may never see it
    # confirmed (its group had moved on by the reconnect). It counts as stored when the database holds exactly
    # what was sent, once; a stored write that no bot sent stays "unlogged".
    acks_lost = 0
    for key, contents in log["unanswered"].items():
        stored = db["writes"].get(key)
        if key not in log["writes"] and stored is not None and len(stored) == 1 and stored[0] in contents:
            log["writes"][key] = [stored[0]]
            log["rating_rows"] += rating_rows(key[1], stored[0])
            acks_lost += 1
    keys = set(db["writes"]) | set(log["writes"])
    lost = sorted(k for k in keys if k in log["writes"] and db["writes"].get(k) != log["writes"][k][:1])
    duplicated = sorted(k for k in keys if len(db["writes"].get(k, ())) > 1 or len(log["writes"].get(k, ())) > 1)
    unlogged = sorted(k for k in keys if k in db["writes"] and k not in log["writes"])
    return {
        "db_writes": sum(len(v) for v in db["writes"].values()),
        "logged_writes": sum(len(v) for v in log["writes"].values()),
        "db_rating_rows": db["rating_rows"],
        "logged_rating_rows": log["rating_rows"],
        "by_kind": dict(Counter(kind for _, kind in db["writes"])),
        "by_timeout": db["by_timeout"],
        "outcomes": log["outcomes"],
        "acks_lost": acks_lost,
        "lost": lost,
        "duplicated": duplicated,
        "unlogged": unlogged,
    }
