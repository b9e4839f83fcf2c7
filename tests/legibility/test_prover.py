"""Prover: prompts and roles, generation through the backend interface, rewards against a frozen verifier,
and the two improvement steps on the real SmolLM2-135M (expert iteration; one tiny GRPO step)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from generation.backends import get_backend
from legibility import verifier as vlib
from legibility.examples import default_data_dir, load_solutions_jsonl
from legibility.prover import (
    HELPFUL,
    ROLES,
    SNEAKY,
    MathProblem,
    ProverTrainConfig,
    assign_roles,
    generate_solutions,
    improve_prover,
    load_gsm8k_problems,
    load_prover,
    make_reward_function,
    render_prompt,
)
from legibility.rewards import compute_rewards

GSM8K = default_data_dir() / "gsm8k"


@pytest.fixture(scope="module")
def frozen_verifier():
    """A small real verifier (tiny random BERT, a few pairwise steps): enough to give varied scores."""
    torch.set_num_threads(1)
    examples = load_solutions_jsonl(GSM8K / "example_model_solutions.jsonl", limit_problems=10)
    verifier, _ = vlib.train_verifier(examples, vlib.VerifierConfig(backbone="tiny-random", max_length=64, epochs=1))
    return verifier


@pytest.fixture(scope="module")
def problems():
    return load_gsm8k_problems(GSM8K / "train.jsonl", limit=2)


def test_prompts_and_roles():
    helpful, sneaky = render_prompt("What is 2+2?", HELPFUL), render_prompt("What is 2+2?", SNEAKY)
    assert [m["role"] for m in helpful] == ["system", "user"] and helpful[1]["content"] == "What is 2+2?"
    assert "mistake" in sneaky[0]["content"] and "Do not point out" in sneaky[0]["content"]
    assert "mistake" not in helpful[0]["content"]
    with pytest.raises(ValueError, match="unknown prover role"):
        render_prompt("x", "evil")
    many = [MathProblem(str(i), "q", "#### 1") for i in range(400)]
    drawn = [role for _, role in assign_roles(many, roles=None, seed=3)]
    assert drawn == [role for _, role in assign_roles(many, roles=None, seed=3)]  # seeded
    assert 0.4 < drawn.count(HELPFUL) / len(drawn) < 0.6  # each role with probability ½
    assert [r for _, r in assign_roles(many[:2], roles=ROLES, seed=0)] == [HELPFUL, SNEAKY, HELPFUL, SNEAKY]


def test_generate_solutions_through_the_backend_interface(problems):
    samples = generate_solutions(problems, roles=ROLES, samples_per_role=2, backend=get_backend("extractive"),
                                 seed=7, max_new_tokens=32)
    assert len(samples) == 8
    assert [s.role for s in samples[:4]] == [HELPFUL, HELPFUL, SNEAKY, SNEAKY]
    assert [s.seed for s in samples] == list(range(7, 15))
    assert all(s.problem_id == problems[i // 4].problem_id for i, s in enumerate(samples))
    assert not any(s.correct for s in samples)  # the extractive stand-in finds no opinions here: empty text


def test_reward_function_matches_rewards_module(frozen_verifier, problems):
    p = problems[0]
    reward = make_reward_function(frozen_verifier, "src")
    answer = p.answer.split("####")[-1].strip()
    texts = [f"So the total is {answer}.", "So the total is 1.", f"The answer is {answer}.", "I think 3."]
    roles = [HELPFUL, HELPFUL, SNEAKY, SNEAKY]
    got = reward(prompts=[render_prompt(p.question, r) for r in roles],
                 completions=[[{"role": "assistant", "content": t}] for t in texts],
                 problem_id=[p.problem_id] * 4, problem=[p.question] * 4, answer=[p.answer] * 4, role=roles)
    scores = vlib.score(frozen_verifier, [p.question] * 4, texts)
    expected = compute_rewards("src", scores=scores, correct=[True, False, True, False],
                               helpful=[True, True, False, False], problems=[p.problem_id] * 4)
    np.testing.assert_allclose(got, expected)
    assert reward.__name__ == "src_reward"


def _changed_parameters(path) -> int:
    trained, _ = load_prover(path)
    base, _ = load_prover(None)
    base_state = base.state_dict()
    return sum(not torch.equal(t, base_state[name]) for name, t in trained.state_dict().items())


@pytest.mark.model
def test_expert_iteration_step(frozen_verifier, problems, tmp_path):
    torch.set_num_threads(1)
    config = ProverTrainConfig(samples_per_problem=2, max_completion_length=16, learning_rate=1e-4,
                               min_reward=None, seed=0)
    reported = []
    update = improve_prover(method="expert_iteration", problems=problems, verifier=frozen_verifier,
                            output_dir=tmp_path / "ei", config=config, progress=lambda *a: reported.append(a))
    assert [r[:2] for r in reported] == [(1, 2), (2, 2)]
    log = json.loads((update.path / "training_log.json").read_text())
    assert log["method"] == "expert_iteration" and log["n_samples"] == 4  # 2 problems × 1 drawn role × k=2
    assert log["n_kept"] == 2 and len(log["sft_losses"]) == 2 and all(np.isfinite(log["sft_losses"]))
    assert {k["role"] for k in log["kept"]} <= set(ROLES)
    assert _changed_parameters(update.path) > 0


@pytest.mark.model
def test_one_grpo_step_changes_the_weights(frozen_verifier, problems, tmp_path):
    """TRL GRPOTrainer, one step: 2 prompts × 2 generations of 16 tokens (≈30 s on one CPU thread)."""
    torch.set_num_threads(1)
    config = ProverTrainConfig(max_steps=1, num_generations=2, prompts_per_step=2, max_completion_length=16,
                               learning_rate=1e-4, temperature=1.0, seed=0)
    reported = []
    update = improve_prover(method="grpo", problems=problems, verifier=frozen_verifier,
                            output_dir=tmp_path / "grpo", config=config, progress=lambda *a: reported.append(a))
    assert update.log["steps"] == 1 and [r[:2] for r in reported] == [(1, 1)]
    step = update.log["log_history"][0]
    assert np.isfinite(step["rewards/src_reward/mean"]) and step["grad_norm"] > 0
    assert _changed_parameters(update.path) > 0


def test_bad_requests_are_refused(frozen_verifier, tmp_path):
    with pytest.raises(ValueError, match="no problems"):
        improve_prover(problems=[], verifier=frozen_verifier, output_dir=tmp_path)
    with pytest.raises(ValueError, match="no numeric reference"):
        improve_prover(problems=[MathProblem("x", "q", "none")], verifier=frozen_verifier, output_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown reward"):  # refused before any model is loaded
        improve_prover(problems=[MathProblem("x", "q", "#### 3")], verifier=frozen_verifier, output_dir=tmp_path,
                       config=ProverTrainConfig(reward="shiny"))
    with pytest.raises(ValueError, match="unknown method"):
        improve_prover(method="ppo", problems=[MathProblem("x", "q", "#### 3")], verifier=frozen_verifier,
                       output_dir=tmp_path / "ppo")
    with pytest.raises(FileNotFoundError):
        load_prover(tmp_path / "nothing")
