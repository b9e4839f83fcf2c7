"""Reward model: pure data handling, a tiny model trained for a few steps (TRL style), checkpoints, scoring."""
import numpy as np
import pytest
import torch

from analysis.reward.config import RewardConfig
from analysis.reward.data import (
    RatingRecord,
    data_hash,
    member_batches,
    member_text,
    preference_pairs,
    split_by_group,
)
from analysis.reward.evaluate import baseline_predictions, ranking_metrics
from analysis.reward.model import load_checkpoint, save_checkpoint
from analysis.reward.score import from_trained, load_reward_model, score_matrix, score_pairs
from analysis.reward.train import train

OPINIONS = ["Food taxes hurt poor families; remove them.", "Keep the tax, it funds schools.",
            "Remove it on basics only, tax luxury food."]
CANDIDATES = ["Remove all taxes on food.", "Keep taxes on food to fund public services.",
              "Remove taxes on basic groceries but keep them on luxury food.", "We could not agree."]


def records(n_groups=3, round_=1):
    """Each member agrees most with the candidate closest to their opinion, and ranks accordingly."""
    liking = [[7, 1, 5, 2], [1, 7, 4, 2], [4, 2, 7, 1]]
    out = []
    for g in range(n_groups):
        for m, opinion in enumerate(OPINIONS):
            order = sorted(range(4), key=lambda c: -liking[m][c])
            for c, text in enumerate(CANDIDATES):
                out.append(RatingRecord(group_id=g, member_id=f"{g}-{m}", round=round_, question="Food taxes?",
                                        opinion=opinion, candidate=text, candidate_id=c, agreement=liking[m][c],
                                        rank=order.index(c) + 1, rating_id=len(out) + 1))
    return out


TINY = dict(architecture="cross", backbone="tiny-random", max_length=48, batch_size=12, learning_rate=2e-3, weight_decay=0.0,
            warmup_fraction=0.0, head_dropout=0.0)


def test_pairs_come_from_ranks_then_agreement_within_one_member():
    a = RatingRecord(1, "m", 1, "q", "o", "x", agreement=3, rank=1)
    b = RatingRecord(1, "m", 1, "q", "o", "y", agreement=6, rank=2)
    c = RatingRecord(1, "m", 1, "q", "o", "z", agreement=6)
    other = RatingRecord(1, "n", 1, "q", "o", "z", agreement=7)
    assert preference_pairs([a, b, c, other]) == [(0, 1), (2, 0)]  # rank beats agreement; b, c tie; no cross-member
    assert len(preference_pairs(records(1))) == 3 * 6


def test_batches_keep_members_together_and_are_deterministic():
    recs = records(4)
    batches = member_batches(recs, 8, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(recs)))
    assert all(len(b) <= 8 for b in batches)
    assert all(len({recs[i].member_key for i in b}) <= 2 for b in batches)  # 4 ratings per member, 8 per batch
    assert batches == member_batches(recs, 8, seed=1) and batches != member_batches(recs, 8, seed=2)


def test_split_is_by_group_never_by_row():
    recs = records(5)
    train_idx, val_idx = split_by_group(recs, 0.2, seed=0)
    assert {recs[i].group_id for i in train_idx}.isdisjoint({recs[i].group_id for i in val_idx})
    assert len({recs[i].group_id for i in val_idx}) == 1 and len(train_idx) + len(val_idx) == len(recs)
    assert split_by_group(records(1), 0.5, seed=0)[1] == []  # one group: nothing to hold out


def test_data_hash_ignores_order_but_not_content():
    recs = records(2)
    assert data_hash(recs) == data_hash(list(reversed(recs)))
    changed = [*recs[:-1], RatingRecord(**{**recs[-1].__dict__, "agreement": 3})]
    assert data_hash(changed) != data_hash(recs)


def test_member_text_includes_the_critique_only_when_there_is_one():
    assert "Critique" not in member_text("Q", "O")
    assert member_text("Q", "O", "too vague").endswith("Critique: too vague")


def test_tiny_model_loss_goes_down_and_every_parameter_changes():
    config = RewardConfig(**TINY, epochs=8)
    initial = {k: v.clone() for k, v in _fresh(config).state_dict().items()}
    result = train(config, records(3))
    assert result.steps == 8 * 3 and result.pairs_seen > 0
    first, last = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert last < first * 0.8, result.losses
    trained = result.model.state_dict()
    unchanged = [k for k, v in initial.items() if torch.equal(v, trained[k])]
    assert unchanged == []


def _fresh(config):
    from analysis.reward.model import build_model

    return build_model(config.backbone, head_dropout=config.head_dropout, seed=config.seed)


def test_training_is_deterministic_for_a_seed():
    config = RewardConfig(**{**TINY, "head_dropout": 0.1}, epochs=1)
    one, two = train(config, records(2)), train(config, records(2))
    assert one.losses == two.losses
    assert all(torch.equal(v, two.model.state_dict()[k]) for k, v in one.model.state_dict().items())
    other = train(RewardConfig(**{**TINY, "seed": 1}, epochs=1), records(2))
    assert other.losses != one.losses


