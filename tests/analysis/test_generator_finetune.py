"""Generator fine-tuning (issue 13): data from endorsed statements, the version registry, serving and replay.

The tiny real run (marked ``model``) fine-tunes SmolLM2 with LoRA r=4 for 3 steps on 6 statements, then serves the
version: its weights differ from the base, its validation loss is lower, and the candidates it writes name it."""
from __future__ import annotations

import io
import json

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from analysis.exports import sft_rows, study_tables
from analysis.generator.registry import (
    GeneratorModelError,
    generator_model_create,
    generator_model_train,
    generator_model_use,
)
from analysis.generator.train import GeneratorConfig
from analysis.models import GeneratorModel, RewardModel, TrainedVersion
from deliberation.models import Candidate, Group, Rating, Study, StudyArm
from deliberation.services import opinion_submit
from generation.replay import backend_options_from

from ..factories import make_group
from .simulated import build_simulated_study

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.GENERATOR_MODELS_DIR = tmp_path / "generators"
    settings.GENERATOR_MIN_TRAINING_EXAMPLES = 4
    return settings.GENERATOR_MODELS_DIR


@pytest.fixture
def sim_study():
    return build_simulated_study(slug="sft-gen", groups=3, group_size=3, seed=1, leave_one_out_share=0.0,
                                 num_candidates=2, dropout_share=0.0, critique_round=False)


def test_registries_share_the_abstract_trained_version():
    assert issubclass(RewardModel, TrainedVersion) and issubclass(GeneratorModel, TrainedVersion)
    assert TrainedVersion._meta.abstract
    shared = {"status", "progress", "progress_message", "error", "config", "checkpoint_path", "data_hash",
              "metrics", "parent", "created_at", "started_at", "finished_at"}
    for model in (RewardModel, GeneratorModel):
        assert shared <= {f.name for f in model._meta.get_fields()}


def test_winners_only_keeps_each_rounds_winner(sim_study):
    tables = study_tables(sim_study)
    everything = sft_rows(tables, min_quality=1)
    winners = sft_rows(tables, min_quality=1, winners_only=True)
    won = set(Group.objects.filter(study=sim_study).values_list("winner_round1_id", flat=True))
    assert set(winners["candidate_id"]) == won - {None}
    assert len(winners) < len(everything)
    # the prompt is the stored one without the assistant prefill; the completion is the whole statement
    row = everything.iloc[0]
    stored = Candidate.objects.get(pk=row["candidate_id"])
    assert stored.prompt[-1]["role"] == "assistant" and row["prompt"] == stored.prompt[:-1]
    assert row["completion"] == [{"role": "assistant", "content": stored.text}]


def test_too_little_data_is_a_clear_message(models_dir, sim_study, settings):
    settings.GENERATOR_MIN_TRAINING_EXAMPLES = 1000
    with pytest.raises(CommandError, match="too little data to fine-tune the generator.*at least 1000"):
        call_command("finetune_generator", "--study", sim_study.slug, stdout=io.StringIO())
    assert not GeneratorModel.objects.exists()
    with pytest.raises(CommandError, match="No study"):
        call_command("finetune_generator", "--study", "nope")


def test_bot_ratings_do_not_count(models_dir, sim_study):
    kept = len(sft_rows(study_tables(sim_study), min_quality=1))
    Rating.objects.filter(group__study=sim_study).update(by_bot=True)
    assert len(sft_rows(study_tables(sim_study), min_quality=1)) == 0 < kept
    with pytest.raises(CommandError, match="0 statement"):
        call_command("finetune_generator", "--study", sim_study.slug, "--min-quality", "1", stdout=io.StringIO())


