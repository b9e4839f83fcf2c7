"""python manage.py cluster_questions [--k K] [--seed S] [--runs R]"""
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from analysis.corpus import DEFAULT_K, ENSEMBLE_RUNS, CorpusError, agreement, cluster_embeddings, embed_questions
from deliberation.models import Question


class Command(BaseCommand):
    help = ("Embed every question in the database (MiniLM: question and affirming statement) and cluster them "
            "plus TF-IDF/LSA word features into K subtopics by consensus clustering (k-means ensemble, then "
            "average linkage; design in analysis/corpus.py); stores "
            "Question.subtopic. Question.topic is read only to print NMI/ARI against it where it exists.")

    def add_arguments(self, parser):
        parser.add_argument("--k", type=int, default=DEFAULT_K, help="Number of subtopics (default %(default)s, "
                                                                     "as in the seed study).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the k-means ensemble.")
        parser.add_argument("--runs", type=int, default=ENSEMBLE_RUNS,
                            help="k-means runs in the ensemble (default %(default)s).")

    def handle(self, *args, k, seed, runs, **options):
        quiet = options.get("verbosity", 1) == 0
        if runs < 1:
            raise CommandError(f"--runs must be at least 1 (got {runs})")
        rows = list(Question.objects.order_by("id").values_list("id", "text", "affirming_statement", "topic"))
        if not rows:
            raise CommandError("No questions in the database; run import_questions first.")
        if len(rows) < k:
            raise CommandError(f"cannot make {k} clusters of {len(rows)} questions; lower --k")
        started = time.perf_counter()
        with tqdm(total=len(rows), desc="embedding", unit="q", disable=quiet) as bar:
            emb = embed_questions([r[1] for r in rows], [r[2] for r in rows], progress=bar.update)
        try:
            with tqdm(total=runs, desc="clustering", unit="run", disable=quiet) as bar:
                labels = cluster_embeddings(emb, k, texts=[f"{r[1]} {r[2]}" for r in rows], seed=seed, runs=runs,
                                            progress=bar.update)
        except CorpusError as exc:
            raise CommandError(str(exc)) from None
        with transaction.atomic():
            questions = [Question(pk=r[0], subtopic=int(label)) for r, label in zip(rows, labels, strict=True)]
            Question.objects.bulk_update(questions, ["subtopic"], batch_size=1000)
        message = f"{len(rows)} questions in {k} subtopics ({time.perf_counter() - started:.0f} s)"
        labelled = [(r[3], int(label)) for r, label in zip(rows, labels, strict=True) if r[3] is not None]
        if labelled:
            score = agreement([x[1] for x in labelled], [x[0] for x in labelled])
            message += (f"; against Question.topic ({score['n']} questions): "
                        f"NMI {score['nmi']:.3f}, ARI {score['ari']:.3f}")
        self.stdout.write(self.style.SUCCESS(message))
