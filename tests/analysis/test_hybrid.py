"""The hybrid reward model (the default design): learning from ratings and texts, cold starts, checkpoints."""
import json

import numpy as np
import pytest

from analysis.reward.config import RewardConfig
from analysis.reward.data import RatingRecord
from analysis.reward.hybrid import HybridConfig, HybridRewardModel, Known, fit
from analysis.reward.model import embed_texts
from analysis.reward.score import from_trained, load_reward_model, score_matrix, score_records
from analysis.reward.train import train

FOR = ["Cycle lanes make the city safer for everyone.", "We need more protected bike lanes downtown.",
       "Bicycles should get their own lanes on main roads.", "Building cycle paths is money well spent.",
       "More bike lanes would cut traffic and pollution.", "The council should fund separated cycle tracks."]
AGAINST = ["Parking in the town centre should be free for drivers.", "Widen the ring road so cars move faster.",
           "Fuel duty is too high for motorists.", "Build a new multi-storey car park near the station.",
           "Speed cameras are just a tax on drivers.", "Motorways need more lanes for commuters by car."]
NEW_FOR = "Safe, protected cycling lanes should be built across the city."
NEW_AGAINST = "Car parking charges should be cut for motorists."


def camps(n_members=16, seed=0):
    """Half the members agree with the pro-cycling statements and disagree with the pro-driving ones; half the
    reverse. Each member rated a random 8 of the 12 statements."""
    rng = np.random.default_rng(seed)
    known = []
    for m in range(n_members):
        pro = m % 2 == 0
        for index in rng.choice(12, 8, replace=False):
            text = (FOR + AGAINST)[index]
            agrees = (index < 6) == pro
            known.append(Known(m, text, 1.0 if agrees else -1.0))
    return known


@pytest.fixture(scope="module")
def minilm():
    return embed_texts


def test_a_new_statement_is_scored_by_what_each_member_agreed_with(minilm):
    """Cold start: neither new statement was rated by anyone; the real MiniLM relates it to what each member
    rated before, so the cyclists are predicted to agree with the cycling one and the drivers with the other."""
    model = fit(camps(), embed=minilm, config=HybridConfig(seed=0))
    members = list(range(16))
    pro = np.array([m % 2 == 0 for m in members])
    p_for = model.predict(members, [NEW_FOR] * 16, embed=minilm)
    p_against = model.predict(members, [NEW_AGAINST] * 16, embed=minilm)
    assert p_for[pro].mean() > p_for[~pro].mean() + 0.1
    assert p_against[~pro].mean() > p_against[pro].mean() + 0.1
    assert np.all((p_for > 0) & (p_for < 1))
    # A member the model never saw, known only by ratings given after training (``extra``), is placed too.
    extra = [Known("newcomer", FOR[0], 1.0), Known("newcomer", AGAINST[1], -1.0), Known("newcomer", FOR[3], 1.0)]
    newcomer = model.predict(["newcomer", "newcomer"], [NEW_FOR, NEW_AGAINST], embed=minilm, extra=extra)
    assert newcomer[0] > newcomer[1]


def test_a_rated_statement_uses_the_other_members_ratings(minilm):
    known = camps()
    hidden = [(m, t) for m in range(16) for t in FOR + AGAINST if not any(k.member == m and k.text == t for k in known)]
    model = fit(known, embed=minilm)
    p = model.predict([m for m, _ in hidden], [t for _, t in hidden], embed=minilm)
    truth = np.array([(t in FOR) == (m % 2 == 0) for m, t in hidden])
    assert p[truth].mean() > p[~truth].mean() + 0.2
    description = model.describe()
    assert description["architecture"] == "hybrid" and description["known_ratings"] == len(known)
    assert set(description["warm_head"]["weights"]) >= {"stmt_rate", "item_cf", "text_personal"}


