"""Offline tools generate with an arm's settings (``--arm``), not the study's own fields: question expansion,
offline leave-one-out and run_bots' persona opinions."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analysis.corpus import CorpusError, questions_expand
from analysis.reward.config import RewardConfig
from analysis.reward.registry import reward_model_create, reward_model_train
from deliberation.models import Group, Question, Study, StudyArm

from ..factories import make_study
from .simulated import build_simulated_study
from .test_corpus import _ScriptedBackend


def _two_arms(study: Study) -> tuple[StudyArm, StudyArm]:
    """The study's own fields say embedded (SmolLM2); only the arm 'fast' generates extractively."""
    Study.objects.filter(pk=study.pk).update(generation_backend="embedded")
    study.refresh_from_db()
    slow = StudyArm.objects.create(study=study, name="slow", generation_backend="embedded")
    fast = StudyArm.objects.create(study=study, name="fast", generation_backend="extractive",
                                   generation_params={"temperature": 0.3, "max_new_tokens": 100})
    return slow, fast


@pytest.mark.django_db
def test_expand_questions_uses_the_named_arm_and_refuses_to_guess_between_arms():
    study = make_study("corpus-arms")
    study.questions.add(Question.objects.create(text="Should zoos be closed down?"),
                        Question.objects.create(text="Should homework be banned in primary schools?"))
    _two_arms(study)
    with pytest.raises(CommandError, match=r"has 2 arms \('slow', 'fast'\); name one with --arm NAME"):
        call_command("expand_questions", "--study", study.slug, "--per-question", "3", stdout=StringIO())
    with pytest.raises(CommandError, match=r"no arm 'quick'; its arms: 'slow', 'fast'"):
        call_command("expand_questions", "--study", study.slug, "--per-question", "3", "--arm", "quick",
                     stdout=StringIO())
    out = StringIO()
    # The fast arm's extractive backend copies the prompt's example questions: every one a duplicate, no model run.
    call_command("expand_questions", "--study", study.slug, "--per-question", "3", "--examples", "1",
                 "--arm", "fast", stdout=out)
    assert "3 prompts: created 0; dropped 0 empty, 3 not questions, 6 duplicates" in out.getvalue()

    # The arm's sampling parameters reach the requests, and the arm is in each kept question's provenance.
    backend = _ScriptedBackend(["1. Should cities ban cars from their centres?"])
    report = questions_expand(study=study, per_question=1, limit=1, backend=backend, arm="fast")
    assert report.created == 1
    request = backend.requests[0]
    assert (request.temperature, request.max_new_tokens) == (0.3, 100)
    provenance = Question.objects.get(pk=report.question_ids[0]).provenance
    assert provenance["arm"] == "fast" and provenance["params"]["temperature"] == 0.3
    with pytest.raises(CorpusError, match="has 2 arms"):
        questions_expand(study=study, per_question=1, backend=_ScriptedBackend(["x?"]))


@pytest.mark.django_db(transaction=True)
def test_loo_offline_regenerates_one_arms_groups_with_that_arms_backend(tmp_path, settings):
    settings.REWARD_MODELS_DIR = tmp_path
    study = build_simulated_study(slug="loo-arms", groups=4, group_size=4, seed=2, arms=("control", "treatment"))
    groups = {arm: sorted(Group.objects.filter(study=study, arm__name=arm).values_list("id", flat=True))
              for arm in ("control", "treatment")}
    assert groups["control"] and groups["treatment"]  # permuted blocks gave each arm groups
    # Only the treatment arm still generates extractively; the study's own field and control say embedded.
    Study.objects.filter(pk=study.pk).update(generation_backend="embedded")
    StudyArm.objects.filter(study=study, name="control").update(generation_backend="embedded")
    reward_model = reward_model_create(study=study, config=RewardConfig(
        backbone="tiny-random", max_length=48, batch_size=12, epochs=1, learning_rate=1e-3, val_fraction=0.0))
    reward_model = reward_model_train(reward_model_id=reward_model.pk)

    with pytest.raises(CommandError, match=r"has 2 arms \('control', 'treatment'\)"):
        call_command("loo_offline", "--study", study.slug, "--inline", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("loo_offline", "--study", study.slug, "--arm", "treatment", "--reward-model", str(reward_model.pk),
                 "--include-trained-on", "--inline", "--json", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    assert result["status"] == "done" and result["arm"] == "treatment"
    assert result["backend"] == "extractive"  # the arm's backend, not the study's field
    assert sorted({row["group_id"] for row in result["rows"]}) == groups["treatment"]
    assert result["rows"] and all(row["statement"] for row in result["rows"])


@pytest.mark.django_db
def test_run_bots_persona_opinions_take_the_arms_backend():
    study = make_study("persona-arms", generation_backend="embedded")
    _two_arms(study)
    with pytest.raises(CommandError, match=r"--opinions persona: study 'persona-arms' has 2 arms"):
        call_command("run_bots", "--study", study.slug, "--participants", "1", "--opinions", "persona",
                     "--no-progress", stderr=StringIO())
    # The fast arm's backend (extractive) writes no text: refused, naming the arm, though the study field says
    # embedded.
    with pytest.raises(CommandError, match="the arm 'fast''s backend is 'extractive'; pass --persona-backend"):
        call_command("run_bots", "--study", study.slug, "--participants", "1", "--opinions", "persona",
                     "--arm", "fast", "--no-progress", stderr=StringIO())
    with pytest.raises(CommandError, match="the arm 'slow' has no OpenAI-compatible server configured"):
        call_command("run_bots", "--study", study.slug, "--participants", "1", "--opinions", "persona",
                     "--arm", "slow", "--persona-backend", "openai", "--no-progress", stderr=StringIO())
