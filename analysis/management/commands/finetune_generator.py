"""python manage.py finetune_generator --study SLUG [--min-quality X] [--winners-only] [--lora] [--use] [--queue]"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from analysis.exports import DEFAULT_MIN_QUALITY
from analysis.generator.train import GeneratorConfig
from analysis.models import GeneratorModel
from deliberation.models import Study

DEFAULTS = GeneratorConfig()


class Command(BaseCommand):
    help = ("Fine-tune the statement generator (SmolLM2-135M-Instruct, or --parent's weights) with TRL's "
            "SFTTrainer on the statements the study's groups endorsed: model-written candidates whose mean human "
            "quality rating is at least --min-quality (as export --min-quality; bot and simulated answers never "
            "count). Prompt: the candidate's stored rendered prompt without its assistant prefill; completion: the "
            "statement (it starts with the prefill, which serving keeps in the prompt). Whole groups are held out "
            "for the validation loss (reported before and after). Registers a new version (Admin → Generator "
            "models) under GENERATOR_MODELS_DIR, never overwritten; --use makes the study serve it once it has "
            "finished (a failed run changes nothing). CPU defaults finish in minutes; a GPU is used when present.")

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Slug of the study whose statements to train on.")
        parser.add_argument("--min-quality", type=float, default=DEFAULT_MIN_QUALITY,
                            help=f"Lowest mean quality rating (1-7) of a statement kept (default {DEFAULT_MIN_QUALITY}"
                                 ", as export).")
        parser.add_argument("--winners-only", action="store_true", help="Only statements that won their round.")
        parser.add_argument("--include-simulated", action="store_true",
                            help="Also count simulated participants' quality ratings (run_bots, benchmarks/loop.py). "
                                 "Never for a real study's generator; recorded in the version's config.")
        parser.add_argument("--lora", action="store_true",
                            help="Train a LoRA adapter (a few MB, merged at load) instead of every weight.")
        parser.add_argument("--lora-r", type=int, default=DEFAULTS.lora_r)
        parser.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps)
        parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
        parser.add_argument("--learning-rate", type=float, default=None,
                            help="Default 2e-4 with --lora, 2e-5 for the full model.")
        parser.add_argument("--max-length", type=int, default=DEFAULTS.max_length, help="Tokens per example.")
        parser.add_argument("--max-train-examples", type=int, default=DEFAULTS.max_train_examples)
        parser.add_argument("--max-validation-examples", type=int, default=DEFAULTS.max_validation_examples)
        parser.add_argument("--val-fraction", type=float, default=DEFAULTS.val_fraction,
                            help="Share of groups held out for the validation loss.")
        parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
        parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: half the cores, ≤ 4).")
        parser.add_argument("--parent", type=int, default=None,
                            help="Fine-tune this finished generator version further (default: the base model).")
        parser.add_argument("--name", default="")
        parser.add_argument("--use", action="store_true", help="Serve the new version in the study once finished.")
        parser.add_argument("--queue", action="store_true", help="Enqueue a Celery task and return at once.")

    def handle(self, *args, study: str, **options):
        from analysis.generator.registry import (
            GeneratorModelError,
            generator_model_create,
            generator_model_train,
            generator_model_use,
            study_sft_rows,
            training_data_check,
        )

        study_obj = Study.objects.filter(slug=study).first()
        if study_obj is None:
            raise CommandError(f"No study with slug {study!r}")
        config = GeneratorConfig(
            lora=options["lora"], lora_r=options["lora_r"], max_steps=options["max_steps"],
            batch_size=options["batch_size"], learning_rate=options["learning_rate"],
            max_length=options["max_length"], max_train_examples=options["max_train_examples"],
            max_validation_examples=options["max_validation_examples"], val_fraction=options["val_fraction"],
            seed=options["seed"], threads=options["threads"], min_quality=options["min_quality"],
            winners_only=options["winners_only"], include_simulated=options["include_simulated"])
        parent = None
        if options["parent"] is not None:
            parent = GeneratorModel.objects.filter(pk=options["parent"], study=study_obj).first()
            if parent is None:
                raise CommandError(f"Study {study!r} has no generator model {options['parent']}")
        try:
            rows = study_sft_rows(study=study_obj, min_quality=config.min_quality, winners_only=config.winners_only,
                                  include_simulated=config.include_simulated)
            training_data_check(study=study_obj, rows=rows, config=config)
            version = generator_model_create(study=study_obj, config=config, name=options["name"], parent=parent)
        except GeneratorModelError as exc:
            raise CommandError(str(exc)) from None
        if options["queue"]:
            from analysis.tasks import finetune_generator

            finetune_generator.delay(generator_model_id=version.pk, use=options["use"])
            self.stdout.write(json.dumps({"generator_model_id": version.pk, "status": "queued"}))
            return
        verbose = options.get("verbosity", 1) > 0

        def progress(step, total, loss):
            if verbose:
                self.stderr.write(f"step {step}/{total} loss {loss:.4f}")

        try:
            version = generator_model_train(generator_model_id=version.pk, progress=progress)
        except Exception as exc:
            raise CommandError(f"generator model {version.pk} failed (the study's generator is unchanged): "
                               f"{str(exc)[:2000]}") from None
        if options["use"]:
            generator_model_use(study=study_obj, generator_model=version)
        self.stdout.write(json.dumps({"generator_model_id": version.pk, "status": version.status,
                                      "checkpoint": version.checkpoint_path, "data_hash": version.data_hash,
                                      "parent": version.parent_id, "base_model": version.base_model,
                                      "served": options["use"], "metrics": version.metrics}, indent=2))
