"""python manage.py export_csv --study SLUG --out DIR: one CSV per entity of a study."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from deliberation.csv_export import write_csv
from deliberation.models import Candidate, Critique, Group, GroupEvent, Opinion, Rating, Study
from participants.models import Participant


class Command(BaseCommand):
    help = ("Write one CSV per entity (participants, groups, opinions, candidates, ratings, critiques, events) "
            "of a study into DIR; every column, timestamps in ISO 8601. Participant tokens are never exported.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--out", required=True, type=Path, help="Output folder (created if missing).")

    def handle(self, *args, study: str, out: Path, **options):
        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}")
        out.mkdir(parents=True, exist_ok=True)
        tables = {
            "participants": Participant.objects.filter(study=study_obj),
            "groups": Group.objects.filter(study=study_obj),
            "opinions": Opinion.objects.filter(group__study=study_obj),
            "candidates": Candidate.objects.filter(group__study=study_obj),
            "ratings": Rating.objects.filter(group__study=study_obj),
            "critiques": Critique.objects.filter(group__study=study_obj),
            "events": GroupEvent.objects.filter(group__study=study_obj),
        }
        for name, queryset in tqdm(tables.items(), desc="tables", disable=options["verbosity"] == 0):
            with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
                count = write_csv(queryset, handle, exclude=("token",))
            self.stdout.write(f"{name}.csv: {count} rows")
