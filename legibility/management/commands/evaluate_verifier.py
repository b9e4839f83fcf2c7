"""python manage.py evaluate_verifier --solutions FILE.jsonl [--verifier DIR] [--best-of 4] [--skip-problems N]"""
from __future__ import annotations

import json
import math
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


def latest_ready_verifier_path() -> Path:
    """The directory of the most recently created verifier whose training finished."""
    from legibility.models import Verifier

    try:
        verifier = Verifier.objects.filter(status="ready").exclude(path="").latest("created_at")
    except Verifier.DoesNotExist:
        raise CommandError("No trained verifier yet (none with status 'ready'): train one with "
                           "`manage.py legibility_round --study SLUG --round 1 --inline`, or pass --verifier DIR.")
    return Path(verifier.path)


class Command(BaseCommand):
    help = ("Score labelled solutions with a verifier and print JSON: ROC AUC, accuracy at the best threshold, "
            "balanced best-of-n accuracy, the length and majority-class baselines and counts. Problems the "
            "verifier trained on (their hashes are in its folder) are dropped and counted as overlap_problems. "
            "The file has one problem per line, shaped like "
            "../shared/data/gsm8k/example_model_solutions.jsonl: a 'question' and any number of "
            "{'solution': str, 'is_correct': bool} objects. Uses the latest ready verifier unless --verifier "
            "names a directory written by legibility.verifier.save.")

    def add_arguments(self, parser):
        parser.add_argument("--solutions", required=True, metavar="FILE.jsonl",
                            help="Labelled solutions to score (example_model_solutions.jsonl format).")
        parser.add_argument("--verifier", metavar="DIR", default=None,
                            help="Verifier directory (default: the latest Verifier with status 'ready').")
        parser.add_argument("--best-of", type=int, default=4, metavar="N",
                            help="n of the balanced best-of-n accuracy: n/2 correct and n/2 incorrect candidates "
                                 "per problem (even, default 4).")
        parser.add_argument("--skip-problems", type=int, default=0, metavar="N",
                            help="Skip the file's first N problems (lines). After `import_gsm8k --limit N` the "
                                 "verifier trained only on some of the first N test problems, so "
                                 "--skip-problems N scores problems it never saw.")
        parser.add_argument("--limit-problems", type=int, default=None, metavar="N",
                            help="Score only N problems (the first N after any skipped).")

    def handle(self, *args, **options):
        from tqdm import tqdm

        from legibility import verifier as vlib
        from legibility.examples import load_solutions_jsonl
        from legibility.overlap import overlap

        if options["best_of"] < 2 or options["best_of"] % 2:
            raise CommandError("--best-of must be an even number of at least 2")
        if options["skip_problems"] < 0:
            raise CommandError("--skip-problems must be 0 or more")
        try:
            examples = load_solutions_jsonl(options["solutions"], limit_problems=options["limit_problems"],
                                            skip_problems=options["skip_problems"])
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc))
        directory = Path(options["verifier"]) if options["verifier"] else latest_ready_verifier_path()
        try:
            verifier = vlib.load(directory)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise CommandError(f"Cannot load the verifier at {directory}: {exc}")

        # Never score a problem the verifier trained on: the verifier folder lists their hashes.
        trained_on = verifier.meta.get("train_problem_hashes") or []
        examples, overlap_problems = overlap(trained_on, examples, key=lambda e: e.problem)
        if not examples:
            raise CommandError(f"all {overlap_problems} problems of {options['solutions']} were in the verifier's "
                               "training data: nothing left to evaluate on")
        chunk = 256
        scores = []
        with tqdm(total=len(examples), desc="scoring", unit="solution", disable=options["verbosity"] < 1) as bar:
            for start in range(0, len(examples), chunk):
                part = examples[start: start + chunk]
                scores.extend(vlib.score(verifier, [e.problem for e in part], [e.solution for e in part]))
                bar.update(len(part))
        metrics = vlib.metrics_for_scores(examples, scores, best_of=options["best_of"])
        # JSON has no infinity: a best threshold of +inf (call nothing correct) prints as null.
        finite = {k: None if isinstance(v, float) and math.isinf(v) else v for k, v in metrics.items()}
        result = {"verifier": str(directory), "solutions": str(options["solutions"]),
                  "skipped_problems": options["skip_problems"], "overlap_problems": overlap_problems,
                  "guard": "train_problem_hashes" if trained_on else "none recorded", **finite}
        self.stdout.write(json.dumps(result, indent=2))
