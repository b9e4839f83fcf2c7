"""Cheap, Django-free answers for a member who is not typing: a stance-based opinion built from the question, a
critique from the words the winner left out, and word-overlap (or random) ratings.

Used where no model may run: ``deliberation.takeover`` (a stand-in answers for a member who left) and the simulated
participants' cheap policies (``bots.policies``, ``bots.sources``). It sits in this low layer so that takeover
imports it downward; the model-backed sources and policies live in the top-layer ``bots`` app.
"""
from __future__ import annotations

import random
import re

WORD = re.compile(r"[a-zA-Z']+")
STOPWORDS = frozenset("""a an the and or but of to in on for with we should be is are it this that all
    not no do does our us they their there as at by from have has i my me you your so if than then
    more less would could will can its into about what which who""".split())
STANCES = ("for", "against", "mixed")


def _words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text) if w.lower() not in STOPWORDS and len(w) > 2}


def similarity(a: str, b: str) -> float:
    """Word-overlap (Jaccard) similarity of two texts, 0..1."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def _question_claim(question: str) -> str:
    """'Should we remove taxes on food?' -> 'we should remove taxes on food'."""
    q = question.strip().rstrip("?").strip()
    m = re.match(r"(?i)^(should|must|can|could|would|is|are|do|does)\s+(\w+)\s+(.*)$", q)
    if m:
        return f"{m.group(2)} {m.group(1).lower()} {m.group(3)}"
    return q[0].lower() + q[1:] if q else "this"


class QuestionOpinions:
    """Opinions written from the question text and a stance (the question's affirming/negating
    statements are not in the snapshot, so a bot builds its own)."""

    REASONS = {
        "for": ["it would make life fairer for people on low incomes",
                "the benefits clearly outweigh the costs",
                "it is simple, popular and easy to explain",
                "the current situation hurts the people with the least"],
        "against": ["the costs would fall on public services that everybody needs",
                    "it would help the wrong people more than those in need",
                    "there are better ways to reach the same goal",
                    "the side effects would be worse than the problem"],
        "mixed": ["it depends on how it is done and who pays for it",
                  "a partial or gradual version would be a sensible compromise",
                  "we should try it carefully and measure the results",
                  "both sides make fair points that deserve weight"],
    }

    def opinion(self, question: str, rng: random.Random) -> str:
        claim = _question_claim(question)
        stance = rng.choice(STANCES)
        reason, extra = rng.sample(self.REASONS[stance], 2)
        if stance == "for":
            return f"I agree that {claim}, because {reason}. Also, {extra}."
        if stance == "against":
            return f"I do not think {claim}, because {reason}. Also, {extra}."
        return f"I am unsure whether {claim}: {reason}, and {extra}."



def rate(candidates: list[dict], opinion: str, policy: str, rng: random.Random) -> tuple[list[dict], list[int]]:
    """Ratings (agreement, quality 1..7) for every candidate and a full ranking, best first, by the cheap policies:
    ``similarity`` (word overlap with ``opinion``) or ``random``."""
    if policy not in ("random", "similarity"):
        raise ValueError(f"stand-in rating policy {policy!r}: use 'random' or 'similarity'")
    scored = []
    for c in candidates:
        if policy == "random":
            agreement, quality = rng.randint(1, 7), rng.randint(1, 7)
            score = agreement + quality + rng.random()
        else:
            sim = similarity(opinion or "", c["text"])
            agreement = max(1, min(7, round(1 + 6 * min(1.0, sim * 3)) + rng.choice((-1, 0, 0, 1))))
            quality = max(1, min(7, rng.choice((3, 4, 5, 6)) + (1 if len(c["text"].split()) > 12 else 0)))
            score = sim + rng.random() * 1e-3
        scored.append((score, {"candidate_id": c["id"], "agreement": agreement, "quality": quality}))
    ratings = [r for _, r in scored]
    ranking = [r["candidate_id"] for _, r in sorted(scored, key=lambda s: -s[0])]
    return ratings, ranking


def critique_text(winner: str, opinion: str, rng: random.Random) -> str:
    missing = sorted(_words(opinion) - _words(winner))
    if missing:
        focus = ", ".join(rng.sample(missing, min(3, len(missing))))
        return f"The statement should say more about {focus}; it leaves out part of what I argued."
    return rng.choice(["The statement is fair but could be shorter and clearer.",
                       "It should acknowledge the concerns of people who disagree.",
                       "Good overall, but it needs a concrete proposal."])

