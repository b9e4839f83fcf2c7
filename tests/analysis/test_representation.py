"""Minority representation: the math on hand-computed vectors, and the axis with real MiniLM embeddings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.representation import (
    GroupTexts,
    axis_position,
    convex_weights,
    embed,
    group_representation,
    minority_members,
    pooled_representation,
    representation_frame,
)

HABERMAS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "habermas" / \
    "230118_chinchilla_questions.json"


def test_axis_position_by_hand():
    affirm, negate = np.array([2.0, 2.0]), np.array([0.0, 0.0])
    # midpoint (1, 1), axis (2, 2), |axis|^2 = 8: position = 2 (x - (1, 1)) . (2, 2) / 8
    positions = axis_position(np.array([[2.0, 2.0], [0.0, 0.0], [2.0, 0.0], [3.0, 3.0], [1.5, 1.0]]), affirm, negate)
    assert positions == pytest.approx([1.0, -1.0, 0.0, 2.0, 0.25])
    with pytest.raises(ValueError):
        axis_position(np.ones((1, 2)), affirm, affirm)


def test_minority_by_the_sign_rule():
    sign = {"rule": "sign"}
    assert minority_members([0.5, 0.2, -0.3, 0.9], **sign).tolist() == [False, False, True, False]
    assert minority_members([-0.5, -0.2, 0.3], **sign).tolist() == [False, False, True]
    assert not minority_members([0.5, -0.5], **sign).any()  # a tie has no minority
    assert not minority_members([0.1, 0.4, 0.9], **sign).any()  # unanimous
    assert minority_members([0.5, 0.0, 0.4, -0.2], **sign).tolist() == [False, False, False, True]  # 0: no side


def test_minority_by_the_largest_gap():
    # Sorted 0.36 | 0.72 0.9 1.01: the largest gap (0.36) isolates the lowest, although all are positive.
    assert minority_members([0.9, 0.72, 1.01, 0.36]).tolist() == [False, False, False, True]
    # Sorted -0.89 -0.45 0.05 | 0.91: the top one.
    assert minority_members([-0.45, 0.91, -0.89, 0.05]).tolist() == [False, True, False, False]
    # Two of five on the low side.
    assert minority_members([-1.0, -0.8, 0.5, 0.6, 0.7]).tolist() == [True, True, False, False, False]
    assert not minority_members([-0.5, -0.4, 0.5, 0.6]).any()  # 2 vs 2: no minority
    assert not minority_members([0.5, 0.6, 0.7, 0.9]).any()  # the largest gap (0.2) is under min_gap: one side
    assert minority_members([0.5, 0.6, 0.7, 0.9], min_gap=0.15).tolist() == [False, False, False, True]
    assert not minority_members([0.3]).any()
    with pytest.raises(ValueError, match="rule"):
        minority_members([0.1, 0.2], rule="median")


def test_convex_weights_recover_known_weights_and_project_outside_points():
    rng = np.random.default_rng(0)
    sources = rng.normal(size=(4, 16))
    true = np.array([0.1, 0.45, 0.0, 0.45])
    weights, error = convex_weights(true @ sources, sources)
    assert weights == pytest.approx(true, abs=1e-5)
    assert error < 1e-4 and weights.sum() == pytest.approx(1.0)
    # Outside the hull: (1, 1) is closest to the midpoint of e1 and e2; (2, 0) to e1 itself.
    e = np.eye(2)
    assert convex_weights(np.array([1.0, 1.0]), e)[0] == pytest.approx([0.5, 0.5], abs=1e-6)
    weights, error = convex_weights(np.array([2.0, 0.0]), e)
    assert weights == pytest.approx([1.0, 0.0], abs=1e-6) and error == pytest.approx(1.0, abs=1e-5)
    assert convex_weights(np.array([3.0, 4.0]), np.array([[0.0, 0.0]]))[0].tolist() == [1.0]
    with pytest.raises(ValueError):
        convex_weights(np.ones(3), np.ones((2, 2)))


def test_group_representation_weight_on_the_minority():
    affirm, negate = np.array([1.0, 0.0, 0.0, 0.0, 0.0]), np.array([-1.0, 0.0, 0.0, 0.0, 0.0])
    # Three members affirm, one negates; each opinion also has its own direction so the fit is unique.
    opinions = np.array([[0.8, 1, 0, 0, 0], [0.6, 0, 1, 0, 0], [0.9, 0, 0, 1, 0], [-0.7, 0, 0, 0, 1]])
    winner = np.array([0.3, 0.2, 0.25, 0.25]) @ opinions
    result = group_representation(opinions, winner, affirm, negate)
    assert result.minority.tolist() == [False, False, False, True]
    assert result.minority_share == pytest.approx(0.25)
    assert result.minority_weight == pytest.approx(0.25, abs=1e-5)
    assert result.winner_position == pytest.approx(0.3 * 0.8 + 0.2 * 0.6 + 0.25 * 0.9 - 0.25 * 0.7)


def test_representation_frame_embeds_each_text_once_and_pools():
    vectors = {"A": [1.0, 0, 0, 0], "N": [-1.0, 0, 0, 0], "a1": [0.9, 1, 0, 0], "a2": [0.7, 0, 1, 0],
               "n1": [-0.8, 0, 0, 1], "w1": [0.8, 0.5, 0.5, 0.0], "w2": [0.8 / 3, 1 / 3, 1 / 3, 1 / 3]}
    calls = []

    def fake_embed(texts):  # a test double for the MiniLM step (the real one is tested below)
        calls.append(list(texts))
        return np.array([vectors[t] for t in texts])

    groups = [GroupTexts(1, "A", "N", {11: "a1", 12: "a2", 13: "n1"}, {1: "w1", 2: "w2"}),
              GroupTexts(2, "A", "N", {21: "a1"}, {1: "w1"}),  # one opinion: left out
              GroupTexts(3, "", "", {31: "a1", 32: "n1"}, {1: "w1"})]  # no statements: left out
    frame = representation_frame(groups, embed_fn=fake_embed)
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0])) == 7
    assert frame["round"].tolist() == [1, 2] and set(frame["group_id"]) == {1}
    assert frame["minority_share"].tolist() == pytest.approx([1 / 3, 1 / 3])
    assert frame["minority_weight"].tolist() == pytest.approx([0.0, 1 / 3], abs=1e-5)
    pooled = pooled_representation(frame, n_boot=50)
    assert set(pooled["measure"]) == {"minority weight", "minority share", "weight − share"}
    assert representation_frame([], embed_fn=fake_embed).empty


def test_pooled_interval_by_hand():
    frame = pd.DataFrame({"group_id": [1, 2], "round": [2, 2], "condition": "standard", "members": [4, 4],
                          "minority_members": [1, 1], "minority_share": [0.25, 0.25],
                          "minority_weight": [0.2, 0.4], "winner_position": 0.0, "fit_error": 0.0})
    pooled = pooled_representation(frame, n_boot=3000, seed=2).set_index("measure")
    assert pooled.loc["minority weight", "estimate"] == pytest.approx(0.3)
    assert pooled.loc["weight − share", "estimate"] == pytest.approx(0.05)
    # Resamples {1,1}, {2,2}, {1,2}: the difference is -0.05, 0.15 or 0.05.
    assert pooled.loc["weight − share", "low"] == pytest.approx(-0.05)
    assert pooled.loc["weight − share", "high"] == pytest.approx(0.15)


def test_real_minilm_places_opinions_on_their_statement_side():
    import torch

    torch.set_num_threads(1)
    rows = [r for r in json.loads(HABERMAS.read_text()) if r.get("affirming_statement") and r.get("split") == "train"]
    forms = ("I think that {s}", "In my view, {s}", "After thinking about it for a while, I believe that {s}")
    texts = []
    for r in rows[:12]:
        for statement in (r["affirming_statement"], r["negating_statement"]):
            texts += [f.format(s=statement[0].lower() + statement[1:]) for f in forms]
        texts += [r["affirming_statement"], r["negating_statement"]]
    vectors = embed(texts)
    assert vectors.shape == (len(texts), 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(len(texts)), abs=1e-5)
    per_question = 2 * len(forms) + 2
    for q in range(12):
        block = vectors[q * per_question:(q + 1) * per_question]
        affirming, negating = block[-2], block[-1]
        positions = axis_position(block[:-2], affirming, negating)
        agree, disagree = positions[:len(forms)], positions[len(forms):]
        assert (agree > 0).all(), rows[q]["affirming_statement"]
        # MiniLM reads "NOT" weakly, so framed negations drift towards the affirming side; they still
        # land below the same sentence built from the affirming statement.
        assert (disagree < agree).all(), rows[q]["negating_statement"]
        assert axis_position(affirming, affirming, negating)[0] == pytest.approx(1.0)
