"""Scoring API: predicted agreement (1–7) of each member with each candidate.

    rm = load_reward_model("var/reward_models/3-my-study")      # cached per folder
    u = score_matrix(rm, question, opinions, candidates)        # members x candidates
    best = core.welfare.welfare_winner(u, "isoelastic", alpha=1.0)

``analysis.reward.registry.reward_model_load(model_id)`` does the same for a model registered in
the database. Pairs are sorted by length before batching so little compute goes to padding.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import RatingRecord, hybrid_inputs, member_text, member_texts, target_to_agreement
from .hybrid import HybridRewardModel
from .model import BiEncoderReward, RewardModule, encode, load_checkpoint


@dataclass(frozen=True)
class LoadedRewardModel:
    model: RewardModule | HybridRewardModel
    tokenizer: object  # None for a hybrid model
    max_length: int
    meta: dict
    precision: str = "fp32"  # or "bf16": autocast on CPU, about 2x faster where the CPU supports it


@functools.lru_cache(maxsize=4)
def _load(directory: str, precision: str) -> LoadedRewardModel:
    model, tokenizer, meta = load_checkpoint(Path(directory))
    max_length = int(meta.get("config", {}).get("max_length", 256))
    return LoadedRewardModel(model, tokenizer, max_length, meta, precision)


def load_reward_model(directory: str | Path, *, precision: str = "fp32") -> LoadedRewardModel:
    """The checkpoint in ``directory``, loaded once per process and folder."""
    if precision not in ("fp32", "bf16"):
        raise ValueError("precision must be 'fp32' or 'bf16'")
    return _load(str(Path(directory).resolve()), precision)


def from_trained(model: RewardModule, tokenizer, max_length: int, meta: dict | None = None) -> LoadedRewardModel:
    """Wrap a model just trained in this process (no checkpoint round trip)."""
    if not isinstance(model, HybridRewardModel):
        model = model.eval()
    return LoadedRewardModel(model, tokenizer, max_length, meta or {})


@torch.inference_mode()
def score_pairs(rm: LoadedRewardModel, member_texts: Sequence[str], candidates: Sequence[str], *,
                batch_size: int = 128) -> np.ndarray:
    """Predicted agreement on the 1–7 scale for each (member text, candidate) pair."""
    if len(member_texts) != len(candidates):
        raise ValueError("member_texts and candidates must have the same length")
    if isinstance(rm.model, HybridRewardModel):  # members known only by their text
        members = [("text", t) for t in member_texts]
        return _hybrid_agreement(rm, members, candidates, member_texts=dict(zip(members, member_texts, strict=True)))
    rm.model.eval()
    if isinstance(rm.model, BiEncoderReward):
        return _score_pairs_bi(rm, member_texts, candidates, batch_size=batch_size)
    order = sorted(range(len(candidates)), key=lambda i: len(member_texts[i]) + len(candidates[i]))
    logits = np.empty(len(candidates), dtype=np.float64)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if rm.precision == "bf16"
                else contextlib.nullcontext())
    with autocast:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            inputs = encode(rm.tokenizer, [member_texts[i] for i in idx], [candidates[i] for i in idx],
                            rm.max_length)
            logits[idx] = rm.model(**inputs).float().numpy()
    return target_to_agreement(1.0 / (1.0 + np.exp(-logits)))


def _embed_unique(rm: LoadedRewardModel, texts: Sequence[str], batch_size: int) -> tuple[torch.Tensor, list[int]]:
    """Embeddings of the distinct texts (each encoded once, sorted by length) and each input's row."""
    unique = list(dict.fromkeys(texts))
    row = {t: i for i, t in enumerate(unique)}
    order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
    out = torch.empty((len(unique), rm.model.backbone.config.hidden_size))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = rm.tokenizer([unique[i] for i in idx], truncation=True, max_length=rm.max_length, padding=True,
                             return_tensors="pt")
        out[idx] = rm.model.embed(**batch).float()
    return out, [row[t] for t in texts]


def _score_pairs_bi(rm: LoadedRewardModel, member_texts: Sequence[str], candidates: Sequence[str], *,
                    batch_size: int) -> np.ndarray:
    """Bi-encoder: every distinct member text and candidate is encoded once, then the head reads the pairs."""
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if rm.precision == "bf16"
                else contextlib.nullcontext())
    with autocast:
        members, member_rows = _embed_unique(rm, member_texts, batch_size)
        cands, candidate_rows = _embed_unique(rm, candidates, batch_size)
        logits = rm.model.pair_logits(members[member_rows], cands[candidate_rows]).float().numpy()
    return target_to_agreement(1.0 / (1.0 + np.exp(-logits.astype(np.float64))))


def _hybrid_agreement(rm: LoadedRewardModel, members: Sequence, candidates: Sequence[str], *,
                      member_texts: dict | None = None, history: Sequence[RatingRecord] = ()) -> np.ndarray:
    """A hybrid model's P(agree) on the 1–7 scale; ``history`` are ratings it may read that came after training."""
    from functools import partial

    from .model import embed_texts

    extra, history_texts = hybrid_inputs(history) if history else ([], {})
    texts = {**history_texts, **(member_texts or {})}
    p = rm.model.predict(list(members), list(candidates), embed=partial(embed_texts, backbone=rm.model.config.backbone),
                         extra=extra, member_texts=texts)
    return 1.0 + 6.0 * p


def score_records(rm: LoadedRewardModel, records: Sequence[RatingRecord], *,
                  history: Sequence[RatingRecord] = ()) -> np.ndarray:
    """Predicted agreement (1–7) for each record's member and candidate (its own rating is never read).

    A hybrid model knows members by ``member_id`` and reads their texts and ``history`` (ratings it did not train
    on, e.g. the members' earlier rounds); a neural model reads the member text of each record.
    """
    if isinstance(rm.model, HybridRewardModel):
        return _hybrid_agreement(rm, [r.member_id for r in records], [r.candidate for r in records],
                                 member_texts=member_texts(records), history=history)
    return score_pairs(rm, [member_text(r.question, r.opinion, r.critique) for r in records],
                       [r.candidate for r in records])


def score_matrix(rm: LoadedRewardModel, question: str, opinions: Sequence[str], candidates: Sequence[str], *,
                 critiques: Sequence[str] | None = None, member_ids: Sequence | None = None,
                 history: Sequence[RatingRecord] = ()) -> np.ndarray:
    """members x candidates matrix of predicted agreement (1–7): row m is opinions[m].

    ``critiques`` (one per member, same order as ``opinions``) is for the critique round. ``member_ids`` and
    ``history`` (their ratings so far) let a hybrid model use what the members rated before.
    """
    if critiques is not None and len(critiques) != len(opinions):
        raise ValueError("one critique per opinion")
    if member_ids is not None and len(member_ids) != len(opinions):
        raise ValueError("one member id per opinion")
    if isinstance(rm.model, HybridRewardModel):
        members = list(member_ids) if member_ids is not None else [("opinion", m) for m in range(len(opinions))]
        own = {members[m]: "\n".join(t for t in (o, critiques[m] if critiques is not None else "") if t.strip())
               for m, o in enumerate(opinions)}
        flat = _hybrid_agreement(rm, [m for m in members for _ in candidates], [c for _ in members for c in candidates],
                                 member_texts=own, history=history)
        return flat.reshape(len(opinions), len(candidates))
    texts = [member_text(question, o, critiques[m] if critiques is not None else "") for m, o in enumerate(opinions)]
    flat = score_pairs(rm, [t for t in texts for _ in candidates], [c for _ in texts for c in candidates])
    return flat.reshape(len(opinions), len(candidates))
