"""python manage.py split_questions --by subtopic --test-share 0.2 --seed S"""
from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from analysis.corpus import CorpusError, subtopic_split
from deliberation.models import Question


class Command(BaseCommand):
    help = ("Subtopic-held-out split: whole subtopics (from cluster_questions), drawn with --seed, go to the test "
            "split until it holds --test-share of the questions; stores Question.subtopic_split (train/test). "
            "Studies with questions_from_train_split draw live groups from the train split.")

    def add_arguments(self, parser):
        parser.add_argument("--by", choices=["subtopic"], default="subtopic", help="Unit held out (subtopic).")
        parser.add_argument("--test-share", type=float, default=0.2, help="Share of questions in the test split.")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the subtopic draw.")

    def handle(self, *args, by, test_share, seed, **options):
        rows = list(Question.objects.exclude(subtopic=None).values_list("id", "subtopic"))
        unclustered = Question.objects.filter(subtopic=None).count()
        if not rows:
            raise CommandError("No question has a subtopic; run cluster_questions first.")
        try:
            split = subtopic_split([s for _, s in rows], test_share=test_share, seed=seed)
        except CorpusError as exc:
            raise CommandError(str(exc)) from None
        with transaction.atomic():
            Question.objects.bulk_update([Question(pk=pk, subtopic_split=split[s]) for pk, s in rows],
                                         ["subtopic_split"], batch_size=1000)
            Question.objects.filter(subtopic=None).update(subtopic_split="")
        counts = Counter(split[s] for _, s in rows)
        held = sorted(s for s, v in split.items() if v == "test")
        self.stdout.write(self.style.SUCCESS(
            f"train {counts['train']} questions, test {counts['test']} questions ({len(held)} of {len(split)} "
            f"subtopics held out)" + (f"; {unclustered} questions without a subtopic left unsplit"
                                      if unclustered else "")))
