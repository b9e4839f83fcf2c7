"""Verifier rounds on a small slice of the real data: the command trains, evaluates, saves and records."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from legibility import verifier as vlib
from legibility.grading import grade
from legibility.models import LegibilityStudy, Solution, Verifier
from legibility.overlap import text_hash
from legibility.rounds import as_example, heldout_solutions, training_solutions, verifier_create
from legibility.tasks import train_verifier_round

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(settings, tmp_path):
    torch.set_num_threads(1)
    settings.LEGIBILITY_VERIFIER_DIR = tmp_path / "verifiers"
    call_command("import_gsm8k", "--study", "r", "--limit", "40", "--seed", "5", verbosity=0)
    return LegibilityStudy.objects.get(slug="r")


def test_round_one_inline_trains_a_ready_verifier_with_heldout_metrics(study):
    out = io.StringIO()
    call_command("legibility_round", "--study", "r", "--round", "1", "--inline", "--max-steps", "4",
                 "--batch-size", "4", "--max-length", "128", "--max-heldout-problems", "12", "--threads", "1",
                 "--error-model-problems", "60", stdout=out, verbosity=0)
    verifier = Verifier.objects.filter(status="ready").latest("created_at")
    assert verifier.round == 1 and verifier.progress == 1.0 and not verifier.error
    assert verifier.config["backbone"] == "all-MiniLM-L6-v2" and verifier.config["max_steps"] == 4
    assert verifier.metrics["mixture"] == [{"group": "0 base", "available": 80, "used": 80, "max_repeats": 1,
                                            "counted": True}]
    # The 20 verifier-half problems it trained on and the 60 references of its error model, none of them from
    # the prover or held-out half (rounds.reference_bank).
    assert verifier.metrics["train"]["error_model"]["problems"] == 60
    assert len(verifier.train_problem_hashes) == 20 + 60
    other_halves = {text_hash(p.text) for p in study.problems.exclude(half="verifier")}
    assert len(other_halves) == 40 and not other_halves & set(verifier.train_problem_hashes)
    # Trained on the verifier half only, evaluated on held-out problems only.
    train_rows = training_solutions(study, 1)
    assert verifier.n_train == len(train_rows) == 80
    assert {s.problem.half for s in train_rows} == {"verifier"}
    held = verifier.metrics["heldout"]
    assert verifier.n_heldout == held["n"] == 48 and held["n_problems"] == 12
    assert 0.0 <= held["auc"] <= 1.0 and "balanced_best_of_4" in held
    assert verifier.metrics["train"]["steps"] == 4
    assert json.loads(out.getvalue())["verifier"] == verifier.pk
    # Saved where the setting says, loadable, and its held-out scores are recorded per solution.
    path = Path(verifier.path)
    assert path.parent.name == "verifiers" and path.exists()
    loaded = vlib.load(path)
    scored = Solution.objects.filter(verifier_scores__has_key=str(verifier.pk)).select_related("problem")
    assert scored.count() == 48 and {s.problem.half for s in scored} == {"heldout"}
    one = scored.first()
    again = vlib.score(loaded, [one.problem.text], [as_example(one).solution])[0]
    assert abs(again - one.verifier_scores[str(verifier.pk)]) < 1e-3


def test_provers_write_graded_round_solutions_through_the_backend(study):
    study.generation_backend = "extractive"
    study.save()
    out = io.StringIO()
    call_command("legibility_round", "--study", "r", "--round", "1", "--inline", "--backbone", "tiny-random",
                 "--error-model-problems", "30",
                 "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--provers", "2", stdout=out,
                 verbosity=0)
    verifier = Verifier.objects.get(study=study, round=1)
    written = list(Solution.objects.filter(problem__study=study, source="prover", round=1).select_related("problem"))
    assert len(written) == 3 * 2 * 2  # 2 problems of each half, helpful and sneaky
    assert {s.problem.half for s in written} == {"prover", "verifier", "heldout"}
    assert {s.role for s in written} == {"helpful", "sneaky"}
    for s in written:
        assert s.correct == grade(s.text, s.problem.reference_solution)
        assert s.provenance["model_id"] == s.provenance["model_version"] == "extractive-baseline-v1"
        # Provenance as complete as a deliberation candidate's: prompt, template and version, parameters, seed,
        # latency and model version.
        assert s.provenance["template"] == f"prover_{s.role}" and s.provenance["template_version"] == "1"
        assert s.provenance["prompt"][0]["role"] == "system" and s.problem.text.strip() in \
            s.provenance["prompt"][1]["content"]
        assert len(s.provenance["prompt_sha256"]) == 64 and s.provenance["template_id"]
        assert {"max_new_tokens", "temperature"} <= set(s.provenance["params"])
        assert isinstance(s.provenance["seed"], int) and s.provenance["latency_ms"] >= 0
        assert str(verifier.pk) in s.verifier_scores
    # Idempotent; and round 2's verifier trains on rounds 0 and 1.
    from legibility.rounds import prover_round

    assert prover_round(study=study, round_=1, n_problems=2)["created"] == 0
    # Round 1 wrote 2 solutions per (half, role): under the mixture's minimum group size, so they do not count.
    from legibility.rounds import training_mixture

    rows, mixture = training_mixture(study, 2)
    assert {s.round for s in rows} == {0}
    assert {m["group"]: m["counted"] for m in mixture} == {"0 base": True, "1 helpful": False, "1 sneaky": False}


@pytest.mark.model
def test_improve_trains_the_prover_against_the_frozen_verifier_and_it_writes_the_round(study):
    """The same command a GPU host runs at full scale: expert iteration with the real SmolLM2 on CPU, tiny."""
    study.generation_params = {"max_new_tokens": 12, "temperature": 0.7}
    study.save()
    out = io.StringIO()
    call_command("legibility_round", "--study", "r", "--round", "1", "--inline", "--backbone", "tiny-random",
                 "--error-model-problems", "30",
                 "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--train-layers", "0",
                 "--classification-weight", "1", "--improve", "expert_iteration", "--improve-problems", "1",
                 "--improve-samples", "2", "--improve-max-tokens", "12", "--provers", "1", stdout=out, verbosity=0)
    verifier = Verifier.objects.get(study=study, round=1)
    assert verifier.config["classification_weight"] == 1.0 and verifier.config["train_layers"] == 0
    prover = verifier.metrics["prover"]
    assert prover["method"] == "expert_iteration" and prover["n_problems"] == 1
    assert prover["started_from"] == "base SmolLM2"
    folder = Path(prover["path"])
    assert (folder / "training_log.json").exists() and any(folder.glob("*.safetensors"))
    log = json.loads((folder / "training_log.json").read_text())
    assert log["n_samples"] == 2  # 1 problem (its role drawn with probability 1/2) x 2 samples
    assert log["n_kept"] <= 1 and len(log["sft_losses"]) == log["n_kept"]
    # The round's solutions come from the improved prover, graded automatically.
    written = list(Solution.objects.filter(problem__study=study, source="prover", round=1).select_related("problem"))
    assert len(written) == 3 * 2
    for s in written:
        assert s.provenance["backend"] == f"prover:{folder.name}"
        assert s.correct == grade(s.text, s.problem.reference_solution)


@pytest.mark.slow  # trains a verifier in a real Celery worker (~50 s)
def test_celery_task_trains_a_queued_verifier_and_failures_are_recorded(study):
    verifier = verifier_create(study=study, round_=1, config={"backbone": "tiny-random", "max_steps": 2,
                                                               "batch_size": 4, "max_length": 64})
    assert train_verifier_round.run(verifier_id=verifier.pk) == verifier.pk
    verifier.refresh_from_db()
    assert verifier.status == "ready" and verifier.metrics["heldout"]["n"] == len(heldout_solutions(study, 1))

    empty = LegibilityStudy.objects.create(slug="empty", title="empty")
    broken = verifier_create(study=empty, round_=1, config={"backbone": "tiny-random"})
    with pytest.raises(ValueError, match="no solutions on the verifier half"):
        train_verifier_round.run(verifier_id=broken.pk)
    broken.refresh_from_db()
    assert broken.status == "failed" and "no solutions" in broken.error
    with pytest.raises(CommandError, match="no legibility study"):
        call_command("legibility_round", "--study", "nope", "--round", "1", "--inline", verbosity=0)
    with pytest.raises(CommandError, match="starts at 1"):
        call_command("legibility_round", "--study", "r", "--round", "0", "--inline", verbosity=0)


TINY = ("--backbone", "tiny-random", "--max-steps", "2", "--batch-size", "4", "--max-length", "64",
        "--error-model-problems", "30")


def test_reward_option_reaches_the_prover_config(study, monkeypatch):
    """--reward is passed through prover_improve to ProverTrainConfig (the improvement itself is faked: no model)."""
    from legibility import prover
    from legibility.prover import ProverUpdate

    seen = []

    def fake_improve_prover(*, method, problems, verifier, output_dir, prover_path, config, progress):
        seen.append((method, config))
        return ProverUpdate(Path(output_dir), {"steps": 0, "n_kept": 0})

    monkeypatch.setattr(prover, "improve_prover", fake_improve_prover)
    call_command("legibility_round", "--study", "r", "--round", "1", "--inline", *TINY, "--improve",
                 "expert_iteration", "--reward", "cgc", "--improve-problems", "1", "--improve-samples", "3",
                 stdout=io.StringIO(), verbosity=0)
    method, config = seen[-1]
    assert method == "expert_iteration" and config.reward == "cgc" and config.samples_per_problem == 3
    assert config.seed == study.seed
    assert Verifier.objects.get(study=study, round=1).metrics["prover"]["reward"] == "cgc"

    call_command("legibility_round", "--study", "r", "--round", "2", "--inline", *TINY, "--improve", "grpo",
                 "--improve-problems", "1", stdout=io.StringIO(), verbosity=0)
    method, config = seen[-1]
    assert method == "grpo" and config.reward == "src"  # the default
    assert Verifier.objects.get(study=study, round=2).metrics["prover"]["reward"] == "src"

    with pytest.raises(CommandError, match="invalid choice"):
        call_command("legibility_round", "--study", "r", "--round", "3", "--inline", "--improve", "grpo",
                     "--reward", "shiny", verbosity=0)
    with pytest.raises(CommandError, match="--reward chooses the prover's reward"):
        call_command("legibility_round", "--study", "r", "--round", "3", "--inline", "--reward", "cgc", verbosity=0)
    assert not Verifier.objects.filter(study=study, round=3).exists()


def test_celery_path_refuses_improve_and_provers_and_passes_the_limits(study, settings, monkeypatch):
    queued = []
    monkeypatch.setattr(train_verifier_round, "delay", lambda **kwargs: queued.append(kwargs))
    for extra in (("--improve", "grpo"), ("--improve", "expert_iteration", "--reward", "cgc"), ("--provers", "2")):
        with pytest.raises(CommandError, match="need --inline"):
            call_command("legibility_round", "--study", "r", "--round", "1", *extra, verbosity=0)
    assert not queued and not Verifier.objects.filter(study=study).exists()  # refused before anything is queued
    broker, settings.CELERY_BROKER_URL = settings.CELERY_BROKER_URL, "memory://"  # local settings, no REDIS_URL
    with pytest.raises(CommandError, match="No Celery broker"):
        call_command("legibility_round", "--study", "r", "--round", "1", verbosity=0)
    settings.CELERY_BROKER_URL = broker
    assert not queued and not Verifier.objects.filter(study=study).exists()

    out = io.StringIO()
    call_command("legibility_round", "--study", "r", "--round", "1", *TINY, "--max-train-problems", "6",
                 "--max-heldout-problems", "3", stdout=out, verbosity=0)
    verifier = Verifier.objects.get(study=study, round=1)
    assert queued == [{"verifier_id": verifier.pk, "max_train_problems": 6, "max_heldout_problems": 3}]
    assert verifier.status == "queued" and f"queued verifier {verifier.pk}" in out.getvalue()
    # What the worker then runs with those keywords honours the limits.
    assert train_verifier_round.run(**queued[0]) == verifier.pk
    verifier.refresh_from_db()
    assert verifier.status == "ready" and verifier.metrics["heldout"]["n_problems"] == 3
    assert verifier.n_train == len(training_solutions(study, 1, max_problems=6, seed=verifier.config["seed"]))
