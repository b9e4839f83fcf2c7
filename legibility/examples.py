"""Labelled solutions for verifier training and evaluation, and the problem-level split.

A ``SolutionExample`` is one (problem, solution, correct?) triple. ``load_solutions_jsonl`` reads
``gsm8k/example_model_solutions.jsonl`` (four real GPT-3 solutions per problem, labelled ``is_correct``)
or any file of the same shape. The solution keeps its RAW text, calculator notes (``<<a*b=c>>``) included:
the verifier recomputes them as evidence and strips them itself where it reads the text as a judge does.
Splits are by problem, never by row: four solutions of one problem share most of their words, so a row split
would leak.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


@dataclass(frozen=True)
class SolutionExample:
    problem_id: str
    problem: str
    solution: str
    correct: bool
    source: str = ""  # where the solution came from: "175b_finetuning", "round 2 sneaky", ...


def default_data_dir() -> Path:
    """``../shared/data`` beside the repository (see its README)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def problem_id(question: str) -> str:
    """A stable id from the problem text, so the same problem gets the same id in every file and table."""
    return hashlib.sha1(question.strip().encode(), usedforsecurity=False).hexdigest()[:12]


def load_solutions_jsonl(path: str | Path, *, limit_problems: int | None = None,
                         skip_problems: int = 0) -> list[SolutionExample]:
    """Examples from an ``example_model_solutions.jsonl``-shaped file: one problem per line with a
    ``question`` and solution objects ``{"solution": str, "is_correct": bool}`` under any keys.

    ``skip_problems`` skips the file's first lines (e.g. the test problems ``import_gsm8k --limit N``
    imported, so that what is left was never trained on); ``limit_problems`` then keeps that many lines."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No solutions file at {path}")
    examples: list[SolutionExample] = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if number <= skip_problems:
                continue
            if limit_problems is not None and number > skip_problems + limit_problems:
                break
            try:
                row = json.loads(line)
                question = row["question"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path.name} line {number}: not a problem with a 'question' ({exc})") from None
            pid = problem_id(question)
            for key, value in row.items():
                if isinstance(value, dict) and "solution" in value and "is_correct" in value:
                    examples.append(SolutionExample(pid, question, str(value["solution"]).strip(),
                                                    bool(value["is_correct"]), key))
    if not examples:
        raise ValueError(f"{path.name} holds no labelled solutions")
    return examples


def load_references(path: str | Path, *, exclude_hashes: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(problem, worked solution) of each line of a GSM8K-shaped file (``question``, ``answer`` with calculator
    notes and ``#### N``), leaving out problems whose ``overlap.text_hash`` is in ``exclude_hashes``: the
    references the verifier's error model learns from (``verifier.fit_error_model``)."""
    from .overlap import text_hash

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No reference solutions file at {path}")
    excluded = set(exclude_hashes)
    references = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question, answer = row["question"], row["answer"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path.name} line {number}: not a problem with a 'question' and an 'answer' "
                                 f"({exc})") from None
            if isinstance(question, str) and isinstance(answer, str) and text_hash(question) not in excluded:
                references.append((question, answer))
    return references


def split_by_problem(examples: Sequence[SolutionExample], held_out_fraction: float = 0.2,
                     seed: int = 0) -> tuple[list[SolutionExample], list[SolutionExample]]:
    """(train, held out), with every solution of a problem on the same side; seeded."""
    if not 0 < held_out_fraction < 1:
        raise ValueError("held_out_fraction must be between 0 and 1")
    problems = sorted({e.problem_id for e in examples})
    random.Random(seed).shuffle(problems)
    held = set(problems[: max(1, round(held_out_fraction * len(problems)))])
    return [e for e in examples if e.problem_id not in held], [e for e in examples if e.problem_id in held]


def correct_incorrect_pairs(examples: Sequence[SolutionExample], seed: int = 0) -> list[tuple[int, int]]:
    """Balanced Bradley–Terry pairs (index of a correct, index of an incorrect solution of the same problem).

    Each problem contributes min(#correct, #incorrect) pairs and uses each solution at most once, so the
    pairs hold equally many correct and incorrect solutions; problems with only one kind give none.
    """
    rng = random.Random(seed)
    by_problem: dict[str, tuple[list[int], list[int]]] = {}
    for i, example in enumerate(examples):
        by_problem.setdefault(example.problem_id, ([], []))[0 if example.correct else 1].append(i)
    pairs = []
    for pid in sorted(by_problem):
        good, bad = by_problem[pid]
        rng.shuffle(good)
        rng.shuffle(bad)
        pairs.extend(zip(good, bad, strict=False))
    rng.shuffle(pairs)
    return pairs


def count_by_label(examples: Iterable[SolutionExample]) -> dict[str, int]:
    examples = list(examples)
    correct = sum(e.correct for e in examples)
    return {"n": len(examples), "n_correct": correct, "n_incorrect": len(examples) - correct,
            "n_problems": len({e.problem_id for e in examples})}
