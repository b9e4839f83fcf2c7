"""Hidden-preference simulated raters (participants/preferences.py) and the bots' ``hidden:SEED`` policy: consistent,
individual, shared in part across a population, and not something MiniLM similarity reproduces."""
from __future__ import annotations

import random

import pytest

from bots.policies import make_scorer, rate
from bots.sources import HiddenOpinions, opinion_source
from participants.preferences import FACETS, Population, facet_hits, parse_spec, repeated_trigram_share

QUESTION = "Should cities ban cars from their centres?"
STATEMENTS = [
    "We agree that any plan must be fair to people on low incomes and based on evidence from research.",
    "We think the climate and nature matter, so a green and sustainable centre would protect our children.",
    "We think that we think that we think that cars are cars.",
    "Everyone must always drive",
    "We should decide together, as a local community, while keeping the costs affordable for families.",
]


def test_a_member_rates_the_same_statement_the_same_way_every_time():
    a = Population(seed=3).member("run:1")
    b = Population(seed=3).member("run:1")
    for text in STATEMENTS:
        assert a.utility(text) == b.utility(text)
        assert a.agreement(text) == b.agreement(text) and 1 <= a.agreement(text) <= 7
        assert 1 <= a.quality(text) <= 7


def test_members_differ_and_populations_differ():
    population = Population(seed=0)
    members = [population.member(f"r:{i}") for i in range(12)]
    orders = {tuple(sorted(range(len(STATEMENTS)), key=lambda j: -m.utility(STATEMENTS[j]))) for m in members}
    assert len(orders) > 3  # individual taste, not one ranking for everybody
    assert Population(seed=0)._means() != Population(seed=1)._means()


def test_the_population_shares_part_of_its_taste():
    """Members of one population agree with each other more than members of independent populations do:
    the shared facet means are what a reward model can learn from earlier groups."""
    import numpy as np

    def utilities(pop_seed: int, key: str) -> np.ndarray:
        return np.array([Population(seed=pop_seed).member(key).values_utility(t) for t in STATEMENTS])

    within = [np.corrcoef(utilities(5, f"x:{i}"), utilities(5, f"y:{i}"))[0, 1] for i in range(30)]
    across = [np.corrcoef(utilities(5, f"x:{i}"), utilities(6 + i, f"y:{i}"))[0, 1] for i in range(30)]
    assert np.mean(within) > np.mean(across) + 0.1


def test_style_counts_repetition_cut_off_sentences_and_absolutes():
    member = Population(seed=0).member("k:0")
    assert repeated_trigram_share("we think that we think that".split()) > 0.2
    assert member.style_utility("We think that we think that we think that cars are cars.") < \
        member.style_utility("We think that cars in the centre need a fair plan that people can accept.")
    assert member.style_utility("We think cars in the centre need a plan") < \
        member.style_utility("We think cars in the centre need a plan.")


def test_facets_match_word_stems():
    hits = facet_hits("Fairness and equality; research data and expert studies.")
    assert hits["fairness"] == 2 and hits["evidence"] == 4 and hits["cost"] == 0
    assert set(hits) == set(FACETS)


def test_opinions_name_the_members_strongest_values():
    member = Population(seed=2).member("o:1")
    top = sorted(member.weights, key=lambda f: -member.weights[f])[:2]
    text = member.opinion(QUESTION, random.Random(0))
    hits = facet_hits(text)
    assert all(hits[f] > 0 for f in top), (top, text)


def test_hidden_policy_rates_through_the_bots_rate_function():
    policy = "hidden:4"
    candidates = [{"id": i + 10, "text": t} for i, t in enumerate(STATEMENTS)]
    ratings, ranking = rate(candidates, "", policy, random.Random(0), question=QUESTION, member_key="run:7")
    member = Population(seed=4).member("run:7")
    assert [r["agreement"] for r in ratings] == [member.agreement(t) for t in STATEMENTS]
    assert [r["quality"] for r in ratings] == [member.quality(t) for t in STATEMENTS]
    assert ranking == [10 + j for j in sorted(range(len(STATEMENTS)), key=lambda j: (-member.utility(STATEMENTS[j]), j))]
    again, _ = rate(candidates, "", policy, random.Random(99), question=QUESTION, member_key="run:7")
    assert again == ratings  # the rng plays no part: the taste is fixed
    other, _ = rate(candidates, "", policy, random.Random(0), question=QUESTION, member_key="run:8")
    assert other != ratings


def test_hidden_opinion_source_and_bad_specs():
    source = opinion_source("hidden:1")
    assert isinstance(source, HiddenOpinions)
    text = source.opinion_for("r:0", QUESTION, random.Random(0))
    assert "cities" in text.lower() or "cars" in text.lower()
    for bad in ("hidden:x", "hiddenx"):
        with pytest.raises(ValueError):
            make_scorer(bad)
    with pytest.raises(ValueError, match="integer seed"):
        parse_spec("hidden:abc")


def test_hidden_taste_is_not_minilm_similarity():
    """The raters are not the bots' 'embedding' policy in disguise: across many (opinion, statement) pairs the
    hidden agreement and the MiniLM cosine of the member's opinion and the statement rank differently."""
    import numpy as np
    from scipy.stats import spearmanr

    from analysis.reward.model import embed_texts

    population = Population(seed=0)
    members = [population.member(f"m:{i}") for i in range(8)]
    opinions = [m.opinion(QUESTION, random.Random(i)) for i, m in enumerate(members)]
    vectors = embed_texts(opinions + STATEMENTS)
    op, st = vectors[: len(opinions)], vectors[len(opinions):]
    cos = (op @ st.T).ravel()
    hidden = np.array([[m.utility(t) for t in STATEMENTS] for m in members]).ravel()
    rho = spearmanr(cos, hidden).correlation
    assert rho < 0.9, rho
