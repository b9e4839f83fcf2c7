"""python manage.py expand_questions --study SLUG --per-question N [--seed S] [--threshold 0.9] [--limit N]"""
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analysis.corpus import DEFAULT_THRESHOLD, CorpusError, questions_expand
from deliberation.models import Study
from generation.backends import backend_names


class Command(BaseCommand):
    help = ("Generate new debate questions from the study's questions through an arm's generation backend "
            "and the latest question_generation template. Empty outputs, non-questions, duplicates and "
            "near-duplicates (MiniLM cosine similarity above --threshold) are dropped and counted; kept questions "
            "are attached to the study with their provenance (seed questions, template version, model, seed).")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug: its questions are the seeds.")
        parser.add_argument("--per-question", type=int, required=True, help="Questions asked for per seed question.")
        parser.add_argument("--seed", type=int, default=0, help="Base seed for example choice and sampling.")
        parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                            help="Near-duplicate cosine similarity (default %(default)s).")
        parser.add_argument("--examples", type=int, default=2,
                            help="Other study questions shown with each seed as style examples (default 2).")
        parser.add_argument("--limit", type=int, help="Use only the first N seed questions.")
        parser.add_argument("--arm", help="The study arm whose generation settings (backend, server, sampling "
                                          "parameters) write the questions. Default: the study's only arm; a study "
                                          "with several must name one.")
        parser.add_argument("--backend", choices=backend_names(),
                            help="Override the arm's generation backend (its options apply only to its own).")

    def handle(self, *args, study, per_question, seed, threshold, examples, limit=None, backend=None, arm=None,
               **options):
        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}")
        total = min(study_obj.questions.count(), limit or 10**9)
        try:
            with tqdm(total=total, desc="seed questions", unit="q", disable=options.get("verbosity", 1) == 0) as bar:
                report = questions_expand(study=study_obj, per_question=per_question, seed=seed, threshold=threshold,
                                          examples=examples, limit=limit, backend_name=backend, arm=arm,
                                          progress=bar.update)
        except CorpusError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(report.summary()))
