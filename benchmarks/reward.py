"""Benchmark: reward-model scoring and training speed on CPU, and Schulze vs pref_voting.

    .venv/bin/python benchmarks/reward.py [--repeats 7] [--threads 0]

1. Scoring 16 candidates x 5 members (80 cross-encoder pairs) with all-MiniLM-L6-v2, target
   <= 200 ms: real Polis statements as opinions and candidates ("short"), and texts of the
   Habermas study's lengths, built by joining real statements (opinion ~60 words, candidate
   ~100 words; "long"); fp32 and bf16 autocast.
2. Training throughput: optimiser steps on real Polis votes; (member, candidate) examples per
   second and Bradley-Terry pairs per second.
3. Schulze on 16 candidates x 10,000 random complete ballots: this project's implementation vs
   pref_voting's ``beat_path`` (Floyd-Warshall), the same ballots, in the same run.

Writes benchmarks/results/reward.json and reward.md and prints the table. Timings are medians.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis.polis import hide_votes, load_conversation, rating_records  # noqa: E402
from analysis.reward.config import RewardConfig  # noqa: E402
from analysis.reward.model import MINILM, build_model, load_tokenizer  # noqa: E402
from analysis.reward.score import LoadedRewardModel, score_matrix  # noqa: E402
from analysis.reward.train import train  # noqa: E402
from analysis.social_choice import schulze, schulze_winners  # noqa: E402

POLIS = ROOT.parent / "shared" / "data" / "polis" / "brexit-consensus"
RESULTS = ROOT / "benchmarks" / "results"
TARGET_MS = 200


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def texts(conversation, words: int, count: int, offset: int) -> list[str]:
    """``count`` texts of about ``words`` words, each made of consecutive real statements."""
    statements = [c.text for c in sorted(conversation.comments.values(), key=lambda c: c.id) if c.text]
    out, i = [], offset
    while len(out) < count:
        parts = []
        while len(" ".join(parts).split()) < words:
            parts.append(statements[i % len(statements)])
            i += 1
        out.append(" ".join(parts))
    return out


def bench_scoring(conversation, repeats: int) -> list[dict]:
    # speed does not depend on the heads' weights
    models = {arch: build_model(MINILM, seed=0, architecture=arch).eval() for arch in ("cross", "bi")}
    tokenizer = load_tokenizer(MINILM)
    rows = []
    for (label, opinion_words, candidate_words), arch in itertools.product(
            (("short (real Polis statements)", 1, 1), ("long (Habermas lengths: 60 / 100 words)", 60, 100)),
            ("cross", "bi")):
        model = models[arch]
        opinions = texts(conversation, opinion_words, 5, 0)
        candidates = texts(conversation, candidate_words, 16, 17)
        tokens = tokenizer([f"Question: {conversation.topic}\nOpinion: {o}" for o in opinions for _ in candidates],
                           [c for _ in opinions for c in candidates], truncation=True, max_length=256)
        mean_tokens = float(np.mean([len(t) for t in tokens["input_ids"]]))
        for precision in ("fp32", "bf16"):
            rm = LoadedRewardModel(model, tokenizer, 256, {}, precision)
            seconds = median_seconds(lambda rm=rm, o=opinions, c=candidates: score_matrix(rm, conversation.topic, o, c),
                                     repeats)
            rows.append({"texts": label, "architecture": arch, "precision": precision, "mean_tokens_per_pair": round(mean_tokens, 1),
                         "ms": round(seconds * 1000, 1), "target_ms": TARGET_MS,
                         "meets_target": seconds * 1000 <= TARGET_MS})
    return rows


def bench_training(conversation, steps: int) -> dict:
    visible, _ = hide_votes(conversation.votes, 0.2, seed=0)
    records = rating_records(conversation, visible[: steps * 16 * 2], visible, per_side=3, seed=0)
    config = RewardConfig(max_length=160, batch_size=16, epochs=1, max_steps=steps)
    train(RewardConfig(max_length=160, batch_size=16, epochs=1, max_steps=1), records)  # warm-up
    result = train(config, records)
    return {"steps": result.steps, "batch_size": 16, "max_length": 160, "seconds": round(result.seconds, 2),
            "examples_per_second": round(result.examples_seen / result.seconds, 2),
            "bradley_terry_pairs_per_second": round(result.pairs_seen / result.seconds, 2)}


def bench_schulze(repeats: int) -> dict:
    from pref_voting.margin_based_methods import beat_path
    from pref_voting.profiles import Profile

    rng = np.random.default_rng(0)
    candidates = list(range(16))
    # Correlated ballots (noisy copies of a few orders) so the election is not a near tie.
    centres = [rng.permutation(16) for _ in range(3)]
    ballots = []
    for _ in range(10_000):
        noisy = centres[rng.integers(3)] + rng.normal(0, 3, 16)
        ballots.append(np.argsort(noisy).tolist())
    ours = median_seconds(lambda: schulze(ballots, candidates, seed=0), repeats)
    build = median_seconds(lambda: Profile(ballots), max(1, repeats // 2))
    profile = Profile(ballots)
    theirs = median_seconds(lambda: beat_path(profile), repeats)
    assert sorted(schulze_winners(ballots, candidates)) == beat_path(profile)
    return {"candidates": 16, "ballots": 10_000, "ours_ms": round(ours * 1000, 1),
            "pref_voting_profile_build_ms": round(build * 1000, 1), "pref_voting_beat_path_ms": round(theirs * 1000, 1),
            "pref_voting_total_ms": round((build + theirs) * 1000, 1), "same_winners": True}


def markdown(result: dict) -> str:
    lines = [f"# Reward model and social choice benchmark ({result['machine']['cpu_threads']} torch threads, "
             f"{result['machine']['processor']})", "",
             "| scoring 16 candidates x 5 members | architecture | precision | tokens/pair | ms (median) "
             "| target <= 200 ms |",
             "|---|---|---|---|---|---|"]
    for row in result["scoring"]:
        lines.append(f"| {row['texts']} | {row.get('architecture', 'cross')} | {row['precision']} | "
                     f"{row['mean_tokens_per_pair']} | {row['ms']} | "
                     f"{'met' if row['meets_target'] else 'not met'} |")
    t = result["training"]
    lines += ["", "| training (all-MiniLM-L6-v2, batch 16, max_length 160) | value |", "|---|---|",
              f"| examples (member, candidate) per second | {t['examples_per_second']} |",
              f"| Bradley-Terry pairs per second | {t['bradley_terry_pairs_per_second']} |",
              f"| steps timed | {t['steps']} ({t['seconds']} s) |"]
    s = result["schulze"]
    lines += ["", "| Schulze, 16 candidates x 10,000 ballots | ms (median) |", "|---|---|",
              f"| analysis.social_choice.schulze (pairwise counts + paths + TBRC) | {s['ours_ms']} |",
              f"| pref_voting Profile(ballots) | {s['pref_voting_profile_build_ms']} |",
              f"| pref_voting beat_path(profile) | {s['pref_voting_beat_path_ms']} |",
              f"| pref_voting total | {s['pref_voting_total_ms']} |", "",
              f"Same winners: {s['same_winners']}. Command: `{result['command']}`. Load average (1/5/15 min) at start "
              f"{result['machine']['load_average_at_start']}, at end {result['machine']['load_average_at_end']} "
              f"on {result['machine']['cpu_count']} CPUs: other processes shared the machine.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="Timed repetitions per measurement (median).")
    parser.add_argument("--train-steps", type=int, default=6, help="Optimiser steps timed for training throughput.")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    conversation = load_conversation(POLIS)
    result = {
        "command": "python benchmarks/reward.py " + " ".join(sys.argv[1:]),
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "scoring": bench_scoring(conversation, args.repeats),
        "training": bench_training(conversation, args.train_steps),
        "schulze": bench_schulze(args.repeats),
    }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reward.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS / "reward.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
