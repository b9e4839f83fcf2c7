"""python manage.py demo: migrate, create a demo study and an admin, start the server, print the links."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

from deliberation.models import Question, Study
from deliberation.question_import import import_file

HABERMAS_QUESTIONS = Path(settings.BASE_DIR).parent / "shared" / "data" / "habermas" / "230118_chinchilla_questions.json"
FALLBACK_QUESTIONS = [
    ("Should we remove all taxes on food and groceries?",
     "We should remove all taxes on food and groceries.", "We should NOT remove all taxes on food and groceries."),
    ("Should the voting age be lowered to 16?",
     "The voting age should be lowered to 16.", "The voting age should NOT be lowered to 16."),
    ("Should cities ban cars from their centres?",
     "Cities should ban cars from their centres.", "Cities should NOT ban cars from their centres."),
]


class Command(BaseCommand):
    help = ("Set up a demo deliberation study and run the server. Without DATABASE_URL/REDIS_URL it uses SQLite, "
            "the in-memory channel layer and an in-process worker; with them, PostgreSQL, Redis and a Celery worker.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--slug", default="demo")
        parser.add_argument("--backend", default="embedded", choices=["embedded", "extractive"],
                            help="embedded: SmolLM2-135M on CPU; extractive: a fast non-neural baseline.")
        parser.add_argument("--group-size", type=int, default=3)
        parser.add_argument("--questions", type=Path, default=HABERMAS_QUESTIONS,
                            help="Question file to import (default: the Habermas corpus when present).")
        parser.add_argument("--no-serve", action="store_true", help="Set everything up, print the links, and exit.")

    def handle(self, *args, **opts):
        (Path(settings.BASE_DIR) / "var").mkdir(exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        study = self.make_study(opts)
        password = self.make_admin()
        base = f"http://{opts['host']}:{opts['port']}"
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        mode = "in-process worker" if settings.IN_PROCESS_WORKER else "Celery worker"
        self.stdout.write(self.style.SUCCESS("\nDemo study ready") + f" ({engine}, {mode}, backend {study.generation_backend})")
        self.stdout.write(f"  Join link (open it in {study.min_group_size} browser windows or phones):")
        self.stdout.write(f"    {base}/s/{study.slug}/")
        self.stdout.write(f"    {base}/s/{study.slug}/?PROLIFIC_PID=demo-1   (a Prolific-style link)")
        self.stdout.write(f"  Admin:   {base}/admin/   user: admin   password: {password}")
        self.stdout.write(f"  Monitor: {base}/monitor/study/{study.pk}/\n")
        if opts["no_serve"]:
            return
        self.serve(opts["host"], opts["port"])

    def make_study(self, opts) -> Study:
        study, created = Study.objects.get_or_create(slug=opts["slug"], defaults=dict(
            title="Demo: finding common ground", min_group_size=opts["group_size"],
            max_group_size=opts["group_size"], lobby_timeout_seconds=600, opinion_seconds=300, rating_seconds=300,
            critique_seconds=180, final_rating_seconds=240, num_candidates=3, generation_backend=opts["backend"],
            generation_params={"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 120},
            completion_code_completed="DEMO-DONE", completion_code_lobby_timeout="DEMO-LOBBY",
            completion_code_dropped="DEMO-DROP"))
        if not created and study.generation_backend != opts["backend"]:
            study.generation_backend = opts["backend"]
            study.save(update_fields=["generation_backend"])
        if not study.questions.exists():
            if opts["questions"] and Path(opts["questions"]).exists():
                import_file(Path(opts["questions"]), study=study, split="iid_test", limit=20)
            else:
                for text, yes, no in FALLBACK_QUESTIONS:
                    q, _ = Question.objects.get_or_create(text=text, defaults={"affirming_statement": yes,
                                                                               "negating_statement": no})
                    study.questions.add(q)
        return study

    def make_admin(self) -> str:
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
        User = get_user_model()
        user, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def serve(self, host: str, port: int) -> None:
        worker = None
        if not settings.IN_PROCESS_WORKER:
            schedule = Path(settings.BASE_DIR) / "var" / "celerybeat-schedule"
            worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-B",
                                       "-Q", "celery,generation", "--pool=solo", "--loglevel=WARNING",
                                       "-s", str(schedule)])
            self.stdout.write(f"Celery worker + beat started (pid {worker.pid}).")
        self.stdout.write(f"Serving on http://{host}:{port}/ — press Ctrl+C to stop.")
        # The ASGI server with the websocket limits from the settings, as in production (config.serve.run), in one
        # process (the in-memory channel layer of the embedded demo cannot span two): config sits above every app
        # (docs/architecture.md), so the launcher is named in settings, not imported.
        serve = import_string(settings.ASGI_SERVE)
        try:
            serve(["-b", host, "-p", str(port), "--workers", "1"])
        finally:
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
