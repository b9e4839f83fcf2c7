"""Polis loading, vote hiding, the Polis-style baselines and the evaluation on a small real conversation."""
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.polis import (
    AGREE,
    DISAGREE,
    PASS,
    Vote,
    binary_metrics,
    evaluate_conversation,
    hide_votes,
    load_conversation,
    opinion_from_votes,
    participant_agree_rate,
    pca_knn,
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


def test_evaluation_on_real_votes_runs_fast_and_reports_everything():
    config = RewardConfig(backbone="tiny-random", max_length=64, epochs=1, batch_size=16)
    result = evaluate_conversation(load_conversation(LONDON), seed=0, config=config, max_train_examples=96)
    json.dumps(result)  # plain JSON
    assert set(result["results"]) == {"reward_model", "statement_agree_rate", "participant_agree_rate", "pca_knn"}
    assert result["votes"]["hidden"] == result["votes"]["hidden_agree"] + result["votes"]["hidden_disagree"] + \
        result["passes"]["n"]
    assert result["reward_model"]["train_examples"] == 96 and result["reward_model"]["steps"] >= 6
    # The Polis-style collaborative filter beats chance on real people.
    assert result["results"]["pca_knn"]["auc"] > 0.7
    again = evaluate_conversation(load_conversation(LONDON), seed=0, config=config, max_train_examples=96)
    assert again["results"] == result["results"]
