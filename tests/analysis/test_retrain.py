"""Reward model versions: retraining every K finished groups (promotion only when better, one training per study
at a time, triggers merged), checkpoints never overwritten, no scoring on training groups, holdout by question
and topic, clear messages for too few ratings and unreadable checkpoints. Tiny random backbone throughout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from analysis.models import RewardModel, RewardRetraining
from analysis.reward import registry, retrain
from analysis.reward.config import RewardConfig
from analysis.reward.holdout import held_out_groups
from analysis.reward.registry import (
    CheckpointError,
    RewardModelError,
    group_holdout_units,
    reward_model_create,
    reward_model_load,
    reward_model_serving,
    reward_model_train,
)
from deliberation.models import Candidate, Critique, Group, Opinion, Question, Rating, Study
from participants.models import Participant

from .test_registry import CANDIDATES, LIKING, OPINIONS

pytestmark = pytest.mark.django_db
TINY = {"architecture": "cross", "backbone": "tiny-random", "max_length": 32, "batch_size": 9, "epochs": 1, "learning_rate": 1e-3,
        "val_fraction": 0.5}


def rate_group(study: Study, question: Question, tag: str, *, finished: bool = True) -> Group:
    """One group of three who rate and rank three candidates in round 1 and critique the winner."""
    now = timezone.now()
    group = Group.objects.create(study=study, question=question, phase="done", phase_started_at=now,
                                 finished_at=now if finished else None)
    candidates = [Candidate.objects.create(group=group, round=1, index=i, text=t, raw_text=t, backend="test",
                                           model_id="m", template_name="t", template_version=1, prompt=[],
                                           prompt_sha256="", seed=0, latency_ms=0.0)
                  for i, t in enumerate(CANDIDATES)]
    for m, opinion in enumerate(OPINIONS):
        p = Participant.objects.create(study=study, group=group, recruitment_id=f"{tag}-{m}")
        Opinion.objects.create(group=group, participant=p, text=opinion, response_seconds=1.0)
        Critique.objects.create(group=group, participant=p, candidate=candidates[0], text="Be more specific.",
                                response_seconds=1.0)
        order = sorted(range(3), key=lambda c: -LIKING[m][c])
        for c in candidates:
            Rating.objects.create(participant=p, candidate=c, group=group, round=1, agreement=LIKING[m][c.index],
                                  rank=order.index(c.index) + 1, response_seconds=1.0)
    return group


def retraining_study(slug: str = "retrain", n_groups: int = 4, every: int = 1) -> Study:
    study = Study.objects.create(slug=slug, title="Retrain", reward_retrain_every=every, reward_retrain_config=TINY)
    question = Question.objects.create(text=f"Should we remove all taxes on food? ({slug})")
    for g in range(n_groups):
        rate_group(study, question, f"{slug}-{g}")
    return study


def finish_another_group(study: Study) -> Group:
    return rate_group(study, study.groups.first().question, f"{study.slug}-{study.groups.count()}")


@pytest.fixture
def scores(monkeypatch):
    """Pairwise accuracy chosen per version (by the reward_model_id saved in its checkpoint)."""
    chosen: dict[int, float] = {}
    monkeypatch.setattr(retrain, "_pairwise_accuracy", lambda rm, records: chosen.get(rm.meta["reward_model_id"], 0.5))
    return chosen


@pytest.fixture(autouse=True)
def _models_dir(tmp_path, settings):
    settings.REWARD_MODELS_DIR = tmp_path / "reward_models"


def test_first_version_is_promoted_better_replaces_worse_does_not_and_failure_keeps_the_previous(scores,
                                                                                                 monkeypatch):
    study = retraining_study()
    assert retrain.retrain_request(study_id=study.pk)
    [first] = retrain.retrain_run(study_id=study.pk)
    study.refresh_from_db()
    assert first.status == "done" and study.reward_model_id == first.pk and first.promoted_at is not None
    assert first.promotion["promoted"] and "first version" in first.promotion["reason"]
    assert first.config["backbone"] == "tiny-random" and first.parent is None

    finish_another_group(study)
    monkeypatch.setattr(retrain, "_pairwise_accuracy",
                        lambda rm, records: {first.pk: 0.5}.get(rm.meta["reward_model_id"], 0.9))
    assert retrain.retrain_request(study_id=study.pk)
    [better] = retrain.retrain_run(study_id=study.pk)
    study.refresh_from_db()
    assert study.reward_model_id == better.pk and better.parent_id == first.pk
    decision = better.promotion
    assert decision["promoted"] and decision["new_score"] == 0.9 and decision["current_score"] == 0.5
    assert decision["compared_with"] == first.pk and decision["group_ids"]
    # The comparison groups are held out by the new version and were not trained on by the old one.
    assert set(decision["group_ids"]) <= set(better.validation_group_ids)
    assert not set(decision["group_ids"]) & set(first.trained_group_ids)

    finish_another_group(study)
    monkeypatch.setattr(retrain, "_pairwise_accuracy",
                        lambda rm, records: {better.pk: 0.9}.get(rm.meta["reward_model_id"], 0.2))
    retrain.retrain_request(study_id=study.pk)
    [worse] = retrain.retrain_run(study_id=study.pk)
    study.refresh_from_db()
    assert worse.status == "done" and study.reward_model_id == better.pk and worse.promoted_at is None
    assert not worse.promotion["promoted"] and worse.promotion["new_score"] == 0.2
    assert worse.promotion["current_score"] == 0.9 and worse.promotion["kept_version"] == better.pk

    finish_another_group(study)
    monkeypatch.setattr(registry, "train", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("GPU on fire")))
    retrain.retrain_request(study_id=study.pk)
    [failed] = retrain.retrain_run(study_id=study.pk)  # recorded, not raised
    study.refresh_from_db()
    assert failed.status == "failed" and "GPU on fire" in failed.error
    assert not failed.promotion["promoted"] and "training failed" in failed.promotion["reason"]
    assert study.reward_model_id == better.pk
    assert RewardRetraining.objects.get(study=study).running_version is None

    # The admin lists the versions: which is in use, parent, validation accuracy, data size, decision.
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("boss", "b@example.org", "pw")
    from django.test import Client

    client = Client()
    client.force_login(admin)
    page = client.get(reverse("admin:analysis_rewardmodel_changelist")).content.decode()
    assert "not promoted: not better than the version in use" in page and "training failed" in page
    assert "pairwise " in page and " + " in page  # validation accuracy; n train + n validation ratings


def test_retraining_is_due_every_k_finished_groups(scores):
    study = retraining_study(n_groups=3, every=2)
    assert retrain.retrain_request(study_id=study.pk)  # 3 finished, none trained yet
    [first] = retrain.retrain_run(study_id=study.pk)
    state = RewardRetraining.objects.get(study=study)
    assert state.finished_groups_at_last_run == 3 and state.runs == 1 and not state.pending
    finish_another_group(study)
    assert not retrain.retrain_request(study_id=study.pk)  # 1 of 2
    assert retrain.retrain_run(study_id=study.pk) == []
    rate_group(study, study.groups.first().question, "unfinished", finished=False)
    assert not retrain.retrain_request(study_id=study.pk)  # an unfinished group does not count
    finish_another_group(study)
    assert retrain.retrain_request(study_id=study.pk)


def test_one_training_per_study_at_a_time_and_triggers_during_a_run_merge_into_one_more(scores, monkeypatch):
    study = retraining_study()
    real_train = registry.train
    during = []

    def train_while_groups_finish(config, records, progress=None):
        if not during:  # first run: three groups finish and trigger while it trains
            for _ in range(3):
                finish_another_group(study)
                during.append(retrain.retrain_request(study_id=study.pk))
                # another worker picks up the trigger: the study is taken, it does nothing
                assert retrain.retrain_run(study_id=study.pk) == []
        return real_train(config, records, progress=progress)

    monkeypatch.setattr(registry, "train", train_while_groups_finish)
    retrain.retrain_request(study_id=study.pk)
    versions = retrain.retrain_run(study_id=study.pk)
    assert during == [True, True, True]
    assert len(versions) == 2  # the run, then exactly one more for the three triggers
    state = RewardRetraining.objects.get(study=study)
    assert state.runs == 2 and not state.pending and state.running_version is None
    assert state.finished_groups_at_last_run == 7
    assert RewardModel.objects.filter(study=study).count() == 2


def test_a_run_whose_worker_died_does_not_block_the_study_forever(scores, settings):
    study = retraining_study()
    dead = RewardModel.objects.create(study=study, status="running", config={},
                                      heartbeat_at=timezone.now() - timedelta(hours=1))
    RewardRetraining.objects.create(study=study, running_version=dead)
    alive = RewardModel.objects.create(study=study, status="running", config={}, heartbeat_at=timezone.now())
    RewardRetraining.objects.filter(study=study).update(running_version=alive)
    retrain.retrain_request(study_id=study.pk)
    assert retrain.retrain_run(study_id=study.pk) == []  # someone alive is training: left alone
    assert RewardRetraining.objects.get(study=study).pending
    RewardRetraining.objects.filter(study=study).update(running_version=dead)
    [version] = retrain.retrain_run(study_id=study.pk)  # the dead one is taken over
    assert version.status == "done"


def test_a_finished_group_sends_the_retraining_task_by_name_after_commit(monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    from celery import current_app

    from deliberation.services import group_finish

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append((name, kw)))
    study = retraining_study(n_groups=1, every=3)
    off = Study.objects.create(slug="off", title="Off")
    with django_capture_on_commit_callbacks(execute=True):
        group_finish(study.groups.get(), "completed", SimpleNamespace(members=()), timezone.now())
        other = Group.objects.create(study=off, question=Question.objects.first(), phase_started_at=timezone.now())
        group_finish(other, "completed", SimpleNamespace(members=()), timezone.now())
        assert sent == []  # not before the commit
    assert sent == [("analysis.tasks.reward_model_retrain", {"kwargs": {"study_id": study.pk}})]


def test_a_trained_checkpoint_is_never_overwritten(admin_client):
    study = retraining_study(n_groups=3)
    version = reward_model_create(study=study, config=RewardConfig(**TINY))
    version = reward_model_train(reward_model_id=version.pk)
    weights = Path(version.checkpoint_path, "model.safetensors")
    before = (weights.stat().st_mtime_ns, weights.read_bytes())
    with pytest.raises(RewardModelError, match="already trained"):
        reward_model_train(reward_model_id=version.pk)
    version.refresh_from_db()
    assert version.status == "done" and (weights.stat().st_mtime_ns, weights.read_bytes()) == before

    # Retraining a finished version from the admin makes a new version; the old one is kept as it was.
    response = admin_client.post(reverse("admin:analysis_rewardmodel_changelist"),
                                 {"action": "queue_training", "_selected_action": [version.pk]}, follow=True)
    assert response.status_code == 200
    new = RewardModel.objects.exclude(pk=version.pk).get()
    assert new.parent_id == version.pk and new.status == "queued" and new.config == version.config
    assert RewardModel.objects.get(pk=version.pk).status == "done"

    # A version in training now is not started twice; one whose worker died is retrained as a new version.
    RewardModel.objects.filter(pk=new.pk).update(status="running", heartbeat_at=timezone.now())
    with pytest.raises(RewardModelError, match="being trained now"):
        reward_model_train(reward_model_id=new.pk)
    RewardModel.objects.filter(pk=new.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    admin_client.post(reverse("admin:analysis_rewardmodel_changelist"),
                      {"action": "queue_training", "_selected_action": [new.pk]}, follow=True)
    assert RewardModel.objects.get(parent=new).status == "queued"
    RewardModel.objects.filter(pk=new.pk).update(status="queued")

    # A queued version whose folder already holds files (left by someone else) refuses to write there.
    folder = registry.checkpoint_directory(new)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"someone else's")
    with pytest.raises(CheckpointError, match="not overwritten"):
        reward_model_train(reward_model_id=new.pk)
    new.refresh_from_db()
    assert new.status == "failed" and "already holds files" in new.error
    assert (folder / "model.safetensors").read_bytes() == b"someone else's"


def test_saving_the_study_in_the_admin_keeps_a_version_promoted_while_the_form_was_open(rf, admin_user):
    from django.contrib.admin.sites import site

    study = retraining_study(n_groups=1)
    stale_form_copy = Study.objects.get(pk=study.pk)
    version = RewardModel.objects.create(study=study, status="done", config=TINY)
    Study.objects.filter(pk=study.pk).update(reward_model=version)  # promoted meanwhile
    stale_form_copy.title = "Renamed"
    site._registry[Study].save_model(rf.post("/"), stale_form_copy, SimpleNamespace(changed_data=["title"]), True)
    study.refresh_from_db()
    assert study.title == "Renamed" and study.reward_model_id == version.pk


def test_evaluation_refuses_groups_the_model_trained_on():
    study = retraining_study(n_groups=3)
    version = reward_model_create(study=study, config=RewardConfig(**{**TINY, "val_fraction": 0.0}))
    version = reward_model_train(reward_model_id=version.pk)
    assert version.validation_group_ids == [] and len(version.trained_group_ids) == 3
    with pytest.raises(CommandError, match="trained on every group"):
        call_command("evaluate_reward_model", str(version.pk), stdout=StringIO())
    # Groups rated after training are fair game, and nothing it trained on is scored.
    finish_another_group(study)
    report = registry.reward_model_evaluate(reward_model=version)
    assert report["n_groups"] == report["n_groups_new_since_training"] == 1 and report["n_groups_held_out"] == 0
    assert report["n_groups_trained_on_not_scored"] == 3


def questions_and_topics_study() -> tuple[Study, list[Question]]:
    study = Study.objects.create(slug="topics", title="Topics")
    questions = [Question.objects.create(text=f"Question {i}?", topic=topic) for i, topic in enumerate([1, 1, 2, 3])]
    for q in questions:
        for g in range(2):
            rate_group(study, q, f"topics-{q.pk}-{g}")
    return study, questions


def test_holdout_by_question_and_by_topic_keeps_every_group_of_a_held_out_unit_together():
    study, questions = questions_and_topics_study()
    group_ids = list(study.groups.values_list("id", flat=True))
    question_of = dict(study.groups.values_list("id", "question_id"))
    topic_of = dict(study.groups.values_list("id", "question__topic"))
    for holdout, unit_of in (("question", question_of), ("topic", topic_of)):
        held = held_out_groups(group_holdout_units(group_ids=group_ids, holdout=holdout), 0.4, seed=0)
        assert held and len(held) < len(group_ids)
        held_units = {unit_of[g] for g in held}
        assert all((unit_of[g] in held_units) == (g in held) for g in group_ids), holdout
    with pytest.raises(RewardModelError, match="unknown holdout"):
        group_holdout_units(group_ids=group_ids, holdout="moon")


def test_a_question_without_a_subtopic_is_held_out_by_its_topic():
    """Regression: once ``Question.subtopic`` existed, questions without one were held out one by one, not by
    ``topic``, so two questions of one topic could land on both sides (seen with other primary keys)."""
    study, questions = questions_and_topics_study()
    units = group_holdout_units(group_ids=list(study.groups.values_list("id", flat=True)), holdout="topic")
    topic_of = dict(study.groups.values_list("id", "question__topic"))
    assert units == {g: ("topic", topic_of[g]) for g in units}
    Question.objects.filter(pk=questions[0].pk).update(subtopic=7)
    units = group_holdout_units(group_ids=list(units), holdout="topic")
    assert sorted(set(units.values())) == [("subtopic", 7), ("topic", 1), ("topic", 2), ("topic", 3)]


def test_train_command_holds_out_whole_topics(tmp_path):
    study, _questions = questions_and_topics_study()
    out = StringIO()
    call_command("train_reward_model", "--study", study.slug, "--holdout", "topic", "--backbone", "tiny-random",
                 "--max-length", "32", "--epochs", "1", "--val-fraction", "0.3", stdout=out, stderr=StringIO())
    printed = json.loads(out.getvalue())
    version = RewardModel.objects.get(pk=printed["reward_model_id"])
    assert version.holdout == "topic" and printed["holdout"] == "topic"
    topic_of = dict(study.groups.values_list("id", "question__topic"))
    held = {topic_of[g] for g in version.validation_group_ids}
    trained = {topic_of[g] for g in version.trained_group_ids}
    assert held and trained and not held & trained
    assert version.metrics["holdout"] == "topic" and version.metrics["n_validation_groups"] == len(
        version.validation_group_ids)


def test_too_few_ratings_get_a_clear_message_everywhere(admin_client, scores):
    study = retraining_study(slug="tiny", n_groups=1)
    with pytest.raises(CommandError, match="too few ratings to train a reward model: 9 usable rating"):
        call_command("train_reward_model", "--study", study.slug, "--backbone", "tiny-random", stdout=StringIO())
    empty = Study.objects.create(slug="empty-study", title="Empty")
    with pytest.raises(CommandError, match="no ratings with an agreement or a rank yet"):
        call_command("train_reward_model", "--study", empty.slug, stdout=StringIO())
    assert not RewardModel.objects.exists()

    version = RewardModel.objects.create(study=study, config=TINY)
    page = admin_client.post(reverse("admin:analysis_rewardmodel_changelist"),
                             {"action": "queue_training", "_selected_action": [version.pk]}, follow=True)
    assert "too few ratings to train a reward model" in page.content.decode()

    retrain.retrain_request(study_id=study.pk)
    [failed] = retrain.retrain_run(study_id=study.pk)  # the task records it, it does not crash
    assert failed.status == "failed" and "too few ratings" in failed.error
    assert "Traceback" not in failed.error and "too few ratings" in failed.promotion["reason"]
    assert Study.objects.get(pk=study.pk).reward_model_id is None


def test_a_corrupt_or_missing_checkpoint_is_reported_and_the_previous_version_keeps_serving(scores, monkeypatch):
    study = retraining_study()
    retrain.retrain_request(study_id=study.pk)
    [first] = retrain.retrain_run(study_id=study.pk)
    assert Study.objects.get(pk=study.pk).reward_model_id == first.pk

    real_save = registry.save_checkpoint

    def save_then_corrupt(model, tokenizer, directory, meta):
        folder = real_save(model, tokenizer, directory, meta)
        (Path(folder) / "model.safetensors").write_bytes(b"\x00garbage")
        return folder

    monkeypatch.setattr(registry, "save_checkpoint", save_then_corrupt)
    finish_another_group(study)
    retrain.retrain_request(study_id=study.pk)
    [corrupt] = retrain.retrain_run(study_id=study.pk)
    assert corrupt.status == "failed" and "unreadable" in corrupt.error
    assert not corrupt.promotion["promoted"]
    study.refresh_from_db()
    assert study.reward_model_id == first.pk
    assert reward_model_load(study.reward_model_id).meta["reward_model_id"] == first.pk  # still serves

    missing = RewardModel.objects.create(study=study, status="done", config=TINY,
                                         checkpoint_path=str(Path(first.checkpoint_path).parent / "gone"))
    with pytest.raises(CheckpointError, match=f"Reward model {missing.pk}: Checkpoint .* is missing"):
        reward_model_load(missing.pk)
    # Promoted but unreadable: best-of-N is served by the latest earlier promoted version that loads.
    missing.promoted_at = timezone.now()
    missing.save()
    Study.objects.filter(pk=study.pk).update(reward_model=missing)
    study.refresh_from_db()
    version, model = reward_model_serving(study=study)
    assert version.pk == first.pk and model.meta["reward_model_id"] == first.pk
    Path(first.checkpoint_path, "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="No earlier promoted version of study 'retrain' could be loaded"):
        reward_model_serving(study=study)


# --- a real worker --------------------------------------------------------------------------
def start_worker(log_path: Path, models_dir: Path) -> subprocess.Popen:
    from django.conf import settings
    from django.db import connection

    from ..e2e.stack import ROOT, database_url

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "REWARD_MODELS_DIR": str(models_dir),
           "DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": settings.REDIS_URL,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "celery",
                             "--pool=solo", "--loglevel=INFO", "--without-heartbeat", "--without-mingle",
                             "--without-gossip"], cwd=ROOT, env=env, stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_finished_group_retrains_and_promotes_on_a_real_celery_worker(tmp_path, settings):
    from deliberation.services import group_finish

    study = retraining_study(slug="worker", n_groups=3)
    group = finish_another_group(study)
    worker = start_worker(tmp_path / "worker.log", settings.REWARD_MODELS_DIR)
    try:
        from django.db import transaction

        with transaction.atomic():  # as the group service does: the task is sent after commit
            group_finish(group, "completed", SimpleNamespace(members=()), timezone.now())
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            version = RewardModel.objects.filter(study=study).first()
            if version is not None and version.status in ("done", "failed") and version.promotion:
                break
            time.sleep(1.0)
        log = (tmp_path / "worker.log").read_text()[-3000:]
        assert version is not None and version.status == "done", log
        study.refresh_from_db()
        assert study.reward_model_id == version.pk and version.promotion["promoted"], log
        assert Path(version.checkpoint_path).is_relative_to(settings.REWARD_MODELS_DIR)
        state = RewardRetraining.objects.get(study=study)
        assert state.runs == 1 and state.running_version is None and not state.pending
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
