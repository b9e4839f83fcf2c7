"""python manage.py export_legibility --study SLUG --out DIR [--include-recruitment-ids]"""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from legibility.exports import FILES, legibility_export
from legibility.models import LegibilityStudy


class Command(BaseCommand):
    help = ("Write a legibility study's data as CSV files into DIR: judges.csv (each judge session with its "
            "outcome and completion code, as the judge admin's CSV action writes it), judgments.csv (one row per "
            "judge and item: answer, timed out, response time, gold), items.csv (the solutions judges saw) and "
            "problems.csv. Recruitment ids only with --include-recruitment-ids.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Legibility study slug.")
        parser.add_argument("--out", type=Path, required=True, help="Folder to write (created if missing).")
        parser.add_argument("--include-recruitment-ids", action="store_true",
                            help="Add PROLIFIC_PID, STUDY_ID, SESSION_ID and the link's parameters to judges.csv.")

    def handle(self, *args, study: str, out: Path, include_recruitment_ids: bool = False, **options):
        record = LegibilityStudy.objects.filter(slug=study).first()
        if record is None:
            known = ", ".join(LegibilityStudy.objects.values_list("slug", flat=True)[:20]) or "none"
            raise CommandError(f"no legibility study {study!r} (known: {known})")
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out {out} is a file; give a folder")
        with tqdm(total=len(FILES), desc="export_legibility", unit="file", disable=None) as bar:
            counts = legibility_export(record, out, include_recruitment_ids=include_recruitment_ids,
                                       progress=lambda name: bar.update(1))
        for name, rows in counts.items():
            self.stdout.write(f"{out / (name + '.csv')}: {rows} rows")