def test_checkpoint_round_trip_predicts_the_same(tmp_path, minilm):
    model = fit(camps(), embed=minilm, member_texts={0: "I cycle to work every day."},
                authors={FOR[0]: 0})
    folder = model.save(tmp_path / "hybrid", {"note": "test"})
    loaded, meta = HybridRewardModel.load(folder)
    assert meta == {"note": "test"}
    members, texts = [0, 1, 2, 3], [NEW_FOR, FOR[0], AGAINST[2], NEW_AGAINST]
    np.testing.assert_allclose(loaded.predict(members, texts, embed=minilm), model.predict(members, texts,
                                                                                           embed=minilm), atol=1e-5)
    payload = json.loads((folder / "hybrid.json").read_text())
    payload["format"] = 99
    (folder / "hybrid.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="format"):
        HybridRewardModel.load(folder)


def test_bad_input_is_refused_clearly(minilm):
    with pytest.raises(ValueError, match="no ratings"):
        fit([], embed=minilm)
    only_agree = [Known(m, FOR[m % 6], 1.0) for m in range(12)]
    model = fit(only_agree, embed=minilm)  # one class: predicts its smoothed rate, never crashes
    assert np.all(model.predict([0, 1], [FOR[0], NEW_FOR], embed=minilm) > 0.5)
    with pytest.raises(ValueError, match="same length"):
        model.predict([0], [FOR[0], FOR[1]], embed=minilm)
    with pytest.raises(ValueError, match="embed"):
        model.predict([0], ["a statement it never saw"])


def study_records():
    """Rating records of a study: members of two camps in groups of four rating four candidates (1..7)."""
    out = []
    for g in range(6):
        for position in range(4):
            member = f"p{g}-{position}"
            pro = position % 2 == 0
            opinion = "Cycling should be safer and easier." if pro else "Drivers need the road space."
            for c, text in enumerate([FOR[g % 6], AGAINST[g % 6], FOR[(g + 2) % 6], AGAINST[(g + 3) % 6]]):
                agrees = (text in FOR) == pro
                out.append(RatingRecord(group_id=g, member_id=member, round=1, question="Bike lanes?",
                                        opinion=opinion, candidate=text, candidate_id=(g, c),
                                        agreement=6 if agrees else 2))
    return out


def test_default_training_and_scoring_on_study_records(tmp_path):
    """The product path: train() picks the hybrid by default, checkpoints load through the same API as the
    neural ones, and score_matrix uses the members' opinions and earlier ratings."""
    from analysis.reward.model import load_checkpoint, save_checkpoint

    config = RewardConfig()
    assert config.architecture == "hybrid"
    records = study_records()
    result = train(config, records)
    assert result.summary["architecture"] == "hybrid" and result.summary["examples_seen"] == len(records)
    folder = save_checkpoint(result.model, result.tokenizer, tmp_path / "rm", {"config": config.to_dict()})
    model, tokenizer, meta = load_checkpoint(folder)
    assert isinstance(model, HybridRewardModel) and tokenizer is None and meta["config"]["architecture"] == "hybrid"
    rm = load_reward_model(folder)
    # New members, known by their opinion only.
    u = score_matrix(rm, "Bike lanes?", ["I cycle and want safe lanes.", "I drive and need the road."],
                     [NEW_FOR, NEW_AGAINST])
    assert u.shape == (2, 2) and np.all((u >= 1) & (u <= 7))
    # Members with earlier ratings in the study: their history decides.
    history = [RatingRecord(group_id=99, member_id="late", round=1, question="Bike lanes?", opinion="",
                            candidate=text, agreement=7 if text in FOR else 1) for text in FOR[:3] + AGAINST[:3]]
    late = score_matrix(rm, "Bike lanes?", [""], [NEW_FOR, NEW_AGAINST], member_ids=["late"], history=history)
    assert late[0, 0] > late[0, 1]
    same = score_records(from_trained(result.model, None, 256), records[:4])
    assert same.shape == (4,)
