"""python manage.py evaluate_polis DIR [--seed S] [--hidden-fraction 0.2] [reward model options]"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analysis.reward.config import RewardConfig, add_config_arguments, config_from_options

# Sized so one conversation of ~10k votes finishes in minutes on a 2-core CPU.
POLIS_DEFAULTS = RewardConfig(max_length=160, epochs=1, learning_rate=5e-5)


class Command(BaseCommand):
    help = ("Validate the reward model on real people: read a Polis export folder (summary.csv, comments.csv, "
            "votes.csv, e.g. ../shared/data/polis/brexit-consensus), hide a seeded share of the "
            "(participant, statement) votes, train the reward model on the visible votes (a participant's "
            "'opinion' = statements they agreed / disagreed with among their other visible votes; agree / pass / "
            "disagree = 7 / 4 / 1), and print JSON with accuracy and AUC on the hidden agree-vs-disagree votes "
            "for the model and the baselines (statement agree rate, participant agree rate, PCA + kNN). "
            "Passes are reported separately. Reads the folder in place; needs no database.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="A Polis conversation export folder.")
        parser.add_argument("--seed", type=int, default=0, help="Seed for hiding votes, sampling and training.")
        parser.add_argument("--hidden-fraction", type=float, default=0.2, help="Share of votes hidden (default 0.2).")
        parser.add_argument("--max-train-examples", type=int, default=1500,
                            help="Train the model on at most this many visible votes (seeded sample; 0 = all). "
                                 "Baselines always use every visible vote. Default 1500.")
        parser.add_argument("--opinion-statements", type=int, default=3,
                            help="Statements per side (agreed, disagreed) in a participant's opinion text.")
        parser.add_argument("--knn", type=int, default=10, help="Neighbours for the PCA + kNN baseline.")
        parser.add_argument("--output", type=Path, help="Also write the JSON to this file.")
        parser.add_argument("--threads", type=int, default=0,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared CPU).")
        add_config_arguments(parser, POLIS_DEFAULTS, skip=("seed", "val_fraction"))

    def handle(self, *args, directory: Path, seed: int, hidden_fraction: float, max_train_examples: int,
               opinion_statements: int, knn: int, threads: int, output: Path | None = None, **options):
        import torch

        from analysis.polis import evaluate_conversation, load_conversation

        if threads > 0:
            torch.set_num_threads(threads)
        if not (directory / "votes.csv").exists() or not (directory / "comments.csv").exists():
            raise CommandError(f"{directory} is not a Polis export folder (needs comments.csv and votes.csv)")
        if not 0 < hidden_fraction < 1:
            raise CommandError("--hidden-fraction must be between 0 and 1")
        config = config_from_options(options, seed=seed)
        conversation = load_conversation(directory)
        with tqdm(desc=f"training on {conversation.name}", unit="step",
                  disable=options.get("verbosity", 1) == 0) as bar:
            def progress(step, total, loss):
                bar.total = total
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.update(step - bar.n)

            result = evaluate_conversation(conversation, seed=seed, hidden_fraction=hidden_fraction, config=config,
                                           max_train_examples=max_train_examples or None,
                                           per_side=opinion_statements, knn_k=knn, progress=progress)
        text = json.dumps(result, indent=2)
        if output:
            output.write_text(text + "\n")
        self.stdout.write(text)
