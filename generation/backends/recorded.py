"""Recorded backend: replays statements the real model wrote earlier.

Not a model and not a stand-in written by us: every text it returns was produced by the
embedded SmolLM2 backend for a Habermas-corpus question and stored in a JSONL recording
(``generation/recordings/``; ``record_statements`` below writes one). Load tests use it so
that what they measure is the web stack, not CPU-bound generation, while participants still
see real model output. Provenance stays honest: the backend is ``recorded`` and the model id
``recorded:<original model id>``.

The choice is deterministic: among the entries recorded for the question found in the
prompt (all entries if none match), the one at ``sha256(prompt hash, seed) mod n``.
Django-free; recording needs torch (the embedded backend), replaying needs nothing.

    .venv/bin/python -m generation.backends.recorded --questions 12 --per-question 4   # record
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
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
                              f"`python -m generation.backends.recorded`)")
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


def record_statements(out: str | Path, *, questions: int = 12, per_question: int = 4, max_new_tokens: int = 64,
                      seed: int = 0, backend=None, progress: bool = True) -> int:
    """Generate ``per_question`` consensus statements for each of ``questions`` Habermas questions with the
    embedded model (or ``backend``) and write them as JSONL. Outputs that ``clean_statement`` rejects are
    retried with a new seed (at most 4 times), as the service would, and left out if none is usable. Returns the number of entries written."""
    from ..cleaning import clean_statement
    from ..prompts import CONSENSUS, STOP_SEQUENCES, render_consensus

    if backend is None:
        import torch

        torch.set_num_threads(1)
        from .embedded import EmbeddedBackend

        backend = EmbeddedBackend()
    picked = habermas_questions(questions)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=questions * per_question, desc="recording", unit="statement", file=sys.stderr)
    rows = []
    for qi, q in enumerate(picked):
        prompts = []
        for i in range(per_question):
            opinions = group_opinions(q)
            random.Random(seed * 100003 + qi * 100 + i).shuffle(opinions)
            prompts.append(render_consensus(CONSENSUS, q["question"], opinions))
        kept: dict[int, tuple[GenerationResult, int]] = {}
        for attempt in range(4):  # one batch per question; unusable outputs retried with a new seed
            todo = [i for i in range(per_question) if i not in kept]
            if not todo:
                break
            requests = [GenerationRequest(messages=prompts[i], seed=seed * 100003 + qi * 1000 + i * 10 + attempt,
                                          max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.95,
                                          stop=STOP_SEQUENCES) for i in todo]
            for i, result in zip(todo, backend.generate(requests), strict=True):
                if clean_statement(result.text, question=q["question"]):
                    kept[i] = (result, attempt + 1)
        for i in sorted(kept):  # an output the service would never show is left out
            result, attempts = kept[i]
            rows.append({"question_id": q["id"], "question": q["question"], "text": result.text,
                         "model_id": result.model_id, "seed": result.seed, "attempts": attempts,
                         "completion_tokens": result.completion_tokens, "latency_ms": round(result.latency_ms, 1),
                         "max_new_tokens": max_new_tokens, "temperature": 0.8, "top_p": 0.95})
        if bar is not None:
            bar.update(per_question)
    if bar is not None:
        bar.close()
    header = {"kind": "header", "what": "Consensus statements written by the model named in each row, for "
              "Habermas-corpus questions (CC BY 4.0, DeepMind). Replayed by the 'recorded' backend.",
              "model_id": rows[0]["model_id"] if rows else None, "recorded_on": date.today().isoformat(),
              "template": f"{CONSENSUS.name} v{CONSENSUS.version}", "entries": len(rows)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [header, *rows]), encoding="utf-8")
    tmp.replace(out)
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Record real embedded-model (SmolLM2) consensus statements "
                                                 "for the 'recorded' backend to replay.")
    parser.add_argument("--out", default=str(DEFAULT_RECORDING), help="JSONL file to write.")
    parser.add_argument("--questions", type=int, default=12, help="How many Habermas questions (every 7th).")
    parser.add_argument("--per-question", type=int, default=4, help="Statements per question.")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = record_statements(args.out, questions=args.questions, per_question=args.per_question,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
    print(f"wrote {written} statements to {args.out}")


if __name__ == "__main__":
    main()
