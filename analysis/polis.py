"""Polis conversations as ground truth for predicting one person's agreement. Django-free.

A Polis export folder (``summary.csv``, ``comments.csv``, ``votes.csv``; see
``../shared/data/README.md``) is read into a ``Conversation``. ``evaluate_conversation`` hides a
seeded share of the (participant, statement) votes, trains the same reward model as the studies
use, where a participant's "opinion" is built from statements they voted on (their other,
visible votes), and compares it on the hidden votes with the Polis-style baselines: the
statement's agree rate, the participant's agree rate, and PCA + k-nearest-neighbours over the
vote matrix. Agree vs disagree is scored by accuracy and AUC; passes are reported apart.
"""
from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AGREE, PASS, DISAGREE = 1, 0, -1
AGREEMENT_FOR_VOTE = {AGREE: 7, PASS: 4, DISAGREE: 1}  # onto the studies' 7-point agreement scale


@dataclass(frozen=True)
class Comment:
    id: int
    author_id: int
    text: str
    moderated: int  # 1 accepted, 0 not reviewed, -1 rejected by the moderator


@dataclass(frozen=True)
class Vote:
    voter_id: int
    comment_id: int
    vote: int  # AGREE, PASS or DISAGREE


@dataclass
class Conversation:
    name: str
    topic: str
    description: str
    url: str
    comments: dict[int, Comment]
    votes: list[Vote]  # one per (voter, comment): the voter's latest


