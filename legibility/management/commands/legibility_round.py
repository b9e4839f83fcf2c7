"""python manage.py legibility_round --study SLUG --round K [--inline] [--provers N] [--improve M --reward R] ..."""
from __future__ import annotations

import json
from dataclasses import fields

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from legibility.models import LegibilityStudy, Verifier
from legibility.rewards import REWARDS
from legibility.rounds import verifier_create, verifier_train

DEFAULT_REWARD = "src"

# VerifierConfig fields that get a command-line option (the rest keep their defaults).
CONFIG_OPTIONS = ("backbone", "text", "features", "trees", "error_model", "error_model_problems", "epochs",
                  "batch_size", "max_steps", "max_length", "learning_rate", "train_layers", "classification_weight",
                  "head_l2", "seed", "threads", "device")


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def _layers(value: str) -> int | None:
    return None if value.lower() in ("all", "none") else int(value)


class Command(BaseCommand):
    help = ("One round of a legibility study. Trains a fresh verifier for round K on the verifier half's solutions "
            "from the base prover (the shipped solutions, round 0) and every earlier round's provers, a balanced "
            "mixture (each (round, role) of at least 20 solutions contributes equally, no solution more than 3 "
            "times), with the Bradley-Terry + centring loss; evaluates it on held-out problems' "
            "solutions (AUC, balanced best-of-4, attack success); saves it under LEGIBILITY_VERIFIER_DIR and "
            "records a Verifier row. --inline trains here with a progress bar; without it the training is queued "
            "for the Celery worker and its progress shows in the admin (the worker trains the verifier only, so "
            "--improve and --provers need --inline). --improve grpo|expert_iteration then trains the prover "
            "against the frozen new verifier with the --reward of your choice (src, the default; cgc; goodhart): "
            "TRL GRPO, or expert iteration for CPU-only machines, which keeps the best of k samples per (problem, "
            "role) by that reward; the same command runs at full scale on a GPU host. --provers N then has the "
            "helpful and sneaky provers (the improved one when --improve ran) write round-K solutions. The default "
            "verifier judges each solution alone from checkable evidence (recomputed calculator notes, the final "
            "answer against the last computation, the problem's numbers used, length) and the score of an error "
            "model (boosted trees that learned to tell GSM8K training problems' worked solutions from synthetic "
            "wrong ones: a step missing, a wrong number, a wrong operation; the study's prover and held-out halves "
            "left out): a linear head trained with the Bradley-Terry + centring + balanced cross-entropy loss plus "
            "boosted trees, a few minutes on a CPU; "
            "--text 1 adds MiniLM features of (problem, solution), --train-layers all fine-tunes the encoder.")

    def add_arguments(self, parser):
        from legibility.verifier import VerifierConfig

        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--round", type=int, required=True, dest="round_", metavar="K", help="Round K (1, 2, ...).")
        parser.add_argument("--inline", action="store_true", help="Train in this process (default: Celery task).")
        parser.add_argument("--max-train-problems", type=int, default=None,
                            help="Train on at most this many verifier-half problems (seeded; all their solutions).")
        parser.add_argument("--max-heldout-problems", type=int, default=None,
                            help="Evaluate on at most this many held-out problems (seeded).")
        parser.add_argument("--provers", type=int, default=0, metavar="N",
                            help="After training: helpful and sneaky provers write solutions for round K on N "
                                 "problems of each half (prover, verifier, heldout). 0 = skip (default).")
        parser.add_argument("--improve", choices=("grpo", "expert_iteration"), default=None,
                            help="After training (needs --inline): improve the prover against the frozen verifier "
                                 "with the --reward: grpo = TRL GRPOTrainer; expert_iteration = sample "
                                 "--improve-samples per (problem, role), keep the best by the chosen reward (SRC "
                                 "by default), fine-tune on the kept solutions.")
        parser.add_argument("--reward", choices=tuple(REWARDS), default=None,
                            help="Prover reward for --improve (RESEARCH.md section 2): src = signed relative "
                                 "convincingness (the paper's best), cgc = correctness-gated convincingness, "
                                 "goodhart = the verifier score alone. Default: src.")
        parser.add_argument("--improve-problems", type=int, default=8, metavar="N",
                            help="Prover-half problems to improve the prover on (seeded). Default: 8.")
        parser.add_argument("--improve-steps", type=int, default=None,
                            help="GRPO optimiser steps (default: ProverTrainConfig.max_steps).")
        parser.add_argument("--improve-samples", type=int, default=None,
                            help="Expert iteration: samples per (problem, role) (default: 4).")
        parser.add_argument("--improve-max-tokens", type=int, default=None,
                            help="Longest prover completion while improving (default: 256).")
        helps = VerifierConfig.help()
        defaults = VerifierConfig()
        for name in CONFIG_OPTIONS:
            default = getattr(defaults, name)
            kind = {"backbone": str, "device": str, "learning_rate": float, "classification_weight": float,
                    "head_l2": float, "text": _flag, "features": _flag, "train_layers": _layers}.get(name, int)
            parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                                help=f"{helps[name]} Default: {default}.")

    def handle(self, *args, study: str, round_: int, inline: bool, provers: int, improve: str | None,
               reward: str | None, **options):
        from legibility.verifier import VerifierConfig

        record = LegibilityStudy.objects.filter(slug=study).first()
        if record is None:
            raise CommandError(f"no legibility study {study!r} (import_gsm8k --study {study} creates one)")
        if round_ < 1:
            raise CommandError("--round starts at 1 (round 0 is the base prover's shipped solutions)")
        if provers < 0:
            raise CommandError("--provers must be 0 or more")
        if not inline and (improve or provers):
            given = " and ".join(name for name, value in (("--improve", improve), ("--provers", provers)) if value)
            raise CommandError(f"{given} need --inline: they run in this process right after the verifier has "
                               "trained, and the Celery task trains the verifier only. Add --inline (the same "
                               "command runs at full scale on a GPU host), or drop them to queue the training.")
        if not inline and str(getattr(settings, "CELERY_BROKER_URL", "")).startswith("memory://"):
            raise CommandError("No Celery broker is configured (CELERY_BROKER_URL is memory://, as in the local "
                               "settings without REDIS_URL), so a queued training would never run. Set REDIS_URL "
                               "here and for a worker (celery -A config worker -Q celery), or add --inline.")
        if reward is not None and not improve:
            raise CommandError("--reward chooses the prover's reward while improving it: add --improve "
                               "grpo|expert_iteration (and --inline)")
        options["reward"] = reward or DEFAULT_REWARD
        known = {f.name for f in fields(VerifierConfig)}
        config = {name: options[name] for name in CONFIG_OPTIONS if options.get(name) is not None and name in known}
        config.setdefault("seed", record.seed)
        config = VerifierConfig.from_dict(config).to_dict()
        limits = {"max_train_problems": options.get("max_train_problems"),
                  "max_heldout_problems": options.get("max_heldout_problems")}
        verifier = verifier_create(study=record, round_=round_, config=config)
        if not inline:
            from legibility.tasks import train_verifier_round

            train_verifier_round.delay(verifier_id=verifier.pk, **limits)
            self.stdout.write(f"queued verifier {verifier.pk} (round {round_}); progress in the admin")
            return
        quiet = options.get("verbosity", 1) == 0
        with tqdm(desc=f"verifier round {round_}", unit="step", disable=quiet) as bar:
            def progress(step, total, loss):
                bar.total = total
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.update(step - bar.n)

            try:
                verifier = verifier_train(verifier_id=verifier.pk, progress=progress, **limits)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"verifier": verifier.pk, "round": round_, "path": verifier.path,
                                      "n_train": verifier.n_train, "n_heldout": verifier.n_heldout,
                                      "heldout": verifier.metrics.get("heldout", {})}, indent=2))
        if improve:
            self._improve(record, verifier, improve, options, quiet)
            verifier.refresh_from_db()
        if provers:
            self._provers(record, verifier, round_, provers, quiet)

    def _improve(self, study: LegibilityStudy, verifier: Verifier, method: str, options: dict, quiet: bool):
        from legibility.rounds import prover_improve

        config = {key: options[option] for key, option in (("max_steps", "improve_steps"),
                                                           ("samples_per_problem", "improve_samples"),
                                                           ("max_completion_length", "improve_max_tokens"))
                  if options.get(option) is not None}
        config["reward"] = options.get("reward") or DEFAULT_REWARD
        with tqdm(desc=f"prover ({method}, {config['reward']})", unit="step", disable=quiet) as bar:
            def progress(step, total, value):
                bar.total = total
                bar.set_postfix(value=f"{value:.3f}", refresh=False)
                bar.update(step - bar.n)

            try:
                summary = prover_improve(study=study, verifier=verifier, method=method,
                                         n_problems=options["improve_problems"], config=config, progress=progress)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"prover": summary}, indent=2))

    def _provers(self, study: LegibilityStudy, verifier: Verifier, round_: int, n_problems: int, quiet: bool):
        from legibility.rounds import prover_round

        with tqdm(desc=f"provers round {round_}", unit="solution", disable=quiet) as bar:
            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

            summary = prover_round(study=study, round_=round_, verifier=verifier, n_problems=n_problems,
                                   progress=progress)
        self.stdout.write(json.dumps(summary, indent=2))
