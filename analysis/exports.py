"""Exports of a study for analysis and training: long tables, a wide table, preference pairs, SFT sets.

One code path for every export (the ``export`` and ``export_csv`` commands and the admin's CSV action):
``study_tables`` reads the database into plain frames (one per entity, every concrete column, foreign keys as
ids; screening answers per attempt, questionnaire items and answers, participant events: screening outcomes,
withdrawals); everything after that is pure pandas: ``wide_table`` (one row per participant, oTree style, with
a ``q_<key>`` column per questionnaire item),
``preference_pairs`` (prompt/chosen/rejected from each member's ranking, the format TRL's RewardTrainer
reads), ``sft_rows`` (a candidate's prompt and text, kept when its mean quality rating reaches a threshold)
and the writers (CSV with ISO 8601 times, Parquet, JSON lines, Hugging Face ``datasets`` folders).

Participant tokens are never exported; recruitment ids (PROLIFIC_PID, STUDY_ID, SESSION_ID) and the join link's
parameters (``url_params``: other platforms put their worker ids there) only on request. CSV cells that a
spreadsheet would run as a formula get a leading quote (``deliberation.spreadsheet``). Bot answers are not
human data: by default the tables hold neither the answers the take-over bot wrote in a dropped member's seat
nor simulated participants (``run_bots``) and their answers (``AnswerQuerySet.human``); ``include_bots`` /
``include_simulated`` put them back, and every answer row carries ``by_bot`` and every participant row
``is_simulated``, also in the derived sets.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO

import pandas as pd

from deliberation.spreadsheet import safe_cell

ENTITIES = ("arms", "participants", "groups", "opinions", "candidates", "ratings", "critiques", "events")
# Written beside them, empty for a study without screening, questionnaire or withdrawals (docs/experimenter.md).
PARTICIPANT_ENTITIES = ("screening_answers", "questionnaire_items", "questionnaire_answers", "participant_events")
FORMATS = ("csv", "parquet", "jsonl", "hf")
SECRET_FIELDS = ("token",)
# Hidden unless asked for (``include_recruitment_ids``), here and in the admin's CSV action.
RECRUITMENT_FIELDS = ("recruitment_id", "recruitment_study_id", "recruitment_session_id", "url_params")
DEFAULT_MIN_QUALITY = 5.0


# --- reading (the only part that touches Django) ------------------------------------------------
def queryset_frame(queryset, exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Every concrete column of a queryset's rows (ordered by id) as an object-typed frame.

    Object dtype keeps ids as ints next to missing values (no float coercion) and times as aware datetimes.
    JSON fields are kept as Python values here; the writers serialise them.
    """
    from core.csv_export import field_names

    names = [n for n in field_names(queryset.model) if n not in set(exclude) | set(SECRET_FIELDS)]
    rows = list(queryset.order_by("pk").values_list(*names).iterator(chunk_size=2000))
    return pd.DataFrame(rows, columns=names, dtype=object)


