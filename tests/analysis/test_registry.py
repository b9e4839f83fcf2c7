"""The Django side: Polis import, training a registered model (command and Celery task), evaluation, admin."""
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from analysis.models import RewardModel
from analysis.polis import load_conversation
from analysis.reward.registry import reward_model_evaluate, reward_model_load, study_rating_records
from analysis.reward.score import score_matrix
from deliberation.models import Candidate, Critique, Group, Opinion, Question, Rating, Study
from participants.models import Participant

LONDON = Path(__file__).resolve().parents[3] / "shared" / "data" / "polis" / "london.youth.policing"
TINY = ["--backbone", "tiny-random", "--max-length", "48", "--batch-size", "8", "--epochs", "2",
        "--learning-rate", "1e-3"]
OPINIONS = ["Food taxes hurt poor families; remove them.", "Keep the tax, it funds schools.",
            "Remove it on basics only, tax luxury food."]
CANDIDATES = ["Remove all taxes on food.", "Keep taxes on food to fund public services.",
              "Remove taxes on basic groceries but keep them on luxury food."]
LIKING = [[7, 1, 5], [1, 7, 4], [4, 2, 7]]

pytestmark = pytest.mark.django_db


def make_rated_study(n_groups=5, slug="rated"):
    """Groups of three who each rate and rank three candidates (round 1) and critique the winner (round 2)."""
    study = Study.objects.create(slug=slug, title="Rated")
    question = Question.objects.create(text=f"Should we remove all taxes on food? ({slug})")
    for g in range(n_groups):
        group = Group.objects.create(study=study, question=question, phase="done", phase_started_at=timezone.now())
        candidates = [Candidate.objects.create(group=group, round=r, index=i, text=t, raw_text=t, backend="test",
                                               model_id="m", template_name="t", template_version=1, prompt=[],
                                               prompt_sha256="", seed=0, latency_ms=0.0)
                      for r in (1, 2) for i, t in enumerate(CANDIDATES)]
        for m, opinion in enumerate(OPINIONS):
            p = Participant.objects.create(study=study, group=group, recruitment_id=f"{slug}-{g}-{m}")
            Opinion.objects.create(group=group, participant=p, text=opinion, response_seconds=1.0)
            Critique.objects.create(group=group, participant=p, candidate=candidates[0], text="Be more specific.",
                                    response_seconds=1.0)
            order = sorted(range(3), key=lambda c: -LIKING[m][c])
            for c in candidates:
                Rating.objects.create(participant=p, candidate=c, group=group, round=c.round,
                                      agreement=LIKING[m][c.index], rank=order.index(c.index) + 1,
                                      response_seconds=1.0)
    return study


def test_rating_records_carry_opinions_and_critiques_in_round_two():
    study = make_rated_study(n_groups=1)
    records = study_rating_records(study=study)
    assert len(records) == 18
    assert {r.opinion for r in records} == set(OPINIONS)
    assert {r.critique for r in records if r.round == 1} == {""}
    assert {r.critique for r in records if r.round == 2} == {"Be more specific."}


def test_train_command_registers_a_model_that_scores_and_evaluates(tmp_path, settings):
    settings.REWARD_MODELS_DIR = tmp_path
    study = make_rated_study()
    out = StringIO()
    call_command("train_reward_model", "--study", study.slug, *TINY, stdout=out, stderr=StringIO())
    printed = json.loads(out.getvalue())
    reward_model = RewardModel.objects.get(pk=printed["reward_model_id"])
    assert reward_model.status == "done" and reward_model.progress == 1.0
    assert Path(reward_model.checkpoint_path, "hybrid.json").exists()  # the default design
    assert reward_model.metrics["train"]["architecture"] == "hybrid"
    assert len(reward_model.data_hash) == 64 and reward_model.config["backbone"] == "tiny-random"
    assert len(reward_model.validation_group_ids) == 1  # 20% of 5 groups, split by group
    val_ratings = Rating.objects.filter(group_id__in=reward_model.validation_group_ids)
    assert reward_model.training_ratings.count() == 4 * 18
    assert not reward_model.training_ratings.filter(pk__in=val_ratings).exists()
    assert reward_model.metrics["validation"]["n_ratings"] == 18

    u = score_matrix(reward_model_load(reward_model.pk), "Food taxes?", OPINIONS, CANDIDATES)
    assert u.shape == (3, 3)

    out = StringIO()
    call_command("evaluate_reward_model", str(reward_model.pk), stdout=out)
    report = json.loads(out.getvalue())
    assert set(report["metrics"]) == {"reward_model", "random", "candidate_length", "embedding_cosine"}
    assert report["split"] == "groups it did not train on" and report["n_groups"] == report["n_groups_held_out"] == 1
    assert report["n_groups_trained_on_not_scored"] == 4
    assert all({"pairwise_accuracy", "spearman", "mae"} <= set(m) for m in report["metrics"].values())


