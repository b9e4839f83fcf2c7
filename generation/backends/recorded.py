"""Recorded backend: replays statements the real model wrote earlier.

Not a model and not a stand-in written by us: every text it returns was produced by the
embedded SmolLM2 backend for a Habermas-corpus question and stored in a JSONL recording
(``generation/recordings/``; ``generation.recording.record_statements`` writes one). Load tests use it so
that what they measure is the web stack, not CPU-bound generation, while participants still
see real model output. Provenance stays honest: the backend is ``recorded`` and the model id
``recorded:<original model id>``.

The choice is deterministic: among the entries recorded for the question found in the
prompt (all entries if none match), the one at ``sha256(prompt hash, seed) mod n``.
Django-free; recording needs torch (the embedded backend), replaying needs nothing.

    .venv/bin/python -m generation.recording --questions 12 --per-question 4   # record
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .base import GenerationError, GenerationRequest, GenerationResult

RECORDINGS_DIR = Path(__file__).resolve().parents[1] / "recordings"
DEFAULT_RECORDING = RECORDINGS_DIR / "smollm2-135m-instruct_habermas_2026-11-22.jsonl"
QUESTIONS_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "habermas" / "230118_chinchilla_questions.json"


@dataclass(frozen=True)
class Entry:
    question: str
    text: str
    model_id: str
    seed: int
    completion_tokens: int
    latency_ms: float
    line: int


def load_recording(path: str | Path) -> tuple[dict, list[Entry]]:
    """Header and entries of a recording; a missing, empty or malformed file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise GenerationError(f"Recording {path} not found (write one with "
                              f"`python -m generation.recording`)")
    header: dict = {}
    entries: list[Entry] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            if row.get("kind") == "header":
                header = row
                continue
            entries.append(Entry(question=row["question"], text=row["text"], model_id=row["model_id"],
                                 seed=int(row["seed"]), completion_tokens=int(row.get("completion_tokens", 0)),
                                 latency_ms=float(row.get("latency_ms", 0.0)), line=number))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GenerationError(f"{path.name} line {number} is not a recorded statement: {exc}") from None
    if not entries:
        raise GenerationError(f"Recording {path} holds no statements")
    return header, entries


class RecordedBackend:
    name = "recorded"

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else DEFAULT_RECORDING
        self.header, self.entries = load_recording(self.path)
        self.by_question: dict[str, list[Entry]] = {}
        for entry in self.entries:
            self.by_question.setdefault(" ".join(entry.question.split()), []).append(entry)
        models = sorted({e.model_id for e in self.entries})
        self.model_id = "recorded:" + (models[0] if len(models) == 1 else " | ".join(models))

    def choose(self, request: GenerationRequest) -> tuple[Entry, bool]:
        """The entry replayed for ``request`` and whether it was recorded for the prompt's question."""
        prompt = "\n".join(m.content for m in request.messages if m.role == "user")
        flat = " ".join(prompt.split())
        pool, matched = self.entries, False
        for question, entries in self.by_question.items():
            if question and question in flat:
                pool, matched = entries, True
                break
        payload = json.dumps([[m.role, m.content] for m in request.messages], ensure_ascii=False)
        digest = hashlib.sha256(f"{payload}\x00{request.seed}".encode()).digest()
        return pool[int.from_bytes(digest[:8], "big") % len(pool)], matched

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for request in requests:
            started = time.perf_counter()
            entry, matched = self.choose(request)
            text = entry.text
            for stop in request.stop:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            results.append(GenerationResult(
                text=text.strip(), model_id=f"recorded:{entry.model_id}", seed=request.seed,
                latency_ms=(time.perf_counter() - started) * 1000, prompt_tokens=0,
                completion_tokens=entry.completion_tokens,
                extra={"backend": self.name, "recording": self.path.name, "line": entry.line,
                       "question_matched": matched, "original_seed": entry.seed,
                       "original_latency_ms": entry.latency_ms},
            ))
        return results


# --- recording ----------------------------------------------------------------------------------
def habermas_questions(count: int, stride: int = 7) -> list[dict]:
    """Every ``stride``-th question of the Habermas corpus (the same picks as benchmarks/generation.py)."""
    questions = json.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))
    return [questions[i * stride] for i in range(count)]


def group_opinions(q: dict) -> list[str]:
    """Five members' opinions built from the question's own affirming and negating statements."""
    return [q["affirming_statement"], q["negating_statement"], q["affirming_statement"] + " But only partly.",
            q["negating_statement"] + " Mostly.", "I am not sure; both sides have a point about " + q["question"]]
