"""python manage.py import_gsm8k [--study SLUG] [--limit N] [--seed S] [--data-dir DIR]"""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from legibility.importing import gsm8k_dir, import_gsm8k
from legibility.models import LegibilityStudy


class Command(BaseCommand):
    help = ("Load GSM8K into a legibility study: train and test problems (train split into equal seeded "
            "prover / verifier halves), and the shipped model solutions (example_model_solutions.jsonl) as the "
            "base prover's round 0, each graded by the automatic grader and marked gold where the grader agrees "
            "with the data set's label. Idempotent: a re-run adds only what is missing and never moves a problem "
            "between halves. Reads ../shared/data/gsm8k in place. Creates the study if it does not exist.")

    def add_arguments(self, parser):
        parser.add_argument("--study", default="gsm8k", help="Study slug (created if missing). Default: gsm8k.")
        parser.add_argument("--limit", type=int, default=None,
                            help="Import only the first N problems of each split (and their shipped solutions). "
                                 "Use an even N for exactly equal halves.")
        parser.add_argument("--seed", type=int, default=None,
                            help="Seed for the halves (default: the study's seed; a new study stores this one).")
        parser.add_argument("--data-dir", type=Path, default=None,
                            help="Folder with train.jsonl, test.jsonl and example_model_solutions.jsonl "
                                 "(default: ../shared/data/gsm8k).")

    def handle(self, *args, study: str, limit: int | None, seed: int | None, data_dir: Path | None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        data_dir = data_dir or gsm8k_dir()
        missing = [name for name in ("train.jsonl", "test.jsonl", "example_model_solutions.jsonl")
                   if not (data_dir / name).exists()]
        if missing:
            raise CommandError(f"{', '.join(missing)} not found in {data_dir} (the shared GSM8K data, see "
                               "../shared/data/README.md)")
        quiet = options.get("verbosity", 1) == 0

        def progress(rows, desc, total):
            return tqdm(rows, desc=desc, total=total, unit="row", disable=quiet)

        try:
            with transaction.atomic():  # a refused file leaves no study behind either
                record, created = LegibilityStudy.objects.get_or_create(
                    slug=study, defaults={"title": f"Legibility study {study}", "seed": seed or 0})
                summary = import_gsm8k(study=record, data_dir=data_dir, limit=limit, seed=seed, progress=progress)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if not created and seed is not None and seed != record.seed:
            self.stderr.write(f"note: study {study} was created with seed {record.seed}; problems already "
                              f"imported keep their halves, new ones use --seed {seed}")
        halves = {h: record.problems.filter(split="train", half=h).count() for h in ("prover", "verifier")}
        self.stdout.write(
            f"{'created' if created else 'updated'} study {record.slug}: problems +{summary.problems_created} "
            f"({summary.problems_existing} already there), shipped solutions +{summary.solutions_created} "
            f"({summary.solutions_existing} already there); train halves prover {halves['prover']} / verifier "
            f"{halves['verifier']}; grader disagrees with the data set's label on "
            f"{summary.grader_disagrees_with_dataset} new solutions")
