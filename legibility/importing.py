"""GSM8K into a legibility study: problems with seeded halves, and the shipped model solutions as round 0.

Halves are assigned per pair of consecutive lines (2k, 2k+1): a seeded coin sends one to each half.
So any even slice has exactly equal halves, a larger import never moves a problem that a smaller
one placed, and re-running with the same seed changes nothing. A line without a partner (the last
of an odd-sized file) goes to the held-out half.

Training problems split into prover / verifier halves (the paper's protocol). The shipped solutions
(four real model solutions for each of the first 1,000 test problems) are the base prover's output,
which exists only on test problems, so those test problems split the same way into verifier (the
round-1 verifier trains on them) and heldout (verifier evaluation and human judging); the remaining
test problems are held out.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from deliberation.services import derive_seed

from .grading import extract_answer, extract_reference_answer, grade, parse_number
from .models import LegibilityStudy, Problem, Solution

SHIPPED_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k_dir() -> Path:
    return Path(settings.BASE_DIR).parent / "shared" / "data" / "gsm8k"


MAX_ERRORS_SHOWN = 10


class ImportErrors(ValueError):
    """Every problem found in the files, each with its file and line; raised before anything is written."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        super().__init__(f"{len(errors)} problem(s) in the GSM8K files; nothing was imported:\n  {shown}{more}")


