"""Verifier training on the shipped GSM8K model solutions: loss falls, held-out AUC beats the baselines, round trips.

One module-scoped run of the default verifier (checkable evidence into a linear head with the pairwise +
centring + balanced cross-entropy loss, plus boosted trees; seconds on one CPU thread) on 150 problems,
evaluated on 150 other problems (split by problem, seeded).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from legibility import verifier as vlib
from legibility.examples import (
    SolutionExample,
    correct_incorrect_pairs,
    default_data_dir,
    load_references,
    load_solutions_jsonl,
    split_by_problem,
)
from legibility.overlap import text_hash

SOLUTIONS = default_data_dir() / "gsm8k" / "example_model_solutions.jsonl"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    examples = load_solutions_jsonl(SOLUTIONS, limit_problems=300)
    train, held_out = split_by_problem(examples, 0.5, seed=0)
    config = vlib.VerifierConfig(seed=0)
    steps = []
    verifier, history = vlib.train_verifier(train, config, progress=lambda s, t, loss: steps.append((s, t)))
    directory = vlib.save(verifier, tmp_path_factory.mktemp("verifier") / "v1", metrics={"note": "test"})
    return {"verifier": verifier, "history": history, "train": train, "held_out": held_out, "steps": steps,
            "directory": directory}


def test_data_is_split_by_problem():
    examples = load_solutions_jsonl(SOLUTIONS, limit_problems=40)
    assert len(examples) == 160 and {e.source for e in examples} == {
        "6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"}
    assert any("<<" in e.solution for e in examples)  # raw text: the verifier recomputes the calculator notes
    train, held = split_by_problem(examples, 0.25, seed=1)
    assert len({e.problem_id for e in held}) == 10
    assert not {e.problem_id for e in train} & {e.problem_id for e in held}
    assert split_by_problem(examples, 0.25, seed=1) == (train, held)  # seeded


def test_pairs_are_balanced_within_problems():
    examples = [SolutionExample("a", "q", f"s{i}", c) for i, c in enumerate([True, False, False, True, True])]
    examples += [SolutionExample("b", "q2", "x", True), SolutionExample("b", "q2", "y", True)]  # no incorrect
    pairs = correct_incorrect_pairs(examples, seed=0)
    assert len(pairs) == 2  # min(3 correct, 2 incorrect) for a, none for b
    assert all(examples[g].correct and not examples[b].correct and examples[g].problem_id == examples[b].problem_id
               for g, b in pairs)
    assert len({i for pair in pairs for i in pair}) == 4  # each solution used once


def test_pair_loss_by_hand():
    # −log σ(2 − 0) + 0.5·(2² + 0²)/2 = 0.126928 + 1.0
    loss = vlib.pair_loss(torch.tensor([2.0]), torch.tensor([0.0]), 0.5)
    assert loss.item() == pytest.approx(np.log1p(np.exp(-2.0)) + 1.0, rel=1e-6)


def test_training_lowers_the_loss_and_beats_the_baselines_on_held_out_problems(trained):
    history = trained["history"]
    assert history["steps"] >= 5 and trained["steps"][-1][0] == trained["steps"][-1][1]  # the bar ends full
    assert history["final_loss_mean10"] < history["first_loss"] - 0.03
    assert trained["verifier"].trees is not None and trained["verifier"].model.backbone is None  # the default
    metrics = vlib.evaluate(trained["verifier"], trained["held_out"])
    assert metrics["n"] == len(trained["held_out"]) == 600 and metrics["n_problems"] == 150
    assert metrics["auc"] > 0.70, metrics  # measured 0.73 here (with 75 training problems it was 0.61: too few)
    assert metrics["auc"] > metrics["baselines"]["length_auc"] + 0.03
    assert metrics["accuracy_at_best_threshold"] > metrics["baselines"]["majority_accuracy"]
    assert metrics["best_of_n_problems"] > 0 and 0 <= metrics["balanced_best_of_4"] <= 1
    # It judges one solution alone: a solution's score does not depend on the others scored with it.
    one = trained["held_out"][5]
    alone = vlib.score(trained["verifier"], [one.problem], [one.solution])[0]
    batch = vlib.score(trained["verifier"], [e.problem for e in trained["held_out"][:8]],
                       [e.solution for e in trained["held_out"][:8]])
    assert alone == pytest.approx(batch[5], abs=1e-5)  # float32 matrix products only


def test_save_load_round_trip_gives_identical_scores_and_keeps_the_training_problems(trained):
    held = trained["held_out"][:24]
    problems, solutions = [e.problem for e in held], [e.solution for e in held]
    before = vlib.score(trained["verifier"], problems, solutions)
    loaded = vlib.load(trained["directory"])
    np.testing.assert_array_equal(vlib.score(loaded, problems, solutions), before)
    assert loaded.config == trained["verifier"].config and loaded.meta["metrics"] == {"note": "test"}
    meta = json.loads((trained["directory"] / vlib.META_FILE).read_text())
    assert meta["kind"] == vlib.KIND and meta["config"]["classification_weight"] == 1.0
    assert set(meta["train_problem_hashes"]) == {text_hash(e.problem) for e in trained["train"]}
    assert np.std(before) > 0  # scores depend on the solution


def test_a_wrong_calculator_note_lowers_the_score(trained):
    """The evidence is checked from the raw text: the same solution with a wrong result scores lower."""
    problem = "Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest for $2 each. How much does she make?"
    right = "She has 16 - 3 - 4 = <<16-3-4=9>>9 eggs left.\nShe makes 9 * 2 = $<<9*2=18>>18.\nA: 18"
    wrong = "She has 16 - 3 - 4 = <<16-3-4=9>>9 eggs left.\nShe makes 9 * 2 = $<<9*2=24.5>>24.5.\nA: 24.5"
    scores = vlib.score(trained["verifier"], [problem, problem], [right, wrong])
    assert scores[0] > scores[1]


def test_the_error_model_learns_on_a_tiny_real_run_and_adds_to_the_evidence(trained, tmp_path):
    """The default verifier with its error model (trees taught by 400 GSM8K training problems' worked solutions
    and their synthetic wrong versions), trained on the same 150 problems as the evidence-only fixture: on the
    same 150 held-out problems it beats the length baseline by far and the evidence alone. Measured here: AUC
    0.763 against 0.732 for the evidence alone and 0.630 for the length baseline."""
    references = load_references(default_data_dir() / "gsm8k" / "train.jsonl")
    config = vlib.VerifierConfig(seed=0, error_model_problems=400)
    verifier, history = vlib.train_verifier(trained["train"], config, references=references)
    info = history["error_model"]
    assert info["problems"] == 400 and info["correct"] == 400 and info["wrong"] > 800  # up to 3 wrong per problem
    assert verifier.error_model is not None and verifier.meta["feature_names"][-1] == vlib.ERROR_SCORE
    held = trained["held_out"]
    metrics = vlib.evaluate(verifier, held)
    alone = vlib.evaluate(trained["verifier"], held)  # the evidence without the error model
    assert metrics["auc"] > 0.74, metrics
    assert metrics["auc"] > metrics["baselines"]["length_auc"] + 0.1
    assert metrics["auc"] > alone["auc"], (metrics["auc"], alone["auc"])
    # The references' problems count as trained on (the overlap guard drops them), the training problems too.
    hashes = set(verifier.meta["train_problem_hashes"])
    assert {text_hash(e.problem) for e in trained["train"]} <= hashes and len(hashes) == 150 + 400
    # Saved and loaded with its error model: the same scores; without the error model's file it refuses.
    directory = vlib.save(verifier, tmp_path / "with-error-model")
    problems, solutions = [e.problem for e in held[:40]], [e.solution for e in held[:40]]
    np.testing.assert_array_equal(vlib.score(vlib.load(directory), problems, solutions),
                                  vlib.score(verifier, problems, solutions))
    (directory / vlib.ERROR_MODEL_FILE).unlink()
    with pytest.raises(ValueError, match="error model"):
        vlib.load(directory)


def test_an_odd_solution_cannot_get_a_runaway_score(trained):
    """A feature that was almost constant in training (std near 0) once gave a solution that repeats its lines a
    score of -6830 (the unseen test problems, evaluate_verifier): the standardised evidence is clipped."""
    verifier = trained["verifier"]
    index = list(vlib.FEATURE_NAMES).index("repeated_lines")
    saved = verifier.model.feature_std.clone()
    try:
        verifier.model.feature_std[index] = 1e-6  # as after a training set where no solution repeated a line
        problem = "Tom has 3 apples and buys 4 more. How many apples does he have?"
        odd = "\n".join(["He has 3 + 4 = <<3+4=7>>7 apples."] * 30 + ["A: 7"])
        inputs = verifier.model.head_inputs(None, vlib.evidence([problem], [odd]))
        assert inputs.abs().max().item() == vlib.FEATURE_CLIP
        head = verifier.model.head.weight.abs().sum().item() * vlib.FEATURE_CLIP + abs(verifier.model.head.bias.item())
        trees = float(np.abs(verifier.trees.decision_function(vlib.evidence([problem], [odd]).numpy())).max())
        assert abs(vlib.score(verifier, [problem], [odd])[0]) <= head + trees
    finally:
        verifier.model.feature_std.copy_(saved)


def test_error_model_never_learns_from_a_training_problem():
    """A reference whose problem is among the training solutions is left out, so the error model's score of a
    training solution is never in-sample."""
    examples = load_solutions_jsonl(SOLUTIONS, limit_problems=12)
    lines = (default_data_dir() / "gsm8k" / "test.jsonl").read_text().splitlines()[:12]
    test_lines = [json.loads(line) for line in lines]
    references = [(row["question"], row["answer"]) for row in test_lines]  # the very problems trained on
    references += load_references(default_data_dir() / "gsm8k" / "train.jsonl")[:20]
    verifier, history = vlib.train_verifier(examples, vlib.VerifierConfig(seed=0, error_model_problems=100),
                                            references=references)
    assert history["error_model"]["problems"] == 20


def test_text_variants_train_and_round_trip(tmp_path):
    """Frozen encoder features with the evidence (head fitted at once), and the encoder fine-tuned end to end
    with the evidence, on a tiny random BERT."""
    torch.set_num_threads(1)
    examples = load_solutions_jsonl(SOLUTIONS, limit_problems=12)
    for config in (vlib.VerifierConfig(backbone="tiny-random", text=True, max_length=64, trees=0),
                   vlib.VerifierConfig(backbone="tiny-random", text=True, train_layers=None, max_length=64,
                                       max_steps=3, batch_size=4, trees=0)):
        verifier, history = vlib.train_verifier(examples, config)
        assert history["steps"] >= 3 and verifier.model.backbone is not None
        scores = vlib.score(verifier, [e.problem for e in examples], [e.solution for e in examples])
        directory = vlib.save(verifier, tmp_path / f"v{config.train_layers}")
        np.testing.assert_allclose(vlib.score(vlib.load(directory), [e.problem for e in examples],
                                              [e.solution for e in examples]), scores, atol=1e-5)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nothing to learn"):
        vlib.train_verifier([SolutionExample("a", "q", "s", True)], vlib.VerifierConfig(backbone="tiny-random"))
    with pytest.raises(ValueError, match="text, features or both"):
        vlib.train_verifier([SolutionExample("a", "q", "s", True), SolutionExample("a", "q", "t", False)],
                            vlib.VerifierConfig(text=False, features=False))
    with pytest.raises(FileNotFoundError):
        vlib.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="problems for"):
        vlib.score(None, ["q"], [])


def test_full_fine_tuning_path_with_the_pairwise_loss_alone():
    """The encoder-training path (every layer, Bradley–Terry + centring only) on a tiny random BERT: it
    overfits a few pairs, so the loss must fall and the training pairs end up ordered."""
    torch.set_num_threads(1)
    examples = load_solutions_jsonl(SOLUTIONS, limit_problems=30)
    config = vlib.VerifierConfig(backbone="tiny-random", text=True, features=False, trees=0, train_layers=None,
                                 max_length=96, batch_size=4, epochs=12, learning_rate=3e-3, head_dropout=0.0,
                                 classification_weight=0.0, seed=0)
    verifier, history = vlib.train_verifier(examples, config)
    assert history["singles_seen"] == 0 and history["pairs_seen"] > 0
    assert history["epoch_losses"][-1] < 0.5 * history["epoch_losses"][0]
    pairs = correct_incorrect_pairs(examples, seed=0)
    scores = vlib.score(verifier, [e.problem for e in examples], [e.solution for e in examples])
    assert np.mean([scores[g] > scores[b] for g, b in pairs]) > 0.8


def _small_solutions_file(tmp_path, n_problems: int = 12):
    lines = SOLUTIONS.read_text().splitlines()[-n_problems:]  # problems the trained verifier never saw
    path = tmp_path / "solutions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_verifier_command_with_a_directory(trained, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    path = _small_solutions_file(tmp_path)
    out = StringIO()
    call_command("evaluate_verifier", "--solutions", str(path), "--verifier", str(trained["directory"]),
                 "--best-of", "2", verbosity=0, stdout=out)
    result = json.loads(out.getvalue())
    examples = load_solutions_jsonl(path)
    expected = vlib.metrics_for_scores(examples, vlib.score(trained["verifier"], [e.problem for e in examples],
                                                            [e.solution for e in examples]), best_of=2)
    assert result["n"] == 48 and result["n_problems"] == 12
    assert result["auc"] == expected["auc"] and result["balanced_best_of_2"] == expected["balanced_best_of_2"]
    assert 0 <= result["accuracy_at_best_threshold"] <= 1

    # --skip-problems: lines after the first N (what `import_gsm8k --limit N` never imported), then --limit-problems.
    assert [e.problem for e in load_solutions_jsonl(path, skip_problems=8)] == [e.problem for e in examples[-16:]]
    assert [e.problem for e in load_solutions_jsonl(path, skip_problems=8, limit_problems=2)] == \
        [e.problem for e in examples[-16:-8]]
    out = StringIO()
    call_command("evaluate_verifier", "--solutions", str(path), "--verifier", str(trained["directory"]),
                 "--best-of", "2", "--skip-problems", "10", verbosity=0, stdout=out)
    skipped = json.loads(out.getvalue())
    assert skipped["skipped_problems"] == 10 and skipped["n_problems"] == 2 and skipped["n"] == 8


@pytest.mark.django_db
def test_evaluate_verifier_command_uses_the_latest_ready_verifier(trained, tmp_path):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from legibility.models import LegibilityStudy, Verifier

    path = _small_solutions_file(tmp_path, 4)
    with pytest.raises(CommandError, match="No trained verifier"):
        call_command("evaluate_verifier", "--solutions", str(path), verbosity=0)
    study = LegibilityStudy.objects.create(slug="ev", title="Evaluate")
    Verifier.objects.create(study=study, round=1, path=str(trained["directory"]), status="ready")
    Verifier.objects.create(study=study, round=2, path=str(tmp_path / "not-yet"), status="training")
    out = StringIO()
    call_command("evaluate_verifier", "--solutions", str(path), verbosity=0, stdout=out)
    assert json.loads(out.getvalue())["verifier"] == str(trained["directory"])
    with pytest.raises(CommandError, match="No solutions file"):
        call_command("evaluate_verifier", "--solutions", str(tmp_path / "missing.jsonl"), verbosity=0)
    with pytest.raises(CommandError, match="even"):
        call_command("evaluate_verifier", "--solutions", str(path), "--best-of", "3", verbosity=0)
    with pytest.raises(CommandError, match="Cannot load"):
        call_command("evaluate_verifier", "--solutions", str(path), "--verifier", str(tmp_path), verbosity=0)


def test_evaluate_verifier_drops_problems_the_verifier_trained_on(trained, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "seen.jsonl"
    path.write_text("\n".join(SOLUTIONS.read_text().splitlines()[:20]) + "\n")  # some are training problems
    trained_on = {e.problem_id for e in trained["train"]}
    first20 = {e.problem_id for e in load_solutions_jsonl(path)}
    out = StringIO()
    call_command("evaluate_verifier", "--solutions", str(path), "--verifier", str(trained["directory"]),
                 verbosity=0, stdout=out)
    result = json.loads(out.getvalue())
    assert 0 < result["overlap_problems"] == len(first20 & trained_on) < 20
    assert result["n_problems"] == len(first20 - trained_on) and result["guard"] == "train_problem_hashes"
    kept = [e for e in load_solutions_jsonl(path) if e.problem_id not in trained_on]
    expected = vlib.metrics_for_scores(kept, vlib.score(trained["verifier"], [e.problem for e in kept],
                                                        [e.solution for e in kept]))
    assert result["auc"] == expected["auc"]  # AUC of what is left, as before
