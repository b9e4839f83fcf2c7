"""Polis loading, vote hiding, the Polis-style baselines and the evaluation on a small real conversation."""
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.polis import (
    AGREE,
    DISAGREE,
    PASS,
    SPLITS,
    Vote,
    binary_metrics,
    evaluate_conversation,
    hide_votes,
    load_conversation,
    opinion_from_votes,
    participant_agree_rate,
    pca_knn,
    predict_hidden,
    split_votes,
    statement_agree_rate,
)
from analysis.reward.config import RewardConfig

POLIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "polis"
LONDON = POLIS / "london.youth.policing"  # 26 participants, 36 statements, ~640 votes

assert LONDON.exists(), "the shared data folder (../shared/data/polis) is expected beside the project"


def write_conversation(folder: Path) -> Path:
    """A made-up conversation in the export format: two camps, a repeated vote, a quoted comma."""
    folder.mkdir()
    (folder / "summary.csv").write_text('topic,"Parks, or parking?"\nurl,https://pol.is/x\nconversation-description,\n')
    comments = ["timestamp,datetime,comment-id,author-id,agrees,disagrees,moderated,comment-body"]
    for c in range(6):
        comments.append(f'{c},d,{c},{c % 2},0,0,1,"Statement {c}, about {"parks" if c % 2 else "parking"}"')
    (folder / "comments.csv").write_text("\n".join(comments) + "\n")
    votes = ["timestamp,datetime,comment-id,voter-id,vote"]
    for voter in range(20):
        for c in range(6):
            vote = 1 if (c % 2) == (voter % 2) else -1
            votes.append(f"{100 + voter * 10 + c},d,{c},{voter},{vote}")
    votes.append("1,d,0,0,1")  # an earlier vote that voter 0 later changed: the later one counts
    (folder / "votes.csv").write_text("\n".join(votes) + "\n")
    return folder


def test_loads_an_export_and_keeps_each_voters_latest_vote(tmp_path):
    conversation = load_conversation(write_conversation(tmp_path / "parks"))
    assert conversation.topic == "Parks, or parking?" and conversation.name == "parks"
    assert len(conversation.votes) == 120 and len(conversation.comments) == 6
    assert next(v for v in conversation.votes if (v.voter_id, v.comment_id) == (0, 0)).vote == AGREE


def test_loads_the_real_london_conversation():
    conversation = load_conversation(LONDON)
    assert conversation.topic.startswith("What is the best way to engage more young people")
    pairs = [(v.voter_id, v.comment_id) for v in conversation.votes]
    assert len(pairs) == len(set(pairs)) > 600
    assert {v.vote for v in conversation.votes} == {AGREE, PASS, DISAGREE}


def test_hiding_is_seeded_and_by_participant_statement_pair():
    votes = load_conversation(LONDON).votes
    visible, hidden = hide_votes(votes, 0.2, seed=3)
    assert len(hidden) == round(0.2 * len(votes)) and len(visible) + len(hidden) == len(votes)
    assert not {(v.voter_id, v.comment_id) for v in visible} & {(h.voter_id, h.comment_id) for h in hidden}
    assert hide_votes(votes, 0.2, seed=3) == (visible, hidden) and hide_votes(votes, 0.2, seed=4)[1] != hidden


def test_baselines_by_hand():
    visible = [Vote(1, 10, AGREE), Vote(2, 10, AGREE), Vote(3, 10, DISAGREE), Vote(1, 11, DISAGREE)]
    hidden = [Vote(3, 11, AGREE)]
    assert statement_agree_rate(visible, hidden).tolist() == [1 / 3]  # (0 + 1) / (1 + 2)
    assert participant_agree_rate(visible, hidden).tolist() == [1 / 3]
    assert binary_metrics([Vote(1, 1, AGREE), Vote(1, 2, DISAGREE), Vote(1, 3, PASS)],
                          np.array([0.9, 0.2, 0.5])) == {"accuracy": 1.0, "auc": 1.0}


def test_pca_knn_finds_the_camps(tmp_path):
    conversation = load_conversation(write_conversation(tmp_path / "parks"))
    visible, hidden = hide_votes(conversation.votes, 0.2, seed=0)
    scores = pca_knn(visible, hidden, k=3)
    assert binary_metrics(hidden, scores)["accuracy"] == 1.0
    # The statement's agree rate is no help here: every statement splits the room in half.
    assert binary_metrics(hidden, statement_agree_rate(visible, hidden))["auc"] < 0.8


def test_opinion_is_built_from_other_votes_only():
    conversation = load_conversation(LONDON)
    voter = conversation.votes[0].voter_id
    own = [v for v in conversation.votes if v.voter_id == voter]
    import random

    text = opinion_from_votes(own, conversation.comments, exclude=own[0].comment_id, per_side=50,
                              rng=random.Random(0))
    assert conversation.comments[own[0].comment_id].text not in text.split(" / ")
    assert text.startswith("I agree:") or text.startswith("I disagree:")
    assert opinion_from_votes([], conversation.comments, exclude=0, per_side=3, rng=random.Random(0)) == \
        "No other votes."


