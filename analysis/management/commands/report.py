"""python manage.py report --study SLUG --out report.html [--no-representation] [--bootstrap N]"""
from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from deliberation.models import Study


class Command(BaseCommand):
    help = ("Write a study's analyst report as one self-contained HTML file (plotly.js inlined, opens offline): "
            "agreement and quality distributions, endorsement of the winners, preference over the other candidates, "
            "first → revised winner, time per phase, dropout, leave-one-out excluded vs included members and "
            "minority representation, all with 95% intervals from resampling groups. The same figures as the "
            "analyst page (/analysis/study/SLUG/report/). Human answers only unless --include-bots / "
            "--include-simulated.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Slug of the study (see Admin → Studies).")
        parser.add_argument("--out", type=Path, default=None, help="Output file (default: report-SLUG.html).")
        parser.add_argument("--no-representation", action="store_true",
                            help="Skip minority representation (it embeds every opinion with all-MiniLM-L6-v2).")
        parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples of groups (default 1000).")
        parser.add_argument("--seed", type=int, default=None, help="Bootstrap seed (default: the study's id).")
        parser.add_argument("--dissent-at-most", type=int, default=3, choices=range(1, 8), metavar="1-7",
                            help="Leave-one-out dissent: agreement at or below this counts (default 3).")
        parser.add_argument("--include-bots", action="store_true",
                            help="Also count the answers the take-over bot wrote for dropped members.")
        parser.add_argument("--include-simulated", action="store_true",
                            help="Also count simulated participants (run_bots) and their answers.")

    def handle(self, *args, study: str, out: Path | None, no_representation: bool, bootstrap: int,
               seed: int | None, dissent_at_most: int = 3, include_bots: bool = False,
               include_simulated: bool = False, **options):
        from analysis.reports.build import build_report
        from analysis.reports.data import load_group_texts, load_offline_loo, load_questionnaire, load_study
        from analysis.reports.render import render_standalone

        found = Study.objects.filter(slug=study).first()
        if found is None:
            raise CommandError(f"No study with slug {study!r}")
        if bootstrap < 1:
            raise CommandError("--bootstrap must be at least 1")
        out = out or Path(f"report-{found.slug}.html")
        if out.parent and not out.parent.exists():
            raise CommandError(f"Folder {out.parent} does not exist")
        steps = ["load the study", "minority representation", "metrics and figures", "write HTML"]
        started = time.perf_counter()
        with tqdm(total=len(steps), desc="report", unit="step", file=self.stderr._out) as bar:
            bar.set_postfix_str(steps[0])
            who = {"include_bots": include_bots, "include_simulated": include_simulated}
            data = load_study(found, **who)
            bar.update()
            representation, note = None, None
            if not no_representation:
                bar.set_postfix_str(steps[1])
                from analysis.representation import representation_frame

                try:
                    representation = representation_frame(load_group_texts(found, **who))
                except (RuntimeError, OSError) as exc:  # the embedding model is not installed or unreadable
                    note = f"Could not embed the texts: {exc}"[:300]
                    self.stderr.write(note)
            bar.update()
            bar.set_postfix_str(steps[2])
            offline, offline_note = load_offline_loo(found)
            report = build_report(data, representation=representation, representation_note=note,
                                  offline_loo=offline, offline_loo_note=offline_note, n_boot=bootstrap,
                                  seed=found.pk if seed is None else seed, dissent_at_most=dissent_at_most)
            report.questionnaire = load_questionnaire(found, include_simulated=include_simulated)
            bar.update()
            bar.set_postfix_str(steps[3])
            out.write_text(render_standalone(report, generated=timezone.now().isoformat(timespec="seconds")),
                           encoding="utf-8")
            bar.update()
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
        self.stdout.write(self.style.SUCCESS(
            f"Wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(report.figures)} figures; {counts}) "
            f"in {time.perf_counter() - started:.1f} s"))