def study_tables(study, *, include_recruitment_ids: bool = False, include_bots: bool = False,
                 include_simulated: bool = False) -> dict[str, pd.DataFrame]:
    """The study's long tables, one per entity in ``ENTITIES``; human answers only unless asked."""
    from deliberation.models import Candidate, Critique, Group, GroupEvent, Opinion, Rating, StudyArm
    from participants.models import (
        Participant,
        ParticipantEvent,
        QuestionnaireAnswer,
        QuestionnaireItem,
        ScreeningAnswer,
    )

    hidden = () if include_recruitment_ids else RECRUITMENT_FIELDS
    who = {"include_bots": include_bots, "include_simulated": include_simulated}
    tables = {
        "arms": queryset_frame(StudyArm.objects.filter(study=study)),  # each arm's settings (provenance)
        "participants": queryset_frame(
            Participant.objects.filter(study=study).human(include_simulated=include_simulated), hidden),
        "groups": queryset_frame(Group.objects.filter(study=study)),
        "opinions": queryset_frame(Opinion.objects.filter(group__study=study).human(**who)),
        "candidates": queryset_frame(Candidate.objects.filter(group__study=study)),
        "ratings": queryset_frame(Rating.objects.filter(group__study=study).human(**who)),
        "critiques": queryset_frame(Critique.objects.filter(group__study=study).human(**who)),
        "events": queryset_frame(GroupEvent.objects.filter(group__study=study)),
    }
    people = Participant.objects.filter(study=study).human(include_simulated=include_simulated)
    tables["screening_answers"] = queryset_frame(ScreeningAnswer.objects.filter(participant__in=people))
    tables["participant_events"] = queryset_frame(ParticipantEvent.objects.filter(participant__in=people))
    answers = QuestionnaireAnswer.objects.filter(participant__in=people)
    tables["questionnaire_answers"] = pd.DataFrame(
        list(answers.order_by("participant_id", "item__order", "item_id")
             .values_list("participant_id", "item_id", "item__key", "item__kind", "value", "answered_at")),
        columns=["participant_id", "item_id", "item_key", "item_kind", "value", "answered_at"], dtype=object)
    tables["questionnaire_items"] = queryset_frame(QuestionnaireItem.objects.filter(study=study))  # the codebook
    included: dict[int, list[int]] = {}
    through = Candidate.included_opinions.through
    for candidate_id, opinion_id in (through.objects.filter(candidate__group__study=study)
                                     .order_by("candidate_id", "opinion_id").values_list("candidate_id", "opinion_id")):
        included.setdefault(candidate_id, []).append(opinion_id)
    candidates = tables["candidates"]
    candidates["included_opinion_ids"] = [included.get(cid, []) for cid in candidates["id"]]
    questions = dict(Group.objects.filter(study=study).values_list("question_id", "question__text"))
    tables["groups"]["question_text"] = [questions.get(q, "") for q in tables["groups"]["question_id"]]
    arm_names = dict(StudyArm.objects.filter(study=study).values_list("id", "name"))
    tables["groups"]["arm"] = [arm_names.get(a, "") for a in tables["groups"]["arm_id"]]
    return tables


# --- pure transforms --------------------------------------------------------------------------------
def _by(frame: pd.DataFrame, *keys: str) -> dict:
    return {tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]: row
            for row in frame.to_dict("records")}


