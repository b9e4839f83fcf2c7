"""Synthetic wrong solutions made from correct worked solutions: what the verifier's error model learns from.

A GSM8K reference solution (calculator notes ``<<a op b=c>>``, final ``#### N``) is correct. Real model errors
are mostly a wrong reading of the problem, not wrong arithmetic: a step missing, a wrong number used, a wrong
operation. Each perturbation makes one such error and then recomputes every later step that used the changed
result, so the arithmetic stays right and only the reasoning is wrong, as in real model solutions:

- ``truncate``: stop after an earlier step and give its result as the answer (a step missing);
- ``operand``: one operand of a step becomes another number of the problem (a wrong number used);
- ``operator``: one operator of a step flips (+ and −, × and ÷) (a wrong operation).

A perturbed solution is kept only when its final answer is wrong (graded against the reference). The
reference itself, in the model solutions' style (final line ``A: N``), is the correct example. No Django.

    rows = labelled_examples(problem, reference, random.Random(0))   # [(text, correct), ...]
"""
from __future__ import annotations

import random
import re
from fractions import Fraction

from .checkable import evaluate_expression, problem_numbers
from .grading import CALCULATOR, answers_match, extract_answer, extract_reference_answer

KINDS = ("truncate", "operand", "operator")
WRITTEN_AS = {"*": r"\s*[*x×]\s*", "/": r"\s*/\s*", "+": r"\s*\+\s*", "-": r"\s*-\s*"}
NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])")
FLIP = {"+": "-", "-": "+", "*": "/", "/": "*"}


def written(value: Fraction) -> str:
    """A value as a solution writes it: whole numbers plain, others to at most two decimals."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def model_style(reference: str) -> str:
    """The reference with its ``#### N`` line written ``A: N``, as the model solutions end."""
    lines = reference.strip().splitlines()
    if lines and lines[-1].lstrip().startswith("####"):
        lines[-1] = "A: " + lines[-1].lstrip()[4:].strip()
    return "\n".join(lines)


def _same(a: str, b: str) -> bool:
    try:
        return Fraction(a) == Fraction(b)
    except (ValueError, ZeroDivisionError):
        return False


def _steps(lines: list[str]) -> list[tuple[int, str, str]]:
    """(line index, expression, written result) of each calculator note."""
    found = []
    for i, line in enumerate(lines):
        for match in CALCULATOR.finditer(line):
            body = match.group(0)[2:-2]
            if "=" in body:
                expression, _, result = body.rpartition("=")
                found.append((i, expression, result))
    return found


def _swap_numbers(text: str, changes: dict[str, str]) -> str:
    def swap(match: re.Match) -> str:
        for old, new in changes.items():
            if _same(match.group(0), old):
                return new
        return match.group(0)

    return NUMBER.sub(swap, text)


def _visible(expression: str) -> str:
    """A pattern for the expression as written in the line, spaces and ``x`` for ``*`` allowed."""
    return "".join(WRITTEN_AS.get(char, re.escape(char)) for char in expression)


def _rewrite(line: str, expression: str, result: str, new_expression: str, new_result: str) -> str:
    line = line.replace(f"<<{expression}={result}>>", f"<<{new_expression}={new_result}>>", 1)
    before, note, after = line.partition("<<")
    before = re.sub(_visible(expression), lambda m: new_expression, before, count=1)
    after = re.sub(r"(>>\$?)" + re.escape(result), lambda m: m.group(1) + new_result, after, count=1)
    return before + note + after


def perturb(problem: str, reference: str, rng: random.Random, kind: str) -> str | None:
    """One wrong solution of ``kind`` (see the module), or None when the reference offers no such change."""
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation {kind!r}; one of {', '.join(KINDS)}")
    lines = model_style(reference).splitlines()
    if len(lines) < 2:
        return None
    body, final_line = lines[:-1], lines[-1]
    steps = _steps(body)
    if not steps:
        return None
    if kind == "truncate":
        if len(steps) < 2:
            return None
        line, _, result = steps[rng.randrange(len(steps) - 1)]
        return "\n".join([*body[: line + 1], f"A: {result}"])
    j = rng.randrange(len(steps))
    line, expression, result = steps[j]
    if kind == "operand":
        tokens = list(NUMBER.finditer(expression))
        if not tokens:
            return None
        token = rng.choice(tokens)
        others = sorted((written(n) for n in problem_numbers(problem) if not _same(written(n), token.group(0))),
                        key=Fraction)
        if not others:
            return None
        new_expression = expression[: token.start()] + rng.choice(others) + expression[token.end():]
    else:
        operators = [m for m in re.finditer(r"(?<=[\d)\s])[-+*/]", expression)]
        if not operators:
            return None
        op = rng.choice(operators)
        new_expression = expression[: op.start()] + FLIP[op.group(0)] + expression[op.end():]
    value = evaluate_expression(new_expression)
    if value is None or value < 0:
        return None
    new_result = written(value)
    if _same(new_result, result):
        return None
    new = list(body)
    new[line] = _rewrite(new[line], expression, result, new_expression, new_result)
    changes = {result: new_result}
    for later_line, later_expression, later_result in steps[j + 1:]:
        changed = _swap_numbers(later_expression, changes)
        if changed == later_expression:
            continue
        value = evaluate_expression(changed)
        if value is None:
            return None
        changed_result = written(value)
        text = new[later_line]
        before, note, after = text.partition("<<")
        text = _swap_numbers(before, changes) + note + after
        new[later_line] = _rewrite(text, later_expression, later_result, changed, changed_result)
        changes[later_result] = changed_result
    final = extract_reference_answer(final_line)
    if final is None or not _same(written(final), steps[-1][2]):
        return None  # the answer is not the last step's result: no safe way to carry the change to it
    return "\n".join([*new, f"A: {changes.get(steps[-1][2], steps[-1][2])}"])


def labelled_examples(problem: str, reference: str, rng: random.Random) -> list[tuple[str, bool]]:
    """The reference (correct) and one perturbation of each kind whose answer is wrong (incorrect)."""
    truth = extract_reference_answer(reference)
    if truth is None:
        return []
    rows = [(model_style(reference), True)]
    for kind in KINDS:
        text = perturb(problem, reference, rng, kind)
        if text is not None and not answers_match(extract_answer(text), truth):
            rows.append((text, False))
    return rows
