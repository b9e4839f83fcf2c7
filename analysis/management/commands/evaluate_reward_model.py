"""python manage.py evaluate_reward_model MODEL_ID [--seed S]"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from analysis.models import RewardModel


class Command(BaseCommand):
    help = ("Evaluate a trained reward model on groups it never trained on (those it held out, and groups rated "
            "after it was trained; never its training groups: a model without such groups is refused) and print "
            "JSON: pairwise ranking accuracy, Spearman with the members' real rankings and MAE on the 7-point "
            "agreement, for the model and side by side for the baselines (random, candidate length, embedding "
            "cosine between opinion and candidate; baselines mapped to 1-7 by a line fitted on the training groups).")

    def add_arguments(self, parser):
        parser.add_argument("model_id", type=int, help="Id of a RewardModel (see Admin → Reward models).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the random baseline.")

    def handle(self, *args, model_id: int, seed: int, **options):
        from analysis.reward.registry import RewardModelError, reward_model_evaluate

        reward_model = RewardModel.objects.filter(pk=model_id).first()
        if reward_model is None:
            raise CommandError(f"No reward model {model_id}")
        if reward_model.status != RewardModel.Status.DONE:
            raise CommandError(f"Reward model {model_id} is {reward_model.status}, not trained")
        try:
            report = reward_model_evaluate(reward_model=reward_model, seed=seed)
        except RewardModelError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(report, indent=2))
