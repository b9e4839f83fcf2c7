"""python manage.py run_sweeper: advance due deadlines and match lobbies in a loop (instead of Celery beat)."""
import time

from django.core.management.base import BaseCommand

from deliberation.sweeper import sweep


class Command(BaseCommand):
    help = ("Every --interval seconds: advance groups whose deadline passed, expire silent sockets, form groups "
            "in lobbies and time out lone waiters. Safe to run beside other sweepers.")

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=2.0)
        parser.add_argument("--once", action="store_true", help="Sweep once and exit.")

    def handle(self, *args, interval: float, once: bool, **options):
        while True:
            report = sweep()
            if options["verbosity"] > 1 or once:
                self.stdout.write(str(report.__dict__))
            if once:
                return
            time.sleep(interval)
