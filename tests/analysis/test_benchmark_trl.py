"""benchmarks/reward.py, training side by side with TRL: the preference pairs -> RewardTrainer dataset
conversion (pure, then tokenised as the project's cross-encoder reads a record) and one real RewardTrainer
step on all-MiniLM-L6-v2. No timing assertions."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from analysis.reward.data import RatingRecord, member_text, preference_pairs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("reward_benchmark", ROOT / "benchmarks" / "reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def records() -> list[RatingRecord]:
    q = "Should the city tax sugary drinks?"
    return [
        RatingRecord("g", "ann", 1, q, "Taxes hurt the poor.", "No tax; fund water fountains.", agreement=7),
        RatingRecord("g", "ann", 1, q, "Taxes hurt the poor, mostly.", "A tax of 20 cents a litre.", agreement=2),
        RatingRecord("g", "ann", 1, q, "Taxes hurt the poor.", "A tax, refunded to poor households.", agreement=5),
        RatingRecord("g", "bob", 1, q, "Sugar is a health crisis.", "A tax of 20 cents a litre.", agreement=6,
                     critique="Too timid."),
        RatingRecord("g", "bob", 1, q, "Sugar is a health crisis.", "No tax; fund water fountains.", agreement=6),
        RatingRecord("g", "cat", 1, q, "No view.", "A tax of 20 cents a litre.", agreement=4),
    ]


def test_rows_are_the_projects_pairs_winner_first(bench):
    recs = records()
    rows = bench.trl_examples(recs)
    pairs = preference_pairs(recs)
    assert len(rows) == len(pairs) == 3  # ann orders 3 candidates; bob ties; cat rated one
    for row, (winner, loser) in zip(rows, pairs, strict=True):
        w, lo = recs[winner], recs[loser]
        assert w.agreement > lo.agreement and w.member_id == lo.member_id
        assert row == {"chosen_member": member_text(w.question, w.opinion, w.critique),
                       "chosen_candidate": w.candidate,
                       "rejected_member": member_text(lo.question, lo.opinion, lo.critique),
                       "rejected_candidate": lo.candidate}
    chosen = {r["chosen_candidate"] for r in rows}
    assert chosen == {"No tax; fund water fountains.", "A tax, refunded to poor households."}
    assert bench.trl_examples(recs, [(1, 0)])[0]["chosen_candidate"] == recs[1].candidate  # given pairs are kept


def test_dataset_holds_the_cross_encoder_token_ids(bench):
    from analysis.reward.model import MINILM, encode, load_tokenizer

    recs, tokenizer = records(), load_tokenizer(MINILM)
    rows = bench.trl_examples(recs)
    dataset = bench.trl_dataset(rows, tokenizer, max_length=24)
    assert dataset.column_names == ["chosen_ids", "rejected_ids"] and len(dataset) == len(rows)
    for row, item in zip(rows, dataset, strict=True):
        for side in ("chosen", "rejected"):
            ids = encode(tokenizer, [row[f"{side}_member"]], [row[f"{side}_candidate"]], 24)["input_ids"][0]
            assert item[f"{side}_ids"] == ids.tolist()  # one row, so no padding
            assert len(item[f"{side}_ids"]) <= 24
            assert item[f"{side}_ids"].count(tokenizer.sep_token_id) == 2  # [CLS] member [SEP] candidate [SEP]


def test_one_reward_trainer_step_on_minilm(bench, tmp_path):
    from analysis.reward.config import RewardConfig
    from analysis.reward.model import MINILM, load_tokenizer

    tokenizer = load_tokenizer(MINILM)
    dataset = bench.trl_dataset(bench.trl_examples(records()), tokenizer, max_length=32)
    config = RewardConfig(architecture="cross", max_length=32, batch_size=2, max_steps=1)
    trainer = bench.trl_trainer(dataset, tokenizer, config, str(tmp_path))
    assert trainer.args.bf16 is False and trainer.args.activation_checkpointing is False
    assert trainer.args.gradient_checkpointing is False  # TRL turns it on by default
    output = trainer.train()
    assert output.global_step == 1 and output.training_loss > 0
