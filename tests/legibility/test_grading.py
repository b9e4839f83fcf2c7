"""Final-answer grading: hand cases for every notation, and agreement with the labels OpenAI shipped."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from legibility.grading import (
    answers_match,
    extract_answer,
    extract_reference_answer,
    grade,
    parse_number,
    strip_calculator,
)

GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k"
ROLES = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


@pytest.mark.parametrize(("text", "expected"), [
    ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", Fraction(18)),
    ("#### 1,234", Fraction(1234)),
    ("#### -2", Fraction(-2)),
    ("#### 0.5", Fraction(1, 2)),
    ("So 3 + 4 = 7\nA: 7", Fraction(7)),
    (42, Fraction(42)),
    (Fraction(3, 4), Fraction(3, 4)),
    ("42", Fraction(42)),
])
def test_reference_answers(text, expected):
    assert extract_reference_answer(text) == expected


@pytest.mark.parametrize(("solution", "expected"), [
    ("3 + 4 = 7 apples. The answer is 7.", Fraction(7)),
    ("The answer is $1,234.50.", Fraction(246900, 200)),
    ("Total: 1,000,000 grains", Fraction(1_000_000)),
    ("So the final answer is \\boxed{3/4}, and we are done with 5 steps", Fraction(3, 4)),
    ("\\boxed{-2}", Fraction(-2)),
    ("She ends with −2 dollars", Fraction(-2)),  # a Unicode minus
    ("He has 10 - 2 = 8 left", Fraction(8)),  # a subtraction is not a negative number
    ("The increase is 25%.", Fraction(25)),
    ("It takes 2 1/2 hours", Fraction(5, 2)),
    ("She pays $.75 per egg", Fraction(3, 4)),
    ("The answer is 18 dollars, i.e. 9 per day", Fraction(18)),  # first number after the marker
    ("Answer: 12 km/h", Fraction(12)),
    ("So 48/2=<<48/2=24>>24 clips\nA: 24", Fraction(24)),
    ("Step 1 gives 5. Step 2 gives 12.", Fraction(12)),  # no marker: the last number
    ("1,2 and 3", Fraction(3)),  # a comma before fewer than three digits is a list, not thousands
    ("The result is 4.999999999999999", Fraction("4.999999999999999")),
    ("To answer this, she had 5 apples and bought 7 more, 12 in all", Fraction(12)),  # "answer" as a verb
    ("I cannot tell.", None),
    ("", None),
    ("Divide by 0/0 now", None),
])
def test_extract_answer(solution, expected):
    assert extract_answer(solution) == expected


def test_parse_number_and_calculator_notes():
    assert parse_number("costs $1,234.50.") == Fraction(2469, 2)
    assert parse_number("no digits") is None
    assert strip_calculator("16 - 3 = <<16-3=13>>13 eggs") == "16 - 3 = 13 eggs"


@pytest.mark.parametrize(("a", "b", "same"), [
    (Fraction("4.999999999999999"), Fraction(5), True),
    (Fraction(3, 4), Fraction("0.75"), True),
    (Fraction(1, 3), Fraction("0.3333333333"), True),
    (Fraction(5), Fraction("5.01"), False),
    (Fraction(1_000_000), Fraction(1_000_001), False),
    (Fraction(0), Fraction(0), True),
    (None, Fraction(0), False),
])
def test_answers_match(a, b, same):
    assert answers_match(a, b) is same


def test_grade():
    reference = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
    assert grade("She sells 9 eggs for $2 each, so she makes $18.", reference)
    assert grade("9 * 2 = 18.00 dollars", reference)
    assert not grade("She sells 13 eggs for $2 each, so she makes $26.", reference)
    assert not grade("She makes 18 * 2 = 36 dollars in two days. The answer is 36.", reference)
    assert not grade("No idea", reference)
    assert grade("The answer is 3/4", "#### 0.75")
    assert grade("That is -2 degrees", -2)


def test_agrees_with_shipped_correctness_labels():
    """On the 4,000 real solutions, the grader reproduces OpenAI's is_correct labels (measured: 4000/4000)."""
    rows = [json.loads(line) for line in (GSM8K / "example_model_solutions.jsonl").open()]
    references = {json.loads(line)["question"]: json.loads(line)["answer"] for line in (GSM8K / "test.jsonl").open()}
    agree = total = 0
    for row in rows:
        reference = references[row["question"]]  # the #### reference from the test split
        for role in ROLES:
            total += 1
            agree += grade(row[role]["solution"], reference) == row[role]["is_correct"]
    assert total == 4000
    assert agree / total >= 0.95, f"grader agrees with the labels on {agree}/{total}"
