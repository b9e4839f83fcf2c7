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

from deliberation.services import derive_seed

from .grading import extract_answer, extract_reference_answer, grade
from .models import LegibilityStudy, Problem, Solution

SHIPPED_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k_dir() -> Path:
    return Path(settings.BASE_DIR).parent / "shared" / "data" / "gsm8k"


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path.name} not found in {path.parent} (the shared GSM8K data, see "
                                "../shared/data/README.md)")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name} line {number + 1} is not JSON: {exc}") from exc
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


def import_gsm8k(*, study: LegibilityStudy, data_dir: Path | None = None, limit: int | None = None,
                 seed: int | None = None, progress: Callable[[Iterable, str, int], Iterator] | None = None,
                 ) -> ImportSummary:
    """Import problems (train and test, each up to ``limit``) and the shipped solutions; idempotent.

    Existing problems keep their stored half; shipped solutions are graded by ``grading.grade``, and
    marked gold where the grader agrees with the data set's own label.
    """
    data_dir = data_dir or gsm8k_dir()
    seed = study.seed if seed is None else seed
    progress = progress or (lambda rows, desc, total: iter(rows))
    summary = ImportSummary()
    shipped_path = data_dir / "example_model_solutions.jsonl"
    shipped = read_jsonl(shipped_path, limit)
    n_shipped = _count_lines(shipped_path)

    for split in (Problem.Split.TRAIN, Problem.Split.TEST):
        path = data_dir / f"{split}.jsonl"
        rows = read_jsonl(path, limit)
        n_lines = _count_lines(path)
        existing = set(Problem.objects.filter(study=study, split=split).values_list("index", flat=True))
        new = []
        for index, row in enumerate(progress(rows, f"{split} problems", len(rows))):
            if index in existing:
                summary.problems_existing += 1
                continue
            if "question" not in row or "answer" not in row:
                raise ValueError(f"{path.name} line {index + 1} lacks 'question' or 'answer'")
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
    for index, row in enumerate(progress(shipped, "shipped solutions", len(shipped))):
        problem = test_problems.get(index)
        if problem is None:
            continue  # --limit imported fewer test problems than shipped rows
        if row.get("question", "").strip() != problem.text.strip():
            raise ValueError(f"{shipped_path.name} line {index + 1} is not test problem {index}")
        for key in SHIPPED_KEYS:
            entry = row.get(key)
            if not entry or "solution" not in entry:
                continue
            if (index, key) in have:
                summary.solutions_existing += 1
                continue
            text = entry["solution"]
            correct = grade(text, problem.reference_solution)
            label = entry.get("is_correct")
            label = bool(label) if label is not None else None
            if label is not None and label != correct:
                summary.grader_disagrees_with_dataset += 1
            answer = extract_answer(text)
            new_solutions.append(Solution(
                problem=problem, text=text, source=Solution.Source.SHIPPED, role=Solution.Role.NONE, round=0,
                correct=correct, final_answer=str(answer)[:64] if answer is not None else "", dataset_label=label,
                is_gold=label is not None and label == correct, external_key=key,
                provenance={"source": "openai/grade-school-math example_model_solutions.jsonl", "model": key,
                            "line": index}))
    Solution.objects.bulk_create(new_solutions, batch_size=2000, ignore_conflicts=True)
    summary.solutions_created = len(new_solutions)
    return summary
