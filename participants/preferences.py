"""Hidden, consistent preferences for simulated participants (Django-free).

The closed-loop benchmark (``benchmarks/loop.py``) needs raters whose taste the system never sees and cannot
read off the features it models with: the reward model reads MiniLM embeddings, so a rater defined by MiniLM
similarity (the bots' ``embedding`` policy) would reward the system for agreeing with itself. These raters judge
a statement by

* **values it speaks to**: eight facets (fairness, freedom, safety, cost, community, evidence, environment, the
  future), each a hidden word list; a member has a weight per facet — the population's mean plus their own
  deviation — and a statement earns the weight of each facet it mentions (saturating at two mentions);
* **style**: a preferred length (words; a population preference times a personal factor), a dislike of absolute
  words ("must", "never", "everyone", ...), of repeated phrases (word trigrams said twice) and of a statement cut
  off mid-sentence, and a liking for inclusive "we";
* **idiosyncrasy**: a fixed pseudo-random taste per (member, statement text), from a hash, so two members never
  agree perfectly and nobody can predict it.

Everything is a pure function of (population seed, member key, text): the same member gives the same statement
the same rating every time (consistent), and no state is learned from what the system shows. The population's
parameters come from its seed alone; they were written down once, before any loop was run, and are not tuned to
make the system look good (``benchmarks/loop.py`` records the seed).

Members write opinions from the same hidden profile (their two strongest facets and, often, a style wish), as
people say what they care about; what they would rate highly is never stated outright.
"""
from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, field

WORD = re.compile(r"[a-z']+")

# Facet → word stems (a word matches a stem when it starts with it). Hidden from the system: nothing outside this
# module reads them.
FACETS: dict[str, tuple[str, ...]] = {
    "fairness": ("fair", "equal", "equit", "just", "rights", "discriminat", "poor", "inequal"),
    "freedom": ("free", "choice", "choos", "liberty", "individual", "autonom", "personal", "decide"),
    "safety": ("safe", "risk", "protect", "harm", "danger", "secur", "caution", "careful"),
    "cost": ("cost", "afford", "money", "tax", "budget", "price", "fund", "econom", "expens"),
    "community": ("communit", "together", "local", "neighbo", "famil", "society", "social", "people"),
    "evidence": ("evidence", "research", "data", "study", "studies", "expert", "scien", "proof", "facts"),
    "environment": ("environment", "climate", "nature", "green", "pollut", "planet", "sustainab", "energy"),
    "future": ("future", "children", "generation", "long-term", "long term", "young", "educat", "tomorrow"),
}
# What a member says about a facet they care about (opinions only; the rating reads the stems above).
FACET_PHRASES: dict[str, tuple[str, ...]] = {
    "fairness": ("it has to be fair to everyone, especially the poor", "equal rights matter most here",
                 "any rule must treat people justly and equally"),
    "freedom": ("people should be free to make their own choice", "individual liberty comes first for me",
                "let each person decide for themselves"),
    "safety": ("we need to protect people from harm", "the risks are serious and safety comes first",
               "we should be careful about the dangers"),
    "cost": ("we have to think about what it costs and who pays the tax", "it must be affordable for the budget",
             "the money matters: it has to be economically sensible"),
    "community": ("this is about our local community and families", "we should solve it together as a society",
                  "think of the people and neighbours affected"),
    "evidence": ("we should follow the evidence and the research", "decisions need data and expert studies",
                 "I want facts and scientific proof, not guesses"),
    "environment": ("the environment and the climate have to be considered", "think of nature and pollution",
                    "a sustainable, green approach for the planet"),
    "future": ("we owe it to our children and future generations", "think long-term about the young",
               "education and the future matter most"),
}
ABSOLUTES = frozenset({"must", "never", "always", "everyone", "everybody", "nobody", "all", "only", "completely",
                       "absolutely", "totally"})
STYLE_WISHES = {
    "short": "Keep it short.",
    "long": "I want the reasoning spelled out in full.",
    "absolutes": "Please no black-and-white claims.",
}


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def facet_hits(text: str) -> dict[str, int]:
    """How many words of ``text`` match each facet's stems (two-word stems count once per occurrence)."""
    tokens = words(text)
    joined = " ".join(tokens)
    hits = {}
    for facet, stems in FACETS.items():
        n = 0
        for stem in stems:
            if " " in stem:
                n += joined.count(stem)
            else:
                n += sum(1 for t in tokens if t.startswith(stem))
        hits[facet] = n
    return hits


