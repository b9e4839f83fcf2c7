"""Where a simulated participant's opinion comes from: the question and a stance (``question``, cheap, in
``participants.standins``), a Polis conversation's comments (``polis:DIR``), a generation backend writing in a
random persona's voice (``persona``), or each member's hidden profile (``hidden:SEED``, ``participants.preferences``).

``opinion_source(spec)`` turns the ``--opinions`` option into a source; a source has ``opinion(question, rng)``
(or, with ``per_member``, ``opinion_for(member_key, question, rng)``); ``blocking`` ones run off the event loop.
"""
from __future__ import annotations

import csv
import random
import threading
from pathlib import Path

from participants.preferences import parse_spec
from participants.standins import QuestionOpinions

POLIS_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "polis"


class PolisOpinions:
    """Opinions drawn from a Polis conversation's comments.csv (moderated-out comments skipped)."""

    def __init__(self, directory: str):
        path = Path(directory)
        if not path.is_absolute() and not path.exists():
            path = POLIS_ROOT / directory
        csv_path = path / "comments.csv" if path.is_dir() else path
        with open(csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        self.comments = [r["comment-body"].strip() for r in rows
                         if r.get("comment-body", "").strip() and str(r.get("moderated", "1")).strip() != "-1"
                         and len(r["comment-body"].split()) >= 3]
        if not self.comments:
            raise ValueError(f"no usable comments in {csv_path}")

    def opinion(self, question: str, rng: random.Random) -> str:
        return rng.choice(self.comments)


class PersonaOpinions:
    """Opinions written by the project's generation backend in the voice of a random persona.

    Uses the one generation interface (``generation.backends.get_backend``); the extractive and recorded
    backends only copy existing text, so they cannot write a persona's opinion.
    """

    blocking = True  # a model call: bots run it off the event loop
    AGES = ("19", "27", "34", "45", "58", "71")
    JOBS = ("nurse", "student", "farmer", "teacher", "shop owner", "software developer", "retired engineer",
            "delivery driver", "accountant", "carer")
    VIEWS = ("cares most about fairness", "worries about public spending", "values personal freedom",
             "thinks tradition matters", "wants practical solutions", "is sceptical of government",
             "cares about the environment", "puts family first")

    def __init__(self, backend: str = "embedded", options: dict | None = None, max_new_tokens: int = 60):
        if backend in ("extractive", "recorded"):
            raise ValueError(f"the {backend} backend only copies existing text and cannot write persona opinions; "
                             "use --persona-backend embedded or openai")
        from generation.backends import get_backend

        self.backend = get_backend(backend, **(options or {}))
        self.max_new_tokens = max_new_tokens
        self.fallback = QuestionOpinions()
        self.generated = 0  # opinions the model wrote (the rest fell back to the question-based source)
        self._lock = threading.Lock()  # one model, many bots: one call at a time

    def persona(self, rng: random.Random) -> str:
        return (f"a {rng.choice(self.AGES)}-year-old {rng.choice(self.JOBS)} who {rng.choice(self.VIEWS)}"
                f" and {rng.choice(self.VIEWS)}")

    def messages(self, question: str, persona: str):
        from generation.backends import ChatMessage

        return (ChatMessage("system", f"You are {persona}. Answer in two or three sentences, in the first "
                                      "person, giving your own opinion and one reason. No lists, no preamble."),
                ChatMessage("user", question))

    def opinion(self, question: str, rng: random.Random) -> str:
        from generation.backends import GenerationRequest
        from generation.cleaning import clean_statement

        request = GenerationRequest(messages=self.messages(question, self.persona(rng)), seed=rng.getrandbits(31),
                                    max_new_tokens=self.max_new_tokens, temperature=0.9, stop=("\n\n",))
        with self._lock:
            raw = self.backend.generate([request])[0].text
        text = clean_statement(raw, 600, question=question)
        if not text or len(text.split()) < 3:  # a model that wrote nothing usable: still an opinion
            return self.fallback.opinion(question, rng)
        self.generated += 1
        return text


class HiddenOpinions:
    """Opinions from each member's hidden profile (``participants.preferences``): their stance on the question, in
    the question-based bots' words, and the two values they care most about."""

    per_member = True

    def __init__(self, spec: str):
        self.population = parse_spec(spec)
        self.stance = QuestionOpinions()

    def opinion_for(self, member_key: str, question: str, rng: random.Random) -> str:
        stance = self.stance.opinion(question, rng).split(" because ")[0].split(":")[0].rstrip(".,")
        return f"{stance}. {self.population.member(member_key).opinion(question, rng)}"


def opinion_source(spec: str, *, persona_backend: str = "embedded", persona_options: dict | None = None,
                   persona_max_tokens: int = 60):
    if spec in ("", "question"):
        return QuestionOpinions()
    if spec.startswith("polis:"):
        return PolisOpinions(spec.split(":", 1)[1])
    if spec == "persona":
        return PersonaOpinions(persona_backend, persona_options, persona_max_tokens)
    if spec == "hidden" or spec.startswith("hidden:"):
        return HiddenOpinions(spec)
    raise ValueError(f"unknown opinion source {spec!r} (use 'question', 'polis:DIR', 'persona' or 'hidden:SEED')")

