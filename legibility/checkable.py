"""Checkable evidence about a math solution, computed from its RAW text (calculator notes kept).

A verifier that reads text alone has to guess arithmetic; these features check it. They are cheap, need no
model and no Django, and go into the verifier's head beside its text embedding (``legibility.verifier``):

- ``calc_wrong_share``: share of the calculator annotations ``<<a op b=c>>`` and written equations
  ``a op b = c`` whose result is wrong when recomputed (``calc_any_wrong``: at least one);
- ``final_is_last_result``: the final answer equals the result of the last computation;
  ``final_in_results``: it equals some computation's result; ``final_in_problem``: it is one of the
  problem's own numbers (often a copied number, not an answer);
- ``problem_numbers_used``: share of the problem's distinct numbers that the solution uses;
- ``underived_share``: share of the computations' operands that are neither a problem number, an earlier
  result nor a common constant (numbers that came from nowhere);
- ``problem_numbers_computed``: share of the problem's numbers used as operands; ``text_underived_share``:
  share of all written numbers that came from nowhere;
- results that are negative, not whole or carry more than two decimals; repeated computations; a final
  answer written with decimals; results computed but never used later;
- length: log characters, steps (lines) and computations; whether a final answer was found, is whole or
  negative; and the problem itself (length, sentences, how many numbers, percentages or fractions), which
  says how hard it is.

Which features stay was decided by 5-fold cross-validation by problem on the training split of a study's
verifier half (``benchmarks/verifier.py`` reports the result on held-out problems).

    features(problem_text, raw_solution_text) -> list[float]   # in the order of FEATURE_NAMES
"""
from __future__ import annotations

import ast
import math
import operator
import re
from fractions import Fraction

from .grading import CALCULATOR, _numbers, extract_answer, strip_calculator

FEATURE_NAMES = (
    "log_chars", "n_lines", "n_computations", "calc_wrong_share", "calc_any_wrong", "final_found",
    "final_is_last_result", "final_in_results", "final_in_problem", "final_whole", "final_negative",
    "problem_numbers_used", "underived_share", "log_final_over_max_problem", "results_not_whole",
    "results_unused", "computations_per_problem_number", "problem_log_chars", "problem_n_numbers",
    "repeated_lines", "log_abs_final", "problem_numbers_unused", "problem_has_percent", "problem_has_fraction",
    "problem_sentences", "share_chained", "last_uses_previous", "n_divisions", "n_multiplications",
    "problem_numbers_reused", "final_over_sum_problem", "duplicate_computations", "negative_results",
    "long_decimal_results", "final_written_with_decimals", "problem_numbers_computed", "text_underived_share",
)
FINAL_DECIMAL = re.compile(r"(?:A:|####|answer is)\s*[$]?\s*-?\d[\d,]*\.\d+\s*$", re.IGNORECASE)
PERCENT = re.compile(r"%|percent", re.IGNORECASE)
FRACTION = re.compile(r"\d+/\d+|\b(half|third|quarter|fourth|fifth|twice|thrice|double|triple)\b", re.IGNORECASE)
WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
                "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000, "half": Fraction(1, 2),
                "twice": 2, "double": 2, "triple": 3, "quarter": Fraction(1, 4), "dozen": 12, "third": Fraction(1, 3)}
# Constants any solution may use without deriving them (units, percentages, halves, time).
COMMON = {Fraction(n) for n in (0, 1, 2, 3, 4, 5, 7, 10, 12, 24, 30, 52, 60, 100, 365, 1000)}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
# A written equation: an arithmetic expression with at least one operator, "=", a number.
EQUATION = re.compile(r"((?:[$€£]?\s?\(?\s?-?\d[\d,]*(?:\.\d+)?%?\s?\)?\s*[-+*/x×÷]\s*)+[$€£]?\s?\(?\s?-?\d[\d,]*"
                      r"(?:\.\d+)?%?\s?\)?)\s*=\s*[$€£]?\s?(-?\d[\d,]*(?:\.\d+)?)")


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ZeroDivisionError
        return _OPS[type(node.op)](left, right)
    raise ValueError("not arithmetic")