def wide_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per participant: who, which group, arm and condition, their opinion, their ratings of each round's
    winner, their critique and how they finished."""
    groups = _by(tables["groups"], "id")
    opinions = _by(tables["opinions"], "group_id", "participant_id")
    critiques = _by(tables["critiques"], "group_id", "participant_id")
    ratings = _by(tables["ratings"], "participant_id", "candidate_id")
    items = tables.get("questionnaire_items")
    questionnaire_keys = [] if items is None or items.empty else \
        [i["key"] for i in sorted(items.to_dict("records"), key=lambda i: (i["order"], i["id"]))]
    answers = tables.get("questionnaire_answers")
    questionnaire = {} if answers is None else {(a["participant_id"], a["item_key"]): a["value"]
                                                 for a in answers.to_dict("records")}
    rows = []
    for p in tables["participants"].to_dict("records"):
        group = groups.get(p["group_id"]) or {}
        opinion = opinions.get((p["group_id"], p["id"])) or {}
        critique = critiques.get((p["group_id"], p["id"])) or {}
        row = {"participant_id": p["id"]}
        if "recruitment_id" in p:
            row["recruitment_id"] = p["recruitment_id"]
        row.update({
            "is_simulated": p["is_simulated"], "taken_over_at": p["taken_over_at"],
            "status": p["status"], "completed": p["status"] == "completed", "completion_code": p["completion_code"],
            "consented_at": p["consented_at"], "consent_version": p.get("consent_version"),
            "consent_sha256": p.get("consent_sha256"), "finished_at": p["finished_at"], "group_id": p["group_id"],
            "position": p["position"], "question_id": group.get("question_id"),
            "question": group.get("question_text"), "arm": group.get("arm"), "condition": group.get("condition"),
            "excluded": bool(group) and group.get("excluded_participant_id") == p["id"],
            "group_outcome": group.get("outcome"), "opinion": opinion.get("text"),
            "opinion_by_timeout": opinion.get("by_timeout"), "opinion_by_bot": opinion.get("by_bot"),
            "opinion_seconds": opinion.get("response_seconds"),
        })
        for round_ in (1, 2):
            winner = group.get(f"winner_round{round_}_id")
            rating = ratings.get((p["id"], winner)) or {}
            row[f"r{round_}_winner_id"] = winner
            for key in ("agreement", "quality", "rank", "by_bot"):
                row[f"r{round_}_winner_{key}"] = rating.get(key)
        row["critique"] = critique.get("text")
        row["critique_by_bot"] = critique.get("by_bot")
        row["withdrawn_at"] = p.get("withdrawn_at")
        for key in questionnaire_keys:  # one text column per questionnaire item, q_<key> (a list joined by "; ")
            value = questionnaire.get((p["id"], key))
            row[f"q_{key}"] = None if value is None else "; ".join(value) if isinstance(value, list) else str(value)
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


def member_prompt(question: str, opinion: str) -> str:
    """The reward model's member side (question + that member's opinion), as the preference prompt."""
    from analysis.reward.data import member_text

    return member_text(question, opinion)


def preference_pairs(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every ordered pair from each member's ranking in each round: the higher-ranked candidate is chosen.

    The prompt is the question and that member's own opinion, so a reward model learns whose preference it is.
    ``chosen_source``/``rejected_source`` say whether each side is a model statement or a member's opinion shown
    as a comparator (filter on them to train on model statements only). ``by_bot`` / ``is_simulated``: the
    ranking came from the take-over bot / a simulated participant (only in tables read with them included).
    """
    simulated = {p["id"]: bool(p.get("is_simulated")) for p in tables["participants"].to_dict("records")}
    groups = _by(tables["groups"], "id")
    opinions = _by(tables["opinions"], "group_id", "participant_id")
    candidates = _by(tables["candidates"], "id")
    rows = []
    ranked = tables["ratings"]
    ranked = ranked[ranked["rank"].notna()] if len(ranked) else ranked
    for (group_id, participant_id, round_), part in ranked.groupby(["group_id", "participant_id", "round"],
                                                                   sort=True):
        opinion = opinions.get((group_id, participant_id))
        if opinion is None:
            continue
        prompt = member_prompt(groups[group_id]["question_text"], opinion["text"])
        ordered = sorted(part.to_dict("records"), key=lambda r: (r["rank"], r["candidate_id"]))
        for i, better in enumerate(ordered):
            for worse in ordered[i + 1:]:
                if better["rank"] == worse["rank"]:
                    continue
                rows.append({"prompt": prompt, "chosen": candidates[better["candidate_id"]]["text"],
                             "rejected": candidates[worse["candidate_id"]]["text"], "group_id": int(group_id),
                             "participant_id": int(participant_id), "round": int(round_),
                             "chosen_candidate_id": int(better["candidate_id"]),
                             "rejected_candidate_id": int(worse["candidate_id"]),
                             "chosen_rank": int(better["rank"]), "rejected_rank": int(worse["rank"]),
                             "chosen_source": candidates[better["candidate_id"]].get("source", "model"),
                             "rejected_source": candidates[worse["candidate_id"]].get("source", "model"),
                             "by_bot": bool(better.get("by_bot") or worse.get("by_bot")),
                             "is_simulated": simulated.get(participant_id, False)})
    columns = ["prompt", "chosen", "rejected", "group_id", "participant_id", "round", "chosen_candidate_id",
               "rejected_candidate_id", "chosen_rank", "rejected_rank", "chosen_source", "rejected_source",
               "by_bot", "is_simulated"]
    return pd.DataFrame(rows, columns=columns)


def _chat(prompt) -> list[dict]:
    """The stored chat messages without a trailing assistant prefill (the completion holds the whole text)."""
    messages = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in prompt or []]
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return messages


def sft_rows(tables: dict[str, pd.DataFrame], *, min_quality: float = DEFAULT_MIN_QUALITY,
             winners_only: bool = False) -> pd.DataFrame:
    """Model-written candidates whose mean quality rating is at least ``min_quality``, as conversational
    prompt/completion rows (TRL's SFT format); human-written statements (no prompt) are left out.

    The prompt is the stored rendered prompt without its trailing assistant prefill; the completion is the whole
    statement (which starts with the prefill). ``winners_only``: only the statements a group chose as a round's
    winner."""
    columns = ["prompt", "completion", "candidate_id", "group_id", "round", "mean_quality", "n_quality_ratings"]
    ratings = tables["ratings"]
    if not len(ratings):
        return pd.DataFrame(columns=columns)
    rated = ratings[ratings["quality"].notna()]
    quality = (rated.assign(quality=rated["quality"].astype(float), candidate_id=rated["candidate_id"].astype(int))
               .groupby("candidate_id")["quality"].agg(["mean", "count"]))
    winners = set()
    if winners_only:
        for key in ("winner_round1_id", "winner_round2_id"):
            winners |= {int(w) for w in tables["groups"][key] if w is not None and w == w}
    rows = []
    for c in tables["candidates"].to_dict("records"):
        if c["id"] not in quality.index or not c["prompt"] or (winners_only and c["id"] not in winners):
            continue
        mean, count = float(quality.loc[c["id"], "mean"]), int(quality.loc[c["id"], "count"])
        if mean < min_quality:
            continue
        rows.append({"prompt": _chat(c["prompt"]), "completion": [{"role": "assistant", "content": c["text"]}],
                     "candidate_id": int(c["id"]), "group_id": int(c["group_id"]), "round": int(c["round"]),
                     "mean_quality": mean, "n_quality_ratings": count})
    return pd.DataFrame(rows, columns=columns)


