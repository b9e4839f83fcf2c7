"""python manage.py evaluate_polis DIR [--seed S] [--split votes|statements] [--variants cross,bi] [options]"""
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
            "votes.csv, e.g. ../shared/data/polis/brexit-consensus), hide votes (--split votes: a seeded share of "
            "(participant, statement) votes; --split statements: every vote on a seeded share of statements, the "
            "best-of-N case of new candidates), fit the default reward model (the hybrid: the participant's other "
            "votes, the statements they wrote and MiniLM embeddings of the statements) and the baselines on the "
            "visible votes only, and print JSON with accuracy and AUC on the hidden agree-vs-disagree votes: "
            "results.<name> for reward_model, participant_agree_rate, text_knn and, where the split allows, "
            "statement_agree_rate, combined_agree_rate and pca_knn; --variants adds the earlier neural designs "
            "under 'variants'. Passes are reported separately. Reads the folder in place; needs no database.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="A Polis conversation export folder.")
        parser.add_argument("--seed", type=int, default=0, help="Seed for hiding votes, sampling and training.")
        parser.add_argument("--split", choices=("votes", "statements"), default="votes",
                            help="votes: hide a share of (participant, statement) votes; statements: hide every vote "
                                 "on a share of the statements (default votes).")
        parser.add_argument("--hidden-fraction", type=float, default=0.2,
                            help="Share of votes (or statements) hidden (default 0.2).")
        parser.add_argument("--variants", default="",
                            help="Also evaluate the earlier neural designs, comma-separated: cross, bi (slow on a CPU; "
                                 "results under 'variants'). The options below configure them.")
        parser.add_argument("--text-knn", type=int, default=5, help="Neighbours for the text_knn baseline.")
        parser.add_argument("--max-train-examples", type=int, default=1500,
                            help="Neural variants: train on at most this many visible votes (seeded sample; 0 = "
                                 "all). The hybrid model and the baselines always use every visible vote. "
                                 "Default 1500.")
        parser.add_argument("--opinion-statements", type=int, default=3,
                            help="Neural variants: statements per side (agreed, disagreed) in a participant's "
                                 "opinion text.")
        parser.add_argument("--knn", type=int, default=10, help="Neighbours for the PCA + kNN baseline.")
        parser.add_argument("--output", type=Path, help="Also write the JSON to this file.")
        parser.add_argument("--threads", type=int, default=0,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared CPU).")
        add_config_arguments(parser, POLIS_DEFAULTS, skip=("seed", "val_fraction"))

    def handle(self, *args, directory: Path, seed: int, split: str, hidden_fraction: float, variants: str,
               max_train_examples: int, opinion_statements: int, knn: int, text_knn: int, threads: int,
               output: Path | None = None, **options):
        import torch

        from analysis.polis import evaluate_conversation, load_conversation

        if threads > 0:
            torch.set_num_threads(threads)
        if not (directory / "votes.csv").exists() or not (directory / "comments.csv").exists():
            raise CommandError(f"{directory} is not a Polis export folder (needs comments.csv and votes.csv)")
        if not 0 < hidden_fraction < 1:
            raise CommandError("--hidden-fraction must be between 0 and 1")
        chosen = [v.strip() for v in variants.split(",") if v.strip()]
        unknown = sorted(set(chosen) - {"cross", "bi"})
        if unknown:
            raise CommandError(f"--variants: unknown {', '.join(unknown)} (choose from cross, bi)")
        if knn < 1 or text_knn < 1:
            raise CommandError("--knn and --text-knn must be at least 1")
        config = config_from_options(options, seed=seed)
        conversation = load_conversation(directory)
        with tqdm(desc=f"fitting on {conversation.name}", unit="step",
                  disable=options.get("verbosity", 1) == 0) as bar:
            def progress(step, total, loss):
                bar.total = total
                if loss == loss:  # NaN for the hybrid's cross-fitting steps
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.update(step - bar.n)

            try:
                result = evaluate_conversation(conversation, seed=seed, split=split, hidden_fraction=hidden_fraction,
                                               variants=chosen, config=config,
                                               max_train_examples=max_train_examples or None,
                                               per_side=opinion_statements, knn_k=knn, text_k=text_knn,
                                               progress=progress)
            except ValueError as error:
                raise CommandError(str(error))
        text = json.dumps(result, indent=2)
        if output:
            output.write_text(text + "\n")
        self.stdout.write(text)