def test_celery_task_trains_and_reports_progress(tmp_path, settings):
    from analysis.reward.config import RewardConfig
    from analysis.reward.registry import reward_model_create
    from analysis.tasks import train_reward_model

    settings.REWARD_MODELS_DIR = tmp_path
    study = make_rated_study(n_groups=3, slug="celery")
    reward_model = reward_model_create(study=study, config=RewardConfig(backbone="tiny-random", max_length=32,
                                                                          epochs=1, batch_size=9))
    assert reward_model.status == "queued"
    train_reward_model.apply(kwargs={"reward_model_id": reward_model.pk}).get()
    reward_model.refresh_from_db()
    assert reward_model.status == "done" and reward_model.progress_message.startswith("done")


def test_failed_training_is_recorded(tmp_path, settings):
    from analysis.reward.config import RewardConfig
    from analysis.reward.registry import reward_model_create, reward_model_train

    settings.REWARD_MODELS_DIR = tmp_path
    study = Study.objects.create(slug="empty", title="Empty")
    reward_model = reward_model_create(study=study, config=RewardConfig(backbone="tiny-random"))
    with pytest.raises(ValueError):
        reward_model_train(reward_model_id=reward_model.pk)
    reward_model.refresh_from_db()
    assert reward_model.status == "failed" and "no ratings" in reward_model.error
    with pytest.raises(ValueError):
        reward_model_evaluate(reward_model=reward_model)


def test_admin_lists_models_with_progress(admin_client):
    study = make_rated_study(n_groups=1, slug="admin")
    RewardModel.objects.create(study=study, name="in training", status="running", progress=0.4,
                               progress_message="step 4/10", metrics={"validation": {"pairwise_accuracy": 0.8}})
    page = admin_client.get(reverse("admin:analysis_rewardmodel_changelist")).content.decode()
    assert "in training" in page and '<progress value="40"' in page and "step 4/10" in page
    detail = admin_client.get(reverse("admin:analysis_rewardmodel_change",
                                      args=[RewardModel.objects.get().pk])).content.decode()
    assert "pairwise_accuracy" in detail


def test_import_polis_is_complete_and_idempotent_split_into_groups_of_whole_participants():
    conversation = load_conversation(LONDON)
    call_command("import_polis", str(LONDON), "--groups", "4", stdout=StringIO(), stderr=StringIO())
    study = Study.objects.get(slug="london-youth-policing")
    assert not study.is_active and study.questions.get().text == conversation.topic
    study.full_clean()  # the admin can save it: every field, the generation backend included, is a valid choice
    groups = Group.objects.filter(study=study)
    assert groups.count() == 4
    counts = (Participant.objects.filter(study=study).count(), Candidate.objects.filter(group__study=study).count(),
              Rating.objects.filter(group__study=study).count(), Opinion.objects.filter(group__study=study).count())
    assert counts[1] == 4 * len(conversation.comments) and counts[2] == len(conversation.votes)
    assert counts[3] > 0 and Participant.objects.filter(recruitment_id__startswith="polis-", study=study).count() == \
        counts[0]
    # Every participant sits in one group, with their votes, their opinion and the candidates they rated.
    assert not Rating.objects.filter(group__study=study).exclude(participant__group=F("group")).exists()
    assert not Rating.objects.filter(group__study=study).exclude(candidate__group=F("group")).exists()
    assert not Opinion.objects.filter(group__study=study).exclude(participant__group=F("group")).exists()
    assert len({r.group_id for r in study_rating_records(study=study)}) >= 2  # something to hold out
    vote = conversation.votes[0]
    rating = Rating.objects.get(participant__recruitment_id=f"polis-{vote.voter_id}",
                                candidate__index=vote.comment_id)
    assert rating.agreement == {1: 7, 0: 4, -1: 1}[vote.vote] and rating.rank is None
    candidate = Candidate.objects.filter(group__study=study).first()
    assert (candidate.backend, candidate.model_id, candidate.prompt) == ("polis", "human", [])

    call_command("import_polis", str(LONDON), "--groups", "4", stdout=StringIO(), stderr=StringIO())
    assert (Participant.objects.filter(study=study).count(), Candidate.objects.filter(group__study=study).count(),
            Rating.objects.filter(group__study=study).count(),
            Opinion.objects.filter(group__study=study).count()) == counts
    assert len(study_rating_records(study=study)) == len(conversation.votes)
    with pytest.raises(CommandError, match="was imported with 4 group"):
        call_command("import_polis", str(LONDON), stdout=StringIO(), stderr=StringIO())


def test_simulated_ratings_train_a_reward_model_only_when_asked(tmp_path, settings):
    """``--include-simulated`` (RewardConfig.include_simulated) is the explicit opt-in of the closed-loop benchmark;
    without it a study of simulated participants has nothing to train on."""
    settings.REWARD_MODELS_DIR = tmp_path
    study = make_rated_study(slug="simulated-only")
    Participant.objects.filter(study=study).update(is_simulated=True)
    with pytest.raises(CommandError, match="no ratings"):
        call_command("train_reward_model", "--study", study.slug, *TINY, stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("train_reward_model", "--study", study.slug, "--include-simulated", *TINY, stdout=out,
                 stderr=StringIO())
    reward_model = RewardModel.objects.get(pk=json.loads(out.getvalue())["reward_model_id"])
    assert reward_model.status == "done" and reward_model.config["include_simulated"] is True
    assert reward_model.training_ratings.count() > 0
