"""Exports of a simulated study and of a real Polis conversation: every format written, read back and counted."""
from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analysis.exports import ENTITIES, export_study, sft_rows, study_tables
from analysis.polis import load_conversation
from deliberation.models import Candidate, Critique, Group, GroupEvent, Opinion, Rating, StudyArm
from participants.models import Participant

from .simulated import build_simulated_study

pytestmark = pytest.mark.django_db(transaction=True)

LONDON = Path(__file__).resolve().parents[3] / "shared" / "data" / "polis" / "london.youth.policing"
MODELS = {"arms": StudyArm, "participants": Participant, "groups": Group, "opinions": Opinion, "candidates": Candidate,
          "ratings": Rating, "critiques": Critique, "events": GroupEvent}


def db_count(study, entity):
    model = MODELS[entity]
    return model.objects.filter(**({"study": study} if entity in ("arms", "participants", "groups") else
                                   {"group__study": study})).count()


def every_exported_byte(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_every_format_is_written_read_back_and_matches_the_database(tmp_path):
    from datasets import load_from_disk

    study = build_simulated_study(slug="export", groups=3, group_size=4, seed=2)
    out = StringIO()
    call_command("export", "--study", study.slug, "--format", "csv,parquet,jsonl,hf", "--out", str(tmp_path),
                 stdout=out, stderr=StringIO())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for entity in ENTITIES:
        expected = db_count(study, entity)
        assert expected > 0
        csv = pd.read_csv(tmp_path / f"{entity}.csv")
        parquet = pd.read_parquet(tmp_path / f"{entity}.parquet")
        lines = [json.loads(line) for line in (tmp_path / f"{entity}.jsonl").read_text().splitlines()]
        assert len(csv) == len(parquet) == len(lines) == expected == manifest["rows"][f"{entity}.csv"], entity
        assert list(csv.columns) == list(parquet.columns) == list(lines[0])
    # ISO 8601 times; provenance of every candidate; the leave-one-out condition on groups.
    opinions = pd.read_csv(tmp_path / "opinions.csv")
    assert all("T" in t and t.endswith("+00:00") for t in opinions["submitted_at"])
    candidates = pd.read_parquet(tmp_path / "candidates.parquet")
    for row in candidates.itertuples():
        db = Candidate.objects.get(pk=row.id)
        assert json.loads(row.opinion_order) == db.opinion_order
        assert sorted(json.loads(row.included_opinion_ids)) == sorted(db.included_opinions.values_list("pk", flat=True))
        assert json.loads(row.prompt) == db.prompt and row.seed == db.seed
    groups = pd.read_csv(tmp_path / "groups.csv")
    assert set(groups["condition"]) == {"standard", "leave_one_out"}

    wide = pd.read_csv(tmp_path / "participants_wide.csv")
    assert len(wide) == Participant.objects.filter(study=study).count()
    for row in wide.itertuples():
        p = Participant.objects.get(pk=row.participant_id)
        group = p.group
        assert row.group_id == group.pk and row.condition == group.condition
        assert bool(row.excluded) == (group.excluded_participant_id == p.pk)
        assert row.opinion == Opinion.objects.get(participant=p).text
        assert bool(row.completed) == (p.status == "completed")
        r2 = Rating.objects.filter(participant=p, candidate_id=group.winner_round2_id).first()
        assert (pd.isna(row.r2_winner_agreement) if r2 is None else row.r2_winner_agreement == r2.agreement)
    assert wide["excluded"].sum() == Group.objects.filter(study=study, condition="leave_one_out").count()
    assert (wide["status"] == "dropped").any()  # the simulated dropouts are there, with empty later answers

    pairs = load_from_disk(str(tmp_path / "hf" / "preference_pairs"))
    assert {"prompt", "chosen", "rejected"} <= set(pairs.column_names)
    ranked_members = Rating.objects.filter(group__study=study, rank__isnull=False).values(
        "participant_id", "round").distinct().count()
    n = study.num_candidates
    assert len(pairs) == ranked_members * n * (n - 1) // 2 == manifest["rows"]["hf/preference_pairs"]
    for pair in pairs.select(range(0, len(pairs), 5)):
        chosen = Rating.objects.get(participant_id=pair["participant_id"], candidate_id=pair["chosen_candidate_id"])
        rejected = Rating.objects.get(participant_id=pair["participant_id"],
                                      candidate_id=pair["rejected_candidate_id"])
        assert chosen.rank < rejected.rank and pair["chosen"] == chosen.candidate.text
        assert Opinion.objects.get(participant_id=pair["participant_id"]).text in pair["prompt"]
    sft = load_from_disk(str(tmp_path / "hf" / "sft"))
    assert len(sft) == manifest["rows"]["hf/sft"] and len(sft) > 0
    for row in sft:
        assert row["mean_quality"] >= 5 and row["completion"][0]["content"] == Candidate.objects.get(
            pk=row["candidate_id"]).text
        assert row["prompt"][0]["role"] == "system" and row["prompt"][-1]["role"] == "user"

    # No participant token anywhere; recruitment ids only when asked for.
    exported = every_exported_byte(tmp_path)
    for p in Participant.objects.filter(study=study):
        assert p.token.encode() not in exported and p.recruitment_id.encode() not in exported
    with_ids = tmp_path / "with-ids"
    export_study(study, with_ids, ("csv",), include_recruitment_ids=True)
    participants = pd.read_csv(with_ids / "participants.csv")
    assert set(participants["recruitment_id"]) == set(Participant.objects.filter(study=study).values_list(
        "recruitment_id", flat=True))
    assert "token" not in participants.columns and b"token" not in (with_ids / "participants_wide.csv").read_bytes()


def test_quality_threshold_filters_the_sft_set():
    study = build_simulated_study(slug="sft", groups=1, group_size=3, seed=4, leave_one_out_share=0.0)
    tables = study_tables(study)
    quality = tables["ratings"].dropna(subset=["quality"]).assign(q=lambda f: f["quality"].astype(float))
    means = quality.groupby("candidate_id")["q"].mean()
    for threshold in (1, 4.5, 5, 6, 7.5):
        kept = sft_rows(tables, min_quality=threshold)
        assert set(kept["candidate_id"]) == {int(c) for c, m in means.items() if m >= threshold}
    assert len(sft_rows(tables, min_quality=1)) == Candidate.objects.filter(group__study=study).count()
    assert len(sft_rows(tables, min_quality=7.5)) == 0


def test_polis_conversation_exports_with_every_vote(tmp_path):
    call_command("import_polis", str(LONDON), "--slug", "london", stdout=StringIO(), stderr=StringIO())
    from deliberation.models import Study

    study = Study.objects.get(slug="london")
    votes = len(load_conversation(LONDON).votes)
    call_command("export", "--study", "london", "--format", "csv,parquet,jsonl,hf", "--out", str(tmp_path),
                 stdout=StringIO(), stderr=StringIO())
    assert len(pd.read_csv(tmp_path / "ratings.csv")) == votes == Rating.objects.filter(group__study=study).count()
    assert len(pd.read_parquet(tmp_path / "ratings.parquet")) == votes
    assert len((tmp_path / "ratings.jsonl").read_text().splitlines()) == votes
    # Participants are split into groups (import_polis --groups, default 10); each group holds every comment.
    candidates = pd.read_csv(tmp_path / "candidates.csv")
    assert len(candidates) == 10 * len(load_conversation(LONDON).comments)
    assert candidates["index"].nunique() == len(load_conversation(LONDON).comments)
    assert len(pd.read_csv(tmp_path / "participants_wide.csv")) == Participant.objects.filter(study=study).count()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["rows"]["hf/preference_pairs"] == 0 and manifest["rows"]["hf/sft"] == 0  # votes: no ranks


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(CommandError, match="No study"):
        call_command("export", "--study", "missing", "--out", str(tmp_path))
    build_simulated_study(slug="bad", groups=1, group_size=2, seed=0, leave_one_out_share=0.0)
    with pytest.raises(CommandError, match="Unknown format"):
        call_command("export", "--study", "bad", "--format", "xlsx", "--out", str(tmp_path))
    with pytest.raises(CommandError, match="1-7"):
        call_command("export", "--study", "bad", "--min-quality", "9", "--out", str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_report_of_an_imported_polis_conversation(tmp_path):
    """The real votes through the analyst report: agreement distribution = the conversation's vote shares."""
    from analysis.polis import AGREEMENT_FOR_VOTE
    from analysis.reports.build import FIGURE_KEYS
    from analysis.reports.data import load_study
    from core.metrics import study_metrics
    from deliberation.models import Study

    call_command("import_polis", str(LONDON), "--slug", "london-report", stdout=StringIO(), stderr=StringIO())
    study = Study.objects.get(slug="london-report")
    votes = load_conversation(LONDON).votes
    summary = study_metrics(load_study(study), n_boot=100)
    shares = summary[summary["metric"] == "agreement"].set_index("label")["estimate"]
    for vote, level in AGREEMENT_FOR_VOTE.items():
        expected = sum(1 for v in votes if v.vote == vote) / len(votes)
        assert shares[str(level)] == pytest.approx(expected), vote
    assert summary.loc[summary["metric"] == "agreement", "n"].max() == len(votes)
    out = tmp_path / "polis.html"
    call_command("report", study=study.slug, out=out, bootstrap=50, no_representation=True, stdout=StringIO(),
                 stderr=StringIO())
    html = out.read_text()
    assert all(f'id="fig-{key}"' in html for key in FIGURE_KEYS)
