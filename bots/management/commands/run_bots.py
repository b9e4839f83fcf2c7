"""Simulated participants against a running server: ``manage.py run_bots --study SLUG --participants N``.

The bots use HTTP and websockets exactly like a browser (see ``bots.client``); the server
may be this project running elsewhere, with the same ``SECRET_KEY``: each bot's join link carries a token
signed with it, which marks the participant simulated (``participants.services.simulated_join_token``); a
server with another key refuses the bots. ``--json`` prints the summary as JSON on stdout.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bots.client import BotConfig, parse_think, parse_typing_pauses, run_bots
from participants.services import simulated_join_token


class Command(BaseCommand):
    help = "Run N simulated participants through a study on a running server (HTTP + websockets)."

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug (the join link is /s/SLUG/).")
        parser.add_argument("--participants", type=int, required=True, help="Number of bots.")
        parser.add_argument("--server", default="http://127.0.0.1:8000", help="Base URL of the server.")
        parser.add_argument("--dropout", type=float, default=0.0,
                            help="Probability that a bot drops out (closes its socket for good) in some phase.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed (reproducible behaviour).")
        parser.add_argument("--think", default="1:4", help="Think time MIN:MAX seconds before each action.")
        parser.add_argument("--opinions", default="question",
                            help="'question' (built from the question text and a stance), 'polis:DIR' "
                                 "(comments.csv of a Polis conversation under ../shared/data/polis/), 'persona' "
                                 "(written by a generation backend in the voice of a random persona) or "
                                 "'hidden:SEED' (each bot's stance and the values it cares about, from its hidden "
                                 "profile in participants/preferences.py).")
        parser.add_argument("--persona-backend", choices=("embedded", "openai"), default=None,
                            help="Backend that writes persona opinions. Default: the arm's backend (--arm) when this "
                                 "database has the study and it is embedded or openai (openai uses the arm's "
                                 "server settings).")
        parser.add_argument("--arm", default=None,
                            help="The study arm whose generation backend writes persona opinions (--opinions "
                                 "persona). Default: the study's only arm; a study with several must name one.")
        parser.add_argument("--persona-max-tokens", type=int, default=60,
                            help="New tokens per persona opinion (default 60).")
        parser.add_argument("--rating-policy", default="similarity",
                            help="How bots rate and rank statements: 'similarity' (word overlap with the bot's "
                                 "opinion), 'random', 'embedding' (all-MiniLM-L6-v2 cosine similarity to the bot's "
                                 "opinion) or 'reward:ID' / 'reward:DIR' (a trained reward model's predicted "
                                 "agreement; ID of a registered model or a checkpoint folder) or 'hidden:SEED' (each "
                                 "bot's hidden, consistent taste: values, style and idiosyncrasy, never seen by the "
                                 "system; participants/preferences.py).")
        parser.add_argument("--timeout", type=float, default=1800.0, help="Give up on a bot after this many seconds.")
        parser.add_argument("--stagger", type=float, default=0.2, help="Seconds between bot arrivals.")
        parser.add_argument("--ping", type=float, default=15.0, help="Seconds between pings.")
        parser.add_argument("--typing-pauses", default="1:1",
                            help="Drafts sent while typing or rating, one per pause, MIN:MAX per step (the page sends "
                                 "one after each pause; default 1:1).")
        parser.add_argument("--draft-on-submit", action="store_true",
                            help="Send the whole answer as a draft right before each submission, as the page does.")
        parser.add_argument("--ca-file", default="",
                            help="A CA certificate to trust for an https server with a private certificate "
                                 "(scripts/cluster's proxy: `scripts/cluster env` names it).")
        parser.add_argument("--screening", choices=("pass", "fail", "random"), default="pass",
                            help="How bots answer the study's screening questions: 'pass' (the correct answers, "
                                 "read from this database's study), 'fail' (a wrong answer on every attempt: each "
                                 "bot ends screened out) or 'random'. Default: pass.")
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")

    def persona_backend(self, options) -> tuple[str, dict]:
        if options["opinions"] != "persona":
            return options["persona_backend"] or "embedded", {}
        from core.errors import GenerationError
        from deliberation.models import Study
        from deliberation.selectors import ArmChoiceError, study_arm

        study = Study.objects.filter(slug=options["study"]).first()
        arm = None
        if study is not None and (options["persona_backend"] in (None, "openai") or options["arm"]):
            try:
                arm = study_arm(study, options["arm"])
            except ArmChoiceError as exc:
                raise CommandError(f"--opinions persona: {exc}") from None
        name = options["persona_backend"] or (arm.generation_backend if arm else None)
        if name not in ("embedded", "openai"):
            raise CommandError(
                f"--opinions persona needs a backend that writes text: the arm {arm.name!r}'s backend is {name!r}; "
                "pass --persona-backend embedded or openai" if name else
                "--opinions persona: this database has no study with that slug; pass --persona-backend")
        if options["persona_max_tokens"] < 8:
            raise CommandError("--persona-max-tokens must be at least 8")
        if name == "openai":
            if arm is None or arm.generation_backend != Study.Backend.OPENAI:
                raise CommandError("--persona-backend openai uses the arm's server settings, and "
                                   + (f"the arm {arm.name!r} has" if arm else "this database has no such study, so "
                                      "it has") + " no OpenAI-compatible server configured")
            try:
                return name, arm.backend_options()
            except GenerationError as exc:
                raise CommandError(f"--persona-backend openai: {exc}") from None
        return name, {}

    def screening_answers(self, options) -> dict[int, str]:
        """The study's answer key (question id -> correct option) when this database has the study; a remote
        server's study may still screen, and then a 'pass' or 'fail' bot fails saying it has no answers."""
        from deliberation.models import Study
        from participants.screening import screening_answer_key

        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            return {}
        answers = screening_answer_key(study_id=study.pk)
        if options["screening"] == "fail" and not answers:
            raise CommandError(f"--screening fail: study {study.slug!r} asks no screening questions, so no bot "
                               "could be screened out")
        return answers

    def rating_policy(self, policy: str) -> str:
        if policy.startswith("reward:") and policy.split(":", 1)[1].isdigit():
            from analysis.models import RewardModel

            model = RewardModel.objects.filter(pk=int(policy.split(":", 1)[1])).first()
            if model is None or not model.checkpoint_path:
                raise CommandError(f"{policy}: no trained reward model with that id")
            return f"reward:{model.checkpoint_path}"
        return policy

    def handle(self, *args, **options):
        if options["participants"] < 1:
            raise CommandError("--participants must be at least 1")
        if not 0.0 <= options["dropout"] <= 1.0:
            raise CommandError("--dropout is a probability between 0 and 1")
        try:
            think = parse_think(options["think"])
            typing_pauses = parse_typing_pauses(options["typing_pauses"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["ping"] <= 0:
            raise CommandError("--ping must be a positive number of seconds")
        if options["ca_file"] and not Path(options["ca_file"]).is_file():
            raise CommandError(f"--ca-file: no such file: {options['ca_file']}")
        persona_backend, persona_options = self.persona_backend(options)
        config = BotConfig(server=options["server"], study=options["study"], participants=options["participants"],
                           dropout=options["dropout"], seed=options["seed"], think=think,
                           opinions=options["opinions"], rating_policy=self.rating_policy(options["rating_policy"]),
                           persona_backend=persona_backend, persona_options=persona_options,
                           persona_max_tokens=options["persona_max_tokens"],
                           ping_seconds=options["ping"], typing_pauses=typing_pauses,
                           draft_on_submit=options["draft_on_submit"], timeout=options["timeout"],
                           stagger=options["stagger"], ca_file=options["ca_file"],
                           progress=not options["no_progress"], screening=options["screening"],
                           screening_answers=self.screening_answers(options),
                           simulated_token=simulated_join_token(options["study"]))
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the output
        try:
            summary = run_bots(config)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2, default=str))
            return
        self.stdout.write(
            f"{summary['participants_started']} bots: {summary['completed']} completed, {summary['dropped']} dropped, "
            f"{summary['lobby_timeout']} lobby timeout, {summary['screened_out']} screened out, "
            f"{summary['unfinished']} unfinished; {summary['questionnaires']} questionnaires; "
            f"writes {summary['writes_acknowledged']}/{summary['writes_sent']} acknowledged; "
            f"{summary['errors_received']} errors {summary['error_codes']}; {summary['seconds']} s")
        for failure in summary["failures"]:
            self.stderr.write(failure)