def evaluate_expression(expression: str) -> Fraction | None:
    """The exact value of ``48/2+3*(4-1)`` (``x``/``×``/``÷``, ``$``, ``,`` and ``%`` allowed), or None."""
    text = expression.replace("×", "*").replace("÷", "/").replace("$", "").replace("€", "").replace("£", "")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", text)
    text = re.sub(r"(\d+(?:\.\d+)?)%", r"(\1/100)", text)
    if not re.fullmatch(r"[\d\s.+\-*/()]+", text) or len(text) > 200:
        return None
    try:
        return _evaluate(ast.parse(text.strip(), mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, TypeError):
        return None


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", "").replace("$", "").strip())
    except (ValueError, ZeroDivisionError):
        return None


def _close(a: Fraction, b: Fraction) -> bool:
    """Equal, or equal once rounded the way a person writes the result (to the digits written)."""
    if a == b:
        return True
    return abs(a - b) <= max(Fraction(1, 100), abs(b) * Fraction(1, 1000))


def computations(raw_solution: str) -> list[tuple[Fraction, Fraction, list[Fraction]]]:
    """(recomputed value, written result, operands) of each annotation or written equation, in text order."""
    found = []
    for match in CALCULATOR.finditer(raw_solution):
        body = match.group(0)[2:-2]
        if "=" not in body:
            continue
        left, _, right = body.rpartition("=")
        written = _number(right)
        value = evaluate_expression(left)
        if written is not None and value is not None:
            found.append((match.start(), value, written, _numbers(left)))
    for match in EQUATION.finditer(strip_calculator(raw_solution).replace("\n", " \n ")):
        written = _number(match.group(2))
        value = evaluate_expression(match.group(1))
        if written is not None and value is not None:
            found.append((10**9 + match.start(), value, written, _numbers(match.group(1))))
    if any(position < 10**9 for position, *_ in found):  # annotations present: they are the computations
        found = [f for f in found if f[0] < 10**9]
    return [(value, written, operands) for _, value, written, operands in sorted(found, key=lambda f: f[0])]


def problem_numbers(problem: str) -> set[Fraction]:
    values = {abs(n) for n in _numbers(problem)}
    words = re.findall(r"[a-z]+", problem.lower())
    values |= {Fraction(WORD_NUMBERS[w]) for w in words if w in WORD_NUMBERS}
    return values


def features(problem: str, raw_solution: str) -> list[float]:
    """The checkable features of one solution (FEATURE_NAMES order); the raw text keeps ``<<...>>`` notes."""
    raw_solution = raw_solution or ""
    visible = strip_calculator(raw_solution)
    steps = computations(raw_solution)
    wrong = [not _close(value, written) for value, written, _ in steps]
    final = extract_answer(raw_solution)
    results = [written for _, written, _ in steps]
    given = problem_numbers(problem)
    used = {abs(n) for n in _numbers(visible)} | {abs(n) for _, _, ops in steps for n in ops}
    known, underived, operands = set(given) | COMMON, 0, 0
    for _, written, ops in steps:
        for value in ops:
            operands += 1
            underived += abs(value) not in known
        known.add(abs(written))
    unused = 0
    for i, (_, written, _) in enumerate(steps[:-1]):
        later = {abs(n) for _, _, ops in steps[i + 1:] for n in ops}
        unused += abs(written) not in later
    lines = [line.strip() for line in visible.splitlines() if line.strip()]
    chained, earlier = 0, set()
    for _, written, ops in steps:
        chained += any(abs(n) in earlier for n in ops)
        earlier.add(abs(written))
    reuse: dict[Fraction, int] = {}
    for _, _, ops in steps:
        for n in ops:
            if abs(n) in given:
                reuse[abs(n)] = reuse.get(abs(n), 0) + 1
    bodies = [m.group(0) for m in CALCULATOR.finditer(raw_solution)]
    total_given = sum(given, Fraction(0))
    operand_values = {abs(n) for _, _, ops in steps for n in ops}
    mentioned = _numbers(visible)
    largest = max((abs(n) for n in given), default=Fraction(1)) or Fraction(1)
    return [
        math.log1p(len(visible)),
        float(visible.count("\n") + 1),
        float(len(steps)),
        sum(wrong) / len(wrong) if wrong else 0.0,
        float(any(wrong)),
        float(final is not None),
        float(final is not None and bool(results) and _close(results[-1], final)),
        float(final is not None and any(_close(r, final) for r in results)),
        float(final is not None and abs(final) in given),
        float(final is not None and final.denominator == 1),
        float(final is not None and final < 0),
        len(given & used) / len(given) if given else 1.0,
        underived / operands if operands else 0.0,
        math.log10((abs(final) + 1) / (largest + 1)) if final is not None else 0.0,
        sum(r.denominator != 1 for r in results) / len(results) if results else 0.0,
        unused / (len(results) - 1) if len(results) > 1 else 0.0,
        len(steps) / max(1, len(given)),
        math.log1p(len(problem)),
        float(len(given)),
        1.0 - len(set(lines)) / len(lines) if lines else 0.0,
        math.log10(abs(final) + 1) if final is not None else 0.0,
        float(len(given - used)),
        float(bool(PERCENT.search(problem))),
        float(bool(FRACTION.search(problem))),
        float(len(re.findall(r"[.?!](\s|$)", problem))),
        chained / len(steps) if steps else 0.0,
        float(len(steps) > 1 and any(abs(n) in {abs(r) for r in results[:-1]} for n in steps[-1][2])),
        float(sum(body.count("/") for body in bodies)),
        float(sum(body.count("*") for body in bodies)),
        float(sum(count > 1 for count in reuse.values())),
        math.log10((abs(final) + 1) / (total_given + 1)) if final is not None else 0.0,
        1.0 - len(set(bodies)) / len(bodies) if bodies else 0.0,
        float(sum(r < 0 for r in results)),
        float(sum(len(str(float(r)).split(".")[1]) > 2 for r in results)),
        float(bool(FINAL_DECIMAL.search(visible))),
        len(given & operand_values) / len(given) if given else 1.0,
        sum(abs(n) not in known for n in mentioned) / len(mentioned) if mentioned else 0.0,
    ]


# --- structure of the reasoning: inputs of the error model (legibility.verifier), beside FEATURE_NAMES ---------
STRUCTURE_NAMES = (
    "reach_share", "dead_ends", "cue_without_operation", "ops_plus", "ops_minus", "ops_times", "ops_div",
    "last_op_plus", "last_op_minus", "last_op_times", "last_op_div", "question_how_many", "question_money",
    "question_percent", "question_more", "question_left", "count_answer_not_whole", "percents_used",
    "unit_conversion_missing", "question_numbers_used", "log_max_result_over_problem",
    "log_min_result_over_problem",
)
# Words of the problem that call for an operation; a solution without that operation misses something.
CUES = {
    "*": re.compile(r"\b(times|twice|double|triple|each|per|every|dozens?)\b", re.IGNORECASE),
    "/": re.compile(r"\b(half|divided|split|average|per|share|each|third|quarter)\b|/", re.IGNORECASE),
}
# (unit, other unit or None, factor): a problem with both needs the factor somewhere.
UNITS = ((re.compile(r"\bminutes?\b", re.IGNORECASE), re.compile(r"\bhours?\b", re.IGNORECASE), 60),
         (re.compile(r"\bdozens?\b", re.IGNORECASE), None, 12),
         (re.compile(r"\bweeks?\b", re.IGNORECASE), re.compile(r"\bdays?\b", re.IGNORECASE), 7),
         (re.compile(r"\bcents?\b", re.IGNORECASE), re.compile(r"\$|dollars?", re.IGNORECASE), 100),
         (re.compile(r"\binch(es)?\b", re.IGNORECASE), re.compile(r"\bf(ee|oo)t\b", re.IGNORECASE), 12))
PERCENT_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(%|percent)", re.IGNORECASE)


def _operators(expression: str) -> set[str]:
    return set(re.findall(r"[-+*/]", re.sub(r"^\s*-", "", expression)))


def structure_features(problem: str, raw_solution: str) -> list[float]:
    """How the solution's computations use the problem (STRUCTURE_NAMES order): the share of the problem's
    numbers that flow into the final answer through the chain of computations, computations that lead nowhere,
    operations the problem's words call for but the solution never does, which operations it does (and last),
    what the question asks (how many, money, a percentage, more/than, left), whether a count is answered with a
    fraction, whether the problem's percentages and unit conversions (60, 12, 7, 100) are used, whether the
    numbers of the question sentence are used, and the largest and smallest results against the problem's
    largest number."""
    raw_solution = raw_solution or ""
    steps = computations(raw_solution)
    expressions = [body.rpartition("=")[0] for body in (m.group(0)[2:-2] for m in CALCULATOR.finditer(raw_solution))
                   if "=" in body]
    given = problem_numbers(problem)
    final = extract_answer(raw_solution)
    sources: list[set[Fraction]] = []
    produced: dict[Fraction, int] = {}
    used_later: set[int] = set()
    for k, (_, result, operands) in enumerate(steps):
        flow: set[Fraction] = set()
        for operand in map(abs, operands):
            if operand in produced:
                flow |= sources[produced[operand]]
                used_later.add(produced[operand])
            if operand in given:
                flow.add(operand)
        sources.append(flow)
        produced[abs(result)] = k
    final_step = None
    if final is not None:
        final_step = next((k for k in range(len(steps) - 1, -1, -1) if _close(abs(steps[k][1]), abs(final))), None)
    reach = len(sources[final_step]) / len(given) if final_step is not None and given else 0.0
    dead_ends = sum(k not in used_later and k != final_step for k in range(len(steps)))
    operators = [op for expression in expressions for op in _operators(expression)]
    cue_without = sum(bool(rx.search(problem)) and op not in operators for op, rx in CUES.items())
    last = _operators(expressions[-1]) if expressions else set()
    question = re.split(r"(?<=[.!])\s+", problem.strip())[-1]
    how_many = bool(re.search(r"how many", question, re.IGNORECASE))
    values = {abs(n) for _, _, ops in steps for n in ops} | {abs(n) for n in _numbers(strip_calculator(raw_solution))}
    percents = [Fraction(x) for x, _ in PERCENT_NUMBER.findall(problem)]
    percents_used = (sum(p in values or p / 100 in values or 1 - p / 100 in values or 100 - p in values
                         for p in percents) / len(percents)) if percents else 1.0
    units_missing = sum(bool(a.search(problem)) and (b is None or bool(b.search(problem))) and Fraction(k) not in values
                        for a, b, k in UNITS)
    in_question = problem_numbers(question)
    largest = max(given, default=Fraction(1)) or Fraction(1)
    results = [abs(r) for _, r, _ in steps]
    return [
        reach, float(dead_ends), float(cue_without), float(operators.count("+")), float(operators.count("-")),
        float(operators.count("*")), float(operators.count("/")), float("+" in last), float("-" in last),
        float("*" in last), float("/" in last), float(how_many),
        float(bool(re.search(r"\$|money|dollars|cost|pay|spend|earn", question, re.IGNORECASE))),
        float(bool(re.search(r"percent|%", question, re.IGNORECASE))),
        float(bool(re.search(r"\bmore\b|\bthan\b", question, re.IGNORECASE))),
        float(bool(re.search(r"\bleft\b|remain", question, re.IGNORECASE))),
        float(how_many and final is not None and final.denominator != 1), percents_used, float(units_missing),
        len(in_question & values) / len(in_question) if in_question else 1.0,
        math.log10(float(max(results) / largest) + 1) if results else 0.0,
        math.log10(float(min(results) / largest) + 1) if results else 0.0,
    ]