def test_a_failed_fine_tune_leaves_the_served_version(models_dir, sim_study, monkeypatch):
    served = GeneratorModel.objects.create(study=sim_study, status=GeneratorModel.Status.DONE,
                                           checkpoint_path=str(models_dir / "old"))
    generator_model_use(study=sim_study, generator_model=served)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("analysis.generator.registry.fine_tune", broken)
    with pytest.raises(CommandError, match="failed .*unchanged.*out of memory"):
        call_command("finetune_generator", "--study", sim_study.slug, "--min-quality", "1", "--use",
                     stdout=io.StringIO(), stderr=io.StringIO())
    failed = GeneratorModel.objects.exclude(pk=served.pk).get()
    assert failed.status == GeneratorModel.Status.FAILED and "out of memory" in failed.error
    sim_study.refresh_from_db()
    assert sim_study.generator_model_id == served.pk
    with pytest.raises(GeneratorModelError, match="not trained"):
        generator_model_use(study=sim_study, generator_model=failed)
    with pytest.raises(GeneratorModelError, match="already trained"):
        generator_model_train(generator_model_id=served.pk)


def test_study_and_provenance_name_the_backend_options(models_dir, sim_study):
    version = GeneratorModel.objects.create(study=sim_study, status=GeneratorModel.Status.DONE,
                                            checkpoint_path="/models/7-x")
    Study.objects.filter(pk=sim_study.pk).update(generation_backend="embedded")
    generator_model_use(study=sim_study, generator_model=version)
    study = Study.objects.get(pk=sim_study.pk)
    assert study.backend_options() == {"checkpoint": "/models/7-x", "version": version.pk}
    candidate = Candidate.objects.filter(group__study=sim_study).first()
    assert backend_options_from(candidate, "embedded") == {}  # written by the base model
    candidate.params = {**candidate.params, "generator_version": version.pk}
    assert backend_options_from(candidate, "embedded") == {"checkpoint": "/models/7-x", "version": version.pk}
    assert backend_options_from(candidate, "extractive") == {}


@pytest.mark.model
def test_tiny_real_fine_tune_changes_weights_lowers_loss_and_is_served(models_dir, sim_study, capsys):
    from generation.backends.embedded import load_plain_weights
    from generation.services import candidates_generate

    out, err = io.StringIO(), io.StringIO()
    call_command("finetune_generator", "--study", sim_study.slug, "--min-quality", "1", "--lora", "--lora-r", "4",
                 "--max-steps", "3", "--batch-size", "2", "--learning-rate", "1e-3", "--max-train-examples", "6",
                 "--max-validation-examples", "2", "--max-length", "448", "--val-fraction", "0.3", "--threads", "1",
                 "--use", stdout=out, stderr=err)
    report = json.loads(out.getvalue())
    assert "loss" not in capsys.readouterr().out  # the trainer's logs stay off stdout (the command's JSON)
    assert "step 3/3 loss" in err.getvalue()
    version = GeneratorModel.objects.get(pk=report["generator_model_id"])
    metrics = version.metrics
    with capsys.disabled():
        print("tiny run:", json.dumps(metrics))
    assert version.status == GeneratorModel.Status.DONE and version.parent is None
    assert metrics["steps"] == 3 and metrics["n_train"] >= 2 and metrics["n_validation"] >= 1
    assert metrics["validation_loss"] < metrics["validation_loss_before"]
    assert len(version.data_hash) == 64 and version.base_model.startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert set(version.validation_group_ids).isdisjoint(
        Candidate.objects.filter(pk__in=version.training_candidate_ids).values_list("group_id", flat=True))
    # the weights changed
    _, base = load_plain_weights(None)
    _, tuned = load_plain_weights(version.checkpoint_path)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base.state_dict()[name], tuned.state_dict()[name])
    # never overwritten: training it again is refused, the folder is as it was
    with pytest.raises(GeneratorModelError, match="already trained"):
        generator_model_train(generator_model_id=version.pk)
    # served: the study uses it, the candidates' provenance names it, replay reproduces them
    study = Study.objects.get(pk=sim_study.pk)
    assert study.generator_model_id == version.pk
    Study.objects.filter(pk=study.pk).update(generation_backend="embedded", num_candidates=1,
                                             generation_params={"max_new_tokens": 12, "temperature": 0.8})
    # Generation settings live on the study's arms (an arm naming no generator serves the study's version).
    StudyArm.objects.filter(study=study).update(generation_backend="embedded", generator_model=None,
                                                generation_params={"max_new_tokens": 12, "temperature": 0.8})
    group, members = make_group(Study.objects.get(pk=study.pk), n=3)
    for member, text in zip(members, ["Bread should be cheap for everyone.", "Schools need tax money.",
                                      "Tax sweets, not vegetables."]):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    candidate = Candidate.objects.get(group=group, round=1, index=0)
    assert f"generator model {version.pk}" in candidate.model_id
    assert candidate.params["generator_version"] == version.pk
    replay = io.StringIO()
    call_command("replay_generation", str(group.pk), "--strict", stdout=replay)
    assert json.loads(replay.getvalue())["matching"] == 1
    # a second version is a new folder; the first one is untouched
    second = generator_model_create(study=study, config=GeneratorConfig.from_dict(version.config), parent=version)
    assert second.pk != version.pk and second.parent_id == version.pk


