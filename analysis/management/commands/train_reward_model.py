"""python manage.py train_reward_model --study SLUG [--holdout group|question|topic] [--queue] [model options]"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analysis.models import RewardModel
from analysis.reward.config import add_config_arguments, config_from_options
from deliberation.models import Study


class Command(BaseCommand):
    help = ("Train a personalised reward model on a study's stored ratings and register it (Admin → Reward models). "
            "Input: question + one member's opinion (+ critique in the critique round) + one candidate; target: "
            "that member's 7-point agreement (regression) and their ranking (Bradley-Terry). Whole groups (or "
            "every group of some questions or topics, --holdout) are held out for validation, never single rows. "
            "Each run registers a new version; no checkpoint is ever overwritten. Saves a safetensors checkpoint "
            "with its config, data hash and metrics under REWARD_MODELS_DIR and prints the model id and metrics as "
            "JSON. With --queue the training runs on a Celery worker instead and its progress shows in the admin.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Slug of the study whose ratings to train on.")
        parser.add_argument("--name", default="", help="A name for the registry (default: '<slug> reward model').")
        parser.add_argument("--queue", action="store_true", help="Enqueue a Celery task and return at once.")
        parser.add_argument("--holdout", choices=RewardModel.Holdout.values, default=RewardModel.Holdout.GROUP,
                            help="What to hold out for validation: 'group' (a share of the groups), 'question' "
                                 "(every group of a share of the questions) or 'topic' (every group of a share of "
                                 "the topics: Question.subtopic if it exists, else Question.topic). The share is "
                                 "--val-fraction. Default: group.")
        parser.add_argument("--threads", type=int, default=0,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared CPU).")
        add_config_arguments(parser)

    def handle(self, *args, study: str, name: str, queue: bool, threads: int, holdout: str, **options):
        from analysis.reward.registry import (
            RewardModelError,
            reward_model_create,
            reward_model_train,
            study_rating_records,
            training_data_check,
        )

        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}")
        try:
            training_data_check(study=study_obj, records=study_rating_records(
                study=study_obj, include_simulated=bool(options.get("config_include_simulated"))))
            reward_model = reward_model_create(study=study_obj, config=config_from_options(options), name=name,
                                               holdout=holdout)
        except (RewardModelError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if queue:
            from analysis.tasks import train_reward_model

            train_reward_model.delay(reward_model_id=reward_model.pk)
            self.stdout.write(json.dumps({"reward_model_id": reward_model.pk, "status": "queued"}))
            return
        with tqdm(desc=f"reward model {reward_model.pk}", unit="step",
                  disable=options.get("verbosity", 1) == 0) as bar:
            def progress(step, total, loss):
                bar.total = total
                if loss == loss:  # NaN: the hybrid's cross-fitting steps have no loss to show
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.update(step - bar.n)

            try:
                reward_model = reward_model_train(reward_model_id=reward_model.pk, progress=progress)
            except RewardModelError as exc:
                raise CommandError(f"reward model {reward_model.pk} failed: {exc}") from None
        self.stdout.write(json.dumps({"reward_model_id": reward_model.pk, "status": reward_model.status,
                                      "checkpoint": reward_model.checkpoint_path, "data_hash": reward_model.data_hash,
                                      "holdout": reward_model.holdout,
                                      "validation_group_ids": reward_model.validation_group_ids,
                                      "metrics": reward_model.metrics}, indent=2))
