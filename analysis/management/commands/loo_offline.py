"""python manage.py loo_offline --study SLUG [--arm NAME] [--backend NAME] [--reward-model ID] [--groups N] [--inline]
[--json]"""
from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from deliberation.models import Study


class Command(BaseCommand):
    help = ("Offline leave-one-out sensitivity (Bakker et al. 2022): for each finished group, regenerate the "
            "winning round's statement (same template, slot and seed) with every opinion and with each member "
            "left out in turn, score every member against each statement with a trained reward model, and report "
            "the predicted drop in the left-out member's agreement next to the drop for the members who stayed "
            "in (intervals from resampling groups). Groups the reward model was trained on are left out "
            "(--include-trained-on scores them, reported apart as 'trained on'). Runs as an analysis job "
            "(Admin → Analysis jobs) on Celery workers, one subtask per group, while this command shows its "
            "progress; --inline runs it here.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Slug of the study to analyse.")
        parser.add_argument("--arm", help="The study arm whose finished groups are analysed and whose generation "
                                          "backend and options regenerate them. Default: the study's only arm; a "
                                          "study with several must name one.")
        parser.add_argument("--backend", help="Generation backend (extractive, embedded, openai, ...; default: the "
                                              "arm's own; its server and generator settings apply only to its own).")
        parser.add_argument("--reward-model", type=int, dest="reward_model",
                            help="Id of a trained reward model (default: the study's, else its latest trained one).")
        parser.add_argument("--groups", type=int, help="Analyse only the first N finished groups.")
        parser.add_argument("--include-trained-on", action="store_true", dest="include_trained_on",
                            help="Also score the groups whose ratings the reward model was trained on (left out by "
                                 "default: its predictions there are memory). They are reported apart: rows marked "
                                 "trained_on, figures under 'trained on', never in the main summary.")
        parser.add_argument("--inline", action="store_true", help="Run in this process instead of on Celery.")
        parser.add_argument("--timeout", type=float, default=3600.0,
                            help="Seconds to wait for the Celery job before giving up waiting (it keeps running).")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print the whole result (summary and one row per left-out member) as JSON.")

    def handle(self, *args, study: str, backend: str | None, reward_model: int | None, groups: int | None,
               inline: bool, timeout: float, as_json: bool, include_trained_on: bool = False, arm: str | None = None,
               **options):
        from analysis.loo_offline import LooOfflineError, job_create, job_public_result, job_run_inline
        from analysis.models import AnalysisJob

        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}")
        if groups is not None and groups < 1:
            raise CommandError("--groups must be at least 1")
        try:
            job = job_create(study=study_obj, backend=backend, reward_model_id=reward_model, groups=groups,
                             include_trained_on=include_trained_on, arm=arm)
        except LooOfflineError as exc:
            raise CommandError(str(exc)) from None
        quiet = options.get("verbosity", 1) == 0
        with tqdm(total=job.total, desc=f"leave-one-out job {job.pk}", unit="group", disable=quiet) as bar:
            if inline:
                try:
                    job = job_run_inline(job, progress=lambda done, total: bar.update(done - bar.n))
                except Exception:
                    job.refresh_from_db()
            else:
                from analysis.tasks import loo_offline_start

                loo_offline_start.delay(job_id=job.pk)
                deadline = time.monotonic() + timeout
                while True:
                    job.refresh_from_db()
                    bar.update(job.done - bar.n)
                    if job.status in (AnalysisJob.Status.DONE, AnalysisJob.Status.FAILED):
                        break
                    if time.monotonic() > deadline:
                        raise CommandError(f"job {job.pk} still {job.status} after {timeout:.0f} s; "
                                           "follow it in the admin")
                    time.sleep(1.0)
        result = job_public_result(job)
        if job.status == AnalysisJob.Status.FAILED:
            raise CommandError(f"job {job.pk} failed: {job.error.splitlines()[0] if job.error else 'unknown'}")
        if as_json:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(self.style.SUCCESS(f"job {job.pk} (arm {result['arm']}): {job.total} groups, "
                                             f"{len(result['rows'])} statements with one member left out"))
        self._print_summary(result["summary"] or [])
        if result.get("summary_trained_on"):
            self.stdout.write(self.style.WARNING(
                f"trained on: groups {result['trained_on_group_ids']} were used to train the reward model; their "
                "figures, apart and not comparable:"))
            self._print_summary(result["summary_trained_on"])

    def _print_summary(self, rows):
        for row in rows:
            low = "–" if row["low"] is None else f"{row['low']:+.3f}"
            high = "–" if row["high"] is None else f"{row['high']:+.3f}"
            self.stdout.write(f"  {row['measure']:<20} {row['role']:<20} {row['estimate']:+.3f}  [{low}, {high}]  "
                              f"n={row['n']} groups={row['groups']}")
