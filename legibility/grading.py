"""Correctness of a math solution by its final answer: the one ground truth of a legibility study.

GSM8K references end with ``#### 42``; model solutions end however they like ("The answer is $1,234.50.",
``\\boxed{3/4}``, "A: 18", "so she has -2 left."). We extract one number from each and compare them as
exact fractions with a small tolerance, so ``0.75``, ``3/4`` and ``75%``-style leftovers of float
arithmetic (``4.999999999999999``) compare as a person would. Never asks a model: pure regex + Fraction.
"""
from __future__ import annotations

import re
from fractions import Fraction

# Calculator annotations such as <<48/2=24>> repeat numbers mid-sentence; the grade ignores them.
CALCULATOR = re.compile(r"<<[^<>]*>>")
# One number as people write it: optional sign and currency, thousands separators, decimals, a simple
# fraction (3/4) or a mixed number (1 1/2). A comma counts as a thousands separator only before exactly
# three digits, so "1,2 and 3" is three numbers.
NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−–])?\s?[$€£]?\s?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)?(?P<dec>\.\d+)?"
    r"(?:(?<=\d)(?P<mixed>\s\d+/\d+)|(?<=\d)/(?P<den>\d+))?"
)
FINAL_MARKERS = (
    re.compile(r"####\s*(?P<rest>[^\n]*)"),
    re.compile(r"\\boxed\s*\{(?P<rest>[^{}]*)\}"),
    re.compile(r"answer\s*(?:is\b|:|=)\s*:?\s*(?P<rest>[^\n]*)", re.IGNORECASE),
    re.compile(r"(?:^|\n)\s*A\s*:\s*(?P<rest>[^\n]*)"),
)
DEFAULT_REL_TOL = 1e-9  # big answers differing by one unit must not match
DEFAULT_ABS_TOL = 1e-6


def strip_calculator(text: str) -> str:
    """The solution as people read it: GSM8K's ``<<a*b=c>>`` calculator notes removed."""
    return CALCULATOR.sub("", text)


def _numbers(text: str) -> list[Fraction]:
    found = []
    for match in NUMBER.finditer(text):
        whole, dec = match.group("int"), match.group("dec")
        if not whole and not dec:
            continue
        value = Fraction((whole or "0").replace(",", "") + (dec or ""))
        if match.group("den"):
            den = int(match.group("den"))
            if den == 0 or dec:
                continue  # "1.5/0" or "2.5/3" is not an answer anyone writes
            value = value / den
        elif match.group("mixed"):
            num, den = match.group("mixed").strip().split("/")
            if int(den) == 0:
                continue
            value = value + Fraction(int(num), int(den))
        if match.group("sign"):
            value = -value
        found.append(value)
    return found


def parse_number(text: str) -> Fraction | None:
    """The last number written in ``text`` (``"$1,234.50."`` → 2469/2, ``"-2 apples"`` → -2), or None."""
    numbers = _numbers(text)
    return numbers[-1] if numbers else None


def extract_reference_answer(reference: str | int | float | Fraction) -> Fraction | None:
    """The answer of a GSM8K reference: the number after ``####`` (or "A:"), or the text's only/last number."""
    if isinstance(reference, (int, float, Fraction)) and not isinstance(reference, bool):
        return Fraction(reference)
    text = strip_calculator(str(reference))
    for marker in (FINAL_MARKERS[0], FINAL_MARKERS[3]):
        matches = list(marker.finditer(text))
        if matches:
            value = parse_number(matches[-1].group("rest"))
            if value is not None:
                return value
    return parse_number(text)


def extract_answer(solution: str) -> Fraction | None:
    """The final answer of a free-form solution.

    An explicit marker wins (``####``, ``\\boxed{}``, "the answer is", a closing "A:" line), its last
    occurrence and the first number after it ("The answer is 18 dollars, i.e. 9 per day" → 18); otherwise
    the last number in the text, which is where step-by-step solutions end.
    """
    text = strip_calculator(solution or "")
    for marker in FINAL_MARKERS:
        for match in reversed(list(marker.finditer(text))):
            numbers = _numbers(match.group("rest"))
            if numbers:
                return numbers[0]
    return parse_number(text)


def answers_match(a: Fraction | None, b: Fraction | None, *, rel_tol: float = DEFAULT_REL_TOL,
                  abs_tol: float = DEFAULT_ABS_TOL) -> bool:
    """Equal up to float noise (``4.999999999999999`` == 5); a missing answer never matches."""
    if a is None or b is None:
        return False
    if a == b:
        return True
    return abs(a - b) <= max(Fraction(abs_tol), Fraction(rel_tol) * max(abs(a), abs(b)))


def grade(solution_text: str, reference_answer: str | int | float | Fraction) -> bool:
    """True when the solution's final answer equals the reference's (a GSM8K answer text or a number)."""
    return answers_match(extract_answer(solution_text), extract_reference_answer(reference_answer))