def repeated_trigram_share(tokens: list[str]) -> float:
    """Share of word trigrams that already occurred earlier in the text (0 = no repetition)."""
    grams = [tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
    if not grams:
        return 0.0
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def _unit_hash(*parts: str) -> float:
    """A deterministic number in (0, 1) from the parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64


def _hash_normal(*parts: str) -> float:
    """A deterministic standard normal draw from the parts (Box–Muller on two hashed uniforms)."""
    u1, u2 = _unit_hash(*parts, "1"), _unit_hash(*parts, "2")
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


@dataclass(frozen=True)
class Member:
    key: str
    population_seed: int
    weights: dict[str, float]
    preferred_words: float
    absolutes_dislike: float
    we_liking: float
    noise: float = 0.35
    style_wish: str | None = None

    # --- judging a statement ------------------------------------------------------------------
    def style_utility(self, text: str) -> float:
        tokens = words(text)
        n = max(1, len(tokens))
        length = -0.8 * abs(math.log(n / self.preferred_words))
        absolutes = -self.absolutes_dislike * min(3, sum(1 for t in tokens if t in ABSOLUTES)) / 3
        repetition = -2.0 * repeated_trigram_share(tokens)
        cut_off = -0.6 if text.strip() and text.strip()[-1] not in ".!?\"'" else 0.0
        we = self.we_liking if ("we" in tokens or "us" in tokens or "our" in tokens) else 0.0
        return length + absolutes + repetition + cut_off + we

    def values_utility(self, text: str) -> float:
        hits = facet_hits(text)
        return sum(w * min(hits[f], 2) / 2 for f, w in self.weights.items())

    def utility(self, text: str) -> float:
        """The member's hidden liking of ``text`` (unbounded; higher is better). Deterministic."""
        return (self.values_utility(text) + self.style_utility(text)
                + self.noise * _hash_normal(str(self.population_seed), self.key, text))

    def agreement(self, text: str) -> int:
        """7-point agreement: 4 at utility 0, saturating towards 1 and 7."""
        return max(1, min(7, round(4 + 3 * math.tanh(self.utility(text) / 1.5))))

    def quality(self, text: str) -> int:
        """7-point quality: mostly style, a little of the member's idiosyncrasy."""
        u = self.style_utility(text) + 0.5 * self.noise * _hash_normal(str(self.population_seed), self.key, "q",
                                                                         text)
        return max(1, min(7, round(5 + 2 * math.tanh(u))))

    # --- saying what they think ---------------------------------------------------------------
    def opinion(self, question: str, rng: random.Random) -> str:
        """An opinion naming the member's two strongest values (and sometimes a style wish)."""
        top = sorted(self.weights, key=lambda f: -self.weights[f])[:2]
        parts = [rng.choice(FACET_PHRASES[f]) for f in top]
        text = f"On this question, {parts[0]}, and {parts[1]}."
        if self.style_wish and rng.random() < 0.5:
            text += " " + STYLE_WISHES[self.style_wish]
        return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Population:
    """Everyone's hidden taste, drawn from one seed: shared means plus personal deviations."""

    seed: int = 0
    facet_mean_sd: float = 0.7
    facet_personal_sd: float = 0.9
    mean_words: float = field(default=0.0)  # 0: drawn from the seed (30–60 words)

    def _means(self) -> tuple[dict[str, float], float, float, float]:
        rng = random.Random(f"population:{self.seed}")
        means = {f: rng.gauss(0.0, self.facet_mean_sd) for f in FACETS}
        mean_words = self.mean_words or rng.uniform(30, 60)
        absolutes = rng.uniform(0.2, 1.0)
        we = rng.uniform(0.0, 0.4)
        return means, mean_words, absolutes, we

    def member(self, key: str) -> Member:
        means, mean_words, absolutes, we = self._means()
        rng = random.Random(f"member:{self.seed}:{key}")
        weights = {f: m + rng.gauss(0.0, self.facet_personal_sd) for f, m in means.items()}
        preferred = mean_words * math.exp(rng.gauss(0.0, 0.3))
        dislike = max(0.0, absolutes + rng.gauss(0.0, 0.3))
        wish = "short" if preferred < 35 else "long" if preferred > 60 else ("absolutes" if dislike > 0.8 else None)
        return Member(key=key, population_seed=self.seed, weights=weights, preferred_words=preferred,
                      absolutes_dislike=dislike, we_liking=max(0.0, we + rng.gauss(0.0, 0.2)), style_wish=wish)


def parse_spec(spec: str) -> Population:
    """'hidden' or 'hidden:SEED' → the population (a clear ValueError otherwise)."""
    name, _, seed = spec.partition(":")
    if name != "hidden":
        raise ValueError(f"not a hidden-preference spec: {spec!r} (use 'hidden' or 'hidden:SEED')")
    try:
        return Population(seed=int(seed) if seed else 0)
    except ValueError:
        raise ValueError(f"hidden:SEED needs an integer seed, not {seed!r}") from None