@pytest.fixture(scope="module")
def minilm():
    from analysis.reward.model import embed_texts

    cache = {}

    def embed(texts):
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, embed_texts(missing), strict=True))
        return np.stack([cache[t] for t in texts])

    return embed


def test_splits_hide_votes_or_whole_statements():
    votes = load_conversation(LONDON).votes
    for split in SPLITS:
        visible, hidden = split_votes(votes, split, 0.2, seed=3)
        assert sorted(visible + hidden, key=lambda v: (v.voter_id, v.comment_id)) == list(votes)
        assert split_votes(votes, split, 0.2, seed=3) == (visible, hidden)  # seeded
    visible, hidden = split_votes(votes, "statements", 0.2, seed=3)
    hidden_statements = {h.comment_id for h in hidden}
    assert not hidden_statements & {v.comment_id for v in visible}
    assert len(hidden_statements) == round(0.2 * len({v.comment_id for v in votes}))
    visible, hidden = split_votes(votes, "votes", 0.2, seed=3)
    assert len(hidden) == round(0.2 * len(votes)) and {h.comment_id for h in hidden} <= {v.comment_id for v in visible}
    with pytest.raises(ValueError, match="split"):
        split_votes(votes, "members", 0.2, seed=0)


@pytest.mark.parametrize("split", SPLITS)
def test_no_hidden_vote_reaches_training_or_a_baseline(split, minilm):
    """Flip every hidden vote: if any of it reached a fit, some prediction would change."""
    conversation = load_conversation(LONDON)
    visible, hidden = split_votes(conversation.votes, split, 0.2, seed=0)
    flipped = [Vote(h.voter_id, h.comment_id, {AGREE: DISAGREE, DISAGREE: AGREE, PASS: AGREE}[h.vote]) for h in hidden]
    ids = sorted(conversation.comments)
    embeddings = dict(zip(ids, minilm([conversation.comments[c].text for c in ids]), strict=True))
    first, _ = predict_hidden(conversation, visible, hidden, embed=minilm, embeddings=embeddings, split=split)
    second, _ = predict_hidden(conversation, visible, flipped, embed=minilm, embeddings=embeddings, split=split)
    assert set(first) == set(second) and "reward_model" in first
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # ...and the visible votes do matter: flipping them changes the model's predictions.
    turned = [Vote(v.voter_id, v.comment_id, -v.vote) for v in visible]
    third, _ = predict_hidden(conversation, turned, hidden, embed=minilm, embeddings=embeddings, split=split)
    assert not np.allclose(first["reward_model"], third["reward_model"])


def test_evaluation_on_real_votes_reports_everything_per_split(minilm):
    conversation = load_conversation(LONDON)
    votes = evaluate_conversation(conversation, seed=0, split="votes", embed=minilm)
    json.dumps(votes)  # plain JSON
    assert set(votes["results"]) == {"reward_model", "statement_agree_rate", "participant_agree_rate", "pca_knn",
                                     "combined_agree_rate", "text_knn"}
    assert votes["votes"]["hidden"] == votes["votes"]["hidden_agree"] + votes["votes"]["hidden_disagree"] + \
        votes["passes"]["n"]
    assert 0.5 <= votes["majority_class_accuracy"] <= 1
    # On real people, the model that reads the other votes and the texts beats chance clearly.
    assert votes["results"]["reward_model"]["auc"] > 0.75
    assert votes["results"]["pca_knn"]["auc"] > 0.7
    assert votes["reward_model"]["architecture"] == "hybrid" and votes["reward_model"]["known_ratings"] == \
        votes["votes"]["visible"]
    statements = evaluate_conversation(conversation, seed=0, split="statements", embed=minilm)
    assert set(statements["results"]) == {"reward_model", "participant_agree_rate", "text_knn"}
    assert statements["hidden_statements"] == round(0.2 * statements["statements"])
    again = evaluate_conversation(conversation, seed=0, split="statements", embed=minilm)
    assert again["results"] == statements["results"]


def test_neural_variants_still_run_beside_the_default():
    config = RewardConfig(backbone="tiny-random", max_length=64, epochs=1, batch_size=16)
    result = evaluate_conversation(load_conversation(LONDON), seed=0, config=config, max_train_examples=96,
                                   variants=("cross",), embed=_hash_embed)
    assert set(result["variants"]) == {"cross"}
    assert result["variants"]["cross"]["model"]["train_examples"] == 96
    assert result["variants"]["cross"]["auc"] is not None


def _hash_embed(texts):
    """A fast deterministic stand-in embedding (unit vectors from the words) for tests of the plumbing."""
    out = np.zeros((len(texts), 64))
    for n, text in enumerate(texts):
        for word in text.lower().split():
            out[n, sum(map(ord, word)) % 64] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_evaluate_polis_command_refuses_bad_options(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not a Polis export"):
        call_command("evaluate_polis", str(tmp_path))
    with pytest.raises(CommandError, match="variants"):
        call_command("evaluate_polis", str(LONDON), "--variants", "gpt")
    with pytest.raises(CommandError, match="hidden-fraction"):
        call_command("evaluate_polis", str(LONDON), "--hidden-fraction", "1.5")
