"""The prover of a legibility study: one model, two roles chosen by system prompt, improved against a frozen verifier.

- Roles (RESEARCH.md §2): **helpful** solves correctly; **sneaky** makes a subtle error that changes the
  final answer and does not point it out.
- ``generate_solutions`` samples solutions through the project's one generation interface
  (``generation.backends``): the embedded SmolLM2 for the base prover, or ``prover_backend(path)`` — the
  same embedded decoding loop over a trained prover's weights.
- ``improve_prover`` trains the prover against a frozen verifier with a reward from ``rewards.py`` (SRC by
  default), the verifier's scores and the grader's correctness:
  ``method="grpo"``: TRL's GRPOTrainer (on GPU when there is one; a few tiny steps on CPU);
  ``method="expert_iteration"``: sample k per (problem, role), keep the best by the chosen reward
  (``ProverTrainConfig.reward``: SRC by default, CGC or Goodharting), fine-tune on the kept solutions with a
  plain causal-LM loss — enough for CPU-only users.
  Both save a transformers model folder (+ ``training_log.json``) and return where.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from generation.backends import ChatMessage, GenerationRequest, get_backend
from generation.prompts import TEMPLATES as PROMPT_TEMPLATES
from generation.prompts import PromptTemplate as PromptSpec
from generation.prompts import prompt_hash

from .grading import extract_reference_answer, grade
from .rewards import REWARDS, compute_rewards
from .verifier import VerifierModel, score

HELPFUL, SNEAKY = "helpful", "sneaky"
ROLES = (HELPFUL, SNEAKY)
# The prompts are versioned templates (generation.prompts; editable in the admin as PromptTemplate rows of kind
# prover_helpful / prover_sneaky). This module uses the code's defaults unless given a template.
TEMPLATE_KINDS = {HELPFUL: "prover_helpful", SNEAKY: "prover_sneaky"}


def default_template(role: str) -> PromptSpec:
    return PROMPT_TEMPLATES[TEMPLATE_KINDS[_check_role(role)]]


SYSTEM_PROMPTS = {role: PROMPT_TEMPLATES[kind].system for role, kind in TEMPLATE_KINDS.items()}  # the defaults
Progress = Callable[[int, int, float], None]  # (step, total, loss; GRPO reports the mean reward instead)


@dataclass(frozen=True)
class MathProblem:
    problem_id: str
    question: str
    answer: str  # the reference: a GSM8K answer text ending in "#### N", or just "N"


@dataclass(frozen=True)
class ProverSample:
    problem_id: str
    problem: str
    role: str
    solution: str
    correct: bool
    seed: int
    model_id: str
    provenance: dict = field(default_factory=dict, compare=False)


def load_gsm8k_problems(path: str | Path, *, limit: int | None = None) -> list[MathProblem]:
    """Problems of a GSM8K split file (``{"question", "answer"}`` per line)."""
    from .examples import problem_id

    problems = []
    with Path(path).open() as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                problems.append(MathProblem(problem_id(row["question"]), row["question"], row["answer"]))
            if limit is not None and len(problems) >= limit:
                break
    return problems


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown prover role {role!r}; known: {', '.join(ROLES)}")
    return role


def render_prompt(problem: str, role: str, template: PromptSpec | None = None) -> list[dict[str, str]]:
    """The chat messages a prover sees for ``problem`` in ``role`` (the format TRL's datasets expect), from
    the role's template (``generation.prompts`` default unless given)."""
    template = template or default_template(role)
    messages = [{"role": "system", "content": template.system},
                {"role": "user", "content": template.user.format(problem=problem.strip())}]
    if template.response_prefix:
        messages.append({"role": "assistant", "content": template.response_prefix})
    return messages


def prover_messages(problem: str, role: str, template: PromptSpec | None = None) -> tuple[ChatMessage, ...]:
    """``render_prompt`` as the generation interface's messages."""
    return tuple(ChatMessage(m["role"], m["content"]) for m in render_prompt(problem, role, template))


def assign_roles(problems: Sequence[MathProblem], *, roles: Sequence[str] | None, seed: int) -> list[tuple]:
    """(problem, role) jobs: every listed role for each problem, or (``roles=None``) one role drawn with
    probability ½ per problem, seeded — the paper's protocol."""
    if roles is None:
        rng = random.Random(seed)
        return [(p, rng.choice(ROLES)) for p in problems]
    return [(p, _check_role(r)) for p in problems for r in roles]


def generate_solutions(problems: Sequence[MathProblem], *, roles: Sequence[str] | None = ROLES,
                       samples_per_role: int = 1, backend=None, seed: int = 0, max_new_tokens: int = 256,
                       temperature: float = 0.7, templates: dict[str, PromptSpec] | None = None,
                       ) -> list[ProverSample]:
    """Sample and grade prover solutions; ``backend`` defaults to the embedded SmolLM2 base prover;
    ``templates`` maps a role to its prompt template (default: ``generation.prompts``'). Each sample carries
    its provenance: the rendered prompt and its hash, the template and version, parameters, seed, latency,
    token counts and the model."""
    backend = backend or get_backend("embedded")
    templates = {role: (templates or {}).get(role) or default_template(role) for role in ROLES}
    jobs = [(p, r) for p, r in assign_roles(problems, roles=roles, seed=seed) for _ in range(samples_per_role)]
    requests = [GenerationRequest(messages=prover_messages(p.question, r, templates[r]), seed=seed + i,
                                  max_new_tokens=max_new_tokens, temperature=temperature)
                for i, (p, r) in enumerate(jobs)]
    results = backend.generate(requests) if requests else []
    samples = []
    for (p, r), request, res in zip(jobs, requests, results, strict=True):
        provenance = {
            "backend": getattr(backend, "name", type(backend).__name__), "model_id": res.model_id,
            "template": templates[r].name, "template_version": templates[r].version,
            "prompt": [{"role": m.role, "content": m.content} for m in request.messages],
            "prompt_sha256": prompt_hash(request.messages),
            "params": {"max_new_tokens": max_new_tokens, "temperature": temperature, **(res.extra or {})},
            "seed": res.seed, "latency_ms": res.latency_ms, "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens}
        samples.append(ProverSample(p.problem_id, p.question, r, res.text, grade(res.text, p.answer), res.seed,
                                    res.model_id, provenance))
    return samples


# --- prover weights -------------------------------------------------------------------------------------------


def load_prover(path: str | Path | None = None) -> tuple[Any, Any]:
    """(trainable causal LM, tokenizer): the base SmolLM2 (a private copy of the embedded model, so training
    never touches the generation backend's weights) or a prover saved by ``improve_prover``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path is not None:
        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"No prover model folder at {path}")
        # A local folder written by improve_prover, never a hub name (hence local_files_only and the nosec).
        return (AutoModelForCausalLM.from_pretrained(path, local_files_only=True),  # nosec B615
                AutoTokenizer.from_pretrained(path, local_files_only=True))  # nosec B615
    from generation.backends.embedded import load_embedded_model

    base = load_embedded_model()
    # The GGUF-loaded model is flagged as quantized and refuses save_pretrained; its weights are plain
    # float32, so copy them into an unflagged model of the same config (as embedded._save_conversion does).
    config = base.model.config.__class__.from_dict(
        {k: v for k, v in base.model.config.to_dict().items() if k != "quantization_config"})
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(base.model.state_dict())
    tokenizer = base.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def prover_backend(model_or_path, tokenizer=None, *, model_id: str | None = None):
    """The embedded backend's decoding loop over a trained prover (a folder, or a model + tokenizer)."""
    from generation.backends.embedded import EmbeddedBackend, EmbeddedModel

    if tokenizer is None:
        path = str(model_or_path)
        model, tokenizer = load_prover(model_or_path)
        model_id = model_id or f"prover {Path(path).name}"
    else:
        model, path = model_or_path, ""
    backend = EmbeddedBackend()
    backend._model = EmbeddedModel(tokenizer=tokenizer, model=model.eval(), model_id=model_id or "prover (in memory)",
                                   gguf_path=path, load_seconds=0.0)
    return backend


# --- rewards against the frozen verifier ----------------------------------------------------------------------


def _completion_text(completion) -> str:
    """TRL passes conversational completions as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def solution_rewards(verifier: VerifierModel, *, kind: str, problem_ids: Sequence[str], problems: Sequence[str],
                     answers: Sequence[str], roles: Sequence[str], solutions: Sequence[str]) -> dict:
    """Correctness, verifier scores and rewards of a batch of prover solutions."""
    correct = [grade(s, a) for s, a in zip(solutions, answers, strict=True)]
    scores = score(verifier, list(problems), list(solutions))
    rewards = compute_rewards(kind, scores=scores, correct=correct, helpful=[r == HELPFUL for r in roles],
                              problems=list(problem_ids))
    return {"correct": correct, "scores": scores, "rewards": rewards}


def make_reward_function(verifier: VerifierModel, kind: str = "src") -> Callable[..., list[float]]:
    """A TRL reward function: dataset columns (problem_id, problem, answer, role) arrive as keyword lists."""
    def reward(prompts, completions, problem_id, problem, answer, role, **kwargs) -> list[float]:
        texts = [_completion_text(c) for c in completions]
        out = solution_rewards(verifier, kind=kind, problem_ids=problem_id, problems=problem, answers=answer,
                               roles=role, solutions=texts)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric("prover/correct_rate", float(np.mean(out["correct"])))
            log_metric("prover/verifier_score", float(np.mean(out["scores"])))
        return out["rewards"].tolist()

    reward.__name__ = f"{kind}_reward"
    return reward


# --- improvement step ------------------------------------------------------------------------------------------


@dataclass
class ProverTrainConfig:
    reward: str = "src"  # "src" | "cgc" | "goodhart": GRPO's reward, and what expert iteration keeps the best by
    learning_rate: float = 1e-6
    max_steps: int = 100  # GRPO optimiser steps
    num_generations: int = 4  # GRPO group size (per prompt)
    prompts_per_step: int = 4
    max_completion_length: int = 256
    temperature: float = 1.0
    beta: float = 0.0  # GRPO KL coefficient (TRL's default 0: no reference model)
    samples_per_problem: int = 4  # expert iteration: k per (problem, role)
    min_reward: float | None = 0.0  # expert iteration: keep the best only if its reward exceeds this
    sft_epochs: int = 1
    seed: int = 0
    extra: dict = field(default_factory=dict)  # passed on to GRPOConfig


@dataclass
class ProverUpdate:
    path: Path
    log: dict


def improve_prover(*, method: str = "grpo", problems: Sequence[MathProblem], verifier: VerifierModel,
                   output_dir: str | Path, prover_path: str | Path | None = None,
                   config: ProverTrainConfig | None = None, progress: Progress | None = None) -> ProverUpdate:
    """Train the prover (base SmolLM2 or ``prover_path``) against the frozen ``verifier`` on ``problems``;
    roles are drawn with probability ½ per problem. Saves to ``output_dir`` and returns it with the log."""
    config = config or ProverTrainConfig()
    if method not in ("grpo", "expert_iteration"):
        raise ValueError(f"unknown method {method!r}; use 'grpo' or 'expert_iteration'")
    if config.reward not in REWARDS:
        raise ValueError(f"unknown reward {config.reward!r}; known: {', '.join(REWARDS)}")
    if not problems:
        raise ValueError("no problems to train the prover on")
    for p in problems:
        if extract_reference_answer(p.answer) is None:
            raise ValueError(f"problem {p.problem_id} has no numeric reference answer")
    model, tokenizer = load_prover(prover_path)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if method == "grpo":
        log = _grpo(model, tokenizer, problems, verifier, output_dir, config, progress)
    else:
        log = _expert_iteration(model, tokenizer, problems, verifier, config, progress)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    log = {"method": method, "config": asdict(config), "prover_path": str(prover_path) if prover_path else None,
           "verifier": verifier.meta.get("config", {}), "n_problems": len(problems),
           "seconds": round(time.perf_counter() - started, 2), **log}
    (output_dir / "training_log.json").write_text(json.dumps(log, indent=2, default=str))
    return ProverUpdate(output_dir, log)


def _grpo(model, tokenizer, problems, verifier, output_dir: Path, config: ProverTrainConfig, progress) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class ReportProgress(TrainerCallback):
        """Hands each logged step to ``progress`` (a Celery task's status, a tqdm bar...)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if progress and logs and "loss" in logs:
                progress(state.global_step, state.max_steps, float(logs.get("reward", logs["loss"])))

    rows = [{"prompt": render_prompt(p.question, role), "problem_id": p.problem_id, "problem": p.question,
             "answer": p.answer, "role": role} for p, role in assign_roles(problems, roles=None, seed=config.seed)]
    gpu = torch.cuda.is_available()
    args = GRPOConfig(
        output_dir=str(output_dir / "grpo"), max_steps=config.max_steps, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations, max_completion_length=config.max_completion_length,
        temperature=config.temperature, beta=config.beta, seed=config.seed, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0, disable_tqdm=False, **config.extra)
    trainer = GRPOTrainer(model=model, reward_funcs=make_reward_function(verifier, config.reward), args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[ReportProgress()])
    trainer.train()
    return {"log_history": trainer.state.log_history, "steps": trainer.state.global_step}


def _expert_iteration(model, tokenizer, problems, verifier, config: ProverTrainConfig, progress) -> dict:
    """Sample k per (problem, role) from the current prover, keep the best by ``config.reward`` (SRC by
    default), fine-tune on them."""
    import torch

    samples = generate_solutions(problems, roles=None, samples_per_role=config.samples_per_problem,
                                 backend=prover_backend(model, tokenizer), seed=config.seed,
                                 max_new_tokens=config.max_completion_length, temperature=config.temperature)
    answers = {p.problem_id: p.answer for p in problems}
    out = solution_rewards(verifier, kind=config.reward, problem_ids=[s.problem_id for s in samples],
                           problems=[s.problem for s in samples], answers=[answers[s.problem_id] for s in samples],
                           roles=[s.role for s in samples], solutions=[s.solution for s in samples])
    best: dict[tuple, int] = {}
    for i, s in enumerate(samples):
        key = (s.problem_id, s.role)
        if key not in best or out["rewards"][i] > out["rewards"][best[key]]:
            best[key] = i
    kept = [i for i in best.values() if config.min_reward is None or out["rewards"][i] > config.min_reward]

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    rng = random.Random(config.seed)
    losses: list[float] = []
    total = len(kept) * config.sft_epochs
    for _ in range(config.sft_epochs):
        order = kept[:]
        rng.shuffle(order)
        for i in order:
            loss = _completion_loss(model, tokenizer, render_prompt(samples[i].problem, samples[i].role),
                                    samples[i].solution)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            if progress:
                progress(len(losses), total, losses[-1])
    model.eval()
    return {"n_samples": len(samples), "n_kept": len(kept), "sft_losses": losses,
            "correct_rate": float(np.mean(out["correct"])), "mean_reward": float(np.mean(out["rewards"])),
            "kept": [{"problem_id": samples[i].problem_id, "role": samples[i].role, "correct": out["correct"][i],
                      "reward": float(out["rewards"][i]), "verifier_score": float(out["scores"][i])} for i in kept]}


def _completion_loss(model, tokenizer, messages: list[dict], completion: str):
    """Causal-LM loss on the assistant's tokens only (the prompt is context, not a target)."""
    import torch

    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                               return_tensors=None)["input_ids"]
    full_ids = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": completion}],
                                             return_dict=True, return_tensors=None)["input_ids"]
    input_ids = torch.tensor([list(full_ids)])
    labels = input_ids.clone()
    labels[:, : len(prompt_ids)] = -100
    return model(input_ids=input_ids, labels=labels).loss