def test_checkpoint_round_trip_and_score_matrix(tmp_path):
    config = RewardConfig(**TINY, epochs=2)
    result = train(config, records(2))
    meta = {"config": config.to_dict(), "data_hash": data_hash(records(2)), "metrics": {"x": 1}}
    save_checkpoint(result.model, result.tokenizer, tmp_path / "ckpt", meta)
    model, tokenizer, loaded_meta = load_checkpoint(tmp_path / "ckpt")
    assert loaded_meta == meta
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in result.model.state_dict().items())

    rm = load_reward_model(tmp_path / "ckpt")
    assert load_reward_model(tmp_path / "ckpt") is rm  # cached per folder
    u = score_matrix(rm, "Food taxes?", OPINIONS, CANDIDATES)
    assert u.shape == (3, 4) and np.all((u >= 1) & (u <= 7))
    same = score_matrix(from_trained(result.model, result.tokenizer, config.max_length), "Food taxes?", OPINIONS,
                        CANDIDATES)
    assert np.allclose(u, same, atol=1e-5)
    assert score_matrix(rm, "Food taxes?", OPINIONS, CANDIDATES, critiques=["a", "b", "c"]).shape == (3, 4)
    with pytest.raises(ValueError):
        score_matrix(rm, "q", OPINIONS, CANDIDATES, critiques=["only one"])
    # Scoring in bf16 (autocast) stays close to fp32.
    bf16 = score_matrix(load_reward_model(tmp_path / "ckpt", precision="bf16"), "Food taxes?", OPINIONS, CANDIDATES)
    assert np.allclose(bf16, u, atol=0.2)


def test_the_trained_tiny_model_learns_who_likes_what():
    config = RewardConfig(**TINY, epochs=15)
    result = train(config, records(3))
    rm = from_trained(result.model, result.tokenizer, config.max_length)
    recs = records(1)
    pred = score_pairs(rm, [member_text(r.question, r.opinion) for r in recs], [r.candidate for r in recs])
    metrics = ranking_metrics(recs, pred)
    assert metrics["pairwise_accuracy"] > 0.7 and metrics["n_pairs"] == 18


def test_metrics_and_baselines_by_hand():
    recs = records(1)
    truth = np.array([r.agreement for r in recs], dtype=float)
    perfect = ranking_metrics(recs, truth)
    assert perfect["pairwise_accuracy"] == 1.0 and perfect["spearman"] == 1.0 and perfect["mae"] == 0.0
    assert ranking_metrics(recs, 8 - truth)["pairwise_accuracy"] == 0.0
    assert ranking_metrics(recs, np.full(len(recs), 4.0))["pairwise_accuracy"] == 0.5
    base = baseline_predictions(records(2), recs, embed=lambda texts: np.eye(len(texts), 3))
    assert set(base) == {"random", "candidate_length", "embedding_cosine"}
    assert all(len(p) == len(recs) and np.all((p >= 1) & (p <= 7)) for p in base.values())


def test_minilm_backbone_loads_offline_and_trains_a_step():
    config = RewardConfig(architecture="cross", max_length=64, batch_size=4, max_steps=2, epochs=1)
    result = train(config, records(1))
    assert result.steps == 2
    u = score_matrix(from_trained(result.model, result.tokenizer, 64), "Food taxes?", OPINIONS[:2], CANDIDATES)
    assert u.shape == (2, 4)


def test_bi_encoder_learns_and_scores_each_text_once(tmp_path, monkeypatch):
    """The bi-encoder option: loss falls, it ranks each member's favourite first, the checkpoint keeps the
    architecture, and scoring N members x M candidates encodes N + M texts (not N x M pairs)."""
    from analysis.reward.model import BiEncoderReward

    config = RewardConfig(**{**TINY, "architecture": "bi"}, epochs=30)
    result = train(config, records(3))
    assert isinstance(result.model, BiEncoderReward)
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3]) * 0.8, result.losses
    rm = from_trained(result.model, result.tokenizer, config.max_length)
    u = score_matrix(rm, "Food taxes?", OPINIONS, CANDIDATES)
    assert u.shape == (3, 4) and np.all((u >= 1) & (u <= 7))
    assert [int(np.argmax(row)) for row in u] == [0, 1, 2]  # each member's best-liked candidate (records())

    # the pair-by-pair forward pass gives the same numbers as the deduplicated scoring path
    from analysis.reward.model import encode

    texts = [member_text("Food taxes?", o) for o in OPINIONS for _ in CANDIDATES]
    with torch.inference_mode():
        direct = result.model(**encode(result.tokenizer, texts, CANDIDATES * 3, config.max_length, "bi"))
    direct = 1 + 6 / (1 + np.exp(-direct.numpy().astype(np.float64)))
    assert np.allclose(direct.reshape(3, 4), u, atol=1e-4)

    calls = []
    embed = BiEncoderReward.embed
    monkeypatch.setattr(BiEncoderReward, "embed", lambda self, input_ids, **kw: calls.append(len(input_ids))
                        or embed(self, input_ids, **kw))
    score_matrix(rm, "Food taxes?", OPINIONS, CANDIDATES)
    assert sum(calls) == len(OPINIONS) + len(CANDIDATES)

    save_checkpoint(result.model, result.tokenizer, tmp_path / "bi", {"config": config.to_dict()})
    model, _, meta = load_checkpoint(tmp_path / "bi")
    assert isinstance(model, BiEncoderReward) and meta["config"]["architecture"] == "bi"
    assert np.allclose(score_matrix(load_reward_model(tmp_path / "bi"), "Food taxes?", OPINIONS, CANDIDATES), u,
                       atol=1e-5)
    with pytest.raises(ValueError, match="architecture"):
        RewardConfig(architecture="sideways")
