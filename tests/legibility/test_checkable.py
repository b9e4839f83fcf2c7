"""Checkable evidence from the raw solution text, the overlap guard and the verifier's balanced mixture (no DB)."""
from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

import pytest

from legibility.checkable import (
    FEATURE_NAMES,
    STRUCTURE_NAMES,
    computations,
    evaluate_expression,
    features,
    structure_features,
)
from legibility.grading import extract_answer
from legibility.mixture import balanced_mixture
from legibility.overlap import overlap, text_hash
from legibility.synthetic import KINDS, labelled_examples, model_style, perturb

PROBLEM = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. "
           "She sells the remainder for $2 per egg. How much does she make every day?")
RIGHT = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\nA: 18"


def _f(problem, solution):
    return dict(zip(FEATURE_NAMES, features(problem, solution), strict=True))


def test_expressions_are_evaluated_exactly_and_safely():
    assert evaluate_expression("48/2+3*(4-1)") == 33
    assert evaluate_expression("$1,200 x 2") == 2400
    assert evaluate_expression("25%*80") == 20
    assert evaluate_expression("2/3") == Fraction(2, 3)
    for bad in ("__import__('os')", "2**1000000", "1/0", "a+b", ""):
        assert evaluate_expression(bad) is None


def test_a_right_solution_checks_out():
    f = _f(PROBLEM, RIGHT)
    assert f["calc_wrong_share"] == 0 and f["final_is_last_result"] == 1 and f["final_in_results"] == 1
    assert f["problem_numbers_used"] == 1.0  # 16, three, four, 2: word numbers count
    assert f["underived_share"] == 0 and f["n_computations"] == 2


def test_wrong_notes_a_final_answer_from_nowhere_and_unused_numbers_show():
    wrong = RIGHT.replace("<<9*2=18>>18", "<<9*2=20>>20").replace("A: 18", "A: 20")
    assert _f(PROBLEM, wrong)["calc_wrong_share"] == 0.5 and _f(PROBLEM, wrong)["calc_any_wrong"] == 1
    jump = RIGHT.replace("A: 18", "A: 27")
    assert _f(PROBLEM, jump)["final_is_last_result"] == 0
    partial = "She makes 16 * 2 = $<<16*2=32>>32 every day.\nA: 32"
    assert _f(PROBLEM, partial)["problem_numbers_used"] == 0.5
    invented = "She makes 16 * 7 = $<<16*7=112>>112.\nA: 112"
    assert _f(PROBLEM, invented)["underived_share"] == 0  # 7 is a common constant (days in a week)
    invented = "She makes 16 * 9.5 = $<<16*9.5=152>>152.\nA: 152"
    assert _f(PROBLEM, invented)["underived_share"] == 0.5


def test_written_equations_count_when_there_are_no_notes():
    steps = computations("She has 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $19.\nThe answer is 19")
    assert [(v, w) for v, w, _ in steps] == [(9, 9), (18, 19)]
    assert _f(PROBLEM, "She has 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $19.\nThe answer is 19")["calc_wrong_share"] \
        == 0.5


def test_overlap_guard_by_normalised_problem_hash():
    assert text_hash("Janet’s ducks  lay 16 eggs.\n") == text_hash("janet's ducks lay 16 eggs.")
    assert text_hash("a") != text_hash("b") and len(text_hash("a")) == 16
    items = [("Q1", 1), ("Q1", 2), ("Q2", 3), ("Q3 ", 4)]
    kept, dropped = overlap([text_hash("q1"), text_hash("Q3")], items, key=lambda item: item[0])
    assert kept == [("Q2", 3)] and dropped == 2
    assert overlap([], items, key=lambda item: item[0]) == (items, 0)


