"""Extractive baseline: a deterministic, non-neural stand-in for a model.

Not a language model. It copies the first sentence of each opinion found in
the prompt (the ``- `` bullet lines written by ``generation.prompts``), shuffles
them with the request seed and prefixes a neutral phrase. It is instant and
needs no weights, which makes it the backend for fast tests and load tests,
and a floor that any real model should beat.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence

from .base import GenerationRequest, GenerationResult

_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s|$)")
_OPENERS = (
    "We share several views.",
    "Taken together, we hold the following views.",
    "As a group, we can agree on the following.",
)


def extract_opinions(prompt: str) -> list[str]:
    """The first block of ``- `` bullet lines in the prompt (the opinions).

    Only the first block: in revision prompts a later block holds critiques.
    """
    opinions: list[str] = []
    for line in prompt.splitlines():
        if line.startswith("- "):
            opinions.append(line[2:].strip())
        elif opinions:
            break
    return [o for o in opinions if o and o != "(none)"]


def first_sentence(text: str) -> str:
    match = _FIRST_SENTENCE.match(text.strip())
    sentence = match.group(1) if match else text.strip().rstrip(",;:") + "."
    return sentence[0].upper() + sentence[1:] if sentence else sentence


class ExtractiveBackend:
    name = "extractive"
    model_id = "extractive-baseline-v1"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return [self._generate_one(r) for r in requests]

    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        prompt = "\n".join(m.content for m in request.messages if m.role == "user")
        sentences = [first_sentence(o) for o in extract_opinions(prompt)]
        rng = random.Random(request.seed)  # private RNG: reproducible in any order
        rng.shuffle(sentences)
        opener = rng.choice(_OPENERS)
        text = " ".join([opener, *sentences]) if sentences else ""
        # Respect the token budget roughly as a model would (words ~ tokens).
        words = text.split()[: request.max_new_tokens]
        text = " ".join(words)
        for stop in request.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        text = text.strip()
        return GenerationResult(
            text=text,
            model_id=self.model_id,
            seed=request.seed,
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=sum(len(m.content.split()) for m in request.messages),
            completion_tokens=len(text.split()),
            extra={"backend": self.name, "opinions": len(sentences)},
        )