def test_admin_registry_queue_and_serve_actions(admin_client, models_dir, sim_study, monkeypatch, settings):
    from django.urls import reverse

    queued = []
    monkeypatch.setattr("analysis.tasks.finetune_generator.delay_on_commit", lambda **kw: queued.append(kw))
    done = GeneratorModel.objects.create(study=sim_study, name="tuned v1", status=GeneratorModel.Status.DONE,
                                         checkpoint_path=str(models_dir / "1"), progress=1.0,
                                         config=GeneratorConfig(min_quality=1).to_dict(),
                                         metrics={"validation_loss_before": 1.2, "validation_loss": 0.8,
                                                  "n_train": 4, "n_validation": 2})
    page = admin_client.get(reverse("admin:analysis_generatormodel_changelist")).content.decode()
    assert "tuned v1" in page and "1.200 → 0.800" in page
    url = reverse("admin:analysis_generatormodel_changelist")
    admin_client.post(url, {"action": "queue_finetuning", "_selected_action": [done.pk]})
    new = GeneratorModel.objects.exclude(pk=done.pk).get()  # a finished version is never trained again
    assert new.status == GeneratorModel.Status.QUEUED and queued == [{"generator_model_id": new.pk}]
    admin_client.post(url, {"action": "use_generator", "_selected_action": [done.pk]})
    assert Study.objects.get(pk=sim_study.pk).generator_model_id == done.pk
    admin_client.post(url, {"action": "use_generator", "_selected_action": [new.pk]})  # queued: refused
    assert Study.objects.get(pk=sim_study.pk).generator_model_id == done.pk
    settings.GENERATOR_MIN_TRAINING_EXAMPLES = 1000
    response = admin_client.post(url, {"action": "queue_finetuning", "_selected_action": [done.pk]}, follow=True)
    assert "too little data" in response.content.decode() and len(queued) == 1
    study_page = admin_client.get(reverse("admin:deliberation_study_change", args=[sim_study.pk])).content.decode()
    assert 'name="generator_model"' in study_page and "tuned v1" in study_page
    assert admin_client.get(reverse("admin:deliberation_study_add")).status_code == 200


def test_simulated_ratings_count_only_when_the_version_opts_in(models_dir, sim_study):
    """The closed-loop benchmark trains on simulated participants explicitly; a real study's fine-tune never does."""
    from analysis.generator.registry import study_sft_rows

    from participants.models import Participant

    kept = len(study_sft_rows(study=sim_study, min_quality=1))
    Participant.objects.filter(study=sim_study).update(is_simulated=True)
    assert kept > 0 and study_sft_rows(study=sim_study, min_quality=1) == []
    assert len(study_sft_rows(study=sim_study, min_quality=1, include_simulated=True)) == kept
    with pytest.raises(CommandError, match="0 statement.*mean human quality"):
        call_command("finetune_generator", "--study", sim_study.slug, "--min-quality", "1", stdout=io.StringIO())
    config = GeneratorConfig(min_quality=1, include_simulated=True)
    version = generator_model_create(study=sim_study, config=config)
    assert GeneratorConfig.from_dict(version.config).include_simulated  # recorded with the version