# --- writing ----------------------------------------------------------------------------------------
def _plain(value):
    """A cell for CSV, Parquet and JSON lines: JSON for structures, ISO 8601 for times."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return value


def _iso(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def write_csv_frame(frame: pd.DataFrame, out: IO[str] | Path) -> int:
    """Every CSV the toolkit writes goes through here: JSON for structures, ISO 8601 times, no cell a spreadsheet
    would run as a formula, and RFC 4180 line ends (CRLF), with which a carriage return inside a cell is quoted
    too (with a bare LF it would be written as is and split the row for Excel)."""
    frame.map(lambda v: safe_cell(_iso(_plain(v)))).to_csv(out, index=False, lineterminator="\r\n")
    return len(frame)


def write_parquet_frame(frame: pd.DataFrame, path: Path) -> int:
    frame.map(_plain).to_parquet(path, index=False, engine="pyarrow")
    return len(frame)


def write_jsonl_frame(frame: pd.DataFrame, path: Path) -> int:
    with open(path, "w", encoding="utf-8") as handle:
        for row in frame.to_dict("records"):
            handle.write(json.dumps({k: _iso(v) for k, v in row.items()}, ensure_ascii=False, default=str) + "\n")
    return len(frame)


def write_queryset_csv(queryset, out: IO[str], exclude: Iterable[str] = (), *,
                       include_recruitment_ids: bool = False) -> int:
    """The admin's CSV action (``core.csv_export.write_csv`` through ``settings.CSV_QUERYSET_WRITER``): recruitment
    ids and the join link's parameters only when asked for."""
    hidden = (*exclude, *(() if include_recruitment_ids else RECRUITMENT_FIELDS))
    return write_csv_frame(queryset_frame(queryset, hidden), out)


WRITERS = {"csv": write_csv_frame, "parquet": write_parquet_frame, "jsonl": write_jsonl_frame}


def save_hf_dataset(frame: pd.DataFrame, path: Path) -> int:
    """A ``datasets`` folder (``Dataset.save_to_disk``); empty frames keep their columns."""
    from datasets import Dataset

    data = {c: frame[c].tolist() for c in frame.columns}
    Dataset.from_dict(data).save_to_disk(str(path))
    return len(frame)


def export_study(study, out: Path, formats: Sequence[str] = ("csv",), *, include_recruitment_ids: bool = False,
                 include_bots: bool = False, include_simulated: bool = False,
                 min_quality: float = DEFAULT_MIN_QUALITY, wide: bool = True, manifest: bool = True,
                 progress=None) -> dict[str, int]:
    """Write the study into ``out`` in each format; returns rows written per file (also in manifest.json).
    Human answers only unless ``include_bots`` / ``include_simulated``."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; use {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    tables = study_tables(study, include_recruitment_ids=include_recruitment_ids, include_bots=include_bots,
                          include_simulated=include_simulated)
    if wide:
        tables["participants_wide"] = wide_table(tables)
    counts: dict[str, int] = {}
    steps = [(fmt, name) for fmt in formats if fmt != "hf" for name in tables] + \
            [("hf", name) for name in ("preference_pairs", "sft") if "hf" in formats]
    for fmt, name in steps:
        if fmt == "hf":
            frame = preference_pairs(tables) if name == "preference_pairs" else sft_rows(tables,
                                                                                         min_quality=min_quality)
            key = f"hf/{name}"
            counts[key] = save_hf_dataset(frame, out / "hf" / name)
        else:
            key = f"{name}.{fmt}"
            counts[key] = WRITERS[fmt](tables[name], out / key)
        if progress:
            progress(key)
    if manifest:
        (out / "manifest.json").write_text(json.dumps(
            {"study": study.slug, "formats": list(formats), "include_recruitment_ids": include_recruitment_ids,
             "include_bots": include_bots, "include_simulated": include_simulated,
             "min_quality": min_quality, "rows": counts}, indent=2))
    return counts
