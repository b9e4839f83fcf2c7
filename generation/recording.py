"""Record real embedded-model (SmolLM2) consensus statements for the ``recorded`` backend to replay.

Apart from the backend (generation/backends/recorded.py) because recording renders prompts and cleans outputs
(``generation.prompts``, ``generation.cleaning``), which build on the backends: the backend replays, this writes.

    .venv/bin/python -m generation.recording --questions 12 --per-question 4
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import date
from pathlib import Path

from .backends.base import GenerationRequest, GenerationResult
from .backends.recorded import DEFAULT_RECORDING, group_opinions, habermas_questions
from .cleaning import clean_statement
from .prompts import CONSENSUS, STOP_SEQUENCES, render_consensus


def record_statements(out: str | Path, *, questions: int = 12, per_question: int = 4, max_new_tokens: int = 64,
                      seed: int = 0, backend=None, progress: bool = True) -> int:
    """Generate ``per_question`` consensus statements for each of ``questions`` Habermas questions with the
    embedded model (or ``backend``) and write them as JSONL. Outputs that ``clean_statement`` rejects are
    retried with a new seed (at most 4 times), as the service would, and left out if none is usable. Returns the
    number of entries written."""
    if backend is None:
        import torch

        torch.set_num_threads(1)
        from .backends.embedded import EmbeddedBackend

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
