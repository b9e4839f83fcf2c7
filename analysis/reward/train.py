"""The training loop, top to bottom: Likert regression plus Bradley–Terry over each member's ranking.

Each batch holds whole members (``data.member_batches``), so one forward pass gives both
losses: the regression loss on every rated example (MSE between sigmoid(logit) and the
agreement scaled to 0–1) and the Bradley–Terry loss −log σ(s_winner − s_loser) over every pair
the same member ordered (by rank, else by agreement). Deterministic for a seed on one machine:
seeded initialisation, data order and dropout.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .config import RewardConfig
from .data import RatingRecord, agreement_to_target, member_batches, member_text, preference_pairs
from .model import RewardModule, build_model, encode, load_tokenizer

Progress = Callable[[int, int, float], None]  # (step, total_steps, loss)


@dataclass
class TrainResult:
    model: RewardModule  # or a hybrid.HybridRewardModel (then tokenizer is None)
    tokenizer: object
    steps: int
    examples_seen: int
    pairs_seen: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # the hybrid model's description (heads and their weights)

    @property
    def summary(self) -> dict:
        tail = self.losses[-10:]
        return {"steps": self.steps, "examples_seen": self.examples_seen, "pairs_seen": self.pairs_seen,
                "train_seconds": round(self.seconds, 2), "first_loss": self.losses[0] if self.losses else None,
                "final_loss_mean10": sum(tail) / len(tail) if tail else None, **self.details,
                "examples_per_second": round(self.examples_seen / self.seconds, 2) if self.seconds else None}


def batch_losses(model, tokenizer, records: Sequence[RatingRecord], batch: list[int], config: RewardConfig):
    """(regression loss, ranking loss, number of pairs) for one batch of record indices."""
    rows = [records[i] for i in batch]
    inputs = encode(tokenizer, [member_text(r.question, r.opinion, r.critique) for r in rows],
                    [r.candidate for r in rows], config.max_length, config.architecture)
    logits = model(**inputs)

    rated = [k for k, r in enumerate(rows) if r.agreement is not None]
    if rated:
        targets = torch.tensor([agreement_to_target(rows[k].agreement) for k in rated], dtype=logits.dtype)
        regression = F.mse_loss(torch.sigmoid(logits[rated]), targets)
    else:
        regression = logits.sum() * 0.0

    position = {i: k for k, i in enumerate(batch)}
    pairs = [(position[i], position[j]) for i, j in preference_pairs(records, batch)]
    if pairs:
        winners, losers = zip(*pairs, strict=True)
        ranking = -F.logsigmoid(logits[list(winners)] - logits[list(losers)]).mean()
    else:
        ranking = logits.sum() * 0.0
    return regression, ranking, len(pairs)


def train_hybrid(config: RewardConfig, records: Sequence[RatingRecord], *,
                 progress: Progress | None = None) -> TrainResult:
    """The hybrid design (``analysis.reward.hybrid``): cross-fitted heads over the ratings and MiniLM embeddings."""
    from functools import partial

    from .data import hybrid_inputs
    from .hybrid import HybridConfig, fit
    from .model import embed_texts

    known, texts = hybrid_inputs(records)
    started = time.perf_counter()
    model = fit(known, embed=partial(embed_texts, backbone=config.backbone), member_texts=texts,
                config=HybridConfig(seed=config.seed, backbone=config.backbone),
                progress=(lambda step, total: progress(step, total, math.nan)) if progress else None)
    return TrainResult(model, None, steps=2 * model.config.folds, examples_seen=len(known), pairs_seen=0,
                       seconds=time.perf_counter() - started, details=model.describe())


def train(config: RewardConfig, records: Sequence[RatingRecord], *, progress: Progress | None = None) -> TrainResult:
    """Train the configured design on ``records``: the hybrid (default) or a neural cross/bi-encoder."""
    if not records:
        raise ValueError("no ratings to train on")
    if config.architecture == "hybrid":
        return train_hybrid(config, records, progress=progress)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.backbone)
    model = build_model(config.backbone, head_dropout=config.head_dropout, seed=config.seed,
                        architecture=config.architecture)
    model.train()

    # The schedule needs the step count up front: one pass over the batches of each epoch.
    epochs = [member_batches(records, config.batch_size, seed=config.seed + epoch) for epoch in range(config.epochs)]
    total = sum(len(b) for b in epochs)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = max(1, int(config.warmup_fraction * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))

    result = TrainResult(model, tokenizer, steps=0, examples_seen=0, pairs_seen=0, seconds=0.0)
    started = time.perf_counter()
    for batches in epochs:
        for batch in batches:
            if result.steps >= total:
                break
            regression, ranking, n_pairs = batch_losses(model, tokenizer, records, batch, config)
            loss = config.regression_weight * regression + config.ranking_weight * ranking
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            schedule.step()

            result.steps += 1
            result.examples_seen += len(batch)
            result.pairs_seen += n_pairs
            result.losses.append(loss.item())
            if progress:
                progress(result.steps, total, result.losses[-1])
    result.seconds = time.perf_counter() - started
    model.eval()
    return result
