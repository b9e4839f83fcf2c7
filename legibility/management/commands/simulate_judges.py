"""python manage.py simulate_judges --study SLUG --judges N --accuracy P [--seed S] [--chance-judges K]
[--think-seconds T]"""
from __future__ import annotations

import json
import statistics

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from legibility.models import JudgeItem, LegibilityStudy
from legibility.simulation import simulate_judges


class Command(BaseCommand):
    help = ("Simulated judges for pilots and demos: each joins, consents and answers its whole queue through the "
            "real judge services (the same calls as the judge pages), right with probability --accuracy (seeded); "
            "--chance-judges more answer by a coin, to see the chance-level exclusion work. Times are the "
            "server's: a judge pauses for real (uniform 0..--think-seconds) between seeing and answering an item, "
            "and answers at once by default. Refused on a study that has real judges. Idempotent per --seed.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--judges", type=int, required=True, metavar="N", help="Judges with --accuracy.")
        parser.add_argument("--accuracy", type=float, required=True, metavar="P",
                            help="Probability that such a judge answers an item rightly (0 to 1).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the answers and pauses (default 0).")
        parser.add_argument("--chance-judges", type=int, default=0, metavar="K",
                            help="Additional judges who answer by a fair coin (default 0).")
        parser.add_argument("--think-seconds", type=float, default=0.0, metavar="T",
                            help="Real pause before each answer, uniform between 0 and T seconds (default 0: "
                                 "answer at once). Above the study's seconds per item it becomes a timeout.")

    def handle(self, *args, study: str, judges: int, accuracy: float, seed: int, chance_judges: int,
               think_seconds: float, **options):
        record = LegibilityStudy.objects.filter(slug=study).first()
        if record is None:
            raise CommandError(f"no legibility study {study!r}")
        quiet = options.get("verbosity", 1) == 0
        with tqdm(desc="simulated judges", unit="judge", disable=quiet) as bar:
            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

            try:
                results = simulate_judges(study=record, judges=judges, accuracy=accuracy, seed=seed,
                                          chance_judges=chance_judges, think_seconds=think_seconds,
                                          progress=progress)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        times = list(JudgeItem.objects.filter(session_id__in=[r.session_id for r in results],
                                              response_ms__isnull=False).values_list("response_ms", flat=True))
        answered = sum(r.answered for r in results)
        self.stdout.write(json.dumps({
            "study": record.slug, "judges": len(results), "answered": answered,
            "timed_out": sum(r.timed_out for r in results),
            "accuracy": round(sum(r.right for r in results) / answered, 4) if answered else None,
            "median_response_ms": statistics.median(times) if times else None,
            "flagged_at_chance": sum(r.flagged for r in results),
            "flagged_among_chance_judges": sum(r.flagged for r in results[judges:]),
        }, indent=2))
