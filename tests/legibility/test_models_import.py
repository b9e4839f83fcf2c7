"""GSM8K import on a small slice of the real shared data: idempotent, equal and stable halves, graded."""
from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from legibility.grading import grade
from legibility.importing import assign_half, gsm8k_dir, import_gsm8k
from legibility.models import LegibilityStudy, Problem, Solution

pytestmark = pytest.mark.django_db

LIMIT = 40


def _halves(study):
    return dict(Problem.objects.filter(study=study, split="train").values_list("index", "half"))


def test_import_is_idempotent_with_equal_stable_halves():
    out = io.StringIO()
    call_command("import_gsm8k", "--study", "g1", "--limit", str(LIMIT), "--seed", "7", stdout=out, verbosity=0)
    study = LegibilityStudy.objects.get(slug="g1")
    assert study.seed == 7
    assert Problem.objects.filter(study=study, split="train").count() == LIMIT
    assert Problem.objects.filter(study=study, split="test").count() == LIMIT
    train_halves = _halves(study)
    prover = [i for i, h in train_halves.items() if h == "prover"]
    verifier = [i for i, h in train_halves.items() if h == "verifier"]
    assert len(prover) == len(verifier) == LIMIT // 2
    # Seeded, not alternating: the split is not simply even/odd lines.
    assert set(prover) != set(range(0, LIMIT, 2)) and set(prover) != set(range(1, LIMIT, 2))
    n_solutions = Solution.objects.filter(problem__study=study).count()
    assert n_solutions == 4 * LIMIT  # four shipped solutions per test problem
    assert "prover 20 / verifier 20" in out.getvalue()

    # A second run changes nothing.
    call_command("import_gsm8k", "--study", "g1", "--limit", str(LIMIT), "--seed", "7", verbosity=0)
    assert Problem.objects.filter(study=study).count() == 2 * LIMIT
    assert Solution.objects.filter(problem__study=study).count() == n_solutions
    assert _halves(study) == train_halves

    # A larger import keeps every earlier assignment; the same seed in another study gives the same halves.
    call_command("import_gsm8k", "--study", "g1", "--limit", str(LIMIT + 10), verbosity=0)
    assert {i: h for i, h in _halves(study).items() if i < LIMIT} == train_halves
    other = LegibilityStudy.objects.create(slug="g2", title="g2", seed=7)
    import_gsm8k(study=other, limit=LIMIT)
    assert _halves(other) == train_halves
    # A different seed gives a different split.
    third = LegibilityStudy.objects.create(slug="g3", title="g3", seed=8)
    import_gsm8k(study=third, limit=LIMIT)
    assert _halves(third) != train_halves


def test_shipped_solutions_are_graded_and_test_problems_split_into_verifier_and_heldout():
    study = LegibilityStudy.objects.create(slug="g", title="g", seed=3)
    import_gsm8k(study=study, limit=LIMIT)
    test_halves = list(Problem.objects.filter(study=study, split="test").values_list("half", flat=True))
    assert test_halves.count("verifier") == test_halves.count("heldout") == LIMIT // 2
    solutions = list(Solution.objects.filter(problem__study=study).select_related("problem"))
    assert {s.source for s in solutions} == {"shipped"} and {s.round for s in solutions} == {0}
    for s in solutions:
        assert s.correct == grade(s.text, s.problem.reference_solution)
        assert s.is_gold == (s.dataset_label == s.correct)
    correct = sum(s.correct for s in solutions)
    assert 0 < correct < len(solutions)  # real data: both kinds present
    # The grader agrees with the data set's own labels on the great majority.
    assert sum(s.dataset_label == s.correct for s in solutions) >= 0.9 * len(solutions)
    first = Problem.objects.get(study=study, split="test", index=0)
    assert first.reference_answer == "18" and first.numeric_answer == 18.0


def test_assign_half_pairs_and_unpaired_last_line():
    halves = [assign_half(i, 7, 0, ("a", "b")) for i in range(7)]
    for k in range(3):
        assert {halves[2 * k], halves[2 * k + 1]} == {"a", "b"}
    assert halves[6] == Problem.Half.HELDOUT


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="example_model_solutions.jsonl not found"):
        call_command("import_gsm8k", "--study", "gx", "--data-dir", str(tmp_path), verbosity=0)
    assert not LegibilityStudy.objects.filter(slug="gx").exists()  # nothing half-made
    assert gsm8k_dir().name == "gsm8k"
    with pytest.raises(CommandError, match="--limit"):
        call_command("import_gsm8k", "--limit", "0", verbosity=0)


def _write_gsm8k(folder, train_lines, test_lines, shipped_lines):
    folder.mkdir()
    for name, lines in (("train", train_lines), ("test", test_lines), ("example_model_solutions", shipped_lines)):
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_malformed_files_are_refused_with_line_numbers_and_nothing_is_imported(tmp_path):
    import json

    good = [json.dumps({"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"})
            for i in range(4)]
    solution = {"solution": "1 + 1 = 2\nA: 2", "is_correct": True}
    shipped = [json.dumps({"question": f"What is {i} + 1?", "6b_finetuning": solution}) for i in range(4)]
    folder = _write_gsm8k(
        tmp_path / "bad",
        [good[0], "{not json", good[2], json.dumps({"question": "q", "answer": "x\n#### about ten"})],
        [good[0], json.dumps({"question": "no answer"}), good[2], good[3]],
        [shipped[0], shipped[1],
         json.dumps({"question": "What is 2 + 1?", "6b_finetuning": {"solution": "3"}}), shipped[3]])
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("import_gsm8k", "--study", "bad", "--data-dir", str(folder), stdout=out, stderr=err,
                     verbosity=0)
    message = str(caught.value)
    assert "train.jsonl line 2: not a JSON object" in message
    assert "train.jsonl line 4: the final answer 'about ten' is not a number" in message
    assert "test.jsonl line 2: 'answer' lacks" in message
    assert "example_model_solutions.jsonl line 3: 6b_finetuning lacks its 'is_correct' label" in message
    assert "nothing was imported" in message
    assert not LegibilityStudy.objects.filter(slug="bad").exists() and not Problem.objects.exists()

    # The same files, fixed, import completely.
    folder = _write_gsm8k(tmp_path / "good", good, good, shipped)
    call_command("import_gsm8k", "--study", "bad", "--data-dir", str(folder), verbosity=0)
    assert Problem.objects.count() == 8 and Solution.objects.count() == 4
