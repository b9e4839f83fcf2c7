"""python manage.py export --study SLUG --format csv|parquet|jsonl|hf[,...] --out DIR"""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analysis.exports import DEFAULT_MIN_QUALITY, ENTITIES, FORMATS, export_study
from deliberation.models import Study


class Command(BaseCommand):
    help = ("Export a study for analysis and training into DIR. csv / parquet / jsonl: one long table per entity "
            f"({', '.join(ENTITIES)}; every column, foreign keys as ids, times in ISO 8601, candidates with their "
            "provenance: prompt, seed, template, opinion order and included opinions) plus participants_wide, one row "
            "per participant (group, condition, excluded flag, opinion, ratings of each round's winner, critique, "
            "completion). hf: Hugging Face datasets folders (Dataset.save_to_disk) under DIR/hf: preference_pairs "
            "(prompt = question + the member's opinion, chosen = the candidate that member ranked higher, rejected; "
            "TRL RewardTrainer's format) and sft (conversational prompt/completion of candidates whose mean quality "
            "rating is at least --min-quality). Participant tokens are never exported; recruitment ids and the "
            "join link's parameters only with --include-recruitment-ids. CSV cells a spreadsheet would run as a "
            "formula (starting with = + - @, tab or CR) get a leading single quote. Human data only: answers the "
            "take-over bot wrote and simulated participants (run_bots) only with --include-bots / "
            "--include-simulated; answer rows carry by_bot, participant rows "
            "is_simulated. Writes manifest.json with the row counts.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--format", default="csv", dest="formats",
                            help=f"One or more of {', '.join(FORMATS)}, comma-separated (default: csv).")
        parser.add_argument("--out", required=True, type=Path, help="Output folder (created if missing).")
        parser.add_argument("--min-quality", type=float, default=DEFAULT_MIN_QUALITY,
                            help="SFT set: keep candidates whose mean quality rating (1-7) is at least this "
                                 f"(default {DEFAULT_MIN_QUALITY:g}).")
        parser.add_argument("--include-recruitment-ids", action="store_true",
                            help="Also export PROLIFIC_PID / STUDY_ID / SESSION_ID and the join link's other "
                                 "parameters (url_params; off by default).")
        parser.add_argument("--include-bots", action="store_true",
                            help="Also export the answers the take-over bot wrote for dropped members (by_bot).")
        parser.add_argument("--include-simulated", action="store_true",
                            help="Also export simulated participants (run_bots) and their answers (is_simulated).")

    def handle(self, *args, study: str, formats: str, out: Path, min_quality: float, include_recruitment_ids: bool,
               include_bots: bool, include_simulated: bool, **options):
        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}")
        chosen = [f.strip().lower() for f in formats.split(",") if f.strip()]
        unknown = sorted(set(chosen) - set(FORMATS))
        if not chosen or unknown:
            raise CommandError(f"Unknown format(s) {unknown or formats!r}; use {', '.join(FORMATS)}")
        if not 1 <= min_quality <= 7:
            raise CommandError("--min-quality is on the 1-7 scale")
        with tqdm(desc="export", unit="file", disable=options.get("verbosity", 1) == 0) as bar:
            counts = export_study(study_obj, out, chosen, include_recruitment_ids=include_recruitment_ids,
                                  include_bots=include_bots, include_simulated=include_simulated,
                                  min_quality=min_quality, progress=lambda name: bar.update(1))
        for name, count in counts.items():
            self.stdout.write(f"{name}: {count} rows")
        self.stdout.write(self.style.SUCCESS(f"wrote {len(counts)} files to {out}"))
