"""python manage.py legibility_report --study SLUG --out FILE.html [--n-boot N] [--no-tables]"""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from legibility.models import LegibilityStudy
from legibility.reports import study_counts, study_report_standalone, study_tables, tables_text


class Command(BaseCommand):
    help = ("Write a legibility study's report as one self-contained HTML file (plotly.js inlined, opens offline): "
            "judge accuracy and median time per round and prover role with 95% bootstrap intervals over judges "
            "(judges at chance level excluded), verifier AUC / balanced best-of-4 / sneaky attack success on "
            "held-out solutions, prover accuracy, and the legibility tax (prover vs judge accuracy per round). "
            "Also prints the per-round numbers behind the figures (unless --no-tables).")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--out", type=Path, required=True, help="HTML file to write.")
        parser.add_argument("--n-boot", type=int, default=1000, help="Bootstrap resamples (default 1000).")
        parser.add_argument("--no-tables", action="store_true",
                            help="Do not print the per-round tables (judges, verifiers, provers).")

    def handle(self, *args, study: str, out: Path, n_boot: int, no_tables: bool = False, **options):
        record = LegibilityStudy.objects.filter(slug=study).first()
        if record is None:
            raise CommandError(f"no legibility study {study!r}")
        if n_boot < 10:
            raise CommandError("--n-boot must be at least 10")
        page = study_report_standalone(record, n_boot=n_boot, generated=timezone.now().strftime("%Y-%m-%d %H:%M UTC"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        self.stdout.write(f"wrote {out} ({len(page) // 1024} KiB)")
        if not no_tables:
            counts = study_counts(record)
            self.stdout.write(" · ".join(f"{k}: {v}" for k, v in counts.items()))
            self.stdout.write(tables_text(study_tables(record, n_boot=n_boot)))
