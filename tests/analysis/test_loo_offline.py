"""Offline leave-one-out on a simulated study: extractive regeneration, a tiny reward model, the job's progress."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from analysis.loo_offline import job_create
from analysis.models import AnalysisJob
from analysis.reward.config import RewardConfig
from analysis.reward.registry import reward_model_create, reward_model_train
from deliberation.models import Candidate, Group, Opinion
from generation.backends.extractive import first_sentence

from ..factories import make_study
from .simulated import build_simulated_study

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def study_and_model(tmp_path, settings):
    settings.REWARD_MODELS_DIR = tmp_path
    study = build_simulated_study(slug="loo-off", groups=3, group_size=4, seed=1)
    reward_model = reward_model_create(study=study, config=RewardConfig(
        backbone="tiny-random", max_length=48, batch_size=12, epochs=1, learning_rate=1e-3, val_fraction=0.6))
    reward_model = reward_model_train(reward_model_id=reward_model.pk)
    assert len(reward_model.validation_group_ids) == 2 and len(reward_model.trained_group_ids) == 1
    return study, reward_model


def test_command_regenerates_each_left_out_statement_and_reports_the_drop(study_and_model):
    study, reward_model = study_and_model
    out = StringIO()
    call_command("loo_offline", "--study", study.slug, "--backend", "extractive", "--reward-model",
                 str(reward_model.pk), "--inline", "--json", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    job = AnalysisJob.objects.get(pk=result["job_id"])
    assert job.status == "done" and job.progress == 1.0 and job.done == job.total == 2
    assert result["status"] == "done" and result["progress"] == 1.0
    # The group the model trained on is not scored.
    assert set(job.params["group_ids"]) == set(reward_model.validation_group_ids)

    opinions = {o.participant_id: o for o in Opinion.objects.filter(group__study=study,
                                                                    group_id__in=reward_model.validation_group_ids)}
    rows = result["rows"]
    assert len(rows) == len(opinions)  # one regenerated statement per (group, left-out member)
    assert {(r["group_id"], r["left_out_participant_id"]) for r in rows} == {
        (o.group_id, pid) for pid, o in opinions.items()}
    for row in rows:
        left_out = opinions[row["left_out_participant_id"]]
        assert row["left_out_text_in_prompt"] is False and left_out.pk not in row["opinion_order"]
        # The extractive backend copies each prompted opinion's first sentence: the left-out one is gone.
        assert first_sentence(left_out.text) not in row["statement"]
        assert first_sentence(left_out.text) in row["statement_all_opinions"]
        group = Group.objects.get(pk=row["group_id"])
        assert row["round"] == (group.winner_round2 or group.winner_round1).round == 2
        assert row["drop_left_out"] == pytest.approx(row["agreement_left_out_all"] - row["agreement_left_out_without"])
        assert all(1 <= a <= 7 for a in row["agreement_included_without"])

    summary = {(s["measure"], s["role"]): s for s in result["summary"]}
    drop = summary[("predicted drop", "excluded − included")]
    assert drop["groups"] == 2 and drop["low"] <= drop["estimate"] <= drop["high"]
    excluded = [r["drop_left_out"] for r in rows]
    assert summary[("predicted drop", "excluded")]["estimate"] == pytest.approx(sum(excluded) / len(excluded))
    assert job.result["summary"] == result["summary"]
    # Nothing was stored as candidates: the analysis never touches the study's data.
    assert Candidate.objects.filter(group__study=study).count() == 3 * 2 * study.num_candidates


def test_celery_subtasks_do_one_group_each_with_progress_and_are_idempotent(study_and_model, admin_client):
    from analysis.tasks import loo_offline_group

    study, reward_model = study_and_model
    job = job_create(study=study, backend="extractive", reward_model_id=reward_model.pk, groups=2)
    assert job.status == "queued" and job.total == 2
    first, second = job.params["group_ids"]
    loo_offline_group.apply(kwargs={"job_id": job.pk, "group_id": first}).get()
    job.refresh_from_db()
    assert job.status == "running" and job.done == 1 and job.progress == 0.5 and "summary" not in job.result
    loo_offline_group.apply(kwargs={"job_id": job.pk, "group_id": first}).get()  # redelivered: no double count
    job.refresh_from_db()
    assert job.done == 1 and len(job.result["rows"]) == Opinion.objects.filter(group_id=first).count()
    loo_offline_group.apply(kwargs={"job_id": job.pk, "group_id": second}).get()
    job.refresh_from_db()
    assert job.status == "done" and job.progress == 1.0 and job.finished_at is not None
    assert any(s["measure"] == "predicted drop" for s in job.result["summary"])
    # The admin lists jobs with the same progress bar as reward model training.
    page = admin_client.get(reverse("admin:analysis_analysisjob_changelist")).content.decode()
    assert '<progress value="100"' in page and "Offline leave-one-out" in page
    detail = admin_client.get(reverse("admin:analysis_analysisjob_change", args=[job.pk]))
    assert detail.status_code == 200 and "predicted drop" in detail.content.decode()


def test_bad_options_give_clear_errors():
    study = make_study(slug="no-model")
    with pytest.raises(CommandError, match="No study"):
        call_command("loo_offline", "--study", "nope", "--inline")
    with pytest.raises(CommandError, match="unknown backend"):
        call_command("loo_offline", "--study", study.slug, "--backend", "nope", "--inline")
    with pytest.raises(CommandError, match="no reward model with id"):
        call_command("loo_offline", "--study", study.slug, "--reward-model", "999999", "--inline")
    with pytest.raises(CommandError, match="has no trained reward model"):
        call_command("loo_offline", "--study", study.slug, "--inline")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("loo_offline", "--study", study.slug, "--groups", "0", "--inline")
    assert not AnalysisJob.objects.exists()


def test_groups_the_model_trained_on_are_refused_or_reported_apart(study_and_model):
    study, reward_model = study_and_model
    # A model that trained on every group: nothing left to score unless asked, and then only apart.
    every = reward_model_create(study=study, config=RewardConfig(
        backbone="tiny-random", max_length=48, batch_size=12, epochs=1, val_fraction=0.0))
    every = reward_model_train(reward_model_id=every.pk)
    assert every.validation_group_ids == [] and len(every.trained_group_ids) == 3
    with pytest.raises(CommandError, match="trained on all 3 finished group"):
        call_command("loo_offline", "--study", study.slug, "--reward-model", str(every.pk), "--inline")

    out = StringIO()
    call_command("loo_offline", "--study", study.slug, "--backend", "extractive", "--reward-model",
                 str(reward_model.pk), "--inline", "--json", "--include-trained-on", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    trained_on = set(reward_model.trained_group_ids)
    assert result["groups"] == 3 and set(result["trained_on_group_ids"]) == trained_on
    assert all(row["trained_on"] == (row["group_id"] in trained_on) for row in result["rows"])
    main = {(s["measure"], s["role"]): s for s in result["summary"]}
    apart = {(s["measure"], s["role"]): s for s in result["summary_trained_on"]}
    assert main[("predicted drop", "excluded − included")]["groups"] == 2
    assert apart[("predicted drop", "excluded − included")]["groups"] == 1


def test_report_shows_the_latest_offline_result_or_says_how_to_run_it(study_and_model, tmp_path):
    from analysis.reports.data import load_offline_loo

    study, reward_model = study_and_model
    frame, note = load_offline_loo(study)
    assert frame is None and f"loo_offline --study {study.slug}" in note
    call_command("loo_offline", "--study", study.slug, "--backend", "extractive", "--reward-model",
                 str(reward_model.pk), "--inline", "--json", stdout=StringIO(), stderr=StringIO())
    frame, note = load_offline_loo(study)
    job = AnalysisJob.objects.get(study=study)
    assert note == f"job #{job.pk}, 2 groups"
    assert {"excluded", "included"} <= set(frame["role"]) and "predicted agreement" in set(frame["measure"])
    out = tmp_path / "report.html"
    call_command("report", study=study.slug, out=out, bootstrap=50, no_representation=True, stdout=StringIO(),
                 stderr=StringIO())
    html = out.read_text()
    assert 'id="fig-loo_offline"' in html and f"job #{job.pk}" in html and "Not run yet" not in html
