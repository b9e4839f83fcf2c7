"""python manage.py bonus_csv --study SLUG [--out FILE]: Prolific's bulk-bonus file for a study."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.bonuses import BonusRuleError
from deliberation.bonuses import study_bonus_file
from deliberation.models import Study


class Command(BaseCommand):
    help = ("Write Prolific's bulk-bonus file for a study: no header, one 'PROLIFIC_PID,amount' line per participant "
            "owed a bonus (two decimals), from the study's bonus rules (per completed study, per minute waited in "
            "the lobby, per phase completed). Participants without a Prolific id are skipped and counted on stderr.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="The study's slug.")
        parser.add_argument("--out", type=Path, help="File to write (default: standard output).")

    def handle(self, *args, study: str, out: Path | None, **options):
        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}.")
        if out is not None and out.is_dir():
            raise CommandError(f"--out {out} is a directory; give a file name.")
        try:
            bonus = study_bonus_file(study_obj)
        except BonusRuleError as exc:
            raise CommandError(f"Study {study!r} has an invalid bonus rule: {exc}") from None
        text = bonus.csv_text()
        if out is None:
            self.stdout.write(text, ending="")
        else:
            try:
                out.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot write {out}: {exc.strerror}") from None
        self.stderr.write(f"{len(bonus.lines)} participant(s), total {bonus.total:.2f}; "
                          f"{bonus.skipped_without_id} skipped without a Prolific id.")
