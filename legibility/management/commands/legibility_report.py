"""python manage.py legibility_report --study SLUG --out FILE.html [--n-boot N]"""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from legibility.models import LegibilityStudy
from legibility.reports import study_report_standalone


class Command(BaseCommand):
    help = ("Write a legibility study's report as one self-contained HTML file (plotly.js inlined, opens offline): "
            "judge accuracy and median time per round and prover role with 95% bootstrap intervals over judges "
            "(judges at chance level excluded), verifier AUC / balanced best-of-4 / sneaky attack success on "
            "held-out solutions, prover accuracy, and the legibility tax (prover vs judge accuracy per round).")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--out", type=Path, required=True, help="HTML file to write.")
        parser.add_argument("--n-boot", type=int, default=1000, help="Bootstrap resamples (default 1000).")

    def handle(self, *args, study: str, out: Path, n_boot: int, **options):
        record = LegibilityStudy.objects.filter(slug=study).first()
        if record is None:
            raise CommandError(f"no legibility study {study!r}")
        if n_boot < 10:
            raise CommandError("--n-boot must be at least 10")
        page = study_report_standalone(record, n_boot=n_boot, generated=timezone.now().strftime("%Y-%m-%d %H:%M UTC"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        self.stdout.write(f"wrote {out} ({len(page) // 1024} KiB)")
