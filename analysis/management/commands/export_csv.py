"""python manage.py export_csv --study SLUG --out DIR: one CSV per entity of a study (``export`` in short)."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from deliberation.models import Study


class Command(BaseCommand):
    help = ("Write one CSV per entity (participants, groups, opinions, candidates, ratings, critiques, events) "
            "of a study into DIR; every column, timestamps in ISO 8601. Participant tokens are never exported, "
            "recruitment ids and the join link's parameters neither; cells a spreadsheet would run as a formula "
            "get a leading quote. "
            "The same export as 'manage.py export --format csv' without the wide table; see that command for "
            "Parquet, JSON lines and training sets.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--out", required=True, type=Path, help="Output folder (created if missing).")

    def handle(self, *args, study: str, out: Path, **options):
        from analysis.exports import export_study

        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}")
        with tqdm(desc="tables", unit="file", disable=options["verbosity"] == 0) as bar:
            counts = export_study(study_obj, out, ("csv",), wide=False, manifest=False,
                                  progress=lambda name: bar.update(1))
        for name, count in counts.items():
            self.stdout.write(f"{name}: {count} rows")
