"""python manage.py import_questions FILE.json|FILE.csv [--study SLUG] [--split train] [--limit N]"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from deliberation.models import Study
from deliberation.question_import import ImportFormatError, parse_questions, questions_import


class Command(BaseCommand):
    help = ("Import debate questions (with affirming/negating statements, topic and split) from JSON or CSV, "
            "e.g. ../shared/data/habermas/230118_chinchilla_questions.json. Idempotent: re-imports update.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--study", help="Also attach the imported questions to this study (slug).")
        parser.add_argument("--split", choices=["train", "iid_test", "ood_test"], help="Import only this split.")
        parser.add_argument("--limit", type=int, help="Import at most this many questions.")

    def handle(self, *args, file: Path, study=None, split=None, limit=None, **options):
        if not file.exists():
            raise CommandError(f"No such file: {file}")
        study_obj = None
        if study:
            study_obj = Study.objects.filter(slug=study).first()
            if study_obj is None:
                raise CommandError(f"No study with slug {study!r}")
        try:
            rows = parse_questions(file.read_text(encoding="utf-8"), filename=file.name)
        except (ImportFormatError, UnicodeDecodeError) as exc:
            raise CommandError(str(exc)) from None
        with tqdm(total=min(len(rows), limit or len(rows)), desc="questions", unit="q",
                  disable=options.get("verbosity", 1) == 0) as bar:
            report = questions_import(rows, source=file.name, study=study_obj, split=split, limit=limit, progress=bar)
        self.stdout.write(self.style.SUCCESS(
            f"created {report.created}, updated {report.updated}, skipped {report.skipped}"
            + (f", attached {report.attached} to {study}" if study_obj else "")))