def test_balanced_mixture_rule():
    groups = {(0, "base"): [f"b{i}" for i in range(100)], (1, "helpful"): [f"h{i}" for i in range(30)],
              (1, "sneaky"): [f"s{i}" for i in range(25)], (2, "helpful"): ["x1", "x2"]}
    chosen, report = balanced_mixture(groups, seed=1)
    rows = {r["group"]: r for r in report}
    target = min(100, 3 * 25)  # largest group, capped at 3 x the smallest counted one
    assert {k: r["used"] for k, r in rows.items()} == {"0 base": target, "1 helpful": target, "1 sneaky": target,
                                                       "2 helpful": 0}
    assert not rows["2 helpful"]["counted"] and rows["2 helpful"]["available"] == 2  # under the minimum size
    counts = Counter(chosen)
    assert max(counts[f"s{i}"] for i in range(25)) == 3 and min(counts[f"s{i}"] for i in range(25)) == 3
    assert max(counts[f"h{i}"] for i in range(30)) == 3 and min(counts[f"h{i}"] for i in range(30)) == 2
    assert max(counts[f"b{i}"] for i in range(100)) == 1  # the large group is subsampled, never repeated
    assert balanced_mixture(groups, seed=1) == (chosen, report)  # seeded
    assert balanced_mixture({"a": ["x"] * 5}, seed=0)[0] == []  # nothing counts
    with pytest.raises(ValueError):
        balanced_mixture(groups, max_repeat=0)


def _s(problem, solution):
    return dict(zip(STRUCTURE_NAMES, structure_features(problem, solution), strict=True))


def test_structure_features_follow_the_problems_numbers_to_the_answer():
    right = _s(PROBLEM, RIGHT)
    assert right["reach_share"] == 1.0 and right["dead_ends"] == 0 and right["last_op_times"] == 1
    # 16 * 2 never uses three and four: half of the problem's numbers reach the answer.
    assert _s(PROBLEM, "She makes 16 * 2 = $<<16*2=32>>32 every day.\nA: 32")["reach_share"] == 0.5
    # A computation that leads nowhere, and an answer that is no computation's result.
    detour = "She eats 3 + 4 = <<3+4=7>>7.\nShe has 16 * 2 = <<16*2=32>>32.\nA: 32"
    assert _s(PROBLEM, detour)["dead_ends"] == 1 and _s(PROBLEM, RIGHT.replace("A: 18", "A: 5"))["reach_share"] == 0
    how_many = "Tom has 7 apples and eats 2. How many apples are left?"
    assert _s(how_many, "7 / 2 = <<7/2=3.5>>3.5\nA: 3.5")["count_answer_not_whole"] == 1
    assert _s(how_many, "7 - 2 = <<7-2=5>>5\nA: 5")["count_answer_not_whole"] == 0
    assert len(structure_features("", "")) == len(STRUCTURE_NAMES)  # nothing to read is no error


REFERENCE = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
             "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")
NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")


def test_synthetic_wrong_solutions_keep_the_arithmetic_right_and_the_answer_wrong():
    rows = labelled_examples(NATALIA, REFERENCE, random.Random(3))
    assert rows[0] == (model_style(REFERENCE), True) and rows[0][0].endswith("A: 72")
    wrong = [text for text, correct in rows if not correct]
    assert len(wrong) == len(KINDS) == 3
    for text in wrong:
        assert extract_answer(text) != 72 and text.splitlines()[-1].startswith("A: ")
        assert _f(NATALIA, text)["calc_wrong_share"] == 0  # every later step was recomputed
        assert _f(NATALIA, text)["final_is_last_result"] == 1
    # A flipped operator is carried into the step that used its result: 48*2 = 96, then 48+96 = 144.
    assert "Natalia sold 48*2 = <<48*2=96>>96 clips in May.\nNatalia sold 48+96 = <<48+96=144>>144" in wrong[2]
    assert perturb(NATALIA, REFERENCE, random.Random(0), "truncate") == \
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nA: 24"
    # Nothing to perturb without calculator notes; an unknown kind is refused.
    assert labelled_examples(NATALIA, "She sold 72 clips.\n#### 72", random.Random(0)) == \
        [("She sold 72 clips.\nA: 72", True)]
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(NATALIA, REFERENCE, random.Random(0), "swap")