def read_jsonl(path: Path, limit: int | None = None, errors: list[str] | None = None) -> list[tuple[int, dict]]:
    """(1-based line number, row) of the first ``limit`` non-blank lines. A line that is not a JSON object is
    reported in ``errors`` (or raised at once without it) and still counts towards ``limit``."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} not found in {path.parent} (the shared GSM8K data, see "
                                "../shared/data/README.md)")
    rows, seen = [], 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if limit is not None and seen >= limit:
                break
            if not line.strip():
                continue
            seen += 1
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                message = f"{path.name} line {number}: not a JSON object ({exc})"
                if errors is None:
                    raise ValueError(message) from exc
                errors.append(message)
                row = None
            rows.append((number, row))
    return rows


def assign_half(index: int, n_lines: int, seed: int, halves: tuple[str, str]) -> str:
    """The half of line ``index``: a seeded coin per pair of lines; an unpaired last line is held out."""
    pair = index // 2
    if pair * 2 + 1 >= n_lines:
        return Problem.Half.HELDOUT
    first_goes_to_a = random.Random(derive_seed(seed, "half", pair)).random() < 0.5
    is_first = index % 2 == 0
    return halves[0] if is_first == first_goes_to_a else halves[1]


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _numeric(value) -> float | None:
    return float(value) if value is not None else None


@dataclass
class ImportSummary:
    problems_created: int = 0
    problems_existing: int = 0
    solutions_created: int = 0
    solutions_existing: int = 0
    grader_disagrees_with_dataset: int = 0


def _check_problem(path: Path, number: int, row: dict | None, errors: list[str]) -> None:
    if row is None:
        return  # already reported
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        errors.append(f"{path.name} line {number}: no 'question' text")
    if not isinstance(answer, str) or "####" not in answer:
        errors.append(f"{path.name} line {number}: 'answer' lacks the final '#### <number>'")
    elif parse_number(answer.rsplit("####", 1)[-1]) is None:
        errors.append(f"{path.name} line {number}: the final answer "
                      f"{answer.rsplit('####', 1)[-1].strip()[:40]!r} is not a number")


def _check_shipped(path: Path, number: int, row: dict | None, errors: list[str]) -> None:
    if row is None:
        return
    if not isinstance(row.get("question"), str):
        errors.append(f"{path.name} line {number}: no 'question' text")
    for key in SHIPPED_KEYS:
        entry = row.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("solution"), str):
            errors.append(f"{path.name} line {number}: {key} has no 'solution' text")
        elif not isinstance(entry.get("is_correct"), bool):
            errors.append(f"{path.name} line {number}: {key} lacks its 'is_correct' label (true or false)")


def import_gsm8k(*, study: LegibilityStudy, data_dir: Path | None = None, limit: int | None = None,
                 seed: int | None = None, progress: Callable[[Iterable, str, int], Iterator] | None = None,
                 ) -> ImportSummary:
    """Import problems (train and test, each up to ``limit``) and the shipped solutions; idempotent.

    Existing problems keep their stored half; shipped solutions are graded by ``grading.grade``, and
    marked gold where the grader agrees with the data set's own label. Every line read is checked first
    (JSON, question, a numeric final answer, labelled solutions that belong to their test problem); any
    problem raises ``ImportErrors`` listing them with their line numbers, and nothing is written. The writes
    are one transaction.
    """
    data_dir = data_dir or gsm8k_dir()
    seed = study.seed if seed is None else seed
    progress = progress or (lambda rows, desc, total: iter(rows))
    summary = ImportSummary()
    errors: list[str] = []
    shipped_path = data_dir / "example_model_solutions.jsonl"
    paths = {split: data_dir / f"{split}.jsonl" for split in (Problem.Split.TRAIN, Problem.Split.TEST)}
    rows_by_split = {split: read_jsonl(path, limit, errors) for split, path in paths.items()}
    for split, rows in rows_by_split.items():
        for number, row in rows:
            _check_problem(paths[split], number, row, errors)
    shipped = read_jsonl(shipped_path, limit, errors)
    test_rows = rows_by_split[Problem.Split.TEST]
    for index, (number, row) in enumerate(shipped):
        _check_shipped(shipped_path, number, row, errors)
        if row is None or index >= len(test_rows) or test_rows[index][1] is None:
            continue
        question = row.get("question")
        if isinstance(question, str) and question.strip() != str(test_rows[index][1].get("question", "")).strip():
            errors.append(f"{shipped_path.name} line {number}: its question is not test.jsonl line "
                          f"{test_rows[index][0]}'s")
    if errors:
        raise ImportErrors(errors)
    n_shipped = _count_lines(shipped_path)
    with transaction.atomic():
        _write(study, rows_by_split, paths, shipped, n_shipped, seed, progress, summary)
    return summary


def _write(study, rows_by_split, paths, shipped, n_shipped, seed, progress, summary) -> None:
    for split, rows in rows_by_split.items():
        n_lines = _count_lines(paths[split])
        existing = set(Problem.objects.filter(study=study, split=split).values_list("index", flat=True))
        new = []
        for index, (_, row) in enumerate(progress(rows, f"{split} problems", len(rows))):
            if index in existing:
                summary.problems_existing += 1
                continue
            if split == Problem.Split.TRAIN:
                half = assign_half(index, n_lines, seed, (Problem.Half.PROVER, Problem.Half.VERIFIER))
            elif index < n_shipped:
                half = assign_half(index, n_shipped, seed, (Problem.Half.VERIFIER, Problem.Half.HELDOUT))
            else:
                half = Problem.Half.HELDOUT
            answer_text = row["answer"].rsplit("####", 1)[-1].strip()
            new.append(Problem(study=study, split=split, index=index, text=row["question"],
                               reference_solution=row["answer"], reference_answer=answer_text[:64],
                               numeric_answer=_numeric(extract_reference_answer(row["answer"])), half=half))
        Problem.objects.bulk_create(new, batch_size=2000, ignore_conflicts=True)
        summary.problems_created += len(new)

    test_problems = {p.index: p for p in Problem.objects.filter(study=study, split=Problem.Split.TEST)}
    have = set(Solution.objects.filter(problem__study=study, source=Solution.Source.SHIPPED)
               .values_list("problem__index", "external_key"))
    new_solutions = []
    for index, (_, row) in enumerate(progress(shipped, "shipped solutions", len(shipped))):
        problem = test_problems.get(index)
        if problem is None:
            continue  # --limit imported fewer test problems than shipped rows
        for key in SHIPPED_KEYS:
            entry = row.get(key)
            if not entry:
                continue
            if (index, key) in have:
                summary.solutions_existing += 1
                continue
            text = entry["solution"]
            correct = grade(text, problem.reference_solution)
            label = bool(entry["is_correct"])
            if label != correct:
                summary.grader_disagrees_with_dataset += 1
            answer = extract_answer(text)
            new_solutions.append(Solution(
                problem=problem, text=text, source=Solution.Source.SHIPPED, role=Solution.Role.NONE, round=0,
                correct=correct, final_answer=str(answer)[:64] if answer is not None else "", dataset_label=label,
                is_gold=label == correct, external_key=key,
                provenance={"source": "openai/grade-school-math example_model_solutions.jsonl", "model": key,
                            "line": index}))
    Solution.objects.bulk_create(new_solutions, batch_size=2000, ignore_conflicts=True)
    summary.solutions_created = len(new_solutions)