def _int(value: str, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def load_conversation(directory: str | Path) -> Conversation:
    """Read a Polis export folder. Repeated votes on one statement keep the latest."""
    directory = Path(directory)
    summary = {}
    with open(directory / "summary.csv", newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if row:
                summary[row[0].strip()] = row[1].strip() if len(row) > 1 else ""
    comments = {}
    with open(directory / "comments.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cid = _int(row.get("comment-id"), -1)
            if cid >= 0:
                comments[cid] = Comment(cid, _int(row.get("author-id"), -1), (row.get("comment-body") or "").strip(),
                                        _int(row.get("moderated")))
    latest: dict[tuple[int, int], tuple[float, int]] = {}
    with open(directory / "votes.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = (_int(row.get("voter-id"), -1), _int(row.get("comment-id"), -1))
            vote = _int(row.get("vote"), 99)
            if key[0] < 0 or key[1] not in comments or vote not in AGREEMENT_FOR_VOTE:
                continue
            stamp = float(row.get("timestamp") or 0)
            if key not in latest or stamp >= latest[key][0]:
                latest[key] = (stamp, vote)
    votes = [Vote(v, c, latest[(v, c)][1]) for v, c in sorted(latest)]
    return Conversation(name=directory.name, topic=summary.get("topic", directory.name),
                        description=summary.get("conversation-description", ""), url=summary.get("url", ""),
                        comments=comments, votes=votes)


def hide_votes(votes: Sequence[Vote], fraction: float, seed: int) -> tuple[list[Vote], list[Vote]]:
    """(visible, hidden): a seeded random ``fraction`` of the (participant, statement) votes hidden."""
    order = np.random.default_rng(seed).permutation(len(votes))
    n_hidden = int(round(fraction * len(votes)))
    hidden = set(order[:n_hidden].tolist())
    return ([v for i, v in enumerate(votes) if i not in hidden], [v for i, v in enumerate(votes) if i in hidden])


# --- baselines: each returns P(agree) in [0, 1] per hidden vote --------------------------------------

def _smoothed_rate(agrees: int, disagrees: int) -> float:
    return (agrees + 1) / (agrees + disagrees + 2)  # Laplace: 0.5 with no evidence


def statement_agree_rate(visible: Sequence[Vote], hidden: Sequence[Vote]) -> np.ndarray:
    counts = defaultdict(Counter)
    for v in visible:
        counts[v.comment_id][v.vote] += 1
    return np.array([_smoothed_rate(counts[h.comment_id][AGREE], counts[h.comment_id][DISAGREE]) for h in hidden])


def participant_agree_rate(visible: Sequence[Vote], hidden: Sequence[Vote]) -> np.ndarray:
    counts = defaultdict(Counter)
    for v in visible:
        counts[v.voter_id][v.vote] += 1
    return np.array([_smoothed_rate(counts[h.voter_id][AGREE], counts[h.voter_id][DISAGREE]) for h in hidden])


def pca_knn(visible: Sequence[Vote], hidden: Sequence[Vote], *, n_components: int = 2, k: int = 10) -> np.ndarray:
    """Polis-style collaborative filter: project participants' vote vectors with PCA, then the agree
    share among the k nearest participants who voted agree/disagree on that statement.

    As in Polis, unseen cells are filled with the statement's mean vote, and a participant's
    projection is scaled by sqrt(statements / statements they voted on) so sparse voters are not
    pulled to the centre. The share is smoothed toward the statement's agree rate.
    """
    from sklearn.decomposition import PCA
    from sklearn.metrics import pairwise_distances

    voters = sorted({v.voter_id for v in visible} | {h.voter_id for h in hidden})
    comments = sorted({v.comment_id for v in visible} | {h.comment_id for h in hidden})
    row, col = {v: i for i, v in enumerate(voters)}, {c: j for j, c in enumerate(comments)}
    matrix = np.zeros((len(voters), len(comments)))
    seen = np.zeros_like(matrix, dtype=bool)
    for v in visible:
        matrix[row[v.voter_id], col[v.comment_id]] = v.vote
        seen[row[v.voter_id], col[v.comment_id]] = True
    column_mean = np.divide(matrix.sum(0), seen.sum(0), out=np.zeros(len(comments)), where=seen.sum(0) > 0)
    filled = np.where(seen, matrix, column_mean)
    n = max(1, min(n_components, len(voters) - 1, len(comments)))
    projected = PCA(n_components=n, random_state=0).fit_transform(filled)
    projected *= np.sqrt(len(comments) / np.maximum(seen.sum(1), 1))[:, None]
    nearest = np.argsort(pairwise_distances(projected), axis=1, kind="stable")
    prior = statement_agree_rate(visible, hidden)
    scores = np.empty(len(hidden))
    for h_index, h in enumerate(hidden):
        j = col[h.comment_id]
        agrees = found = 0
        for q in nearest[row[h.voter_id]]:
            if q == row[h.voter_id] or not seen[q, j] or matrix[q, j] == PASS:
                continue
            agrees += matrix[q, j] == AGREE
            found += 1
            if found == k:
                break
        scores[h_index] = (agrees + prior[h_index]) / (found + 1)
    return scores


# --- the reward model on Polis ---------------------------------------------------------------------

def opinion_from_votes(own_votes: Sequence[Vote], comments: dict[int, Comment], *, exclude: int,
                       per_side: int, rng: random.Random) -> str:
    """A participant's "opinion": up to ``per_side`` statements they agreed with and disagreed with."""
    agreed = [v.comment_id for v in own_votes if v.vote == AGREE and v.comment_id != exclude]
    disagreed = [v.comment_id for v in own_votes if v.vote == DISAGREE and v.comment_id != exclude]
    parts = []
    for label, ids in (("I agree", agreed), ("I disagree", disagreed)):
        chosen = rng.sample(ids, min(per_side, len(ids)))
        if chosen:
            parts.append(f"{label}: " + " / ".join(comments[c].text for c in chosen))
    return "\n".join(parts) or "No other votes."


def rating_records(conversation: Conversation, targets: Sequence[Vote], visible: Sequence[Vote], *,
                   per_side: int, seed: int) -> list:
    """One RatingRecord per target vote; the opinion comes from the voter's other visible votes."""
    from .reward.data import RatingRecord

    by_voter = defaultdict(list)
    for v in visible:
        by_voter[v.voter_id].append(v)
    question = conversation.topic + (f" — {conversation.description}" if conversation.description else "")
    records = []
    for t in targets:
        rng = random.Random(f"{seed}:{t.voter_id}:{t.comment_id}")  # the same opinion for a vote on every run
        opinion = opinion_from_votes(by_voter[t.voter_id], conversation.comments, exclude=t.comment_id,
                                     per_side=per_side, rng=rng)
        records.append(RatingRecord(group_id=conversation.name, member_id=t.voter_id, round=1, question=question,
                                    opinion=opinion, candidate=conversation.comments[t.comment_id].text,
                                    candidate_id=t.comment_id, agreement=AGREEMENT_FOR_VOTE[t.vote]))
    return records


def binary_metrics(hidden: Sequence[Vote], p_agree: np.ndarray) -> dict:
    """Accuracy (threshold 0.5) and AUC on the hidden agree/disagree votes; passes left out."""
    from sklearn.metrics import roc_auc_score

    mask = np.array([h.vote != PASS for h in hidden])
    y = np.array([h.vote == AGREE for h in hidden])[mask]
    p = np.asarray(p_agree)[mask]
    accuracy = round(float(np.mean((p > 0.5) == y)), 4) if len(y) else None
    auc = round(float(roc_auc_score(y, p)), 4) if len(set(y.tolist())) == 2 else None  # needs both classes
    return {"accuracy": accuracy, "auc": auc}


SPLITS = ("votes", "statements")


def hide_statements(votes: Sequence[Vote], fraction: float, seed: int) -> tuple[list[Vote], list[Vote]]:
    """(visible, hidden): every vote on a seeded random ``fraction`` of the statements hidden (new candidates)."""
    comments = sorted({v.comment_id for v in votes})
    order = np.random.default_rng(seed).permutation(len(comments))
    hidden = {comments[i] for i in order[: int(round(fraction * len(comments)))]}
    return [v for v in votes if v.comment_id not in hidden], [v for v in votes if v.comment_id in hidden]


def split_votes(votes: Sequence[Vote], split: str, fraction: float, seed: int) -> tuple[list[Vote], list[Vote]]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return (hide_votes if split == "votes" else hide_statements)(votes, fraction, seed)


def combined_agree_rate(visible: Sequence[Vote], hidden: Sequence[Vote]) -> np.ndarray:
    """Odds of the statement's agree rate times odds of the participant's, over the overall odds."""
    statement, participant = statement_agree_rate(visible, hidden), participant_agree_rate(visible, hidden)
    agrees = sum(v.vote == AGREE for v in visible)
    disagrees = sum(v.vote == DISAGREE for v in visible)
    overall = (agrees + 1) / (disagrees + 1)
    odds = statement / (1 - statement) * participant / (1 - participant) / overall
    return odds / (1 + odds)


def text_knn(visible: Sequence[Vote], hidden: Sequence[Vote], embeddings: dict[int, np.ndarray], *,
             k: int = 5) -> np.ndarray:
    """The member's own agree share over their k votes on the statements most similar in text (MiniLM cosine)."""
    own = defaultdict(list)
    for v in visible:
        if v.vote != PASS:
            own[v.voter_id].append(v)
    scores = np.empty(len(hidden))
    for n, h in enumerate(hidden):
        votes = [v for v in own[h.voter_id] if v.comment_id != h.comment_id]
        if not votes:
            scores[n] = 0.5
            continue
        similarity = np.array([float(embeddings[v.comment_id] @ embeddings[h.comment_id]) for v in votes])
        nearest = np.argsort(-similarity, kind="stable")[:k]
        scores[n] = (sum(votes[j].vote == AGREE for j in nearest) + 0.5) / (len(nearest) + 1)
    return scores


def member_texts_from_authors(conversation: Conversation, visible: Sequence[Vote]) -> dict[int, str]:
    """A participant's own text: the statements they wrote (known to everyone; never a vote)."""
    voters = {v.voter_id for v in visible}
    written = defaultdict(list)
    for c in conversation.comments.values():
        if c.author_id in voters and c.text:
            written[c.author_id].append(c.text)
    return {a: " ".join(texts) for a, texts in written.items()}


def hybrid_predictions(conversation: Conversation, visible: Sequence[Vote], hidden: Sequence[Vote], *,
                       embed, seed: int = 0, config=None, progress=None) -> tuple[np.ndarray, dict]:
    """The default reward model (``analysis.reward.hybrid``) fitted on the visible votes only."""
    from .reward.hybrid import HybridConfig, Known, fit

    value = {AGREE: 1.0, PASS: 0.0, DISAGREE: -1.0}
    comments = conversation.comments
    known = [Known(v.voter_id, comments[v.comment_id].text, value[v.vote]) for v in visible]
    member_texts = member_texts_from_authors(conversation, visible)
    # Who wrote each statement is public in a Polis export (comments.csv), hidden statements included.
    authors = {c.text: c.author_id for c in comments.values() if c.author_id >= 0}
    model = fit(known, embed=embed, member_texts=member_texts, authors=authors,
                config=config or HybridConfig(seed=seed), progress=progress)
    p = model.predict([h.voter_id for h in hidden], [comments[h.comment_id].text for h in hidden], embed=embed,
                      authors=authors)
    return p, model.describe()


def neural_predictions(conversation: Conversation, visible: Sequence[Vote], hidden: Sequence[Vote], *, config,
                       max_train_examples: int | None, per_side: int, seed: int, progress=None) -> tuple:
    """The earlier text-only designs (cross- or bi-encoder over a few of the member's statements)."""
    from .reward.data import member_text
    from .reward.score import from_trained, score_pairs
    from .reward.train import train

    targets = list(visible)
    if max_train_examples is not None and len(targets) > max_train_examples:
        keep = np.sort(np.random.default_rng(seed).choice(len(targets), max_train_examples, replace=False))
        targets = [targets[i] for i in keep]
    result = train(config, rating_records(conversation, targets, visible, per_side=per_side, seed=seed),
                   progress=progress)
    test = rating_records(conversation, hidden, visible, per_side=per_side, seed=seed)
    agreement = score_pairs(from_trained(result.model, result.tokenizer, config.max_length),
                            [member_text(r.question, r.opinion) for r in test], [r.candidate for r in test])
    return (agreement - 1) / 6, {"backbone": config.backbone, "architecture": config.architecture,
                                 "train_examples": len(targets), "opinion_statements_per_side": per_side,
                                 "max_length": config.max_length, "epochs": config.epochs, **result.summary}


def predict_hidden(conversation: Conversation, visible: Sequence[Vote], hidden: Sequence[Vote], *, embed,
                   embeddings: dict[int, np.ndarray], split: str, seed: int = 0, knn_k: int = 10, text_k: int = 5,
                   progress=None) -> tuple[dict[str, np.ndarray], dict]:
    """P(agree) of every predictor for the hidden (voter, statement) pairs, fitted on ``visible`` only.

    Only the hidden pairs' voter and statement ids are read, never their votes (tests check this by flipping
    the hidden votes and comparing).
    """
    import time

    started = time.perf_counter()
    hybrid, description = hybrid_predictions(
        conversation, visible, hidden, embed=embed, seed=seed,
        progress=(lambda step, total: progress(step, total, float("nan"))) if progress else None)
    description["seconds"] = round(time.perf_counter() - started, 2)
    predictions = {"reward_model": hybrid,
                   "participant_agree_rate": participant_agree_rate(visible, hidden),
                   "text_knn": text_knn(visible, hidden, embeddings, k=text_k)}
    if split == "votes":  # these need other people's votes on the hidden statement
        predictions.update({"statement_agree_rate": statement_agree_rate(visible, hidden),
                            "combined_agree_rate": combined_agree_rate(visible, hidden),
                            "pca_knn": pca_knn(visible, hidden, k=knn_k)})
    return predictions, description


def evaluate_conversation(conversation: Conversation, *, seed: int = 0, split: str = "votes",
                          hidden_fraction: float = 0.2, variants: Sequence[str] = (), config=None,
                          max_train_examples: int | None = 1500, per_side: int = 3, knn_k: int = 10,
                          text_k: int = 5, embed=None,
                          progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Hide votes (``split``), fit every predictor on the visible ones only, score all on the same hidden votes.

    ``results`` holds the default reward model (the hybrid) and the baselines the split allows; ``variants``
    (``cross``, ``bi``: the earlier neural designs) go under ``variants``. ``embed`` maps texts to unit
    vectors (default all-MiniLM-L6-v2).
    """
    from .reward.config import RewardConfig

    if embed is None:
        from .reward.model import embed_texts as embed
    visible, hidden = split_votes(conversation.votes, split, hidden_fraction, seed)
    if not visible or not hidden:
        raise ValueError(f"{conversation.name}: the {split} split leaves nothing visible or nothing hidden")
    comment_ids = sorted({v.comment_id for v in conversation.votes})
    vectors = embed([conversation.comments[c].text for c in comment_ids])
    embeddings = dict(zip(comment_ids, vectors, strict=True))
    cache = {conversation.comments[c].text: e for c, e in embeddings.items()}

    def cached_embed(texts):
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, embed(missing), strict=True))
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, vectors.shape[1]))

    predictions, description = predict_hidden(conversation, visible, hidden, embed=cached_embed,
                                              embeddings=embeddings, split=split, seed=seed, knn_k=knn_k,
                                              text_k=text_k, progress=progress)
    variant_results = {}
    for name in variants:
        variant_config = RewardConfig.from_dict({**(config or RewardConfig(seed=seed)).to_dict(),
                                                 "architecture": name})
        p, summary = neural_predictions(conversation, visible, hidden, config=variant_config,
                                        max_train_examples=max_train_examples, per_side=per_side, seed=seed,
                                        progress=progress)
        variant_results[name] = {**binary_metrics(hidden, p), "model": summary}
    counts = Counter(h.vote for h in hidden)
    is_pass = np.array([h.vote == PASS for h in hidden])
    decided = counts[AGREE] + counts[DISAGREE]
    results = {name: binary_metrics(hidden, p) for name, p in predictions.items()}
    baselines = {k: v["auc"] for k, v in results.items() if k != "reward_model" and v["auc"] is not None}
    return {
        "conversation": conversation.name,
        "topic": conversation.topic,
        "seed": seed,
        "split": split,
        "hidden_fraction": hidden_fraction,
        "participants": len({v.voter_id for v in conversation.votes}),
        "statements": len(comment_ids),
        "hidden_statements": len({h.comment_id for h in hidden}),
        "votes": {"total": len(conversation.votes), "visible": len(visible), "hidden": len(hidden),
                  "hidden_agree": counts[AGREE], "hidden_disagree": counts[DISAGREE], "hidden_pass": counts[PASS]},
        "majority_class_accuracy": round(max(counts[AGREE], counts[DISAGREE]) / decided, 4) if decided else None,
        "results": results,
        "best_baseline": max(baselines, key=baselines.get) if baselines else None,
        "variants": variant_results,
        "passes": {"n": int(is_pass.sum()),
                   "mean_p_agree": {name: (round(float(np.mean(p[is_pass])), 4) if is_pass.any() else None)
                                    for name, p in predictions.items()}},
        "reward_model": description,
    }
